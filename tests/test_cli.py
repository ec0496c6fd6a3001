"""The command-line contract (issue 2)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from labctl import __version__
from labctl.cli import main


def run_json(capsys, *argv):
    code = main(list(argv) + ["--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1])


@pytest.fixture
def state(tmp_path):
    return str(tmp_path / "chip.npz")


def test_entry_point_version_and_help():
    exe = Path(sys.executable).with_name("labctl")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"labctl {__version__}"
    help_text = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("protocols", "run", "demo", "data", "sim"):
        assert command in help_text


def test_protocols_json_lists_parameters_with_limits(capsys):
    assert main(["protocols", "--json"]) == 0
    table = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert {"forming", "iv_sweep", "read_map"} <= set(table)
    v_stop = {q["name"]: q for q in table["forming"]["parameters"]}["v_stop"]
    assert v_stop["type"] == "float" and v_stop["unit"] == "V" and v_stop["default"] == 4.0
    assert v_stop["soa"] == "max_v_bl"


def test_forming_then_read_map_persist_between_runs(capsys, tmp_path, state):
    out = str(tmp_path / "d.h5")
    code, res = run_json(capsys, "run", "forming", "--station", "sim", "--sim-state", state, "--out", out)
    assert code == 0 and res["status"] == "completed" and res["protocol"] == "forming"
    assert res["summary"]["yield"] == 1.0
    assert res["summary"]["v_form_mean"] == pytest.approx(3.2, abs=0.05)
    assert res["file"] == str(Path(out).resolve())
    code, res = run_json(capsys, "run", "read_map", "--sim-state", state, "--out", out)
    g = np.array(res["summary"]["g_map"])
    assert code == 0 and g.shape == (4, 8) and np.all((g >= 9e-6) & (g <= 88.2e-6))
    assert main(["sim", "reset", "--sim-state", state]) == 0
    code, res = run_json(capsys, "run", "read_map", "--sim-state", state, "--out", out)
    assert np.all(np.array(res["summary"]["g_map"]) < 1e-6)  # pristine again


def test_default_state_is_per_station(capsys, tmp_path):
    out = str(tmp_path / "d.h5")
    run_json(capsys, "run", "forming", "--station", "sim", "--out", out)
    _, res = run_json(capsys, "run", "read_map", "--station", "sim", "--out", out)
    assert np.all(np.array(res["summary"]["g_map"]) > 9e-6)
    _, res = run_json(capsys, "run", "read_map", "--station", "sim:3x5", "--out", out)
    g = np.array(res["summary"]["g_map"])
    assert g.shape == (3, 5) and np.all(g < 1e-6)  # another chip, still pristine


def test_set_values_and_seed(capsys, tmp_path, state):
    out = str(tmp_path / "d.h5")
    code, res = run_json(capsys, "run", "forming", "--sim-state", state, "--out", out, "--seed", "5",
                         "--set", "v_step=0.02", "--set", "v_stop=3.6")
    assert code == 0
    params = json.loads(__import__("h5py").File(out)["runs"][res["run_id"]].attrs["parameters"])
    assert params["v_step"] == 0.02 and params["v_stop"] == 3.6


@pytest.mark.parametrize("argv, names", [
    (["run", "forming", "--set", "v_stop=9"], ["v_stop", "4"]),
    (["run", "forming", "--set", "v_stopp=3"], ["v_stopp"]),
    (["run", "no_such_protocol"], ["no_such_protocol", "forming"]),
    (["run", "iv_sweep", "--set", "col=8"], ["col", "7"]),
    (["run", "forming", "--set", "v_step"], ["NAME=VALUE"]),
])
def test_bad_input_exits_2_with_one_line_and_applies_nothing(capsys, tmp_path, state, argv, names):
    assert main(argv + ["--sim-state", state, "--out", str(tmp_path / "d.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    for name in names:
        assert name in err
    assert not Path(state).exists()  # the station was never opened
    assert not (tmp_path / "d.h5").exists()


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("rows = 4\n", ""), "[chip] is missing key 'rows'"),
    (lambda t: t.replace("max_v_wl", "max_v_wll"), "unknown key 'max_v_wll'"),
    (lambda t: t.replace('driver = "keithley2450"', 'driver = "keithly2450"'), "keithly2450"),
])
def test_station_file_errors_name_key_and_file(capsys, tmp_path, edit, message):
    from importlib import resources
    text = resources.files("labctl").joinpath("stations/sim.toml").read_text()
    station = tmp_path / "bench.toml"
    station.write_text(edit(text))
    assert main(["run", "read_map", "--station", str(station)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(station) in err


def test_data_ls_and_export(capsys, tmp_path, state):
    out = str(tmp_path / "d.h5")
    _, res = run_json(capsys, "run", "read_map", "--sim-state", state, "--out", out)
    assert main(["data", "ls", out]) == 0
    assert res["run_id"] in capsys.readouterr().out
    assert main(["data", "export", out, res["run_id"], "--csv", str(tmp_path / "csv")]) == 0
    files = capsys.readouterr().out.split()
    assert any(f.endswith("_g_map.csv") for f in files)
    grid = np.loadtxt([line for line in open(next(f for f in files if f.endswith("_g_map.csv")))], delimiter=",")
    np.testing.assert_allclose(grid, res["summary"]["g_map"])


def test_demo_forms_maps_and_loops_a_fresh_chip(capsys, tmp_path):
    code, res = run_json(capsys, "demo", "--out", str(tmp_path / "demo"), "--seed", "2")
    assert code == 0
    runs = {r["protocol"]: r for r in res["runs"]}
    assert set(runs) == {"forming", "read_map", "iv_sweep"}
    assert all(r["status"] == "completed" and r["file"] == res["file"] for r in runs.values())
    assert runs["forming"]["summary"]["yield"] == 1.0
    # a second demo starts again from a pristine chip
    code, res = run_json(capsys, "demo", "--out", str(tmp_path / "demo"), "--seed", "2")
    assert {r["protocol"]: r for r in res["runs"]}["forming"]["summary"]["formed_now"] == 32


def test_device_file_swaps_the_simulated_physics(capsys, tmp_path, state):
    from labctl.sim.physics import DEFAULT_DEVICE_FILE

    device = tmp_path / "device.toml"
    device.write_text(DEFAULT_DEVICE_FILE.read_text().replace(
        "v_form_mean = { value = 3.17,", "v_form_mean = { value = 2.5,"))
    code, res = run_json(capsys, "run", "forming", "--sim-state", state, "--device", str(device),
                         "--set", "v_start=2.0", "--out", str(tmp_path / "d.h5"))
    assert code == 0 and res["summary"]["v_form_mean"] == pytest.approx(2.53, abs=0.05)
    device.write_text(DEFAULT_DEVICE_FILE.read_text().replace("v_pristine = ", "v_pristin = "))
    assert main(["run", "read_map", "--sim-state", str(tmp_path / "other.npz"), "--device", str(device)]) == 2
    assert "v_pristin" in capsys.readouterr().err
