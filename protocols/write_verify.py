"""write_verify: program cells to target conductances in closed loop; programming noise and effort.

Targets are interleaved over the array (cell k gets target k mod len(targets)), `repeats` cells
each, and programmed together by labctl.writeverify (SET/RESET amplitude by target range as
published, one pulse per cell outside its band per round). Stores per cell the outcome (table
"cells") and every verify read (table "trace"); optionally re-reads every cell after a delay.

The shared programming parameters and `program()` are reused by the retention and read-noise
protocols.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from labctl.engine import Protocol, RunContext
from labctl.live import LivePlot
from labctl.params import Parameter, ParameterError
from labctl.writeverify import WriteVerifyResult, assign_targets, write_verify

from .common import V_GATE, V_READ, WIDTH

ACCEPTANCE = Parameter("acceptance", "float", 0.002, "", minimum=1e-4, maximum=0.5,
                       doc="half-width of the acceptance band as a fraction of the target (0.002 = 0.2 %)")
REPEATS = Parameter("repeats", "int", 0, "", minimum=0,
                    doc="cells per target/level; 0 fills the array")
MAX_PULSES = Parameter("max_pulses", "int", 500, "", minimum=0, maximum=100000,
                       doc="pulses allowed per cell before it counts as failed")
REFINE = Parameter("refine", "int", 2, "", minimum=0, maximum=6,
                   doc="times a cell's pulse width halves, once per overshoot of its band (0 = fixed width)")
PROGRAMMING = (ACCEPTANCE, REPEATS, MAX_PULSES, WIDTH, REFINE, V_GATE, V_READ)

CELL_COLUMNS = [("row", "i4", ""), ("col", "i4", ""), ("target", "f8", "S"), ("g_initial", "f8", "S"),
                ("g_final", "f8", "S"), ("pulses", "i4", ""), ("success", "u1", "")]


def check_levels(levels: list[float], repeats: int, config, name: str) -> None:
    """Refuse repeated levels and more cells than the chip has."""
    if len(set(levels)) != len(levels):
        raise ParameterError(f"{name} must be distinct, got {levels}")
    cells = config.chip.rows * config.chip.cols
    if repeats > 0 and repeats * len(levels) > cells:
        raise ParameterError(f"repeats={repeats} x {len(levels)} {name} needs {repeats * len(levels)} cells; "
                             f"the chip has {cells}")
    if repeats <= 0 and cells < len(levels):
        raise ParameterError(f"{len(levels)} {name} need at least {len(levels)} cells; the chip has {cells}")


def program(ctx: RunContext, levels: list[float], trace: bool = True) -> WriteVerifyResult:
    """Write-verify `repeats` cells per level with the run's programming parameters; stores
    table "cells" (and "trace": cell index into "cells", pulses so far, g) and returns the result."""
    p = ctx.params
    cells, targets = assign_targets(ctx.crossbar.shape, levels, p["repeats"])
    on_read = None
    if trace:
        ctx.table("trace", [("cell", "i4", ""), ("pulse", "i4", ""), ("g", "f8", "S")])

        def on_read(index: np.ndarray, pulses: np.ndarray, g: np.ndarray) -> None:
            ctx.append("trace", cell=index, pulse=pulses, g=g)

    result = write_verify(ctx.crossbar, cells, targets, p["acceptance"], p["max_pulses"], p["width"],
                          p["v_gate"], p["v_read"], checkpoint=ctx.progress, refine=p["refine"], on_read=on_read)
    ctx.table("cells", CELL_COLUMNS)
    ctx.append("cells", row=cells[:, 0], col=cells[:, 1], target=targets, g_initial=result.g_initial,
               g_final=result.g, pulses=result.pulses, success=result.success.astype(np.uint8))
    return result


def sample_std(x: np.ndarray) -> float | None:
    """Sample standard deviation (ddof 1); None for fewer than two values."""
    return float(np.std(x, ddof=1)) if x.size > 1 else None


class WriteVerify(Protocol):
    name = "write_verify"
    title = "Write-verify programming"
    live_plots = (LivePlot("trace", "pulse", "g", "write-verify: G against pulses", "", "S", group_by="cell"),)
    parameters = (
        Parameter("targets", "floats", [20e-6, 50e-6, 80e-6], "S", minimum=1e-7, maximum=1e-3,
                  doc="target conductances; SET/RESET amplitudes follow the published table by range"),
        *PROGRAMMING,
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
        result = program(ctx, p["targets"])
        summary = _summary(p["targets"], result.targets, result.g, result.pulses, result.success)
        if p["reread_after"] > 0:
            ctx.wait(p["reread_after"])
            g = ctx.crossbar.read_map(p["v_read"], p["v_gate"])[result.cells[:, 0], result.cells[:, 1]]
            ctx.table("reread", [("row", "i4", ""), ("col", "i4", ""), ("target", "f8", "S"),
                                 ("t", "f8", "s"), ("g", "f8", "S")])
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
