"""write_verify: program cells to target conductances in closed loop; programming noise and effort.

Targets are interleaved over the array (cell k gets target k mod len(targets)), `repeats` cells
each, and programmed together by labctl.writeverify (SET/RESET amplitude by target range as
published, one pulse per cell outside its band per round). Stores per cell the outcome (table
"cells") and every verify read (table "trace"); optionally re-reads every cell after a delay.

The programming parameters and `program_levels` it shares with the retention and read-noise
protocols live in protocols/programming.py.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from labctl.engine import Protocol, RunContext
from labctl.live import LivePlot
from labctl.params import Parameter

from .programming import CELL_COLUMNS, LEVEL_PROGRAMMING, TRACE_COLUMNS, check_levels, program_levels, sample_std


class WriteVerify(Protocol):
    name = "write_verify"
    title = "Write-verify programming"
    live_plots = (LivePlot("trace", "pulse", "g", "write-verify: G against pulses", group_by="cell"),)
    tables = {
        "trace": TRACE_COLUMNS,
        "cells": CELL_COLUMNS,
        "reread": [("row", "i4", ""), ("col", "i4", ""), ("target", "f8", "S"), ("t", "f8", "s"), ("g", "f8", "S")],
    }
    parameters = (
        Parameter("targets", "floats", [20e-6, 50e-6, 80e-6], "S", minimum=1e-7, maximum=1e-3,
                  doc="target conductances; SET/RESET amplitudes follow the published table by range"),
        *LEVEL_PROGRAMMING,
        Parameter("reread_after", "float", 0.0, "s", minimum=0.0,
                  doc="if > 0, wait this long after programming and read every cell again"),
    )

    def check(self, params: dict, config) -> None:
        check_levels(params["targets"], params["repeats"], config, "targets")

    def run(self, ctx: RunContext) -> dict[str, Any]:
        """Summary: targets (S); per target, in the order of `targets`: sigma (sample std of
        g_final - target, S; None with one cell), error_mean (mean g_final - target, S),
        pulses_mean, success_by_target; overall: success_rate, pulses_mean_all, pulses_max,
        cells; with reread_after > 0 also sigma_reread / error_mean_reread (S) per target."""
        p = ctx.params
        result = program_levels(ctx, p["targets"])
        summary = _summary(p["targets"], result.targets, result.g, result.pulses, result.success)
        if p["reread_after"] > 0:
            ctx.wait(p["reread_after"])
            g = ctx.crossbar.read_map(p["v_read"], p["v_gate"])[result.cells[:, 0], result.cells[:, 1]]
            ctx.table("reread")
            ctx.append("reread", row=result.cells[:, 0], col=result.cells[:, 1], target=result.targets,
                       t=p["reread_after"], g=g)
            groups = [result.targets == t for t in p["targets"]]
            summary["sigma_reread"] = [sample_std(g[m] - result.targets[m]) for m in groups]
            summary["error_mean_reread"] = [float(np.mean(g[m] - result.targets[m])) for m in groups]
        ctx.progress(1, 1, "done")
        return summary

    @staticmethod
    def plot(run: dict[str, Any], fig) -> None:
        """Histogram of g_final - target (nS) per target, and of the pulses each cell used."""
        from labctl.plots import no_data

        err_ax, pulse_ax = fig.subplots(1, 2)
        err_ax.set_xlabel("G_final - target (nS)")
        err_ax.set_ylabel("cells")
        pulse_ax.set_xlabel("pulses used")
        pulse_ax.set_ylabel("cells")
        cells = run["data"].get("cells")
        if cells is None or not len(cells):
            no_data(err_ax, "no cell programmed")
            no_data(pulse_ax, "no cell programmed")
            return
        acceptance = float(run["attrs"].get("parameters", {}).get("acceptance", float("nan")))
        error = (cells["g_final"] - cells["target"]) * 1e9
        edges = np.histogram_bin_edges(error, bins=int(np.clip(len(cells) // 3, 5, 40)))
        for target in np.unique(cells["target"]):
            m = cells["target"] == target
            err_ax.hist(error[m], bins=edges, histtype="step", linewidth=1.5,
                        label=f"{target * 1e6:g} µS: σ {np.std(error[m], ddof=1 if m.sum() > 1 else 0):.0f} nS")
        err_ax.legend(fontsize="small")
        err_ax.set_title(f"programming error, acceptance ±{acceptance * 100:g} %")
        success = cells["success"].astype(bool)
        top = int(cells["pulses"].max())
        bins = np.linspace(0, top + 1, min(top + 1, 40) + 1)
        pulse_ax.hist([cells["pulses"][success], cells["pulses"][~success]], bins=bins, stacked=True,
                      color=["tab:blue", "tab:red"], label=["in band", "failed"])
        pulse_ax.legend(fontsize="small")
        pulse_ax.set_title(f"mean {cells['pulses'].mean():.1f} pulses, {success.mean() * 100:.0f} % in band")


def _summary(levels: list[float], targets: np.ndarray, g: np.ndarray, pulses: np.ndarray,
             success: np.ndarray) -> dict[str, Any]:
    groups = [targets == t for t in levels]
    return {
        "targets": list(levels),
        "cells": int(targets.size),
        "sigma": [sample_std(g[m] - targets[m]) for m in groups],
        "error_mean": [float(np.mean(g[m] - targets[m])) for m in groups],
        "pulses_mean": [float(pulses[m].mean()) for m in groups],
        "success_by_target": [float(success[m].mean()) for m in groups],
        "success_rate": float(success.mean()),
        "pulses_mean_all": float(pulses.mean()),
        "pulses_max": int(pulses.max()),
    }
