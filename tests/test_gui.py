"""The Qt GUI on the simulated station: runs, live plots, abort and safe state, the generated form
refusing bad values, the data browser following a file another process writes, headless mode."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PyQt6.QtWidgets")
pytest.importorskip("pyqtgraph")

from labctl.gui.browser import DataBrowser  # noqa: E402
from labctl.gui.h5read import cell_history, latest_map  # noqa: E402
from labctl.gui.series import Curve, CurveSet, Eta, minmax_decimate  # noqa: E402
from labctl.gui.window import MainWindow  # noqa: E402
from labctl.instruments.fpga import LineMode  # noqa: E402
from PyQt6.QtCore import QPointF, Qt  # noqa: E402

from labctl.cli import main as cli_main  # noqa: E402
from labctl.live import LivePlot  # noqa: E402
from labctl.station import load_station  # noqa: E402
from labctl.store import list_runs, load_run  # noqa: E402

RUN_TIMEOUT_MS = 60_000


def assert_safe(lab):
    assert not lab.smu.output_on and lab.smu.source_level == 0.0
    for modes in lab.board.line_modes():
        assert np.all(modes == LineMode.GROUND)
    assert all(np.all(v == 0) for v in lab.board.line_voltages(v_smu=1.0))


@pytest.fixture
def window(qtbot, tmp_path):
    w = MainWindow(load_station("sim"), tmp_path / "session.h5", sim_state=tmp_path / "chip.npz", seed=1)
    w.show()
    qtbot.waitUntil(lambda: w.station_panel.state == "connected", timeout=10_000)
    yield w
    if not w._may_close:
        w.close()
        qtbot.waitUntil(lambda: w._may_close, timeout=15_000)


def start(qtbot, w, protocol, **values):
    w.protocol_panel.select(protocol)
    for name, value in values.items():
        w.protocol_panel.form.set_value(name, value)
    qtbot.mouseClick(w.protocol_panel.run_button, Qt.MouseButton.LeftButton)
    assert w.running, w.protocol_panel.messages.text()


def test_a_run_from_the_gui_feeds_the_live_plots_and_lands_in_the_file(qtbot, window):
    w = window
    with qtbot.waitSignal(w.run_done, timeout=RUN_TIMEOUT_MS) as done:
        start(qtbot, w, "pulse_response", n_pulses=20, cycles=2)
    result = done.args[0]
    assert result.status == "completed"
    points = w.live.points()
    assert points["conductance under identical pulses"] == 2 * 2 * 21  # cycles x directions x (1 + pulses)
    curves = w.live.plots[0].items
    assert len(curves) == 4 and all(len(item.xData) == 21 for item in curves.values())
    runs = list_runs(w.out)
    assert [(r["protocol"], r["status"]) for r in runs] == [("pulse_response", "completed")]
    assert load_run(w.out, runs[0]["run_id"])["data"]["trace"].shape == (84,)
    # the chip map took the cell's latest read, and its history shows the run
    assert np.isfinite(w.chip.latest[0, 0]) and np.isnan(w.chip.latest[1, 1])
    assert [e.run_id for e in cell_history(w.out, 0, 0)] == [result.run_id]
    assert w.chip.history_list.topLevelItemCount() == 1
    assert w.protocol_panel.progress.value() == w.protocol_panel.progress.maximum()


def test_a_heat_map_protocol_and_a_click_on_a_cell(qtbot, window):
    w = window
    with qtbot.waitSignal(w.run_done, timeout=RUN_TIMEOUT_MS):
        qtbot.mouseClick(w.chip.read_button, Qt.MouseButton.LeftButton)
    assert w.last_result.protocol == "read_map" and w.last_result.status == "completed"
    image = w.live.plots[0].map.image.image
    assert image.shape == (4, 8) and np.all(np.isfinite(image))
    w.chip.redraw()
    assert np.all(np.isfinite(w.chip.latest))
    heat = w.chip.map
    scene_pos = heat.image.mapToScene(QPointF(5.5, 2.5))  # column 5, row 2
    view_pos = w.chip.view.mapFromScene(scene_pos)
    with qtbot.waitSignal(w.chip.cell_selected, timeout=5000) as picked:
        qtbot.mouseClick(w.chip.view.viewport(), Qt.MouseButton.LeftButton, pos=view_pos)
    assert picked.args == [2, 5]
    assert (w.chip.row_box.value(), w.chip.col_box.value()) == (2, 5)
    entries = cell_history(w.out, 2, 5)
    assert entries[0].dataset == "g_map" and entries[0].values[0] == pytest.approx(w.chip.latest[2, 5])
    np.testing.assert_allclose(latest_map(w.out, 4, 8), w.chip.latest)


def test_abort_mid_run_reaches_the_safe_state_within_a_second(qtbot, window):
    w = window
    start(qtbot, w, "pulse_response", n_pulses=20000, cycles=1)
    qtbot.waitUntil(lambda: w.live.points().get("conductance under identical pulses", 0) > 20, timeout=30_000)
    with qtbot.waitSignal(w.run_done, timeout=5000) as done:
        t0 = time.monotonic()
        qtbot.mouseClick(w.protocol_panel.abort_button, Qt.MouseButton.LeftButton)
    elapsed = time.monotonic() - t0
    result = done.args[0]
    assert result.status == "aborted"
    assert elapsed < 1.0
    assert_safe(w.worker.station.lab)
    assert load_run(w.out, result.run_id)["attrs"]["status"] == "aborted"
    assert not w.running and w.protocol_panel.run_button.isEnabled()


def test_all_outputs_off_aborts_the_run_and_makes_the_station_safe(qtbot, window):
    w = window
    start(qtbot, w, "pulse_response", n_pulses=20000, cycles=1)  # a run that lasts: forming 4x8 ends in ~0.1 s
    qtbot.waitUntil(lambda: w.live.points().get("conductance under identical pulses", 0) > 20, timeout=30_000)
    with qtbot.waitSignals([w.run_done, w.worker.safe_state_done], timeout=5000, order="strict") as signals:
        qtbot.mouseClick(w.off_button, Qt.MouseButton.LeftButton)
    result, (ok, error) = signals.all_signals_and_args[0].args[0], signals.all_signals_and_args[1].args
    assert result.status == "aborted" and ok and not error
    assert_safe(w.worker.station.lab)
    # and when nothing runs, the button still puts the station in its safe state
    w.worker.station.lab.smu.output_on = True
    with qtbot.waitSignal(w.worker.safe_state_done, timeout=5000):
        qtbot.mouseClick(w.off_button, Qt.MouseButton.LeftButton)
    assert not w.worker.station.lab.smu.output_on


def test_closing_the_window_during_a_run_aborts_it_and_keeps_the_data(qtbot, window):
    w = window
    start(qtbot, w, "pulse_response", n_pulses=20000, cycles=1)  # a run that lasts: forming 4x8 ends in ~0.1 s
    qtbot.waitUntil(lambda: w.live.points().get("conductance under identical pulses", 0) > 20, timeout=30_000)
    lab = w.worker.station.lab
    with qtbot.waitSignal(w.closed, timeout=15_000):
        w.close()
    assert not w.isVisible()
    assert_safe(lab)
    runs = list_runs(w.out)
    assert [(r["protocol"], r["status"]) for r in runs] == [("pulse_response", "aborted")]
    run = load_run(w.out, runs[0]["run_id"])
    assert len(run["data"]["trace"]) > 20
    assert (w.out.parent / "chip.npz").exists()  # the simulated chip was saved on close


@pytest.mark.parametrize("name, text, expected", [
    ("v_step", "0.9", "v_step=0.9 V is above its maximum 0.5 V"),
    ("v_stop", "5", "max_v_bl"),  # the station's safe operating area
    ("i_stop", "abc", "i_stop must be a number"),
])
def test_a_value_beyond_its_limit_is_refused_in_the_form(qtbot, window, name, text, expected):
    w = window
    w.protocol_panel.select("forming")
    form = w.protocol_panel.form
    form.editors[name].setText(text)
    if name != "v_stop":  # a parameter's own limit is flagged as it is typed
        assert expected in form.field_errors[name]
        assert form.editors[name].styleSheet()
    assert expected in w.protocol_panel.messages.text()
    qtbot.mouseClick(w.protocol_panel.run_button, Qt.MouseButton.LeftButton)
    assert not w.running and not w.worker.busy
    assert expected in w.protocol_panel.messages.text()
    assert "refused" in w.status_label.text()
    assert list_runs(w.out) == []


def test_a_cell_outside_the_chip_is_refused_with_the_chip_size(qtbot, window):
    w = window
    w.protocol_panel.select("iv_sweep")
    w.protocol_panel.form.editors["row"].setText("4")
    assert "row=4 is above its maximum 3" in w.protocol_panel.messages.text()
    assert not w.start_run()


def test_the_form_is_built_from_the_declaration(window):
    w = window
    w.protocol_panel.select("forming")
    form = w.protocol_panel.form
    from labctl.registry import PROTOCOLS

    declared = PROTOCOLS["forming"].parameters
    assert list(form.editors) == [p.name for p in declared]
    v_step = next(p for p in declared if p.name == "v_step")
    assert form.editors["v_step"].text() == "0.01"
    assert v_step.doc in form.editors["v_step"].toolTip() and "maximum 0.5 V" in form.editors["v_step"].toolTip()
    assert "max_v_bl" in form.editors["v_stop"].toolTip()
    assert form.validate(w.config) == ({}, [])


def test_every_registered_protocol_gets_a_form(window):
    from labctl.registry import PROTOCOLS

    for name, protocol in PROTOCOLS.items():
        window.protocol_panel.select(name)
        form = window.protocol_panel.form
        assert list(form.editors) == [p.name for p in protocol.parameters]
        assert form.field_errors == {}  # every default shows as a valid value
        assert all(isinstance(plot, LivePlot) for plot in protocol.live_plots)
    declared = {name for name, p in PROTOCOLS.items() if p.live_plots}
    assert {"forming", "iv_sweep", "pulse_response", "write_verify", "retention", "read_noise", "endurance",
            "read_map", "variability_map"} <= declared


def test_pause_and_resume(qtbot, window):
    w = window
    start(qtbot, w, "pulse_response", n_pulses=20000, cycles=1)
    key = "conductance under identical pulses"
    qtbot.waitUntil(lambda: w.live.points().get(key, 0) > 5, timeout=30_000)
    qtbot.mouseClick(w.protocol_panel.pause_button, Qt.MouseButton.LeftButton)
    assert w.paused and w.protocol_panel.resume_button.isEnabled() and not w.protocol_panel.pause_button.isEnabled()
    assert w.protocol_panel.eta_text.text() == "paused"
    qtbot.mouseClick(w.protocol_panel.resume_button, Qt.MouseButton.LeftButton)
    seen = w.live.points()[key]
    qtbot.waitUntil(lambda: w.live.points()[key] > seen + 5, timeout=30_000)
    with qtbot.waitSignal(w.run_done, timeout=5000) as done:
        qtbot.mouseClick(w.protocol_panel.abort_button, Qt.MouseButton.LeftButton)
    assert done.args[0].status == "aborted"


def test_the_data_browser_follows_a_file_another_process_writes(qtbot, tmp_path):
    path = tmp_path / "other.h5"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        browser = DataBrowser(path)
        browser.show()
        qtbot.addWidget(browser)
        qtbot.waitUntil(lambda: [r.status for r in browser.runs] == ["running"], timeout=10_000)
        browser.show_dataset("001_slow", "t")
        assert len(browser.data) == 5 and browser.y_combo.currentText() == "i"
        assert browser.curve_plot.getPlotItem().listDataItems()[0].xData.size == 5
        writer.stdin.write("go\n")
        writer.stdin.flush()
        assert writer.wait(timeout=20) == 0
        qtbot.waitUntil(lambda: [r.status for r in browser.runs] == ["completed"], timeout=10_000)
        qtbot.waitUntil(lambda: browser.data is not None and len(browser.data) == 10, timeout=10_000)
        browser.show_dataset("001_slow", "m")
        assert browser.stack.currentWidget() is browser.image_view
        assert browser.heat.data.shape == (2, 3)
    finally:
        writer.kill()
        writer.wait()


WRITER = """
import sys
from labctl.store import DataStore
import numpy as np
with DataStore(sys.argv[1]) as store:
    run = store.begin_run("slow", {"n": 10}, {})
    run.create_table("t", [("v", "f8", "V"), ("i", "f8", "A")])
    run.append("t", {"v": np.arange(5.0), "i": np.arange(5.0) * 1e-6})
    print("ready", flush=True)
    sys.stdin.readline()
    run.append("t", {"v": np.arange(5.0, 10.0), "i": np.arange(5.0, 10.0) * 1e-6})
    run.write_array("m", np.arange(6.0).reshape(2, 3) * 1e-6, "S")
    run.finish("completed", {"n": 10})
"""


def test_headless_run_saves_a_screenshot_and_returns_the_status(qtbot, tmp_path, capsys):
    png = tmp_path / "shot.png"
    common = ["gui", "--station", "sim", "--sim-state", str(tmp_path / "chip.npz"), "--out",
              str(tmp_path / "s.h5"), "--screenshot", str(png), "--exit"]
    assert cli_main(common + ["--run", "iv_sweep", "--set", "v_step=0.05"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "iv_sweep completed" in capsys.readouterr().out
    png.unlink()
    assert cli_main(common + ["--run", "iv_sweep", "--set", "v_step=0.9"]) == 2  # refused: nothing ran
    assert "maximum 0.5 V" in capsys.readouterr().err
    assert [r["status"] for r in list_runs(tmp_path / "s.h5")] == ["completed"]


def test_headless_run_that_fails_exits_non_zero(qtbot, tmp_path, monkeypatch):
    from labctl.registry import PROTOCOLS

    def broken(ctx):
        raise RuntimeError("board lost")

    monkeypatch.setattr(PROTOCOLS["read_map"], "run", broken)
    png = tmp_path / "shot.png"
    code = cli_main(["gui", "--station", "sim", "--sim-state", str(tmp_path / "chip.npz"), "--out",
                     str(tmp_path / "s.h5"), "--run", "read_map", "--screenshot", str(png), "--exit"])
    assert code == 1 and png.exists()
    assert [r["status"] for r in list_runs(tmp_path / "s.h5")] == ["failed"]


# -- models behind the plots (no window) -----------------------------------------------------------
def test_curves_stay_bounded_and_keep_every_strideth_point():
    curve = Curve(max_stored=1000)
    for k in range(100):
        curve.extend(np.arange(k * 97, (k + 1) * 97, dtype=float), np.zeros(97))
    assert curve.n <= 1000 and curve.seen == 9700
    np.testing.assert_array_equal(curve.x, np.arange(0, 9700, curve.stride))


def test_curve_sets_split_blocks_by_group_and_drop_the_oldest():
    plot = LivePlot("trace", "k", "g", "t", group_by=("row", "col"))
    curves = CurveSet(plot, max_groups=2)
    curves.add({"row": np.array([0, 0, 1]), "col": np.array([0, 1, 0]), "k": 0, "g": np.array([1.0, 2.0, 3.0])})
    assert list(curves.curves) == [(0, 1), (1, 0)] and curves.dropped == 1
    curves.add({"row": np.array([1]), "col": np.array([0]), "k": 1, "g": np.array([4.0])})
    np.testing.assert_array_equal(curves.curves[(1, 0)].y, [3.0, 4.0])


def test_minmax_decimation_keeps_spikes():
    x = np.arange(100_000.0)
    y = np.sin(x / 1000)
    y[54_321] = 10
    dx, dy = minmax_decimate(x, y, 4000)
    assert len(dx) <= 4001 and dy.max() == 10 and np.all(np.diff(dx) >= 0)


def test_time_left_excludes_pauses():
    now = [0.0]
    eta = Eta(lambda: now[0])
    eta.update(0, 10)
    assert eta.seconds_left() is None
    now[0] = 2.0
    eta.update(2, 10)
    assert eta.seconds_left() == pytest.approx(8.0)
    eta.pause()
    now[0] = 50.0
    assert eta.seconds_left() == pytest.approx(8.0)
    eta.resume()
    now[0] = 51.0
    eta.update(3, 10)
    assert eta.seconds_left() == pytest.approx(7 * 3.0 / 3)
