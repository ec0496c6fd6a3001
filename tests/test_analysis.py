"""A run as an xarray Dataset / pandas DataFrames with units and provenance, and as netCDF."""
import json

import numpy as np
import xarray as xr

from labctl.analysis import run_dataset, run_tables
from labctl.cli import main
from labctl.engine import run_protocol
from labctl.store import load_run


def test_a_run_becomes_a_dataset_with_units_and_provenance(sim_station, tmp_path, capsys):
    out = tmp_path / "d.h5"
    forming = run_protocol(sim_station, "forming", out=out)
    ds = run_dataset(out, forming.run_id)
    run = load_run(out, forming.run_id)
    assert ds["v_form_map"].dims == ("wl", "bl") and ds["v_form_map"].attrs["units"] == "V"
    np.testing.assert_array_equal(ds["formed_map"].values, run["data"]["formed_map"])
    assert ds["ramp.i"].attrs["units"] == "A" and ds.sizes["ramp"] == len(run["data"]["ramp"])
    assert set(ds["cells.status"].values) <= {"formed", "already_formed", "not_formed"}
    assert ds.attrs["protocol"] == "forming" and ds.attrs["status"] == "completed"
    assert json.loads(ds.attrs["summary"]) == forming.summary
    assert json.loads(ds.attrs["station"])["chip"]["rows"] == 4
    ramp = run_tables(out, forming.run_id)["ramp"]
    assert ramp.attrs["units"]["v"] == "V" and len(ramp) == ds.sizes["ramp"]
    assert ramp["v"].max() <= 4.0

    nc = tmp_path / "forming.nc"
    assert main(["data", "export", str(out), forming.run_id, "--netcdf", str(nc)]) == 0
    with xr.open_dataset(nc, engine="h5netcdf") as back:
        xr.testing.assert_identical(back.load(), ds)
    assert main(["data", "export", str(out), forming.run_id]) == 2
    assert "--netcdf" in capsys.readouterr().err
