"""variability_map: device-to-device maps of the switching window and of the step size.

For every selected cell (default: the whole array):

1. full SET (a burst of `full_pulses` pulses of v_set, `full_width`), read: G_max;
2. full RESET (the same with v_reset), read: G_min;
3. single SET pulses of `width`, a read after each, until the cell reaches its mid-window
   (G_min + G_max) / 2 (at most `max_approach` pulses; a cell that does not get there is
   still measured where it is and counted in `not_reached`);
4. `n_steps` single SET pulses with a read after each: step = mean dG per pulse there.

The cells are pulsed one after the other and read together in one board read per step.

Stored: arrays g_max_map, g_min_map, window_map (= G_max - G_min), step_map (S) and
approach_pulses_map (pulses of step 3) of the chip's shape, NaN / -1 outside the selected block;
table "cells" (row, col, g_max, g_min, approach_pulses, reached) and table "steps"
(row, col, step_index, g_before, dg) with every measured step.
"""
from __future__ import annotations

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


def spread(values: np.ndarray) -> tuple[float | None, float | None]:
    """(mean, coefficient of variation = sample std / |mean|) of the finite values; None when
    undefined (no value; cv also for a single value or a zero mean)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not values.size:
        return None, None
    mean = float(values.mean())
    cv = float(values.std(ddof=1) / abs(mean)) if values.size > 1 and mean != 0 else None
    return mean, cv


class VariabilityMap(Protocol):
    name = "variability_map"
    title = "Device-to-device variability map"
    live_plots = (
        LivePlot("steps", "step_index", "dg", "single-pulse steps at mid-window", group_by=("row", "col")),
        LivePlot("window_map", "column (BL/SL)", "row (WL)", "switching window G_max - G_min", kind="image"),
        LivePlot("step_map", "column (BL/SL)", "row (WL)", "mean step at mid-window", kind="image"),
    )
    arrays = {"g_max_map": "S", "g_min_map": "S", "window_map": "S", "step_map": "S", "approach_pulses_map": ""}
    tables = {
        "steps": [("row", "i4", ""), ("col", "i4", ""), ("step_index", "i4", ""), ("g_before", "f8", "S"),
                  ("dg", "f8", "S")],
        "cells": [("row", "i4", ""), ("col", "i4", ""), ("g_max", "f8", "S"), ("g_min", "f8", "S"),
                  ("approach_pulses", "i4", ""), ("reached", "u1", "")],
    }
    parameters = (
        *cell_block_parameters(True),
        V_SET,
        V_RESET,
        Parameter("full_width", "float", 2e-6, "s", minimum=1e-9, soa="max_pulse_width",
                  doc="pulse width of the full SET / full RESET"),
        Parameter("full_pulses", "int", 5, "", minimum=1, maximum=100000, soa="max_pulses",
                  doc="pulses in the full SET / full RESET burst"),
        WIDTH,
        Parameter("n_steps", "int", 5, "", minimum=1, maximum=10000, soa="max_pulses",
                  doc="single-pulse steps measured at mid-window"),
        Parameter("max_approach", "int", 200, "", minimum=0, maximum=100000,
                  doc="single SET pulses allowed to bring a cell from G_min to mid-window"),
        V_GATE,
        V_READ,
    )

    def check(self, params: dict, config) -> None:
        check_block(params, config)

    def run(self, ctx: RunContext) -> dict[str, Any]:
        """Summary (SI): window_mean (S) and window_cv (1), step_mean (S) and step_cv (1),
        g_max_mean / g_max_cv, g_min_mean / g_min_cv, cells, not_reached (cells that did not
        reach mid-window). cv = sample std / mean over the cells, None for a single cell. A
        cell's step is the mean of n_steps noisy steps, so step_cv holds the device-to-device
        spread plus about (cycle-to-cycle noise) / sqrt(n_steps): raise n_steps to isolate it."""
        p, xbar = ctx.params, ctx.crossbar
        block = selected_block(p, xbar.shape)
        rows, cols = block_cells(block)
        v_read, v_gate = p["v_read"], p["v_gate"]
        total = 2 + p["max_approach"] + p["n_steps"]
        ctx.progress(0, total, "full SET")
        burst_each_cell(xbar, rows, cols, p["v_set"], p["full_width"], p["full_pulses"], v_gate)
        g_max = read_block(xbar, block, v_read, v_gate)
        ctx.progress(1, total, "full RESET")
        burst_each_cell(xbar, rows, cols, p["v_reset"], p["full_width"], p["full_pulses"], v_gate)
        g_min = read_block(xbar, block, v_read, v_gate)
        mid = (g_max + g_min) / 2
        g, approach = g_min, np.zeros(len(rows), dtype=int)
        for k in range(p["max_approach"]):
            below = g < mid
            if not below.any():
                break
            ctx.progress(2 + k, total, f"to mid-window: pulse {k + 1}, {int(below.sum())} cells below")
            burst_each_cell(xbar, rows, cols, p["v_set"], p["width"], 1, v_gate, which=below)
            approach += below
            g = read_block(xbar, block, v_read, v_gate)
        reached = g >= mid
        ctx.table("steps")
        steps = np.empty((p["n_steps"], len(rows)))
        for k in range(p["n_steps"]):
            ctx.progress(2 + p["max_approach"] + k, total, f"step {k + 1}/{p['n_steps']}")
            burst_each_cell(xbar, rows, cols, p["v_set"], p["width"], 1, v_gate)
            g_after = read_block(xbar, block, v_read, v_gate)
            steps[k] = g_after - g
            ctx.append("steps", row=rows, col=cols, step_index=k, g_before=g, dg=steps[k])
            g = g_after
        ctx.progress(total, total, "done")
        step = steps.mean(axis=0)
        ctx.table("cells")
        ctx.append("cells", row=rows, col=cols, g_max=g_max, g_min=g_min, approach_pulses=approach,
                   reached=reached.astype(np.uint8))
        shape = xbar.shape
        for name, values in (("g_max_map", g_max), ("g_min_map", g_min), ("window_map", g_max - g_min),
                             ("step_map", step)):
            full = np.full(shape, np.nan)
            full[rows, cols] = values
            ctx.save_array(name, full)
        pulses = np.full(shape, -1, dtype=np.int32)
        pulses[rows, cols] = approach
        ctx.save_array("approach_pulses_map", pulses)
        summary: dict[str, Any] = {"cells": int(len(rows)), "not_reached": int((~reached).sum())}
        for key, values in (("window", g_max - g_min), ("step", step), ("g_max", g_max), ("g_min", g_min)):
            summary[f"{key}_mean"], summary[f"{key}_cv"] = spread(values)
        return summary

    @staticmethod
    def plot(run: dict, fig) -> None:
        """Maps of G_max, G_min, the window and the mid-window step (µS), from a load_run() dict."""
        from labctl.plots import cell_map, no_data

        data = run["data"]
        axes = fig.subplots(2, 2).ravel()
        panels = (("g_max_map", "G_max (µS)", "{:.0f}"), ("g_min_map", "G_min (µS)", "{:.1f}"),
                  ("window_map", "window G_max - G_min (µS)", "{:.0f}"),
                  ("step_map", "step at mid-window (µS)", "{:.2f}"))
        for ax, (name, label, fmt) in zip(axes, panels):
            ax.set_title(label.split(" (")[0])
            if name not in data:
                no_data(ax, "not measured")
                continue
            cell_map(fig, ax, np.asarray(data[name], dtype=float) * 1e6, label, fmt=fmt)
