"""The station, protocol, chip and log panels. Widgets only: they hold no protocol logic and
never touch an instrument (the window forwards their requests to the station worker)."""
from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QObject, Qt, pyqtSignal
from PyQt6.QtGui import QFont
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from labctl.engine import Protocol
from labctl.station import StationConfig

from .form import ParameterForm
from .h5read import LATEST_COLUMNS, HistoryEntry
from .plots import HeatMap, color

T = TypeVar("T")


def required(widget: T | None, what: str) -> T:
    """A part Qt always has here (a table's header, a main window's status bar) but PyQt6 types as
    optional."""
    if widget is None:
        raise RuntimeError(f"Qt returned no {what}")
    return widget

# -- station ---------------------------------------------------------------------------------------


class StationPanel(QGroupBox):
    """Every instrument of the station with its identity and connection state."""

    connect_requested = pyqtSignal()
    disconnect_requested = pyqtSignal()

    def __init__(self, config: StationConfig, sim_state: str = "", parent: QWidget | None = None):
        super().__init__("Station", parent)
        self.config = config
        chip = config.chip
        where = f"simulated lab, chip state {sim_state}" if config.simulated else config.source
        self.info = QLabel(f"<b>{html.escape(config.name)}</b>: {html.escape(chip.name)} "
                           f"({chip.rows} WL x {chip.cols} BL/SL)<br><small>{html.escape(where)}</small>")
        self.info.setWordWrap(True)
        self.table = QTableWidget(len(config.instruments), 3)
        self.table.setHorizontalHeaderLabels(["role", "instrument", "state / identity"])
        required(self.table.verticalHeader(), "vertical header").hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        header = required(self.table.horizontalHeader(), "horizontal header")
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.roles = list(config.instruments)
        for k, role in enumerate(self.roles):
            inst = config.instruments[role]
            self.table.setItem(k, 0, QTableWidgetItem(role))
            item = QTableWidgetItem(inst.driver)
            item.setToolTip(inst.resource)
            self.table.setItem(k, 1, item)
        self.table.setFixedHeight(header.height() + 4 +
                                  sum(self.table.rowHeight(k) for k in range(len(self.roles))))
        self.connect_button = QPushButton("Connect")
        self.disconnect_button = QPushButton("Disconnect")
        self.connect_button.clicked.connect(self.connect_requested)
        self.disconnect_button.clicked.connect(self.disconnect_requested)
        buttons = QHBoxLayout()
        buttons.addWidget(self.connect_button)
        buttons.addWidget(self.disconnect_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.info)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        self.state = ""
        self.set_state("disconnected", {})

    def set_state(self, state: str, identities: dict[str, str]) -> None:
        self.state = state
        colors = {"connected": "#2ca02c", "disconnected": "#7f7f7f", "error": "#d62728", "connecting": "#ff7f0e"}
        for k, role in enumerate(self.roles):
            if state == "connected":
                text = f"connected: {identities.get(role, '?')}"
            elif state == "error":
                text = f"error: {identities.get('error', '')}"
            else:
                text = state
            item = QTableWidgetItem(text)
            item.setToolTip(text)
            item.setForeground(pg.mkColor(colors.get(state, "#000000")))
            self.table.setItem(k, 2, item)
        self.set_enabled(True)

    def set_enabled(self, idle: bool) -> None:
        self.connect_button.setEnabled(idle and self.state != "connected")
        self.disconnect_button.setEnabled(idle and self.state == "connected")


# -- protocol --------------------------------------------------------------------------------------


def describe(protocol: Protocol) -> str:
    import sys

    doc = (sys.modules[type(protocol).__module__].__doc__ or type(protocol).__doc__ or "").strip()
    first = doc.split("\n\n")[0].replace("\n", " ")
    return first or protocol.title


class ProtocolPanel(QGroupBox):
    """Choose a protocol, fill its generated form, run / pause / resume / abort, see progress."""

    run_requested = pyqtSignal()
    pause_requested = pyqtSignal()
    resume_requested = pyqtSignal()
    abort_requested = pyqtSignal()

    def __init__(self, protocols: Mapping[str, Protocol], config: StationConfig, parent: QWidget | None = None):
        super().__init__("Protocol", parent)
        self.protocols = protocols
        self.config = config
        self.combo = QComboBox()
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(24)  # long titles must not widen the panel
        for name, proto in protocols.items():
            self.combo.addItem(f"{name}  ({proto.title})" if proto.title else name, name)
        self.about = QLabel()
        self.about.setWordWrap(True)
        self.about.setStyleSheet("color: #444;")
        self.scroll_area = QScrollArea()  # not `scroll`: that would hide QWidget.scroll()
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QScrollArea.Shape.NoFrame)
        self.scroll_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.messages = QLabel()
        self.messages.setWordWrap(True)
        self.messages.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.messages.setStyleSheet("color: #d62728;")
        self.run_button = QPushButton("Run")
        self.pause_button = QPushButton("Pause")
        self.resume_button = QPushButton("Resume")
        self.abort_button = QPushButton("Abort")
        self.run_button.setStyleSheet("font-weight: bold;")
        for button, signal in ((self.run_button, self.run_requested), (self.pause_button, self.pause_requested),
                               (self.resume_button, self.resume_requested), (self.abort_button, self.abort_requested)):
            button.clicked.connect(signal)
        buttons = QHBoxLayout()
        for button in (self.run_button, self.pause_button, self.resume_button, self.abort_button):
            buttons.addWidget(button)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("%v / %m")
        self.progress_text = QLabel("idle")
        self.progress_text.setWordWrap(True)
        self.eta_text = QLabel("")
        layout = QVBoxLayout(self)
        layout.addWidget(self.combo)
        layout.addWidget(self.about)
        layout.addWidget(self.scroll_area, 1)
        layout.addWidget(self.messages)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        status = QHBoxLayout()
        status.addWidget(self.progress_text, 1)
        status.addWidget(self.eta_text)
        layout.addLayout(status)
        self.form: ParameterForm  # _choose() makes one, now and on every choice of protocol
        self.combo.currentIndexChanged.connect(self._choose)
        self._choose()
        self.set_running(False)

    @property
    def protocol(self) -> Protocol:
        return self.protocols[self.combo.currentData()]

    def select(self, name: str) -> None:
        index = self.combo.findData(name)
        if index < 0:
            raise KeyError(name)
        self.combo.setCurrentIndex(index)

    def _choose(self) -> None:
        protocol = self.protocol
        self.about.setText(describe(protocol))
        self.form = ParameterForm(protocol)
        self.form.changed.connect(self.check)
        self.scroll_area.setWidget(self.form)
        self.messages.clear()

    def check(self) -> tuple[dict[str, Any] | None, list[str]]:
        """Validate the form against the protocol and the station; shows the messages."""
        values, messages = self.form.validate(self.config)
        self.messages.setText("\n".join(messages))
        return values, messages

    def set_running(self, running: bool, paused: bool = False) -> None:
        self.combo.setEnabled(not running)
        self.form.setEnabled(not running)
        self.run_button.setEnabled(not running)
        self.pause_button.setEnabled(running and not paused)
        self.resume_button.setEnabled(running and paused)
        self.abort_button.setEnabled(running)


# -- chip ------------------------------------------------------------------------------------------

class ChipPanel(QGroupBox):
    """The array's latest conductance read as a heat map; click a cell to see its history."""

    cell_selected = pyqtSignal(int, int)
    read_requested = pyqtSignal()

    def __init__(self, rows: int, cols: int, parent: QWidget | None = None):
        super().__init__("Chip", parent)
        self.rows, self.cols = rows, cols
        self.latest = np.full((rows, cols), np.nan)
        self.dirty = True
        self.view = pg.GraphicsLayoutWidget()
        self.map = HeatMap(self.view.ci, "latest conductance read", "S")
        self.map.clicked.connect(self.select)
        self.history_plot = pg.PlotWidget()
        self.history_plot.setTitle("selected cell across runs", size="9pt")
        self.history_plot.setLabel("left", "G", units="S")
        self.history_plot.setLabel("bottom", "recorded value (runs in order)")
        self.history_plot.showGrid(x=True, y=True, alpha=0.25)
        self.history_plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.history_list = QTreeWidget()
        self.history_list.setHeaderLabels(["run", "data", "values", "last (µS)"])
        self.history_list.setRootIsDecorated(False)
        self.history_list.setMaximumHeight(110)
        required(self.history_list.header(), "header").setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.row_box, self.col_box = QSpinBox(), QSpinBox()
        self.row_box.setRange(0, rows - 1)
        self.col_box.setRange(0, cols - 1)
        self.row_box.setPrefix("WL ")
        self.col_box.setPrefix("BL/SL ")
        self.row_box.valueChanged.connect(lambda _: self.select(self.row_box.value(), self.col_box.value()))
        self.col_box.valueChanged.connect(lambda _: self.select(self.row_box.value(), self.col_box.value()))
        self.read_button = QPushButton("Read array")
        self.read_button.setToolTip("run read_map: the conductance of every cell (recorded in the session file)")
        self.read_button.clicked.connect(self.read_requested)
        self.cell_text = QLabel()
        controls = QHBoxLayout()
        controls.addWidget(QLabel("cell"))
        controls.addWidget(self.row_box)
        controls.addWidget(self.col_box)
        controls.addWidget(self.cell_text, 1)
        controls.addWidget(self.read_button)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.history_plot, 1)
        right_layout.addWidget(self.history_list)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.view)
        split.addWidget(right)
        split.setSizes([1, 1])
        layout = QVBoxLayout(self)
        layout.addLayout(controls)
        layout.addWidget(split, 1)
        self.row, self.col = 0, 0
        self.redraw()
        self.select(0, 0)

    def feed(self, table: str, columns: dict[str, Any]) -> None:
        """Take the conductances of a row block or a saved map (siemens)."""
        data = columns.get(table)
        if table == "g_map" and data is not None and np.shape(data) == self.latest.shape:
            self.latest = np.asarray(data, dtype=float).copy()
            self.dirty = True
            return
        if "row" not in columns or "col" not in columns:
            return
        for name in LATEST_COLUMNS:
            if name in columns:
                rows = np.atleast_1d(np.asarray(columns["row"], dtype=int))
                cols = np.atleast_1d(np.asarray(columns["col"], dtype=int))
                g = np.atleast_1d(np.asarray(columns[name], dtype=float))
                rows, cols, g = np.broadcast_arrays(rows, cols, g)
                ok = (rows >= 0) & (rows < self.rows) & (cols >= 0) & (cols < self.cols) & np.isfinite(g)
                self.latest[rows[ok], cols[ok]] = g[ok]
                self.dirty = bool(ok.any()) or self.dirty
                return

    def set_latest(self, g: np.ndarray) -> None:
        if g.shape == self.latest.shape:
            self.latest = g.copy()
            self.dirty = True

    def redraw(self) -> None:
        if self.dirty:
            self.map.set_data(self.latest)
            self.dirty = False
            self._describe()

    def select(self, row: int, col: int) -> None:
        if not (0 <= row < self.rows and 0 <= col < self.cols):
            return
        changed = (row, col) != (self.row, self.col) or not self.map.selection.isVisible()
        self.row, self.col = row, col
        for box, value in ((self.row_box, row), (self.col_box, col)):
            box.blockSignals(True)
            box.setValue(value)
            box.blockSignals(False)
        self.map.select(row, col)
        self._describe()
        if changed:
            self.cell_selected.emit(row, col)

    def _describe(self) -> None:
        g = self.latest[self.row, self.col]
        self.cell_text.setText(f"G = {g * 1e6:.2f} µS" if np.isfinite(g) else "not read yet")

    def show_history(self, entries: list[HistoryEntry]) -> None:
        self.history_plot.clear()
        self.history_list.clear()
        offset = 0
        runs: dict[str, int] = {}
        for entry in entries:
            values = entry.values
            x = offset + np.arange(len(values))
            offset += len(values)
            index = runs.setdefault(entry.run_id, len(runs))
            symbol = "o" if len(values) < 50 else None
            item = self.history_plot.plot(x, values, pen=pg.mkPen(color(index), width=1.2), symbol=symbol,
                                          symbolSize=5, symbolBrush=color(index), symbolPen=None)
            item.setToolTip(entry.run_id)
            data = entry.dataset + (f".{entry.column}" if entry.column else "")
            finite = values[np.isfinite(values)]
            last = f"{finite[-1] * 1e6:.2f}" if finite.size else "-"
            row = QTreeWidgetItem([entry.run_id, data, str(len(values)), last])
            row.setForeground(0, pg.mkColor(color(index)))  # the run's colour in the plot
            self.history_list.addTopLevelItem(row)
        self.history_plot.setTitle(f"cell WL {self.row}, BL/SL {self.col}: {offset} values, {len(runs)} runs",
                                   size="9pt")
        values = np.concatenate([e.values for e in entries]) if entries else np.array([])
        values = values[np.isfinite(values)]
        if values.size:  # explicit ranges: autorange on one or two points zooms into nothing
            lo, hi = float(values.min()), float(values.max())
            pad = max(0.05 * (hi - lo), 1e-6)
            self.history_plot.setYRange(lo - pad, hi + pad, padding=0)
            self.history_plot.setXRange(-1, max(offset, 2), padding=0.02)
        if entries:
            self.history_list.scrollToBottom()


# -- log -------------------------------------------------------------------------------------------


class LogEmitter(QObject):
    record = pyqtSignal(str, int)


class QtLogHandler(logging.Handler):
    """Forwards log records (from any thread) to the UI thread through a queued signal. Shows
    INFO and above from labctl's own packages, WARNING and above from everything else."""

    def __init__(self, emitter: LogEmitter):
        super().__init__(logging.INFO)
        self.emitter = emitter
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING and record.name.split(".")[0] != "labctl":
            return
        try:
            self.emitter.record.emit(self.format(record), record.levelno)
        except RuntimeError:  # the window is gone
            pass


class LogPanel(QGroupBox):
    MAX_LINES = 5000

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Log", parent)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(self.MAX_LINES)
        self.text.setFont(QFont("DejaVu Sans Mono", 8))
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        self.emitter = LogEmitter()
        self.emitter.record.connect(self.append)
        self.handler = QtLogHandler(self.emitter)
        self._changed: list[tuple[logging.Handler, int]] = []
        self._root_level = logging.WARNING

    def append(self, line: str, level: int) -> None:
        colour = "#d62728" if level >= logging.ERROR else "#b8860b" if level >= logging.WARNING else "#222"
        self.text.appendHtml(f'<span style="color:{colour}; white-space:pre;">{html.escape(line)}</span>')

    def install(self) -> None:
        """Attach to the root logger at INFO; handlers already there keep their previous level."""
        root = logging.getLogger()
        self._root_level = root.level
        if root.level > logging.INFO or root.level == logging.NOTSET:
            for handler in root.handlers:
                if handler.level == logging.NOTSET:
                    handler.setLevel(root.level or logging.WARNING)
                    self._changed.append((handler, logging.NOTSET))
            root.setLevel(logging.INFO)
        root.addHandler(self.handler)

    def uninstall(self) -> None:
        root = logging.getLogger()
        root.removeHandler(self.handler)
        root.setLevel(self._root_level)
        for handler, level in self._changed:
            handler.setLevel(level)
        self._changed.clear()
