"""The standard figures of a study: metrics against one axis, lines per value of a second one (or a
map over two axes), each point the mean over the `seed` axis with its standard deviation as error bar.

Axes other than the ones plotted (and seed) must be fixed with `select` ({axis: value}) unless
they have one value. Figures are plain matplotlib Figures on an Agg canvas (labctl.plots' rule).
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import numpy as np

from .results import study_dataset
from .spec import SEED, StudyError

FIGSIZE_PER_METRIC = (5.0, 3.8)


def _known(name: str, names: list[str], what: str) -> None:
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise StudyError(f"no {what} {name!r} in the study ({hint}{what}s: {', '.join(names)})")


def _selected(dataset, select: dict[str, Any]):
    for axis, value in select.items():
        _known(axis, list(dataset.dims), "axis")
        values = list(dataset[axis].values)
        match = [v for v in values if v == value or (isinstance(v, float) and np.isclose(v, value, rtol=1e-9))]
        if not match:
            raise StudyError(f"axis {axis!r} has no value {value!r} (values: {', '.join(map(str, values))})")
        dataset = dataset.sel({axis: match[0]})
    return dataset


def _positions(values: np.ndarray) -> tuple[np.ndarray, list[str] | None]:
    """Numeric axis values as they are; others (algorithm names) at 0, 1, 2, ... with labels."""
    if values.dtype.kind in "iuf":
        return values.astype(float), None
    return np.arange(len(values), dtype=float), [str(v) for v in values]


def _log(values: np.ndarray) -> bool:
    return values.dtype.kind in "iuf" and bool(np.all(values > 0)) and values.max() / values.min() >= 100


def study_figure(path: str | Path, metrics: list[str], x: str, hue: str | None = None,
                 select: dict[str, Any] | None = None, kind: str = "lines", title: str = ""):
    """The figure of `metrics` (columns of study_frame, e.g. mvm_1s.rmse_forward) against axis `x`:
    one line per value of axis `hue` (kind "lines"), or a map over `x` and `hue` (kind "map")."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dataset = _selected(study_dataset(path), select or {})
    _known(x, list(dataset.dims), "axis")
    if hue is not None:
        _known(hue, list(dataset.dims), "axis")
    if kind not in ("lines", "map") or (kind == "map" and hue is None):
        raise StudyError(f"kind {kind!r}: lines (with an optional hue axis) or map (x and hue axes)")
    variables = [name for name in dataset.data_vars if dataset[name].dtype.kind in "iufb"]
    for metric in metrics:
        _known(metric, variables, "metric")
    fixed = [d for d in dataset.dims if d not in (x, hue, SEED) and dataset.sizes[d] > 1]
    if fixed:
        raise StudyError(f"the study has more axes than the figure shows: give a value for {', '.join(fixed)} "
                         f"(select / --sel AXIS=VALUE)")
    dataset = dataset.squeeze([d for d in dataset.dims if d not in (x, hue, SEED)], drop=True)
    seeds = dataset.sizes.get(SEED, 1)
    fig = Figure(figsize=(FIGSIZE_PER_METRIC[0] * len(metrics), FIGSIZE_PER_METRIC[1]), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    for ax, metric in zip(np.atleast_1d(fig.subplots(1, len(metrics))), metrics):
        data = dataset[metric].astype(float)
        mean = data.mean(SEED, skipna=True) if SEED in data.dims else data
        spread = data.std(SEED, skipna=True) if SEED in data.dims and seeds > 1 else None
        xs, labels = _positions(dataset[x].values)
        if kind == "map":
            grid = mean.transpose(hue, x).values
            image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
            ys, ylabels = _positions(dataset[hue].values)
            ax.set_xticks(range(len(xs)), labels or [f"{v:.3g}" for v in xs])
            ax.set_yticks(range(len(ys)), ylabels or [f"{v:.3g}" for v in ys])
            for (i, j), value in np.ndenumerate(grid):
                ax.text(j, i, f"{value:.3g}", ha="center", va="center", fontsize="x-small", color="w")
            fig.colorbar(image, ax=ax, label=metric)
            ax.set_ylabel(hue)
        else:
            groups = [(None, mean, spread)] if hue is None else [
                (v, mean.sel({hue: v}), None if spread is None else spread.sel({hue: v})) for v in dataset[hue].values]
            for value, m, s in groups:
                label = None if value is None else f"{hue} = {value:.3g}" if isinstance(value, float) else f"{hue} = {value}"
                ax.errorbar(xs, m.values, yerr=None if s is None else s.values, marker="o", capsize=3, label=label)
            if labels:
                ax.set_xticks(xs, labels)
            elif _log(dataset[x].values):
                ax.set_xscale("log")
            if hue is not None:
                ax.legend(fontsize="small")
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
        ax.set_xlabel(x)
        ax.set_title(metric + (f" (mean ± std over {seeds} seeds)" if seeds > 1 and kind == "lines" else
                               f" (mean over {seeds} seeds)" if seeds > 1 else ""), fontsize="small")
    fig.suptitle(title or dataset.attrs.get("name", ""), fontsize="medium", fontweight="bold")
    return fig


def plot_study(path: str | Path, out: str | Path, metrics: list[str], x: str, hue: str | None = None,
               select: dict[str, Any] | None = None, kind: str = "lines", title: str = "") -> Path:
    """Draw `study_figure` and save it as PNG `out`; returns its path."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise StudyError(f"the figure is a .png file, got {str(out)!r}")
    fig = study_figure(path, metrics, x, hue, select, kind, title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
