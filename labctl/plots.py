"""Static figures of recorded runs, drawn by each protocol's `plot(run, fig)` and saved as PNG.

A protocol may define a staticmethod `plot(run: dict, fig: matplotlib.figure.Figure) -> None`
that draws its standard figure from `labctl.store.load_run`'s dict into an empty figure. Plot
methods must not use pyplot: figures here are plain `Figure` objects on an Agg canvas, so they
render without a display and from any thread. Import matplotlib inside the method (importing it
costs ~0.5 s, which every `labctl` command would otherwise pay).

The helpers below (`cell_map`, `no_data`) are shared by the protocols' plot methods.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .engine import get_protocol
from .params import ParameterError
from .store import list_runs, load_run

DPI = 120
FIGSIZE = (10.0, 5.0)  # inches; a plot method may resize its figure
ANNOTATE_MAX_CELLS = 128  # cell maps up to this size (and <= 16 per side) get their values written in


def run_figure(run: dict[str, Any]) -> Figure:
    """A titled figure of a loaded run, drawn by its protocol's `plot` (raises ParameterError)."""
    attrs = run["attrs"]
    protocol = get_protocol(str(attrs.get("protocol", "")))
    plot = getattr(protocol, "plot", None)
    if plot is None:
        raise ParameterError(f"protocol {protocol.name!r} has no standard figure (no plot method); "
                             "use `labctl data export` for its data")
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    plot(run, fig)
    fig.suptitle(_title(attrs), fontsize="medium", fontweight="bold")
    return fig


def plot_run(path: str | Path, run_id: str, out: str | Path) -> Path:
    """Draw run `run_id` of HDF5 file `path` with its protocol's `plot` and save it as PNG `out`."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ParameterError(f"--out must be a .png file, got {str(out)!r}")
    try:
        run = load_run(path, run_id)
    except KeyError:
        known = [r["run_id"] for r in list_runs(path)]
        if run_id in known:
            raise
        raise ParameterError(f"{path} has no run {run_id!r} (runs: {', '.join(known) or 'none'})") from None
    fig = run_figure(run)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=DPI)
    return out


def _title(attrs: dict[str, Any]) -> str:
    started = str(attrs.get("started", ""))
    try:
        started = datetime.fromisoformat(started).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    except ValueError:
        pass
    title = f"run {attrs.get('run_id', '?')}  |  {attrs.get('protocol', '?')}  |  " \
            f"{attrs.get('status', '?')}  |  started {started}"
    error = str(attrs.get("error", ""))
    if error:
        title += "\n" + (error if len(error) <= 100 else error[:97] + "...")
    return title


# -- helpers for plot methods -------------------------------------------------------------------
def no_data(ax: Axes, message: str) -> None:
    """Say on an empty axes why it is empty (e.g. a run that failed before its first row)."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")


def cell_map(fig: Figure, ax: Axes, values: np.ndarray, label: str, cmap: str = "viridis",
             fmt: str = "{:.1f}", bad_color: str = "0.85") -> None:
    """Heat map of a rows x cols array (rows = WL, columns = BL/SL, 0-based) with a colour bar
    labelled `label`; NaN cells in `bad_color`; cell values written in when the array is small."""
    import matplotlib

    values = np.ma.masked_invalid(np.asarray(values, dtype=float))
    rows, cols = values.shape
    colormap = matplotlib.colormaps[cmap].with_extremes(bad=bad_color)
    aspect: Literal["equal", "auto"] = "equal" if max(rows, cols) <= 4 * min(rows, cols) else "auto"
    image = ax.imshow(values, cmap=colormap, interpolation="nearest", aspect=aspect, origin="upper")
    fig.colorbar(image, ax=ax, label=label, shrink=0.9)
    ax.set_xlabel("column (BL/SL)")
    ax.set_ylabel("row (WL)")
    for axis in (ax.xaxis, ax.yaxis):
        locator = axis.get_major_locator()
        if isinstance(locator, MaxNLocator):  # a new Axes' AutoLocator is one
            locator.set_params(integer=True)
    if rows * cols <= ANNOTATE_MAX_CELLS and max(rows, cols) <= 16 and values.count():
        for (r, c), v in np.ndenumerate(values.filled(np.nan)):
            if np.isfinite(v):
                red, green, blue, _ = image.cmap(image.norm(v))
                color = "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"
                ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize="small", color=color)
