"""pulse_response: identical open-loop SET then RESET pulse trains, a read after every pulse.

Per cycle, every selected cell gets `n_pulses` identical SET pulses (v_set, `width`), each
followed by a read, then `n_pulses` identical RESET pulses (v_reset) with a read after each.
The selected cells (a block, see `CELL_BLOCK`) are pulsed one after the other and then read
together in one board transaction per pulse step.

Stored in the run's group:

- table "trace" (row, col, cycle, direction, pulse_index, g): direction +1 = up (SET),
  -1 = down (RESET); pulse_index 0 is the level before the half-cycle's first pulse (for a
  down half it repeats the up half's last read), k >= 1 the read after its k-th pulse;
- table "steps": the binned step curves of all cells pooled (direction, g = mean G before the
  pulse in the bin, dg_mean, dg_std, count; NaN where a bin has fewer than `min_count` steps).

Extraction (module functions, usable on any trace array; see `analyze_pulse_response`):

- step dG = G after a pulse - G before it, binned against G before it (`n_bins` equal bins over
  the conductance range the trace covers);
- symmetry_point (S): the G where the interpolated binned curves |dG_up|(G) and |dG_down|(G)
  cross; None when they do not cross inside the range both cover;
- step_up_mean / step_down_mean (S): mean of the binned mean steps over the bins where both
  directions are measured (each conductance level weighs equally, not each pulse: a
  pulse-weighted mean is set by the range covered and is equal up and down in a closed cycle).
  step_up_mean > 0; step_down_mean is signed, i.e. < 0 (compare magnitudes);
- noise_to_signal: std(dG) / |mean(dG)| per cell and bin (cycle-to-cycle noise; bins pooling
  cells would add device-to-device spread), median over all (cell, bin, direction) with at
  least `min_count` steps;
- n_states = (g_up_level - g_down_level) / |dG| at the symmetry point, where the levels are
  the mean G over the last 10 % of the reads of the up / down halves (the saturated levels):
  aihwkit's "weight range / dw_min". It counts the states the covered range holds, so it
  needs n_pulses large enough for the trace to saturate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.engine import Protocol, RunContext
from labctl.live import LivePlot
from labctl.params import Parameter

from .common import (
    V_GATE,
    V_READ,
    V_RESET,
    V_SET,
    WIDTH,
    block_cells,
    burst_each_cell,
    cell_block_parameters,
    check_block,
    read_block,
    selected_block,
)

UP, DOWN = 1, -1
TAIL_FRACTION = 0.1  # share of a half-cycle's last reads averaged into its saturated level

# -- extraction -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BinnedSteps:
    """Step statistics per (group, bin); arrays of shape (n_groups, n_bins).

    g: mean G before the pulse (S), dg_mean / dg_std: mean and sample std of dG (S),
    count: steps in the bin. g, dg_mean and dg_std are NaN where count < min_count.
    """

    g: np.ndarray
    dg_mean: np.ndarray
    dg_std: np.ndarray
    count: np.ndarray


def trace_steps(trace: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(G before each pulse, dG of that pulse) from reads along the last axis."""
    trace = np.asarray(trace, dtype=float)
    return trace[..., :-1], np.diff(trace, axis=-1)


def bin_steps(g_before: np.ndarray, dg: np.ndarray, edges: np.ndarray, groups: np.ndarray | None = None,
              min_count: int = 3) -> BinnedSteps:
    """Bin steps dG by the conductance before the pulse, separately per group (e.g. per cell).

    g_before, dg and groups (int >= 0, default all 0) have one shape; NaN steps are ignored.
    G outside `edges` falls into the first / last bin.
    """
    g_before, dg = np.ravel(g_before), np.ravel(dg)
    groups = np.zeros(g_before.shape, dtype=int) if groups is None else np.ravel(groups).astype(int)
    keep = np.isfinite(g_before) & np.isfinite(dg)
    g_before, dg, groups = g_before[keep], dg[keep], groups[keep]
    n_bins = len(edges) - 1
    n_groups = int(groups.max()) + 1 if groups.size else 1
    index = groups * n_bins + np.clip(np.searchsorted(edges, g_before, side="right") - 1, 0, n_bins - 1)
    size = n_groups * n_bins
    count = np.bincount(index, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = np.bincount(index, g_before, size) / count
        mean = np.bincount(index, dg, size) / count
        var = np.bincount(index, (dg - mean[index]) ** 2, size) / (count - 1)
    valid = count >= max(min_count, 2)
    shape = (n_groups, n_bins)

    def masked(x: np.ndarray) -> np.ndarray:
        return np.where(valid, x, np.nan).reshape(shape)

    return BinnedSteps(masked(g), masked(mean), masked(np.sqrt(var)), count.reshape(shape))


def symmetry_point(g_up: np.ndarray, dg_up: np.ndarray, g_down: np.ndarray, dg_down: np.ndarray) -> float:
    """G (S) where |dG_up|(G) = |dG_down|(G), both curves linearly interpolated between their
    points; NaN if they do not cross within the G range both cover. Several crossings (noise)
    give their median."""
    curves = []
    for g, dg in ((g_up, dg_up), (g_down, dg_down)):
        g, dg = np.ravel(g), np.abs(np.ravel(dg))
        ok = np.isfinite(g) & np.isfinite(dg)
        order = np.argsort(g[ok])
        curves.append((g[ok][order], dg[ok][order]))
    (xu, yu), (xd, yd) = curves
    if xu.size < 2 or xd.size < 2:
        return float("nan")
    lo, hi = max(xu[0], xd[0]), min(xu[-1], xd[-1])
    if not lo < hi:
        return float("nan")
    grid = np.unique(np.concatenate([xu, xd, [lo, hi]]))
    grid = grid[(grid >= lo) & (grid <= hi)]
    f = np.interp(grid, xu, yu) - np.interp(grid, xd, yd)
    crossings = list(grid[f == 0])
    change = np.flatnonzero(f[:-1] * f[1:] < 0)
    crossings += list(grid[change] - f[change] * (grid[change + 1] - grid[change]) / (f[change + 1] - f[change]))
    return float(np.median(crossings)) if crossings else float("nan")


@dataclass(frozen=True)
class PulseResponseAnalysis:
    """Figures extracted from a pulse-response trace (S unless stated; NaN = not defined).

    up / down: step curves of all cells pooled (group axis of length 1). See the module
    docstring for the definitions.
    """

    edges: np.ndarray
    up: BinnedSteps
    down: BinnedSteps
    symmetry_point: float
    step_at_symmetry: float
    step_up_mean: float
    step_down_mean: float
    noise_to_signal: float
    noise_to_signal_up: float
    noise_to_signal_down: float
    g_up_level: float
    g_down_level: float
    n_states: float

    def summary(self) -> dict[str, float | None]:
        """The figures as JSON-ready floats (None where not defined)."""
        keys = ("n_states", "symmetry_point", "step_up_mean", "step_down_mean", "noise_to_signal",
                "noise_to_signal_up", "noise_to_signal_down", "step_at_symmetry", "g_up_level",
                "g_down_level")
        return {k: _finite(getattr(self, k)) for k in keys}


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _nanmedian(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else float("nan")


def _nanmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.mean(x)) if x.size else float("nan")


def analyze_pulse_response(trace: np.ndarray, n_bins: int = 16, min_count: int = 3) -> PulseResponseAnalysis:
    """Extract the pulse-response figures from reads `trace` of shape
    (n_cells, n_cycles, 2, n_pulses + 1): axis 2 is up (SET) then down (RESET), the last axis
    the read before the half's first pulse then one read after each pulse (NaN = not measured).
    """
    trace = np.asarray(trace, dtype=float)
    if trace.ndim != 4 or trace.shape[2] != 2 or trace.shape[3] < 2:
        raise ValueError(f"trace must have shape (cells, cycles, 2, n_pulses + 1), got {trace.shape}")
    g_before, dg = trace_steps(trace)
    finite = g_before[np.isfinite(g_before)]
    lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-12, n_bins + 1)
    halves = {name: (g_before[:, :, d], dg[:, :, d]) for name, d in (("up", 0), ("down", 1))}
    pooled = {name: bin_steps(g, s, edges, min_count=min_count) for name, (g, s) in halves.items()}
    cell = np.broadcast_to(np.arange(trace.shape[0])[:, None, None], g_before[:, :, 0].shape)
    ratio = {}
    for name, (g, s) in halves.items():
        per_cell = bin_steps(g, s, edges, cell, min_count)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio[name] = (per_cell.dg_std / np.abs(per_cell.dg_mean)).ravel()
    up, down = pooled["up"], pooled["down"]
    g_sym = symmetry_point(up.g, up.dg_mean, down.g, down.dg_mean)
    step_sym = float("nan")
    if np.isfinite(g_sym):
        ok = np.isfinite(up.g) & np.isfinite(up.dg_mean)
        order = np.argsort(up.g[ok])
        step_sym = float(np.interp(g_sym, up.g[ok][order], np.abs(up.dg_mean[ok][order])))
    both = np.isfinite(up.dg_mean) & np.isfinite(down.dg_mean)
    if both.any():
        step_up, step_down = _nanmean(up.dg_mean[both]), _nanmean(down.dg_mean[both])
    else:
        step_up, step_down = _nanmean(up.dg_mean), _nanmean(down.dg_mean)
    tail = max(1, int(np.ceil(TAIL_FRACTION * (trace.shape[3] - 1))))
    g_up_level, g_down_level = _nanmean(trace[:, :, 0, -tail:]), _nanmean(trace[:, :, 1, -tail:])
    with np.errstate(invalid="ignore", divide="ignore"):
        n_states = (g_up_level - g_down_level) / step_sym if step_sym > 0 else float("nan")
    return PulseResponseAnalysis(
        edges=edges, up=up, down=down, symmetry_point=g_sym, step_at_symmetry=step_sym,
        step_up_mean=step_up, step_down_mean=step_down,
        noise_to_signal=_nanmedian(np.concatenate([ratio["up"], ratio["down"]])),
        noise_to_signal_up=_nanmedian(ratio["up"]), noise_to_signal_down=_nanmedian(ratio["down"]),
        g_up_level=g_up_level, g_down_level=g_down_level, n_states=float(n_states))


def trace_from_table(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rebuild (cells (n, 2) of row, col; trace (n, cycles, 2, n_pulses + 1)) from a stored
    "trace" table; reads a run never made (aborted) are NaN."""
    if table is None or not len(table):
        return np.zeros((0, 2), dtype=int), np.full((0, 1, 2, 2), np.nan)
    cells, cell = np.unique(np.stack([table["row"], table["col"]], axis=1), axis=0, return_inverse=True)
    trace = np.full((len(cells), int(table["cycle"].max()) + 1, 2, int(table["pulse_index"].max()) + 1), np.nan)
    trace[cell.ravel(), table["cycle"], np.where(table["direction"] == UP, 0, 1), table["pulse_index"]] = table["g"]
    return cells, trace


# -- protocol ---------------------------------------------------------------------------------


class PulseResponse(Protocol):
    name = "pulse_response"
    title = "Pulse response (potentiation / depression)"
    live_plots = (LivePlot("trace", "pulse_index", "g", "conductance under identical pulses",
                           group_by=("row", "col", "cycle", "direction")),)
    tables = {
        "trace": [("row", "i4", ""), ("col", "i4", ""), ("cycle", "i4", ""), ("direction", "i1", ""),
                  ("pulse_index", "i4", ""), ("g", "f8", "S")],
        "steps": [("direction", "i1", ""), ("g", "f8", "S"), ("dg_mean", "f8", "S"), ("dg_std", "f8", "S"),
                  ("count", "i4", "")],
    }
    parameters = (
        *cell_block_parameters(False),
        Parameter("n_pulses", "int", 60, "", minimum=1, maximum=100000, soa="max_pulses",
                  doc="identical pulses per direction (SET train, then RESET train)"),
        Parameter("cycles", "int", 3, "", minimum=1, maximum=10000, doc="up/down repetitions"),
        V_SET,
        V_RESET,
        WIDTH,
        V_GATE,
        V_READ,
        Parameter("n_bins", "int", 16, "", minimum=2, maximum=1000,
                  doc="conductance bins of the step-vs-G curves"),
        Parameter("min_count", "int", 3, "", minimum=2, doc="steps a bin needs to count"),
    )

    def check(self, params: dict, config) -> None:
        check_block(params, config)

    def run(self, ctx: RunContext) -> dict[str, Any]:
        """Summary (SI): n_states, symmetry_point (S), step_up_mean (S, > 0), step_down_mean
        (S, signed, < 0), noise_to_signal (1), noise_to_signal_up / _down, step_at_symmetry (S),
        g_up_level / g_down_level (S), cells, pulses. None where a figure is not defined."""
        p, xbar = ctx.params, ctx.crossbar
        block = selected_block(p, xbar.shape)
        rows, cols = block_cells(block)
        n, n_cycles = p["n_pulses"], p["cycles"]
        ctx.table("trace")
        trace = np.full((len(rows), n_cycles, 2, n + 1), np.nan)
        g = read_block(xbar, block, p["v_read"], p["v_gate"])
        total, done = 2 * n * n_cycles, 0
        for cycle in range(n_cycles):
            for d, (direction, amplitude) in enumerate(((UP, p["v_set"]), (DOWN, p["v_reset"]))):
                trace[:, cycle, d, 0] = g
                ctx.append("trace", row=rows, col=cols, cycle=cycle, direction=direction, pulse_index=0, g=g)
                for k in range(1, n + 1):
                    ctx.progress(done, total, f"cycle {cycle + 1}/{n_cycles}, "
                                              f"{'SET' if direction == UP else 'RESET'} pulse {k}/{n}")
                    burst_each_cell(xbar, rows, cols, amplitude, p["width"], 1, p["v_gate"])
                    g = read_block(xbar, block, p["v_read"], p["v_gate"])
                    trace[:, cycle, d, k] = g
                    ctx.append("trace", row=rows, col=cols, cycle=cycle, direction=direction, pulse_index=k, g=g)
                    done += 1
        ctx.progress(total, total, "done")
        result = analyze_pulse_response(trace, p["n_bins"], p["min_count"])
        ctx.table("steps")
        for direction, curve in ((UP, result.up), (DOWN, result.down)):
            ctx.append("steps", direction=direction, g=curve.g[0], dg_mean=curve.dg_mean[0],
                       dg_std=curve.dg_std[0], count=curve.count[0])
        return {**result.summary(), "cells": int(len(rows)), "pulses": int(total * len(rows))}

    @staticmethod
    def plot(run: dict, fig) -> None:
        """G against pulse number (every cell; shaded: SET trains) and |dG| per pulse against G
        (every step, binned means with std, symmetry point), from a load_run() dict."""
        from labctl.plots import no_data

        data, summary = run["data"], run["attrs"].get("summary", {})
        trace_ax, step_ax = fig.subplots(1, 2)
        trace_ax.set_xlabel("pulse number")
        trace_ax.set_ylabel("G (µS)")
        trace_ax.set_title("conductance under identical pulses")
        step_ax.set_xlabel("G before the pulse (µS)")
        step_ax.set_ylabel("|ΔG| per pulse (µS)")
        step_ax.set_title("step size against conductance")
        cells, trace = trace_from_table(data.get("trace"))
        if not len(cells):
            no_data(trace_ax, "no read recorded")
            no_data(step_ax, "no read recorded")
            return
        n_cycles, n = trace.shape[1], trace.shape[3] - 1
        for cycle in range(n_cycles):
            trace_ax.axvspan(2 * n * cycle, 2 * n * cycle + n, color="tab:blue", alpha=0.06, linewidth=0)
        # x of read k of half d in cycle c; a down half's read 0 repeats the up half's last read
        x = (2 * n * np.arange(n_cycles)[:, None, None] + n * np.arange(2)[None, :, None]
             + np.arange(n + 1)[None, None, :]).ravel()
        labelled = len(cells) <= 8
        for (row, col), cell_trace in zip(cells, trace):
            trace_ax.plot(x, cell_trace.ravel() * 1e6, linewidth=0.8, label=f"({row}, {col})" if labelled else None)
        if labelled:
            trace_ax.legend(title="cell (row, col)", fontsize="small")
        g_before, dg = trace_steps(trace)
        for d, (name, color) in enumerate((("up (SET)", "tab:blue"), ("down (RESET)", "tab:red"))):
            step_ax.plot(g_before[:, :, d].ravel() * 1e6, np.abs(dg[:, :, d]).ravel() * 1e6, ".", color=color,
                         markersize=2, alpha=0.3)
            curves = data.get("steps")
            if curves is not None and len(curves):
                c = curves[curves["direction"] == (UP if d == 0 else DOWN)]
                step_ax.errorbar(c["g"] * 1e6, np.abs(c["dg_mean"]) * 1e6, yerr=c["dg_std"] * 1e6, color=color,
                                 marker="o", markersize=4, capsize=2, label=name)
        sym = summary.get("symmetry_point")
        if sym is not None:
            step_ax.axvline(sym * 1e6, color="black", linestyle="--", linewidth=1.0,
                            label=f"symmetry point {sym * 1e6:.1f} µS")
        text = [f"{label} {summary[key]:.{digits}f}" for label, key, digits in
                (("states", "n_states", 1), ("noise/signal", "noise_to_signal", 2)) if summary.get(key) is not None]
        if text:
            step_ax.text(0.02, 0.97, "\n".join(text), transform=step_ax.transAxes, va="top", fontsize="small",
                         bbox={"facecolor": "white", "edgecolor": "0.7", "alpha": 0.9})
        step_ax.legend(fontsize="small", loc="upper right")
        for ax in (trace_ax, step_ax):
            ax.grid(True, alpha=0.3)
