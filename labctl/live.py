"""What a protocol plots while it runs: a small declaration the GUI (or any live viewer) reads.

A protocol lists `live_plots` (a tuple of LivePlot). A curve plot follows one of the protocol's
tables: every block of rows the run appends (RunContext.append) adds points (x, y) to the curve
of its group (e.g. one curve per cell with `group_by=("row", "col")`). An image plot follows a
saved array (RunContext.save_array) and shows the latest one as a heat map. The declaration
names data only; how it is drawn (decimation, colours) is the viewer's business.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

KINDS = ("curve", "image")


@dataclass(frozen=True)
class LivePlot:
    """One live plot of a protocol.

    table: the table (curve) or saved array (image) it follows.
    x, y: column names of the table (curves); for an image, labels of its axes (columns, rows).
    title: the plot's title; x_unit / y_unit: SI units of x and y (the viewer adds prefixes,
    so "S" shows as uS, "A" as uA), filled from the protocol's table schema by `with_units`.
    group_by: a column name, or a tuple of names, whose values split the rows into curves.
    kind: "curve" or "image"; unit: the unit of an image's values (its colour bar), filled from
    the protocol's declared arrays.
    log_x: log-scaled x axis (e.g. time after programming).
    """

    table: str
    x: str
    y: str
    title: str
    x_unit: str = ""
    y_unit: str = ""
    group_by: str | tuple[str, ...] | None = None
    kind: str = "curve"
    unit: str = ""
    log_x: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"LivePlot {self.title!r}: kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def group_columns(self) -> tuple[str, ...]:
        """group_by as a tuple of column names (empty: a single curve)."""
        if self.group_by is None:
            return ()
        return (self.group_by,) if isinstance(self.group_by, str) else tuple(self.group_by)

    def columns(self) -> tuple[str, ...]:
        """Every column of the table this plot needs."""
        return (self.x, self.y, *self.group_columns) if self.kind == "curve" else (self.table,)


def with_units(plot: LivePlot, tables: dict, arrays: dict[str, str], owner: str) -> LivePlot:
    """`plot` with its units taken from the declared table schemas (name -> [(column, dtype,
    unit)]) or array units; a plot of an undeclared table or array keeps the units it gives.
    A column the declared table lacks is an error."""
    if plot.kind == "image":
        return replace(plot, unit=arrays[plot.table]) if plot.table in arrays else plot
    if plot.table not in tables:
        return plot
    units = {column: unit for column, _, unit in tables[plot.table]}
    missing = [c for c in plot.columns() if c not in units]
    if missing:
        raise TypeError(f"{owner}: live plot {plot.title!r} needs columns {missing} that table "
                        f"{plot.table!r} does not declare")
    return replace(plot, x_unit=units[plot.x], y_unit=units[plot.y])
