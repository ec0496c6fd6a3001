"""GUI responsiveness, offscreen, against naive baselines measured in the same run.

Prints one JSON object:
- fps: frames per second of the live-plot path (gui.live.LivePanel: min/max decimation to a few
  thousand points per curve, pyqtgraph peak downsampling, clip to view) redrawing a 64x64 heat
  map and four curves of 100 000 points each, every frame new map data and new points on every
  curve, each frame painted synchronously; `fps_naive`: the same with plain pyqtgraph items fed
  all points (target fps >= 30);
- latency_ms: event-loop lateness of a QTimer firing every 10 ms (actual interval - 10 ms) in
  the full main window while a protocol runs in the station worker on the simulated station
  (live plots, chip map, progress and log updating), p50 / p99 / max; `latency_idle_ms` the same
  with the window idle (target p99 < 50 ms);
  `ui_thread_cpu_share`: CPU time of the UI thread / wall time while the protocol runs;
- load_avg_1min: the machine's load while measuring (other processes make latency worse);
- met: both targets met.
Usage: python bench/gui.py [--seconds S] [--protocol NAME]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pyqtgraph as pg  # noqa: E402
from labctl.gui.live import LivePanel  # noqa: E402
from labctl.gui.plots import HeatMap  # noqa: E402
from PyQt6.QtCore import QElapsedTimer, QEventLoop, Qt, QTimer  # noqa: E402
from PyQt6.QtWidgets import QApplication  # noqa: E402

from labctl.live import LivePlot  # noqa: E402

N_POINTS, N_CURVES, MAP_SIDE, NEW_POINTS = 100_000, 4, 64, 200
FPS_TARGET, P99_TARGET_MS = 30.0, 50.0


def _frames(app: QApplication, widget, step, seconds: float) -> float:
    widget.resize(1200, 700)
    widget.show()
    app.processEvents()
    frames, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        step(frames)
        widget.repaint()  # paint now, synchronously
        app.processEvents()
        frames += 1
    widget.hide()
    return frames / elapsed


def fps_live_panel(app: QApplication, seconds: float) -> float:
    rng = np.random.default_rng(0)
    panel = LivePanel()
    panel.timer.stop()  # the bench drives redraws itself, one per frame
    panel.start("bench", (LivePlot("map", "column", "row", "64 x 64 heat map", kind="image", unit="S"),
                          LivePlot("trace", "x", "y", "4 curves x 100 000 points", "", "S", group_by="curve")))
    x = np.arange(N_POINTS, dtype=float)
    for c in range(N_CURVES):
        panel.feed("trace", {"curve": c, "x": x, "y": 1e-5 * (c + np.sin(x / 3000) + 0.1 * rng.random(N_POINTS))})
    counter = [N_POINTS]

    def step(frame: int) -> None:
        panel.feed("map", {"map": 1e-5 * rng.random((MAP_SIDE, MAP_SIDE))})
        n = counter[0]
        xs = np.arange(n, n + NEW_POINTS, dtype=float)
        for c in range(N_CURVES):
            panel.feed("trace", {"curve": c, "x": xs, "y": 1e-5 * (c + np.sin(xs / 3000) + 0.1 * rng.random(NEW_POINTS))})
        counter[0] = n + NEW_POINTS
        panel.redraw()

    fps = _frames(app, panel, step, seconds)
    assert all(curve.n >= N_POINTS for curve in panel.plots[1].model.curves.values())
    return fps


def fps_naive(app: QApplication, seconds: float) -> float:
    rng = np.random.default_rng(0)
    view = pg.GraphicsLayoutWidget()
    heat = HeatMap(view.ci, "64 x 64 heat map", "S")
    plot = view.ci.addPlot(title="4 curves x 100 000 points")
    x = np.arange(N_POINTS, dtype=float)
    curves = [plot.plot(pen=pg.mkPen(width=1)) for _ in range(N_CURVES)]
    ys = [1e-5 * (c + np.sin(x / 3000) + 0.1 * rng.random(N_POINTS)) for c in range(N_CURVES)]

    def step(frame: int) -> None:
        heat.set_data(1e-5 * rng.random((MAP_SIDE, MAP_SIDE)))
        for c, curve in enumerate(curves):
            ys[c] = np.roll(ys[c], -NEW_POINTS)
            curve.setData(x, ys[c])

    return _frames(app, view, step, seconds)


def _percentiles(lateness: list[float]) -> dict[str, float]:
    a = np.asarray(lateness) * 1e3
    return {"p50": round(float(np.percentile(a, 50)), 2), "p99": round(float(np.percentile(a, 99)), 2),
            "max": round(float(a.max()), 2), "samples": int(a.size)}


def event_loop_latency(app: QApplication, seconds: float, protocol: str, values: dict) -> dict:
    from labctl.gui.window import MainWindow

    from labctl.station import load_station

    tmp = Path(tempfile.mkdtemp(prefix="labctl-bench-gui-"))
    window = MainWindow(load_station("sim"), tmp / "session.h5", sim_state=tmp / "chip.npz", seed=1)
    window.show()
    _wait(app, lambda: window.station_panel.state == "connected", 30)

    def measure() -> tuple[list[float], float]:
        lateness: list[float] = []
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        clock = QElapsedTimer()
        clock.start()
        last = [clock.nsecsElapsed()]

        def tick() -> None:
            now = clock.nsecsElapsed()
            lateness.append(max(0.0, (now - last[0]) * 1e-9 - 0.010))
            last[0] = now

        timer = QTimer()
        timer.setTimerType(Qt.TimerType.PreciseTimer)
        timer.setInterval(10)
        timer.timeout.connect(tick)
        timer.start()
        loop = QEventLoop()
        QTimer.singleShot(int(seconds * 1000), loop.quit)
        loop.exec()
        timer.stop()
        return lateness, (time.thread_time() - cpu0) / (time.perf_counter() - wall0)

    idle, _ = measure()
    window.protocol_panel.select(protocol)
    for name, value in values.items():
        window.protocol_panel.form.set_value(name, value)
    if not window.start_run():
        raise SystemExit(f"bench: {protocol} refused: {window.protocol_panel.messages.text()}")
    _wait(app, lambda: sum(window.live.points().values()) > 0, 30)
    busy, ui_cpu = measure()
    still_running = window.running
    points = sum(window.live.points().values())
    window.abort()
    _wait(app, lambda: not window.running, 10)
    window.close()
    _wait(app, lambda: window._may_close, 15)
    return {"idle": _percentiles(idle), "running": _percentiles(busy), "run_still_going": still_running,
            "live_points_received": points, "ui_thread_cpu_share": round(ui_cpu, 3)}


def _wait(app: QApplication, condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("bench: timed out")
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement")
    parser.add_argument("--protocol", default="pulse_response", help="protocol run during the latency test")
    args = parser.parse_args()
    values = {"n_pulses": 100000, "cycles": 1, "all_cells": True} if args.protocol == "pulse_response" else {}
    app = QApplication.instance() or QApplication([sys.argv[0]])
    fps = fps_live_panel(app, args.seconds)
    naive = fps_naive(app, args.seconds)
    latency = event_loop_latency(app, args.seconds, args.protocol, values)
    met = fps >= FPS_TARGET and latency["running"]["p99"] < P99_TARGET_MS
    print(json.dumps({
        "fps": round(fps, 1), "fps_naive": round(naive, 1),
        "fps_setup": f"{MAP_SIDE}x{MAP_SIDE} heat map + {N_CURVES} curves x {N_POINTS} points, "
                     f"{NEW_POINTS} new points per curve per frame, offscreen",
        "latency_ms": latency["running"], "latency_idle_ms": latency["idle"],
        "latency_protocol": {"name": args.protocol, "values": values,
                             "live_points_received": latency["live_points_received"],
                             "still_running_at_end": latency["run_still_going"],
                             "ui_thread_cpu_share": latency["ui_thread_cpu_share"]},
        "load_avg_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
        "targets": {"fps_min": FPS_TARGET, "latency_p99_ms_max": P99_TARGET_MS},
        "met": bool(met),
    }))


if __name__ == "__main__":
    main()
