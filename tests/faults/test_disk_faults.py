"""The data file fails mid-run (disk full, path gone): the station still ends safe, the rows
flushed before stay readable, and the error names the file."""
import errno

import numpy as np
import pytest
from labctl.instruments.fpga import LineMode

from labctl.engine import run_protocol
from labctl.station import Station
from labctl.store import RunWriter, list_runs, load_run


def assert_safe(station):
    lab = station.lab
    assert not lab.smu.output_on and lab.smu.source_level == 0.0
    assert all(np.all(modes == LineMode.GROUND) for modes in lab.board.line_modes())


def disk_full_after(monkeypatch, method: str, calls: int):
    real, count = getattr(RunWriter, method), []

    def failing(self, *args, **kwargs):
        count.append(1)
        if len(count) > calls:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(RunWriter, method, failing)


def test_disk_full_while_appending_rows_fails_the_run_safely(sim_station, tmp_path, monkeypatch):
    disk_full_after(monkeypatch, "append", 3)
    out = tmp_path / "d.h5"
    result = run_protocol(sim_station, "iv_sweep", {"cycles": 5}, out=out)
    assert result.status == "failed" and "No space left" in result.error
    assert_safe(sim_station)
    (run,) = list_runs(out)
    assert run["status"] == "failed"
    assert len(load_run(out, run["run_id"])["data"]["iv"]) > 0  # the rows written before are kept


def test_a_run_whose_end_cannot_be_recorded_is_reported_at_the_next_open(tmp_path, monkeypatch):
    out, state, finish = tmp_path / "d.h5", tmp_path / "chip.npz", RunWriter.finish
    with Station.open("sim", sim_state=state, seed=1) as station:
        disk_full_after(monkeypatch, "finish", 0)
        with pytest.raises(OSError, match=r"d\.h5: the end of run 001_iv_sweep .* could not be recorded"):
            run_protocol(station, "iv_sweep", out=out)
        assert_safe(station)
    monkeypatch.setattr(RunWriter, "finish", finish)  # the disk has room again
    (run,) = list_runs(out)
    assert run["status"] == "running" and run["datasets"]["iv"][0] > 0
    with Station.open("sim", sim_state=state, seed=1) as station:
        assert station.interrupted_run["run_id"] == run["run_id"]
    assert list_runs(out)[0]["status"] == "interrupted"
