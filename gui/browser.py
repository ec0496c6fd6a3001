"""The data browser: open a labctl HDF5 file, list its runs (status, parameters, datasets) and plot
any dataset: table columns against each other, 1-D arrays against their index, 2-D arrays as a
heat map. "Follow" polls the file with a timer and rereads it read-only, so a file that another
process is still writing (`labctl run`, another GUI) updates as its rows are flushed; see
gui.h5read for how the writer's HDF5 file lock is handled.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QStackedLayout,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from labctl.store import RunInfo, read_dataset, read_runs

from .panels import required
from .plots import HeatMap
from .series import minmax_decimate

POLL_MS = 1000
MAX_SCATTER = 100_000
STATUS_COLORS = {"completed": "#2ca02c", "running": "#1f77b4", "aborted": "#ff7f0e", "failed": "#d62728"}


class DataBrowser(QWidget):
    def __init__(self, path: str | Path | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.path: Path | None = None
        self.runs: list[RunInfo] = []
        self._signature: list[tuple[str, str, tuple[tuple[str, tuple[int, ...]], ...]]] | None = None
        self._shown: tuple | None = None  # (run_id, dataset, shape) on display
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("HDF5 file written by labctl")
        self.path_edit.returnPressed.connect(lambda: self.open(self.path_edit.text()))
        open_button = QPushButton("Open...")
        open_button.clicked.connect(self._browse)
        reload_button = QPushButton("Reload")
        reload_button.clicked.connect(lambda: self.reload(force=True))
        self.follow = QCheckBox("Follow")
        self.follow.setToolTip("reread the file every second (for a file another process is still writing)")
        self.follow.setChecked(True)
        self.status = QLabel()
        top = QHBoxLayout()
        top.addWidget(QLabel("file"))
        top.addWidget(self.path_edit, 1)
        top.addWidget(open_button)
        top.addWidget(reload_button)
        top.addWidget(self.follow)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["run / dataset", "status / shape", "started / unit"])
        self.tree.itemSelectionChanged.connect(self._selected)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setMaximumHeight(140)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.tree, 1)
        left_layout.addWidget(self.details)
        self.x_combo, self.y_combo = QComboBox(), QComboBox()
        self.x_combo.currentIndexChanged.connect(self._replot)
        self.y_combo.currentIndexChanged.connect(self._replot)
        axes = QHBoxLayout()
        axes.addWidget(QLabel("x"))
        axes.addWidget(self.x_combo, 1)
        axes.addWidget(QLabel("y"))
        axes.addWidget(self.y_combo, 1)
        self.curve_plot = pg.PlotWidget()
        self.curve_plot.showGrid(x=True, y=True, alpha=0.25)
        self.image_view = pg.GraphicsLayoutWidget()
        self.heat = HeatMap(self.image_view.ci, "", "")
        self.empty = QLabel("Select a dataset to plot it.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        plots = QWidget()
        self.stack = QStackedLayout(plots)
        for widget in (self.empty, self.curve_plot, self.image_view):
            self.stack.addWidget(widget)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addLayout(axes)
        right_layout.addWidget(plots, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setSizes([380, 620])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        layout.addWidget(self.status)
        self.data: np.ndarray | None = None
        self.units: dict | str = ""
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self._poll)
        self.timer.start()
        if path is not None:
            self.open(path)

    # -- file -------------------------------------------------------------------------------------
    def _browse(self) -> None:
        start = str(self.path.parent) if self.path else ""
        name, _ = QFileDialog.getOpenFileName(self, "Open a labctl HDF5 file", start, "HDF5 (*.h5 *.hdf5);;All (*)")
        if name:
            self.open(name)

    def open(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path_edit.setText(str(self.path))
        self._signature = None
        self.reload(force=True)

    def _poll(self) -> None:
        if self.follow.isChecked() and self.path is not None and self.isVisible():
            self.reload()

    def reload(self, force: bool = False) -> None:
        """Reread the run list (and the dataset on display if it grew); keeps the last good view
        when the file cannot be read right now (missing, or caught mid-write by its writer)."""
        if self.path is None:
            return
        if not self.path.exists():
            self.status.setText(f"{self.path}: no such file yet")
            return
        try:
            runs = read_runs(self.path)
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            self.status.setText(f"{self.path.name}: cannot read now ({exc}); retrying")
            return
        signature = [(r.run_id, r.status, tuple((d.name, d.shape) for d in r.datasets)) for r in runs]
        if signature != self._signature or force:
            self._signature = signature
            self.runs = runs
            self._rebuild()
        running = sum(r.status == "running" for r in runs)
        self.status.setText(f"{self.path}: {len(runs)} runs" + (f", {running} running" if running else ""))
        if self._shown is not None:
            run_id, name, shape = self._shown
            info = self._dataset(run_id, name)
            if info is not None and (info.shape != shape or force):
                self._load(run_id, name)

    def _dataset(self, run_id: str, name: str):
        for run in self.runs:
            if run.run_id == run_id:
                return next((d for d in run.datasets if d.name == name), None)
        return None

    def _rebuild(self) -> None:
        selected = self._selection()
        self.tree.blockSignals(True)
        tops = [required(self.tree.topLevelItem(k), "run item") for k in range(self.tree.topLevelItemCount())]
        expanded = {top.data(0, Qt.ItemDataRole.UserRole)[0] for top in tops if top.isExpanded()}
        self.tree.clear()
        restore = None
        for run in self.runs:
            item = QTreeWidgetItem([f"{run.run_id}", run.status, run.started.replace("T", " ")[:19]])
            item.setData(0, Qt.ItemDataRole.UserRole, (run.run_id, None))
            item.setForeground(1, pg.mkColor(STATUS_COLORS.get(run.status, "#000000")))
            item.setToolTip(0, f"{run.protocol}\n" + json.dumps(run.parameters, indent=1))
            for ds in run.datasets:
                unit = ds.units if isinstance(ds.units, str) else ", ".join(
                    f"{k} [{v}]" if v else k for k, v in ds.units.items())
                child = QTreeWidgetItem([ds.name, " x ".join(map(str, ds.shape)) or "scalar", unit])
                child.setToolTip(2, unit)
                child.setData(0, Qt.ItemDataRole.UserRole, (run.run_id, ds.name))
                item.addChild(child)
                if selected == (run.run_id, ds.name):
                    restore = child
            self.tree.addTopLevelItem(item)
            if selected == (run.run_id, None):
                restore = item
            item.setExpanded(run.run_id in expanded or run is self.runs[-1])
        if restore is not None:
            restore.setSelected(True)
        for k in range(3):
            self.tree.resizeColumnToContents(k)
        self.tree.blockSignals(False)

    def _selection(self) -> tuple | None:
        items = self.tree.selectedItems()
        return items[0].data(0, Qt.ItemDataRole.UserRole) if items else None

    # -- plotting -----------------------------------------------------------------------------------
    def _selected(self) -> None:
        selection = self._selection()
        if selection is None:
            return
        run_id, name = selection
        run = next((r for r in self.runs if r.run_id == run_id), None)
        if run is None:
            return
        text = [f"{run.run_id}: {run.protocol}, {run.status}", f"started {run.started}  ended {run.ended}"]
        if run.error:
            text.append(f"error: {run.error}")
        text.append("parameters: " + json.dumps(run.parameters))
        scalars = {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in run.summary.items()
                   if not isinstance(v, (list, dict))}
        if scalars:
            text.append("summary: " + json.dumps(scalars))
        self.details.setPlainText("\n".join(text))
        if name is not None:
            self._load(run_id, name)

    def show_dataset(self, run_id: str, name: str) -> None:
        """Select and plot one dataset (as a click in the tree would)."""
        for k in range(self.tree.topLevelItemCount()):
            top = required(self.tree.topLevelItem(k), "run item")
            for j in range(top.childCount()):
                child = required(top.child(j), "dataset item")
                if child.data(0, Qt.ItemDataRole.UserRole) == (run_id, name):
                    self.tree.clearSelection()
                    top.setExpanded(True)
                    child.setSelected(True)
                    return
        raise KeyError(f"{run_id}/{name}")

    def _load(self, run_id: str, name: str) -> None:
        if self.path is None:
            return
        try:
            data, units = read_dataset(self.path, run_id, name)
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            self.status.setText(f"{run_id}/{name}: cannot read now ({exc}); retrying")
            return
        first = self._shown is None or self._shown[:2] != (run_id, name)
        self._shown = (run_id, name, tuple(data.shape))
        self.data, self.units = data, units
        if first:
            self.x_combo.blockSignals(True)
            self.y_combo.blockSignals(True)
            self.x_combo.clear()
            self.y_combo.clear()
            if data.dtype.names:
                columns = [c for c in data.dtype.names if data.dtype[c].kind in "iufb"]
                self.x_combo.addItems(["(index)"] + columns)
                self.y_combo.addItems(columns)
                x_default = next((c for c in ("v", "t", "pulse_index", "pulse", "cycle", "k") if c in columns), "(index)")
                y_default = next((c for c in ("i", "g", "g_final", "g_on", "dg") if c in columns), columns[-1] if columns else "")
                self.x_combo.setCurrentText(x_default)
                self.y_combo.setCurrentText(y_default)
            self.x_combo.blockSignals(False)
            self.y_combo.blockSignals(False)
            self.x_combo.setEnabled(bool(data.dtype.names))
            self.y_combo.setEnabled(bool(data.dtype.names))
        self._replot(title=f"{run_id} / {name}")

    def _replot(self, *_, title: str | None = None) -> None:
        data = self.data
        if data is None:
            return
        name = self._shown[1] if self._shown else ""
        title = title or (f"{self._shown[0]} / {name}" if self._shown else "")
        if data.dtype.names:
            x_name, y_name = self.x_combo.currentText(), self.y_combo.currentText()
            if not y_name:
                return
            units = self.units if isinstance(self.units, dict) else {}
            y = np.asarray(data[y_name], dtype=float)
            x = np.arange(len(y), dtype=float) if x_name == "(index)" else np.asarray(data[x_name], dtype=float)
            self._curve(x, y, x_name, units.get(x_name, ""), y_name, units.get(y_name, ""), title)
        elif data.ndim == 2:
            self.heat.plot.setTitle(title)
            unit = self.units if isinstance(self.units, str) else ""
            self.heat.set_unit(unit)
            self.heat.set_data(np.asarray(data, dtype=float))
            self.stack.setCurrentWidget(self.image_view)
        elif data.ndim == 1 and data.dtype.kind in "iufb":
            unit = self.units if isinstance(self.units, str) else ""
            y = np.asarray(data, dtype=float)
            self._curve(np.arange(len(y), dtype=float), y, "index", "", name, unit, title)
        else:
            self.empty.setText(f"{name}: {data.dtype} of shape {data.shape} (nothing to plot)")
            self.stack.setCurrentWidget(self.empty)

    def _curve(self, x, y, x_name, x_unit, y_name, y_unit, title) -> None:
        plot = self.curve_plot
        plot.clear()
        plot.setTitle(title)
        plot.setLabel("bottom", x_name, units=x_unit or None)
        plot.setLabel("left", y_name, units=y_unit or None)
        ordered = len(x) < 2 or bool(np.all(np.diff(x) >= 0))
        if ordered:
            x, y = minmax_decimate(x, y)
            plot.plot(x, y, pen=pg.mkPen("#1f77b4", width=1.2), symbol="o" if len(x) <= 200 else None,
                      symbolSize=4, symbolBrush="#1f77b4", symbolPen=None)
        else:  # e.g. one table holding many cells: points, not a zig-zag line
            step = max(1, len(x) // MAX_SCATTER)
            plot.plot(x[::step], y[::step], pen=None, symbol="o", symbolSize=3, symbolBrush="#1f77b4",
                      symbolPen=None)
        self.stack.setCurrentWidget(self.curve_plot)
