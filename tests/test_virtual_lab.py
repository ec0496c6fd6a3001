"""The simulated bench over loopback TCP: pyvisa-py and pyserial against the twins."""
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pyvisa
from labctl.sim.virtual_lab import VirtualLabServer

from labctl.cli import main
from labctl.engine import run_protocol
from labctl.station import Station, load_station, open_sim_lab, station_toml

FAST_FORMING = {"v_start": 2.9}  # skip the uneventful part of the ramp


@pytest.fixture
def virtual_lab(tmp_path):
    """A served 4x8 chip (seed 3) and the station file pointing at it."""
    config = load_station("sim")
    lab, state = open_sim_lab(config, tmp_path / "served.npz", seed=3)
    server = VirtualLabServer(lab, base_port=0, state_path=state)
    roles = {e.name: (e.model, e.resource) for e in server.endpoints if e.name != "control"}
    station_file = tmp_path / "lab.toml"
    station_file.write_text(station_toml(config, roles, "virtual lab", server.resource("control")))
    yield server, station_file
    server.close()


def test_same_results_over_tcp_as_in_process(virtual_lab, tmp_path):
    server, station_file = virtual_lab
    summaries = []
    for spec, state in ((str(station_file), None), ("sim", tmp_path / "local.npz")):
        with Station.open(spec, sim_state=state, seed=3) as station:
            runs = [run_protocol(station, "forming", FAST_FORMING, out=tmp_path / "d.h5"),
                    run_protocol(station, "iv_sweep", {"row": 1, "col": 2}, out=tmp_path / "d.h5")]
        assert all(r.status == "completed" for r in runs)
        summaries.append([r.summary for r in runs])
    assert summaries[0] == summaries[1]
    assert summaries[0][0]["yield"] == 1.0


def test_manual_routing_lets_a_plain_scpi_client_measure_the_cell(virtual_lab, tmp_path, capsys):
    server, station_file = virtual_lab
    with Station.open(str(station_file)) as station:
        run_protocol(station, "forming", FAST_FORMING, out=tmp_path / "d.h5")
        g_map = np.array(run_protocol(station, "read_map", out=tmp_path / "d.h5").summary["g_map"])
    # the cell that differs most from every other one: a reading tells which cell it is
    others = np.abs(g_map.ravel()[:, None] / g_map.ravel()[None, :] - 1.0) + np.eye(g_map.size)
    row, col = np.unravel_index(np.argmax(others.min(axis=1)), g_map.shape)
    assert others.min(axis=1).max() > 0.02
    assert main(["board", "route", "--station", str(station_file), "--cell", f"{row},{col}", "--gate", "1.2"]) == 0
    status = capsys.readouterr().out
    assert f"WL{row + 1}" in status and f"BL{col + 1}" in status and "SMU" in status
    rm = pyvisa.ResourceManager("@py")
    smu = rm.open_resource(server.resource("smu"), read_termination="\n", write_termination="\n")
    try:
        smu.write(':SOUR:FUNC VOLT;:SENS:FUNC "CURR";:SOUR:VOLT 0.2;:OUTP ON')
        g = float(smu.query(":READ?")) / 0.2
        smu.write(":OUTP OFF")
    finally:
        smu.close()
        rm.close()
    # read noise and relaxation move a reading by well under 1 %; this cell differs from every
    # other by more than 2 %
    assert np.unravel_index(np.argmin(np.abs(g_map - g)), g_map.shape) == (row, col)
    assert g == pytest.approx(g_map[row, col], rel=0.01)
    assert main(["board", "release", "--station", str(station_file)]) == 0
    assert "SMU" not in capsys.readouterr().out


def test_station_check_reports_identities_and_failures(virtual_lab, tmp_path, capsys):
    server, station_file = virtual_lab
    assert main(["station", "check", str(station_file)]) == 0
    out = capsys.readouterr().out
    assert "MODEL 2450" in out and "81160A" in out and "FPGA-1T1R" in out
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    broken = tmp_path / "broken.toml"
    broken.write_text(station_file.read_text().replace(server.resource("board"), f"socket://127.0.0.1:{dead}"))
    assert main(["station", "check", str(broken)]) == 1
    captured = capsys.readouterr()
    assert f"127.0.0.1:{dead}" in captured.out and "board" in captured.err


def test_sim_control_port(virtual_lab):
    server, _ = virtual_lab
    host, port = server.resource("control").split(":")
    with socket.create_connection((host, int(port))) as s, s.makefile("rw") as f:
        def ask(line):
            f.write(line + "\n")
            f.flush()
            return f.readline().strip()

        t0 = float(ask("TIME?"))
        assert ask("ADVANCE 3600") == "OK"
        assert float(ask("TIME?")) == pytest.approx(t0 + 3600)
        assert ask("BOGUS").startswith("ERR")


def test_sim_serve_command_end_to_end(tmp_path):
    exe = Path(sys.executable).with_name("labctl")
    station_file = tmp_path / "served.toml"
    server = subprocess.Popen([exe, "sim", "serve", "--base-port", "0", "--json", "--seed", "4",
                               "--sim-state", str(tmp_path / "s.npz"), "--station-out", str(station_file),
                               "--smu", "keithley2450", "--pulse", "keysight81160a"],
                              stdout=subprocess.PIPE, text=True)
    try:
        announced = json.loads(server.stdout.readline())
        names = {i["name"]: i for i in announced["instruments"]}
        assert names["smu"]["resource"].startswith("TCPIP0::127.0.0.1::")
        assert names["board"]["resource"].startswith("socket://127.0.0.1:")
        assert announced["station_file"] == str(station_file)
        run = subprocess.run([exe, "run", "iv_sweep", "--station", str(station_file), "--json",
                              "--out", str(tmp_path / "d.h5")], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout.splitlines()[-1])["status"] == "completed"
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
    assert (tmp_path / "s.npz").exists()  # the chip state was saved on the way out


def test_wait_advances_virtual_time_over_the_network(virtual_lab):
    server, station_file = virtual_lab
    t0 = server.lab.physics.clock.now
    with Station.open(str(station_file)) as station:
        station.wait(86400.0)
    assert server.lab.physics.clock.now == pytest.approx(t0 + 86400.0)


SMOKE = {  # every protocol, kept small: the point is the path through pyvisa-py and pyserial
    "read_map": {},
    "iv_sweep": {"v_step": 0.1},
    "pulse_response": {"n_pulses": 8, "cycles": 1},
    "endurance": {"cycles": 10},
    "variability_map": {"all_cells": False, "n_cols": 2},
    "write_verify": {"targets": [30e-6], "acceptance": 0.05, "repeats": 2},
    "retention": {"levels": [30e-6], "times": [1.0, 3600.0], "acceptance": 0.05, "repeats": 2},
    "read_noise": {"levels": [30e-6], "times": [1.0], "n_reads": 5, "acceptance": 0.05, "repeats": 2},
    "mvm": {"rows": 4, "cols": 4, "batch": 4, "acceptance": 0.05, "periphery": "ideal"},
    "weight_transfer": {"rows": 2, "cols": 2, "acceptance": 0.05},
    "parallel_update": {"updates": 2, "g_init": 0.0},
    "train": {"epochs": 1, "sp_cycles": 0},
    "inference": {"times": [1.0]},  # of the train run above (same file)
}


def test_every_protocol_runs_over_the_virtual_lab(virtual_lab, tmp_path):
    from labctl.registry import PROTOCOLS

    assert set(SMOKE) | {"forming"} == set(PROTOCOLS)  # a new protocol must join this test
    server, station_file = virtual_lab
    with Station.open(str(station_file)) as station:
        assert run_protocol(station, "forming", FAST_FORMING, out=tmp_path / "d.h5").status == "completed"
        t0 = server.lab.physics.clock.now
        for name, params in SMOKE.items():
            if name == "inference":
                params = params | {"file": str(tmp_path / "train.h5")}
            out = tmp_path / ("train.h5" if name == "train" else "d.h5")
            result = run_protocol(station, name, params, out=out)
            assert result.status == "completed", f"{name}: {result.error}"
    assert server.lab.physics.clock.now - t0 > 3600.0  # retention waited in the server's virtual time


def test_station_check_compares_the_soa_and_the_map_with_the_instruments(virtual_lab, tmp_path, capsys):
    server, station_file = virtual_lab
    assert main(["station", "check", str(station_file), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {(e["role"], e["check"]) for e in report} >= {("smu", "identity"), ("smu", "error queue"),
                                                         ("board", "chip map"), ("board", "SOA max_v_wl")}
    beyond = tmp_path / "beyond.toml"
    beyond.write_text(station_file.read_text().replace("max_v_wl = 2.5", "max_v_wl = 7.5")
                      .replace("max_current = 0.001", "max_current = 3.0"))
    assert main(["station", "check", str(beyond), "--json"]) == 1
    failed = {(e["role"], e["check"]): e["detail"] for e in json.loads(capsys.readouterr().out) if not e["ok"]}
    assert set(failed) == {("smu", "SOA max_v_bl, max_current"), ("board", "SOA max_v_wl")}
    assert "1.05" in failed[("smu", "SOA max_v_bl, max_current")] and "7.5 V" in failed[("board", "SOA max_v_wl")]
