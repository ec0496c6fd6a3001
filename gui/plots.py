"""pyqtgraph building blocks shared by the panels: a heat map with a colour bar, curve colours."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QObject, QRectF, pyqtSignal
from PyQt6.QtGui import QColor, QPen
from PyQt6.QtWidgets import QGraphicsRectItem

pg.setConfigOptions(imageAxisOrder="row-major", background="w", foreground="k", antialias=False)

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def display_scale(unit: str) -> tuple[float, str]:
    """Factor and unit to show values of `unit` in: siemens and amperes in micro-units."""
    return {"S": (1e6, "µS"), "A": (1e6, "µA")}.get(unit, (1.0, unit))


def cell_ticks(n: int, most: int = 10) -> list[tuple[float, str]]:
    """Integer labels at cell centres (every k-th cell when there are many)."""
    steps = [k * 10 ** e for e in range(6) for k in (1, 2, 4, 5, 8)]
    step = next(k for k in steps if k >= n / most)
    return [(k + 0.5, str(k)) for k in range(0, n, step)]


class HeatMap(QObject):
    """A rows x cols array on a PlotItem (rows = WL down, columns = BL/SL across) with a colour
    bar; emits `clicked(row, col)` when a cell is clicked."""

    clicked = pyqtSignal(int, int)

    def __init__(self, layout: pg.GraphicsLayout, title: str, unit: str, x_label: str = "column (BL/SL)",
                 y_label: str = "row (WL)", row: int | None = None, col: int = 0, cmap: str = "viridis"):
        super().__init__()
        self.factor, shown = display_scale(unit)
        self.plot: pg.PlotItem = layout.addPlot(row=row, col=col, title=title)
        self.plot.setLabel("bottom", x_label)
        self.plot.setLabel("left", y_label)
        self.plot.invertY(True)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.image)
        self.bar = pg.ColorBarItem(values=(0, 1), colorMap=cmap, label=shown or "value", interactive=False,
                                   width=15)
        self.bar.setImageItem(self.image, insert_in=self.plot)
        self.selection = QGraphicsRectItem(QRectF(0, 0, 1, 1))
        pen = QPen(QColor("#d62728"))
        pen.setWidthF(3)
        pen.setCosmetic(True)
        self.selection.setPen(pen)
        self.selection.setZValue(10)
        self.selection.hide()
        self.plot.addItem(self.selection)
        self.data: np.ndarray | None = None
        self.levels = (0.0, 1.0)
        self.plot.scene().sigMouseClicked.connect(self._clicked)  # the layout is already in a view

    def set_unit(self, unit: str) -> None:
        """Values are in `unit` from now on (colour bar label and display scale)."""
        self.factor, shown = display_scale(unit)
        self.bar.getAxis("left").setLabel(shown or "value")

    def set_data(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=float)
        shown = values * self.factor
        first = self.data is None or self.data.shape != values.shape
        self.data = values
        finite = shown[np.isfinite(shown)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if hi <= lo:  # a uniform array (e.g. a pristine chip)
            pad = 0.05 * abs(lo) or 0.5
            lo, hi = lo - pad, hi + pad
        self.image.setImage(shown, autoLevels=False)
        # new colour levels only when the data leave them or use less than 2/3 of them: a bar
        # whose axis is regenerated at every update costs more than the image itself
        old_lo, old_hi = self.levels
        if first or lo < old_lo or hi > old_hi or (hi - lo) < (old_hi - old_lo) / 1.5:
            self.levels = (lo, hi)
            self.bar.setLevels(self.levels)
        self.image.setRect(QRectF(0, 0, values.shape[1], values.shape[0]))
        if first:
            rows, cols = values.shape
            self.plot.getAxis("bottom").setTicks([cell_ticks(cols)])
            self.plot.getAxis("left").setTicks([cell_ticks(rows)])
            self.plot.setRange(xRange=(0, cols), yRange=(0, rows), padding=0.02)

    def fit_levels(self) -> None:
        """Colour levels exactly to the data (set_data only moves them when it must)."""
        if self.data is None:
            return
        finite = self.data[np.isfinite(self.data)] * self.factor
        if finite.size and finite.max() > finite.min():
            self.levels = (float(finite.min()), float(finite.max()))
            self.bar.setLevels(self.levels)

    def select(self, row: int, col: int) -> None:
        self.selection.setRect(QRectF(col, row, 1, 1))
        self.selection.show()

    def _clicked(self, event) -> None:
        if self.data is None or not self.plot.sceneBoundingRect().contains(event.scenePos()):
            return
        pos = self.image.mapFromScene(event.scenePos())
        col, row = int(np.floor(pos.x())), int(np.floor(pos.y()))
        rows, cols = self.data.shape
        if 0 <= row < rows and 0 <= col < cols:
            self.clicked.emit(row, col)
