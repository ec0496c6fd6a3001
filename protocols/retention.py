"""retention: program conductance levels, then follow them on a log-time schedule (relaxation).

Each level is write-verified on `repeats` cells (labctl.writeverify); time t = 0 is the end of
programming, and the programmed conductance G(0) of a cell is its last verify read. The array is
then read at each of `times` (s after programming), waiting with RunContext.wait in between: on a
simulated station that is virtual time, so a 10-year schedule takes seconds; on a bench it is
real time. Reads take microseconds per row and are not counted in t.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from labctl.engine import Protocol, RunContext
from labctl.live import LivePlot
from labctl.params import Parameter
from labctl.writeverify import read_cells

from .programming import LEVEL_PROGRAMMING, TEN_YEARS, check_levels, check_times, program_levels, sample_std

DEFAULT_TIMES = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, TEN_YEARS]


class Retention(Protocol):
    name = "retention"
    title = "Retention / relaxation"
    live_plots = (LivePlot("reads", "t", "g", "retention: G after programming",
                           group_by=("row", "col"), log_x=True),)
    tables = {
        "reads": [("row", "i4", ""), ("col", "i4", ""), ("level", "f8", "S"), ("t", "f8", "s"), ("g", "f8", "S")],
    }
    parameters = (
        Parameter("levels", "floats", [20e-6, 40e-6, 60e-6, 80e-6], "S", minimum=1e-7, maximum=1e-3,
                  doc="conductance levels to program"),
        Parameter("times", "floats", DEFAULT_TIMES, "s", minimum=0.0,
                  doc="read times after programming (strictly increasing; default 1 s to 10 years)"),
        *LEVEL_PROGRAMMING,
    )

    def check(self, params: dict, config) -> None:
        check_levels(params["levels"], params["repeats"], config, "levels")
        check_times(params["times"])

    def run(self, ctx: RunContext) -> dict[str, Any]:
        """Summary: levels, times (s); per time, over all cells: shift_mean and shift_std of
        G(t) - G(0) (S; std is the sample std, None with one cell); per level x time:
        shift_mean_by_level, shift_std_by_level (S); g_prog_mean per level (S); programming
        success_rate and pulses_mean_all."""
        p = ctx.params
        levels, times = p["levels"], p["times"]
        result = program_levels(ctx, levels, trace=False)
        cells, g0 = result.cells, result.g
        ctx.table("reads")
        shifts = np.empty((len(times), len(cells)))
        elapsed = 0.0
        for k, t in enumerate(times):
            ctx.progress(k, len(times), f"waiting until t = {t:g} s")
            ctx.wait(t - elapsed)
            elapsed = t
            g = read_cells(ctx.crossbar, cells, p["v_read"], p["v_gate"])
            ctx.append("reads", row=cells[:, 0], col=cells[:, 1], level=result.targets, t=t, g=g)
            shifts[k] = g - g0
        ctx.progress(len(times), len(times), "done")
        groups = [result.targets == level for level in levels]
        return {
            "levels": list(levels),
            "times": list(times),
            "shift_mean": [float(s.mean()) for s in shifts],
            "shift_std": [sample_std(s) for s in shifts],
            "shift_mean_by_level": [[float(s[m].mean()) for s in shifts] for m in groups],
            "shift_std_by_level": [[sample_std(s[m]) for s in shifts] for m in groups],
            "g_prog_mean": [float(g0[m].mean()) for m in groups],
            "success_rate": float(result.success.mean()),
            "pulses_mean_all": float(result.pulses.mean()),
        }

    @staticmethod
    def plot(run: dict[str, Any], fig) -> None:
        """G (µS) of every cell against time after programming (log axis), one colour per level,
        thin lines per cell and the level mean in bold."""
        import matplotlib

        from labctl.plots import no_data

        ax = fig.subplots()
        ax.set_xlabel("time after programming (s)")
        ax.set_ylabel("conductance G (µS)")
        reads = run["data"].get("reads")
        if reads is None or not len(reads[reads["t"] > 0]):
            no_data(ax, "no read recorded")
            return
        reads = reads[reads["t"] > 0]
        colors = matplotlib.colormaps["tab10"]
        for k, level in enumerate(np.unique(reads["level"])):
            at = reads[reads["level"] == level]
            for row, col in {(int(r), int(c)) for r, c in zip(at["row"], at["col"])}:
                cell = at[(at["row"] == row) & (at["col"] == col)]
                ax.plot(cell["t"], cell["g"] * 1e6, color=colors(k % 10), linewidth=0.5, alpha=0.4)
            times = np.unique(at["t"])
            mean = [at["g"][at["t"] == t].mean() * 1e6 for t in times]
            ax.plot(times, mean, color=colors(k % 10), linewidth=2.0, marker="o", label=f"{level * 1e6:g} µS")
        ax.set_xscale("log")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize="small", title="level")
        ax.set_title("retention: conductance relaxation after write-verify")
