"""The main window: panels around one StationWorker.

UI thread: widgets, plots, HDF5 reads of the session file. Worker thread: every instrument
operation. The window turns button clicks into worker jobs and worker signals into widget
updates; it never waits on the worker (closing during a run aborts it and closes once the worker
reports the station closed).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PyQt6.QtCore import Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QCloseEvent
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QMainWindow, QPushButton, QSplitter, QTabWidget, QVBoxLayout, QWidget

from labctl.engine import RunResult
from labctl.registry import PROTOCOLS
from labctl.station import StationConfig, default_sim_state

from .browser import DataBrowser
from .h5read import cell_history, latest_map
from .live import LivePanel
from .panels import ChipPanel, LogPanel, ProtocolPanel, StationPanel, required
from .series import Eta, format_seconds
from .worker import StationWorker

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_MS = 10_000  # close anyway if the worker does not report back (instrument hung)


class MainWindow(QMainWindow):
    run_done = pyqtSignal(object)  # RunResult, or None when the run could not start
    closed = pyqtSignal()

    def __init__(self, config: StationConfig, out: str | Path, sim_state: str | Path | None = None,
                 seed: int | None = None, connect: bool = True):
        super().__init__()
        self.config = config
        self.out = Path(out).resolve()
        self.setWindowTitle(f"labctl: {config.name} - {self.out.name}")
        self.protocols = PROTOCOLS
        self.worker = StationWorker(config, sim_state, self.out, seed, parent=None)
        self.running = False
        self.paused = False
        self.last_result: RunResult | None = None
        self._closing = False
        self._may_close = False
        self.eta = Eta()
        self._feed_errors: set[tuple[str, str]] = set()

        # panels
        state = sim_state or (default_sim_state(config) if config.simulated else "")
        self.station_panel = StationPanel(config, str(state))
        self.protocol_panel = ProtocolPanel(self.protocols, config)
        self.live = LivePanel()
        self.browser = DataBrowser()
        self.chip = ChipPanel(config.chip.rows, config.chip.cols)
        self.log_panel = LogPanel()
        self.log_panel.install()

        self.tabs = QTabWidget()
        self.tabs.addTab(self.live, "Live plots")
        self.tabs.addTab(self.browser, "Data browser")
        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.station_panel)
        left.addWidget(self.protocol_panel)
        left.setStretchFactor(1, 1)
        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(self.chip)
        bottom.addWidget(self.log_panel)
        bottom.setSizes([760, 440])
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.tabs)
        right.addWidget(bottom)
        right.setSizes([560, 400])
        main = QSplitter(Qt.Orientation.Horizontal)
        main.addWidget(left)
        main.addWidget(right)
        main.setSizes([400, 1200])
        main.setStretchFactor(1, 1)
        self._splitters = (main, right, bottom)
        self._sized = False

        # the always-visible safety button, in a plain bar above everything (a QToolBar would
        # make a QWidgetAction per widget: PyQt6 sometimes fails to wrap one, seen in full test runs)
        self.off_button = QPushButton("ALL OUTPUTS OFF")
        self.off_button.setToolTip("abort any run and put the whole station in its safe state: SMU 0 V and "
                                   "output off, pulse outputs off, every chip line grounded")
        self.off_button.setStyleSheet("QPushButton { background: #c62828; color: white; font-weight: bold; "
                                      "padding: 6px 18px; border-radius: 4px; }"
                                      "QPushButton:pressed { background: #8e0000; }")
        self.session_label = QLabel(f"  session file: {self.out}")
        safety = QHBoxLayout()
        safety.addWidget(self.off_button)
        safety.addWidget(self.session_label, 1)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addLayout(safety)
        layout.addWidget(main, 1)
        self.setCentralWidget(central)
        self.status_label = QLabel("idle")
        required(self.statusBar(), "status bar").addWidget(self.status_label, 1)

        # wiring: widgets -> worker
        self.off_button.clicked.connect(self.all_outputs_off)
        self.station_panel.connect_requested.connect(self.worker.connect_station)
        self.station_panel.disconnect_requested.connect(self.worker.disconnect_station)
        self.protocol_panel.run_requested.connect(self.start_run)
        self.protocol_panel.pause_requested.connect(self.pause)
        self.protocol_panel.resume_requested.connect(self.resume)
        self.protocol_panel.abort_requested.connect(self.abort)
        self.chip.read_requested.connect(lambda: self.start_run("read_map", {}))
        self.chip.cell_selected.connect(lambda *_: self.refresh_history())
        # worker -> widgets (queued to this thread)
        w = self.worker
        w.state_changed.connect(self._station_state)
        w.run_started.connect(self._run_started)
        w.progress_ready.connect(self._progress)
        w.data_ready.connect(self._data)
        w.run_finished.connect(self._run_finished)
        w.safe_state_done.connect(self._safe_state_done)
        w.error.connect(self._worker_error)
        w.stopped.connect(self._worker_stopped)
        w.busy_changed.connect(self._busy)

        self.progress_timer = QTimer(self)
        self.progress_timer.setSingleShot(True)
        self.progress_timer.setInterval(100)
        self.progress_timer.timeout.connect(self._show_progress)
        self.eta_timer = QTimer(self)
        self.eta_timer.setInterval(500)
        self.eta_timer.timeout.connect(self._show_eta)
        self.chip_timer = QTimer(self)
        self.chip_timer.setInterval(250)
        self.chip_timer.timeout.connect(self.chip.redraw)
        self.chip_timer.start()
        self.resize(1600, 1000)
        self.browser.open(self.out)
        self._load_latest_map()
        self.refresh_history()
        if connect:
            self.worker.connect_station()

    # -- actions -----------------------------------------------------------------------------------
    def start_run(self, protocol: str | None = None, values: dict[str, Any] | None = None) -> bool:
        """Run the protocol chosen in the panel with the form's values (or `protocol` with
        `values`, e.g. the chip panel's read); returns False, showing why, if refused."""
        if self.running or self._closing:
            return False
        if protocol is None:
            values, messages = self.protocol_panel.check()
            if values is None:
                self.status_label.setText("refused: " + "; ".join(messages))
                log.warning("run refused: %s", "; ".join(messages))
                return False
            protocol = self.protocol_panel.protocol.name
        self.running, self.paused = True, False
        self.last_result = None
        self.protocol_panel.set_running(True)
        self.station_panel.set_enabled(False)
        self.chip.read_button.setEnabled(False)
        self.live.start(protocol, self.protocols[protocol].live_plots)
        self.tabs.setCurrentWidget(self.live)
        self.eta.reset()
        self.protocol_panel.progress.setRange(0, 0)  # busy until the first report
        self.protocol_panel.progress_text.setText(f"{protocol}: starting")
        self.protocol_panel.eta_text.setText("")
        self.status_label.setText(f"running {protocol}")
        self.worker.run(protocol, values or {})
        self.eta_timer.start()
        return True

    def pause(self) -> None:
        if self.running and not self.paused:
            self.worker.pause()
            self.paused = True
            self.eta.pause()
            self.protocol_panel.set_running(True, paused=True)
            self.status_label.setText("paused (at the protocol's next checkpoint)")
            self._show_eta()

    def resume(self) -> None:
        if self.running and self.paused:
            self.worker.resume()
            self.paused = False
            self.eta.resume()
            self.protocol_panel.set_running(True, paused=False)
            self.status_label.setText("running")
            self._show_eta()

    def abort(self) -> None:
        if self.running:
            self.worker.abort()
            self.status_label.setText("aborting...")

    def all_outputs_off(self) -> None:
        self.worker.all_outputs_off()
        self.status_label.setText("ALL OUTPUTS OFF: aborting any run, station to its safe state...")

    def _load_latest_map(self) -> None:
        """Start the chip map from what the session file already recorded."""
        if not self.out.exists():
            return
        try:
            self.chip.set_latest(latest_map(self.out, self.config.chip.rows, self.config.chip.cols))
        except (OSError, KeyError, ValueError) as exc:
            log.warning("chip map from %s: %s", self.out, exc)

    def refresh_history(self) -> None:
        try:
            chip = self.config.chip
            entries = (cell_history(self.out, self.chip.row, self.chip.col, (chip.rows, chip.cols))
                       if self.out.exists() else [])
        except (OSError, KeyError, ValueError) as exc:
            log.warning("cell history: %s", exc)
            return
        self.chip.show_history(entries)

    # -- worker signals ------------------------------------------------------------------------------
    def _station_state(self, state: str, identities: dict) -> None:
        self.station_panel.set_state(state, identities)
        self.station_panel.set_enabled(not self.running)

    def _busy(self, busy: bool) -> None:
        if not self.running:
            self.station_panel.set_enabled(not busy)

    def _run_started(self, protocol: str, values: dict) -> None:
        self.status_label.setText(f"running {protocol}" + (f" with {values}" if values else ""))

    def _progress(self) -> None:
        """At most 10 updates a second (the worker may report thousands)."""
        if not self.progress_timer.isActive():
            self.progress_timer.start()

    def _show_progress(self) -> None:
        report = self.worker.take_progress()
        if report is None:
            return
        self.eta.update(report.done, report.total, report.at)
        bar = self.protocol_panel.progress
        bar.setRange(0, max(1, report.total))
        bar.setValue(min(report.done, max(1, report.total)))
        self.protocol_panel.progress_text.setText(report.message)
        self._show_eta()

    def _show_eta(self) -> None:
        if self.running:
            text = "paused" if self.paused else format_seconds(self.eta.seconds_left())
            self.protocol_panel.eta_text.setText(text)

    def _data(self) -> None:
        for table, columns in self.worker.take_data():
            for view in (self.live, self.chip):
                try:
                    view.feed(table, columns)
                except (ValueError, TypeError, IndexError) as exc:  # odd rows must not stop the display
                    if (type(view).__name__, table) not in self._feed_errors:
                        self._feed_errors.add((type(view).__name__, table))
                        log.warning("%s cannot show rows of %s: %s", type(view).__name__, table, exc)

    def _run_finished(self, result: RunResult | None) -> None:
        self._data()  # rows that arrived with the last signal
        self.progress_timer.stop()
        self._show_progress()
        self.live.finish()
        self.chip.redraw()
        self.chip.map.fit_levels()
        self.running = self.paused = False
        self.last_result = result
        self.eta_timer.stop()
        self.protocol_panel.set_running(False)
        self.station_panel.set_enabled(True)
        self.chip.read_button.setEnabled(True)
        bar = self.protocol_panel.progress
        if result is None:
            bar.setRange(0, 1)
            bar.setValue(0)
            self.protocol_panel.progress_text.setText("the run could not start (see the log)")
            self.protocol_panel.eta_text.setText("")
            self.status_label.setText("the run could not start (see the log)")
        else:
            if result.status == "completed":
                bar.setValue(bar.maximum())
            elif bar.maximum() == 0:
                bar.setRange(0, 1)
            text = f"run {result.run_id} {result.status} in {result.duration_s:.1f} s"
            if result.error:
                text += f": {result.error}"
            self.protocol_panel.progress_text.setText(text)
            self.protocol_panel.eta_text.setText("")
            self.status_label.setText(text + f"  (data in {result.file})")
        self.browser.reload(force=True)
        self.refresh_history()
        self.run_done.emit(result)

    def _safe_state_done(self, ok: bool, error: str) -> None:
        self.status_label.setText("station in its safe state: outputs off, lines grounded" if ok
                                  else f"SAFE STATE FAILED: {error}")

    def _worker_error(self, message: str) -> None:
        log.error("%s", message)
        self.status_label.setText(message)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._sized:  # proportions of the actual window, not the widgets' size hints
            self._sized = True
            main, right, bottom = self._splitters
            width, height = max(self.width(), 1000), max(self.height(), 700)
            left = min(420, width // 4)
            main.setSizes([left, width - left])
            right.setSizes([int(height * 0.55), height - int(height * 0.55)])
            bottom.setSizes([int((width - left) * 0.64), (width - left) - int((width - left) * 0.64)])

    # -- closing -----------------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent | None) -> None:
        """Abort a run, let the worker make the station safe and close it, then close."""
        if self._may_close:
            self.log_panel.uninstall()
            self.live.timer.stop()
            self.browser.timer.stop()
            self.chip_timer.stop()
            self.eta_timer.stop()
            self.progress_timer.stop()
            super().closeEvent(event)
            self.closed.emit()
            return
        if event is not None:  # Qt always passes one; PyQt6 types it as optional
            event.ignore()
        if not self._closing:
            self._closing = True
            if self.running:
                self.status_label.setText("closing: aborting the run, station to its safe state...")
                log.warning("window closed during a run: aborting it")
            self.worker.shutdown()
            QTimer.singleShot(CLOSE_TIMEOUT_MS, self._worker_stopped)

    def _worker_stopped(self) -> None:
        if self._may_close:
            return
        self._may_close = True
        self.close()
