"""endurance: full SET/RESET cycling, the switching window read at log-spaced cycle counts.

One cycle gives every selected cell a SET burst (`pulses_per_half` pulses of v_set, `width`)
then a RESET burst (v_reset). The window is read only at the logged cycles (about
`points_per_decade` per decade from cycle 1 to `cycles`, both included): G_on after the cycle's
SET half and G_off after its RESET half, all selected cells in one board read each.

The default half-cycle is a train of 5 pulses of 2 µs, enough to switch the full window (the
~22-state 100 ns pulses of pulse_response would need ~50 per half); a train lands near the
window's bound more reproducibly than one long pulse. Set width and pulses_per_half to taste.

Stored: table "window" (row, col, cycle, g_on, g_off).
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
    block_cells,
    burst_each_cell,
    cell_block_parameters,
    check_block,
    read_block,
    selected_block,
)


def logged_cycles(cycles: int, points_per_decade: int) -> np.ndarray:
    """Log-spaced cycle counts from 1 to `cycles` (both included), distinct integers."""
    if cycles <= 1:
        return np.array([1])
    n = int(np.ceil(np.log10(cycles) * points_per_decade)) + 1
    return np.unique(np.round(np.logspace(0.0, np.log10(cycles), n)).astype(int))


class Endurance(Protocol):
    name = "endurance"
    title = "Endurance (SET/RESET cycling)"
    live_plots = (
        LivePlot("window", "cycle", "g_on", "G after SET", group_by=("row", "col"), log_x=True),
        LivePlot("window", "cycle", "g_off", "G after RESET", group_by=("row", "col"), log_x=True),
    )
    tables = {
        "window": [("row", "i4", ""), ("col", "i4", ""), ("cycle", "i8", ""), ("g_on", "f8", "S"),
                   ("g_off", "f8", "S")],
    }
    parameters = (
        *cell_block_parameters(False),
        Parameter("cycles", "int", 1000, "", minimum=1, maximum=10**9, doc="SET/RESET cycles in total"),
        Parameter("points_per_decade", "int", 5, "", minimum=1, maximum=1000,
                  doc="logged (read) cycle counts per decade of cycles"),
        V_SET,
        V_RESET,
        Parameter("width", "float", 2e-6, "s", minimum=1e-9, soa="max_pulse_width",
                  doc="width of each SET/RESET pulse (with pulses_per_half: enough to switch the full window)"),
        Parameter("pulses_per_half", "int", 5, "", minimum=1, maximum=100000, soa="max_pulses",
                  doc="pulses in each SET and each RESET burst"),
        V_GATE,
        V_READ,
    )

    def check(self, params: dict, config) -> None:
        check_block(params, config)

    def run(self, ctx: RunContext) -> dict[str, Any]:
        """Summary (SI), lists over the logged cycles: cycles, window (mean over cells of
        G_on - G_off, S), g_on, g_off (means, S), on_off_ratio (mean over cells of G_on / G_off);
        on_off_ratio_first / on_off_ratio_last (first and last logged cycle), cells."""
        p, xbar = ctx.params, ctx.crossbar
        block = selected_block(p, xbar.shape)
        rows, cols = block_cells(block)
        logged = logged_cycles(p["cycles"], p["points_per_decade"])
        ctx.table("window")
        g_on = np.full((len(logged), len(rows)), np.nan)
        g_off = np.full_like(g_on, np.nan)
        k = 0
        for cycle in range(1, p["cycles"] + 1):
            ctx.progress(cycle - 1, p["cycles"], f"cycle {cycle}/{p['cycles']}")
            log_now = k < len(logged) and cycle == logged[k]
            burst_each_cell(xbar, rows, cols, p["v_set"], p["width"], p["pulses_per_half"], p["v_gate"])
            if log_now:
                g_on[k] = read_block(xbar, block, p["v_read"], p["v_gate"])
            burst_each_cell(xbar, rows, cols, p["v_reset"], p["width"], p["pulses_per_half"], p["v_gate"])
            if log_now:
                g_off[k] = read_block(xbar, block, p["v_read"], p["v_gate"])
                ctx.append("window", row=rows, col=cols, cycle=cycle, g_on=g_on[k], g_off=g_off[k])
                k += 1
        ctx.progress(p["cycles"], p["cycles"], "done")
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(g_off > 0, g_on / g_off, np.nan).mean(axis=1)
        ratio_list = [float(r) if np.isfinite(r) else None for r in ratio]
        return {"cycles": [int(c) for c in logged],
                "window": [float(w) for w in (g_on - g_off).mean(axis=1)],
                "g_on": [float(g) for g in g_on.mean(axis=1)],
                "g_off": [float(g) for g in g_off.mean(axis=1)],
                "on_off_ratio": ratio_list,
                "on_off_ratio_first": ratio_list[0], "on_off_ratio_last": ratio_list[-1],
                "cells": int(len(rows))}

    @staticmethod
    def plot(run: dict, fig) -> None:
        """G_on and G_off (every cell thin, mean thick) and the window against cycle count (log x),
        from a load_run() dict."""
        from labctl.plots import no_data

        table = run["data"].get("window")
        g_ax, w_ax = fig.subplots(1, 2)
        for ax in (g_ax, w_ax):
            ax.set_xlabel("cycle")
            ax.set_xscale("log")
            ax.grid(True, which="both", alpha=0.3)
        g_ax.set_ylabel("G (µS)")
        g_ax.set_title("G after SET (on) and after RESET (off)")
        w_ax.set_ylabel("window G_on - G_off (µS)")
        w_ax.set_title("switching window")
        if table is None or not len(table):
            no_data(g_ax, "no cycle logged")
            no_data(w_ax, "no cycle logged")
            return
        cells, cell = np.unique(np.stack([table["row"], table["col"]], axis=1), axis=0, return_inverse=True)
        cycles, at = np.unique(table["cycle"], return_inverse=True)
        shape = (len(cycles), len(cells))
        on, off = np.full(shape, np.nan), np.full(shape, np.nan)
        on[at.ravel(), cell.ravel()] = table["g_on"]
        off[at.ravel(), cell.ravel()] = table["g_off"]
        g_ax.plot(cycles, on * 1e6, color="tab:red", linewidth=0.5, alpha=0.4)
        g_ax.plot(cycles, off * 1e6, color="tab:blue", linewidth=0.5, alpha=0.4)
        g_ax.plot(cycles, np.nanmean(on, axis=1) * 1e6, "o-", color="tab:red", label="G_on (mean)")
        g_ax.plot(cycles, np.nanmean(off, axis=1) * 1e6, "o-", color="tab:blue", label="G_off (mean)")
        g_ax.legend(fontsize="small")
        window = (on - off) * 1e6
        w_ax.plot(cycles, window, color="0.5", linewidth=0.5, alpha=0.5)
        w_ax.plot(cycles, np.nanmean(window, axis=1), "o-", color="black", label=f"mean of {len(cells)} cells")
        w_ax.set_ylim(bottom=min(0.0, float(np.nanmin(window))))
        w_ax.legend(fontsize="small")
