"""A run as the analysis libraries' objects: one call gives an xarray Dataset (or a pandas
DataFrame per table), with units and provenance as attributes; `labctl data export --netcdf`
writes the Dataset to a netCDF-4 file. Needs the `analysis` extra (xarray, h5netcdf).

Layout of the Dataset: each saved array is a variable on dims ("wl", "bl") when it has the chip's
rows x columns (else on its own dims `<name>_dim_k`); each table column is a variable
`<table>.<column>` on the dim `<table>` (one entry per row). Every variable has attrs `units`
(SI, "" for a number). The Dataset's attrs hold the run id, protocol, status, started, ended,
error, the labctl file it came from, and as JSON strings the parameters, summary, station
snapshot (instruments, identities, chip map, SOA, simulator seed and time) and software versions.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .store import load_run

PROVENANCE = ("protocol", "status", "started", "ended", "error")
JSON_ATTRS = ("parameters", "summary", "station", "software")


def _column(values: np.ndarray) -> np.ndarray:
    """A table column as xarray/pandas hold it: fixed-width bytes decoded to str."""
    return np.char.decode(values, "utf-8") if values.dtype.kind == "S" else values


def _provenance(path: str | Path, run_id: str, attrs: dict[str, Any]) -> dict[str, str]:
    out = {"run_id": run_id, "file": str(Path(path).resolve())}
    out |= {key: str(attrs.get(key, "")) for key in PROVENANCE}
    out |= {key: json.dumps(attrs.get(key, {}), default=str) for key in JSON_ATTRS}
    return out


def run_dataset(path: str | Path, run_id: str):
    """Run `run_id` of the labctl file `path` as an xarray.Dataset (see the module doc)."""
    import xarray as xr

    run = load_run(path, run_id)
    chip = run["attrs"].get("station", {}).get("chip", {})
    shape = (chip.get("rows"), chip.get("cols"))
    variables = {}
    for name, data in run["data"].items():
        units = run["units"][name]
        if data.dtype.names:
            for column in data.dtype.names:
                variables[f"{name}.{column}"] = xr.Variable(name, _column(data[column]),
                                                            {"units": units.get(column, "")})
        else:
            dims = ("wl", "bl") if data.shape == shape else tuple(f"{name}_dim_{k}" for k in range(data.ndim))
            variables[name] = xr.Variable(dims, data, {"units": units})
    return xr.Dataset(variables, attrs=_provenance(path, run_id, run["attrs"]))


def run_tables(path: str | Path, run_id: str) -> dict[str, Any]:
    """Every table of a run as a pandas.DataFrame, with attrs `units` (column -> unit) and the
    run's provenance."""
    import pandas as pd

    run = load_run(path, run_id)
    tables = {}
    for name, data in run["data"].items():
        if data.dtype.names:
            frame = pd.DataFrame({column: _column(data[column]) for column in data.dtype.names})
            frame.attrs = {"units": dict(run["units"][name]), **_provenance(path, run_id, run["attrs"])}
            tables[name] = frame
    return tables


def export_netcdf(path: str | Path, run_id: str, out: str | Path) -> Path:
    """Write run `run_id` as a netCDF-4 file `out` (h5netcdf engine); returns its path."""
    out = Path(out)
    run_dataset(path, run_id).to_netcdf(out, engine="h5netcdf", invalid_netcdf=False)
    return out
