"""Live plots: what the running protocol declares in `live_plots`, updated as data arrives.

Data reach the panel through `feed` (UI thread, drained from the worker's coalesced signal) and
only update the models (gui.series); a timer redraws the curves that changed, at most ~30 times
a second, each with at most MAX_DRAWN points (min/max decimation) and pyqtgraph's own peak
downsampling and clip-to-view on top.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QLabel, QStackedLayout, QWidget

from labctl.live import LivePlot

from .plots import HeatMap, color
from .series import MAX_DRAWN, CurveSet, expand_range, group_label, minmax_decimate

REFRESH_MS = 33
GRID = False  # pyqtgraph grids (alpha lines from every axis level) halve the frame rate
SEPARATE = 8  # groups drawn as their own coloured curve (the latest ones)
OLDER_COLOR = "#b8b8b8"
NEW_ITEMS_PER_REDRAW = 2


class _CurvePlot:
    """The latest SEPARATE groups as coloured curves, every older group merged into one grey
    item (NaN-separated segments): the cost of a paint stays flat however many cells a run has."""

    def __init__(self, layout: pg.GraphicsLayout, spec: LivePlot, row: int, col: int):
        self.spec = spec
        self.model = CurveSet(spec)
        self.plot: pg.PlotItem = layout.addPlot(row=row, col=col, title=spec.title)
        if GRID:
            self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.setLabel("bottom", spec.x, units=spec.x_unit or None)
        self.plot.setLabel("left", spec.y, units=spec.y_unit or None)
        for side, unit in (("bottom", spec.x_unit), ("left", spec.y_unit)):
            if not unit:  # a plain number (accuracy, index): no "x0.001" rescaling
                self.plot.getAxis(side).enableAutoSIPrefix(False)
        if spec.log_x:
            self.plot.setLogMode(x=True, y=False)
        self.items: dict[Any, pg.PlotDataItem] = {}
        self.drawn: dict[Any, int] = {}
        self.colors: dict[Any, int] = {}
        self.merged = self._item(OLDER_COLOR)
        self.merged.setZValue(-1)
        self.merged_versions: tuple = ()
        # ranges that only grow, in steps: axes are regenerated rarely, not at every new point;
        # a zoom or pan by the user stops it (the "A" button gives pyqtgraph's autorange back)
        self.plot.disableAutoRange()
        self.follow = True
        self.x_range: tuple[float, float] | None = None
        self.y_range: tuple[float, float] | None = None
        self.plot.getViewBox().sigRangeChangedManually.connect(self._user_range)
        self.legend = self.plot.addLegend(offset=(-5, 5), labelTextSize="8pt",
                                          brush=pg.mkBrush(255, 255, 255, 210)) if spec.group_by else None
        self._title = spec.title

    def _item(self, pen_color: str) -> pg.PlotDataItem:
        item = pg.PlotDataItem(pen=pg.mkPen(pen_color, width=1))  # width 1: cosmetic, fast raster path
        item.setDownsampling(auto=True, method="peak")
        item.setClipToView(True)
        self.plot.addItem(item)
        return item

    def feed(self, columns: dict[str, Any]) -> None:
        self.model.add(columns)

    def _user_range(self, *_) -> None:
        self.follow = False

    def finish(self) -> None:
        """The run ended: fit the view to the data (unless the user has zoomed)."""
        self.redraw()
        if self.follow and self.model.bounds is not None:
            self.plot.enableAutoRange()

    def _fit(self) -> None:
        bounds = self.model.bounds
        if not self.follow or bounds is None:
            return
        x = expand_range(self.x_range, bounds[0], bounds[1], 0.5, self.spec.log_x)
        y = expand_range(self.y_range, bounds[2], bounds[3], 0.15)
        if x is None and y is None:
            return
        self.x_range, self.y_range = x or self.x_range, y or self.y_range
        self.plot.setRange(xRange=self.x_range, yRange=self.y_range, padding=0)

    def _xy(self, key, max_points: int = MAX_DRAWN) -> tuple[np.ndarray, np.ndarray]:
        curve = self.model.curves[key]
        x, y = curve.x, curve.y
        if self.spec.log_x:
            keep = x > 0
            x, y = x[keep], y[keep]
        return minmax_decimate(x, y, max_points)

    def redraw(self) -> None:
        curves = self.model.curves
        keys = list(curves)
        latest, older = keys[-SEPARATE:], keys[:-SEPARATE]
        for key in [k for k in self.items if k not in latest]:  # evicted, or now drawn merged
            self.plot.removeItem(self.items.pop(key))
            if self.legend is not None:
                self.legend.clear()
            self.drawn.pop(key, None)
        created = 0
        for key in latest:
            curve = curves[key]
            if self.drawn.get(key) == curve.version:
                continue
            item = self.items.get(key)
            if item is None:
                if created == NEW_ITEMS_PER_REDRAW:  # spread the cost of new items over frames
                    continue
                created += 1
                index = self.colors.setdefault(key, len(self.colors))
                item = self.items[key] = self._item(color(index))
                if self.legend is not None and len(keys) <= SEPARATE:
                    self.legend.addItem(item, group_label(self.spec, key) if key else self.spec.y)
            item.setData(*self._xy(key))
            self.drawn[key] = curve.version
        versions = tuple((k, curves[k].version) for k in older)
        if versions != self.merged_versions:
            self.merged_versions = versions
            if older:
                share = max(50, MAX_DRAWN // len(older))
                parts = [self._xy(k, share) for k in older]
                x = np.concatenate([np.append(px, np.nan) for px, _ in parts])
                y = np.concatenate([np.append(py, np.nan) for _, py in parts])
                self.merged.setData(x, y, connect="finite")
            else:
                self.merged.setData([], [])
        self._fit()
        if self.spec.group_by:
            n = len(keys)
            if self.legend is not None and n > SEPARATE and self.legend.isVisible():
                self.legend.hide()  # a legend of a few of many curves says nothing
            older_text = "; older in grey" if older else ""
            dropped = f", latest {n} kept" if self.model.dropped else ""
            title = (f"{self.spec.title} ({n + self.model.dropped} curves{dropped}{older_text})" if n > 1
                     else self.spec.title)
            if title != self._title:
                self.plot.setTitle(title)
                self._title = title

    @property
    def points(self) -> int:
        return self.model.points


class _ImagePlot:
    def __init__(self, layout: pg.GraphicsLayout, spec: LivePlot, row: int, col: int):
        self.spec = spec
        self.map = HeatMap(layout, spec.title, spec.unit, spec.x, spec.y, row=row, col=col)
        self.latest: np.ndarray | None = None
        self.dirty = False
        self.points = 0

    def feed(self, columns: dict[str, Any]) -> None:
        data = columns.get(self.spec.table)
        if data is not None and np.ndim(data) == 2:
            self.latest, self.dirty = np.asarray(data, dtype=float), True
            self.points += int(np.size(data))

    def redraw(self) -> None:
        if self.dirty and self.latest is not None:
            self.map.set_data(self.latest)
            self.dirty = False

    def finish(self) -> None:
        self.redraw()
        self.map.fit_levels()


class LivePanel(QWidget):
    """The live plots of the protocol that runs (or ran last)."""

    COLUMNS = 2

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.view = pg.GraphicsLayoutWidget()
        self.placeholder = QLabel("Live plots appear here while a protocol runs.")
        self.placeholder.setStyleSheet("color: #666; padding: 20px;")
        self.stack = QStackedLayout(self)
        self.stack.addWidget(self.placeholder)
        self.stack.addWidget(self.view)
        self.plots: list[_CurvePlot | _ImagePlot] = []
        self.protocol = ""
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()

    def start(self, protocol: str, specs: tuple[LivePlot, ...]) -> None:
        """Clear and build the plots of `protocol` from its declaration."""
        self.view.clear()
        self.plots = []
        self.protocol = protocol
        cols = 1 if len(specs) == 1 else self.COLUMNS
        for k, spec in enumerate(specs):
            row, col = divmod(k, cols)
            kind = _ImagePlot if spec.kind == "image" else _CurvePlot
            self.plots.append(kind(self.view.ci, spec, row, col))
        if specs:
            self.stack.setCurrentWidget(self.view)
        else:
            self.placeholder.setText(f"{protocol} declares no live plots: follow its progress below "
                                     "and its data in the data browser.")
            self.stack.setCurrentWidget(self.placeholder)

    def feed(self, table: str, columns: dict[str, Any]) -> None:
        for plot in self.plots:
            if plot.spec.table == table:
                plot.feed(columns)

    def redraw(self) -> None:
        for plot in self.plots:
            plot.redraw()

    def finish(self) -> None:
        """The run ended: last redraw, views fitted to the data."""
        for plot in self.plots:
            plot.finish()

    def points(self) -> dict[str, int]:
        """Points received per plot title (for tests and the status line)."""
        return {plot.spec.title: plot.points for plot in self.plots}
