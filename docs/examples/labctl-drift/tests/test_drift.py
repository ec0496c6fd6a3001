import pytest

from labctl.engine import run_protocol
from labctl.plots import plot_run


@pytest.mark.labctl_formed
def test_drift_reads_one_cell_over_time(labctl_station, tmp_path):
    out = tmp_path / "drift.h5"
    result = run_protocol(labctl_station, "drift", {"reads": 5, "interval": 3600.0}, out=out)
    assert result.status == "completed", result.error
    assert 1e-6 < result.summary["g_first"] < 1e-4
    assert abs(result.summary["drift"]) < 0.2  # relaxation over 4 h: a few percent
    assert plot_run(out, result.run_id, tmp_path / "drift.png").stat().st_size > 0
