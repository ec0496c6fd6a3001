"""`labctl run` ended by a signal mid-run, against the virtual lab in another process, so the
instruments outlive the run and are checked over their own protocols afterwards: SIGINT and
SIGTERM end it safe with its rows and status recorded; after SIGKILL the file still opens with
its flushed rows, and the next open of the station reports the interrupted run and finds the
station safe."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pyvisa
from labctl.instruments.fpga import FpgaBoard, LineMode
from labctl.instruments.transport import SerialTransport

from labctl.station import Station, load_station
from labctl.store import list_runs, load_run

LABCTL = [sys.executable, "-m", "labctl.cli"]
DEADLINE = 60.0  # s: generous bound for a loaded CI machine; every wait below ends on an event


def wait_for(condition, what: str):
    """Poll an observable condition (a file the other process writes) until it holds."""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        try:
            value = condition()
        except (OSError, RuntimeError, KeyError):  # a read that caught the writer mid-update: poll again
            value = None
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def served_lab(tmp_path):
    """`labctl sim serve` in its own process; yields (station file, environment)."""
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    station = tmp_path / "lab.toml"
    server = subprocess.Popen([*LABCTL, "sim", "serve", "--base-port", "0", "--json", "--seed", "3",
                               "--sim-state", str(tmp_path / "served.npz"), "--station-out", str(station)],
                              env=env, stdout=subprocess.PIPE, text=True)
    try:
        json.loads(server.stdout.readline())
        yield station, env
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)


def start_run(station: Path, env: dict, out: Path) -> subprocess.Popen:
    run = subprocess.Popen([*LABCTL, "run", "pulse_response", "--station", str(station), "--out", str(out),
                            "--set", "n_pulses=20000", "--set", "cycles=1"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: out.exists() and any(r["datasets"].get("trace", [0])[0] > 0 for r in list_runs(out)),
             "the run's first flushed rows")
    return run


def assert_instruments_safe(station: Path) -> None:
    """Asked over each instrument's own protocol, not through labctl's memory of it."""
    config = load_station(str(station))
    rm = pyvisa.ResourceManager("@py")
    try:
        for role, query in (("smu", ":OUTP?"), ("pulse", ":OUTP1?")):
            inst = rm.open_resource(config.instruments[role].resource, read_termination="\n",
                                    write_termination="\n", timeout=5000)
            try:
                assert inst.query(query).strip() in ("0", "OFF"), role
            finally:
                inst.close()
    finally:
        rm.close()
    board = FpgaBoard(SerialTransport(config.instruments["board"].resource, 921600, 5.0))
    try:
        modes, dac = board.status()
        assert (modes == LineMode.GROUND).all() and (dac == 0).all()
    finally:
        board.close()


@pytest.mark.parametrize("signum, code, error", [(signal.SIGINT, 130, "Ctrl-C"),
                                                 (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signalled_run_ends_safe_with_its_rows_and_status(served_lab, tmp_path, signum, code, error):
    station, env = served_lab
    out = tmp_path / "run.h5"
    run = start_run(station, env, out)
    before = wait_for(lambda: max(r["datasets"]["trace"][0] for r in list_runs(out)), "a whole read")
    run.send_signal(signum)
    _, stderr = run.communicate(timeout=DEADLINE)
    assert run.returncode == code, stderr
    (record,) = list_runs(out)
    assert record["status"] == "aborted" and error in record["error"], record["error"]
    assert record["datasets"]["trace"][0] >= before  # every row flushed before the signal is kept
    assert_instruments_safe(station)


def test_after_sigkill_the_file_keeps_its_rows_and_the_next_open_reports_the_run(served_lab, tmp_path):
    station, env = served_lab
    out = tmp_path / "run.h5"
    run = start_run(station, env, out)
    before = wait_for(lambda: max(r["datasets"]["trace"][0] for r in list_runs(out)), "a whole read")
    run.kill()
    run.communicate(timeout=DEADLINE)
    (record,) = list_runs(out)
    assert record["status"] == "running" and record["datasets"]["trace"][0] >= before
    assert len(load_run(out, record["run_id"])["data"]["trace"]) >= before
    with Station.open(str(station)) as opened:
        assert opened.interrupted_run["run_id"] == record["run_id"]
    (record,) = list_runs(out)
    assert record["status"] == "interrupted" and "killed" in record["error"]
    assert_instruments_safe(station)


def test_a_second_labctl_on_a_held_station_is_refused_with_the_holder(served_lab, tmp_path):
    station, env = served_lab
    out = tmp_path / "run.h5"
    run = start_run(station, env, out)
    try:
        second = subprocess.run([*LABCTL, "run", "read_map", "--station", str(station), "--out",
                                 str(tmp_path / "other.h5")], env=env, capture_output=True, text=True,
                                timeout=DEADLINE)
        assert second.returncode == 1
        assert f"in use by process {run.pid}" in second.stderr and "pulse_response" in second.stderr
        assert not (tmp_path / "other.h5").exists()
    finally:
        run.send_signal(signal.SIGINT)
        run.communicate(timeout=DEADLINE)
