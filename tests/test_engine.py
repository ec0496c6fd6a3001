"""Run engine: safe state on every exit path, status recorded, data kept, bad input refused."""
import numpy as np
import pytest
from labctl.instruments.fpga import LineMode

from labctl.engine import Protocol, RunControl, run_protocol
from labctl.params import Parameter, ParameterError
from labctl.safety import SafetyError
from labctl.station import Station
from labctl.store import list_runs, load_run


class PowerGlitch(Protocol):
    """Biases a cell, records rows, then fails mid-run."""

    name = "power_glitch"
    parameters = (Parameter("rows_before", "int", 3, minimum=0),)

    def run(self, ctx):
        ctx.table("t", [("k", "i4", ""), ("i", "f8", "A")])
        xbar = ctx.crossbar
        xbar.connect_cell(0, 0, 1.2)
        xbar.smu.source_voltage = 0.5
        xbar.smu.output_enabled = True
        for k in range(ctx.params["rows_before"]):
            ctx.append("t", k=k, i=xbar.smu.measure_current())
        raise RuntimeError("power glitch at the board")


def assert_safe(station):
    lab = station.lab
    assert not lab.smu.output_on and lab.smu.source_level == 0.0
    for modes in lab.board.line_modes():
        assert np.all(modes == LineMode.GROUND)
    v = lab.board.line_voltages(v_smu=1.0)
    assert all(np.all(x == 0) for x in v)


def test_exception_mid_run_leaves_station_safe_and_keeps_rows(sim_station, tmp_path):
    out = tmp_path / "d.h5"
    result = run_protocol(sim_station, PowerGlitch(), out=out)
    assert result.status == "failed"
    assert "power glitch at the board" in result.error
    assert_safe(sim_station)
    run = load_run(out, result.run_id)
    assert run["attrs"]["status"] == "failed"
    assert "power glitch at the board" in run["attrs"]["error"]
    np.testing.assert_array_equal(run["data"]["t"]["k"], [0, 1, 2])
    assert np.all(run["data"]["t"]["i"] > 0)  # the routed (pristine) cell conducted


def test_abort_at_a_checkpoint_stops_the_run_safely(sim_station, tmp_path):
    control = RunControl()

    def abort_after_two(done, total, message):
        if done == 2:
            control.abort()

    out = tmp_path / "d.h5"
    result = run_protocol(sim_station, "forming", out=out, progress=abort_after_two, control=control)
    assert result.status == "aborted"
    assert_safe(sim_station)
    assert len(load_run(out, result.run_id)["data"]["cells"]) == 2


def test_ctrl_c_is_recorded_as_aborted_then_reraised(sim_station, tmp_path):
    def interrupt(done, total, message):
        if done == 1:
            raise KeyboardInterrupt

    out = tmp_path / "d.h5"
    with pytest.raises(KeyboardInterrupt):
        run_protocol(sim_station, "forming", out=out, progress=interrupt)
    assert_safe(sim_station)
    [run] = list_runs(out)
    assert run["status"] == "aborted" and "Ctrl-C" in run["error"]


def test_a_second_ctrl_c_inside_the_safe_state_is_shielded(sim_station, tmp_path, monkeypatch):
    """Ctrl-C, then another one that lands while the engine puts the station in its safe state:
    the safe state is completed, the run is recorded as aborted with its rows, and the interrupt
    still ends the caller."""
    real, calls = sim_station.safe_state, []

    def interrupted_safe_state():
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        real()

    def interrupt(done, total, message):
        if done == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(sim_station, "safe_state", interrupted_safe_state)
    out = tmp_path / "d.h5"
    with pytest.raises(KeyboardInterrupt):
        run_protocol(sim_station, "forming", out=out, progress=interrupt)
    assert len(calls) == 2
    assert_safe(sim_station)
    [run] = list_runs(out)
    assert run["status"] == "aborted" and "Ctrl-C" in run["error"] and run["datasets"]["ramp"][0] > 0


def test_a_sigint_during_the_safe_state_is_held_until_the_run_is_recorded(sim_station, tmp_path, monkeypatch):
    import os
    import signal

    real = sim_station.safe_state

    def safe_state_with_ctrl_c():
        os.kill(os.getpid(), signal.SIGINT)  # delivered at once to this (the main) thread
        real()

    monkeypatch.setattr(sim_station, "safe_state", safe_state_with_ctrl_c)
    out = tmp_path / "d.h5"
    with pytest.raises(KeyboardInterrupt):
        run_protocol(sim_station, "read_map", out=out)
    assert_safe(sim_station)
    [run] = list_runs(out)
    assert run["status"] == "completed" and run["datasets"]["g_map"] == [4, 8]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_soa_violation_is_refused_before_anything_is_applied(sim_station, tmp_path):
    out = tmp_path / "d.h5"
    t0 = sim_station.lab.physics.clock.now
    with pytest.raises(SafetyError, match=r"v_stop=9 V exceeds .* <= 4 V"):
        run_protocol(sim_station, "forming", {"v_stop": 9}, out=out)
    with pytest.raises(ParameterError, match="row=4 is above its maximum 3"):
        run_protocol(sim_station, "iv_sweep", {"row": 4}, out=out)
    assert sim_station.lab.physics.clock.now == t0
    assert not out.exists()


def test_forming_then_read_map_on_the_packaged_chip(sim_station, tmp_path):
    out = tmp_path / "d.h5"
    forming = run_protocol(sim_station, "forming", out=out)
    assert forming.status == "completed"
    s = forming.summary
    assert s["yield"] == 1.0 and s["formed_now"] == 32
    # 32 draws of N(3.2 V, 75 mV): standard error of the mean 13 mV
    assert s["v_form_mean"] == pytest.approx(3.2, abs=0.05)
    assert 0.04 < s["v_form_std"] < 0.12
    g = np.array(run_protocol(sim_station, "read_map", out=out).summary["g_map"])
    assert g.shape == (4, 8)
    assert np.all((g >= 9.0e-6) & (g <= 88.2e-6))
    again = run_protocol(sim_station, "forming", out=out).summary
    assert again["already_formed"] == 32 and again["formed_now"] == 0 and again["yield"] == 1.0
    ramp = load_run(out, forming.run_id)["data"]["ramp"]
    assert ramp["i"].max() <= 100e-6 * 1.001  # the SMU compliance ended every ramp


def test_iv_loop_shows_set_and_reset(sim_station, tmp_path):
    out = tmp_path / "d.h5"
    run_protocol(sim_station, "forming", out=out)
    s = run_protocol(sim_station, "iv_sweep", {"row": 2, "col": 5}, out=out).summary
    assert s["on_off_ratio"] > 3  # full SET/RESET swings the ~9-88 uS window
    # switching needs the ReRAM above its 0.8 V thresholds, plus the selector's drop
    assert 0.8 < s["v_set"] < 1.5 and -1.5 < s["v_reset"] < -0.8


def test_switching_voltage_finds_the_jump():
    from labctl.protocols.iv_sweep import switching_voltage

    v = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    i = v * np.array([1, 1, 1, 1, 5, 5]) * 1e-5  # conductance jumps between 0.6 and 0.8 V
    assert switching_voltage(v, i, np.ones(6, bool), +1) == 0.8
    assert switching_voltage(v, i, np.ones(6, bool), -1) is None  # no drop on this leg


def test_live_plots_take_their_units_from_the_declared_tables_and_arrays():
    from labctl.registry import PROTOCOLS

    for protocol in PROTOCOLS.values():
        for plot in protocol.live_plots:
            if plot.kind == "image":
                assert plot.table in protocol.arrays, (protocol.name, plot.title)
                assert plot.unit == protocol.arrays[plot.table]
            else:
                units = {c: u for c, _, u in protocol.tables[plot.table]}
                assert (plot.x_unit, plot.y_unit) == (units[plot.x], units[plot.y]), (protocol.name, plot.title)
    assert PROTOCOLS["forming"].live_plots[0].y_unit == "A" and PROTOCOLS["read_map"].live_plots[0].unit == "S"


def test_a_live_plot_of_an_undeclared_column_fails_at_definition():
    from labctl.live import LivePlot

    with pytest.raises(TypeError, match=r"columns \['g'\].*'trace'"):
        class Wrong(Protocol):
            name = "wrong"
            tables = {"trace": [("pulse", "i4", "")]}
            live_plots = (LivePlot("trace", "pulse", "g", "G"),)


def test_tables_and_arrays_follow_their_declarations(tmp_path):
    class Declared(Protocol):
        name = "declared"
        tables = {"t": [("x", "f8", "V")]}
        arrays = {"m": "S"}

        def run(self, ctx):
            ctx.table("t")
            ctx.append("t", x=[1.0])
            ctx.save_array("m", np.ones((2, 2)))
            ctx.table("helper", [("y", "i4", "")])  # an undeclared table names its columns
            for call in (lambda: ctx.table("nope"), lambda: ctx.save_array("nope", np.ones(2))):
                with pytest.raises(KeyError, match="nope"):
                    call()
            with pytest.raises(ValueError, match="declared"):
                ctx.table("t", [("x", "f8", "A")])
            with pytest.raises(ValueError, match="declared"):
                ctx.save_array("m", np.ones(2), "A")
            return {}

    with Station.open("sim", sim_state=tmp_path / "chip.npz", seed=1) as station:
        result = run_protocol(station, Declared(), {}, out=tmp_path / "d.h5")
    assert result.status == "completed", result.error
    run = load_run(tmp_path / "d.h5", result.run_id)
    assert run["units"]["t"] == {"x": "V"} and run["units"]["m"] == "S"
