"""read_noise: spread of repeated reads against conductance and time since programming.

Each level is write-verified on `repeats` cells (labctl.writeverify; a loose acceptance is
enough, the level only sets where on the conductance axis a cell sits). At each of `times`
(s after the end of programming, waited with RunContext.wait: virtual time on a simulator) the
cells are read `n_reads` times back to back, each read one board transaction over their block.
The noise of a cell at a time is the sample standard deviation of its n_reads reads.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from labctl.engine import Protocol, RunContext
from labctl.live import LivePlot
from labctl.params import Parameter
from labctl.writeverify import read_cells

from .common import V_GATE, V_READ
from .programming import ACCEPTANCE, MAX_PULSES, REFINE, REPEATS, WIDTH, check_levels, check_times, program_levels


class ReadNoise(Protocol):
    name = "read_noise"
    title = "Read noise"
    live_plots = (LivePlot("reads", "k", "g", "repeated reads per cell and time",
                           group_by=("row", "col", "t")),)
    tables = {
        "reads": [("row", "i4", ""), ("col", "i4", ""), ("level", "f8", "S"), ("t", "f8", "s"), ("k", "i4", ""),
                  ("g", "f8", "S")],
    }
    parameters = (
        Parameter("levels", "floats", [20e-6, 40e-6, 60e-6, 80e-6], "S", minimum=1e-7, maximum=1e-3,
                  doc="conductance levels to program"),
        Parameter("times", "floats", [1.0, 10.0, 100.0, 1000.0], "s", minimum=0.0,
                  doc="times after programming at which to take the repeated reads (strictly increasing)"),
        Parameter("n_reads", "int", 100, "", minimum=2, maximum=100000, doc="repeated reads per cell and time"),
        Parameter("t_read", "float", 1e-6, "s", minimum=1e-7, maximum=1e-2, doc="read pulse per row"),
        replace(ACCEPTANCE, default=0.02),  # loose: the level only places the cell on the G axis
        REPEATS,
        MAX_PULSES,
        WIDTH,
        REFINE,
        V_GATE,
        V_READ,
    )

    def check(self, params: dict, config) -> None:
        check_levels(params["levels"], params["repeats"], config, "levels")
        check_times(params["times"])

    def run(self, ctx: RunContext) -> dict[str, Any]:
        """Summary: levels (S), times (s); sigma per time = mean over cells of each cell's
        std of its n_reads reads (S); per level x time: sigma_by_level (S) and g_by_level (mean
        read, S); programming success_rate."""
        p = ctx.params
        levels, times, n_reads = p["levels"], p["times"], p["n_reads"]
        result = program_levels(ctx, levels, trace=False)
        cells, level_of = result.cells, result.targets
        ctx.table("reads")
        sigma = np.empty((len(times), len(cells)))
        mean = np.empty((len(times), len(cells)))
        elapsed = 0.0
        for j, t in enumerate(times):
            ctx.progress(j, len(times), f"{n_reads} reads at t = {t:g} s")
            ctx.wait(t - elapsed)
            elapsed = t
            g = np.stack([read_cells(ctx.crossbar, cells, p["v_read"], p["v_gate"], p["t_read"])
                          for _ in range(n_reads)])  # (n_reads, cells)
            ctx.append("reads", row=np.tile(cells[:, 0], n_reads), col=np.tile(cells[:, 1], n_reads),
                       level=np.tile(level_of, n_reads), t=t, k=np.repeat(np.arange(n_reads), len(cells)),
                       g=g.ravel())
            sigma[j], mean[j] = g.std(axis=0, ddof=1), g.mean(axis=0)
        ctx.progress(len(times), len(times), "done")
        groups = [level_of == level for level in levels]
        return {
            "levels": list(levels),
            "times": list(times),
            "sigma": [float(s.mean()) for s in sigma],
            "sigma_by_level": [[float(s[m].mean()) for s in sigma] for m in groups],
            "g_by_level": [[float(g[m].mean()) for g in mean] for m in groups],
            "success_rate": float(result.success.mean()),
        }

    @staticmethod
    def plot(run: dict[str, Any], fig) -> None:
        """Read-noise sigma (nS) per cell against its mean conductance (one colour per time), and
        the mean sigma per level against time after programming (log axis)."""
        import matplotlib

        from labctl.plots import no_data

        g_ax, t_ax = fig.subplots(1, 2)
        g_ax.set_xlabel("mean conductance G (µS)")
        g_ax.set_ylabel("read noise σ (nS)")
        t_ax.set_xlabel("time after programming (s)")
        t_ax.set_ylabel("read noise σ (nS)")
        reads = run["data"].get("reads")
        if reads is None or not len(reads):
            no_data(g_ax, "no read recorded")
            no_data(t_ax, "no read recorded")
            return
        times, levels = np.unique(reads["t"]), np.unique(reads["level"])
        colors = matplotlib.colormaps["viridis"]
        stats = []  # (t, level, mean G, sigma) per cell
        for t in times:
            at = reads[reads["t"] == t]
            for row, col in {(int(r), int(c)) for r, c in zip(at["row"], at["col"])}:
                cell = at[(at["row"] == row) & (at["col"] == col)]
                if len(cell) > 1:
                    stats.append((t, cell["level"][0], cell["g"].mean(), cell["g"].std(ddof=1)))
        stats = np.array(stats).reshape(-1, 4)
        for j, t in enumerate(times):
            m = stats[:, 0] == t
            g_ax.plot(stats[m, 2] * 1e6, stats[m, 3] * 1e9, "o", markersize=4, linestyle="none",
                      color=colors(j / max(1, len(times) - 1)), label=f"t = {t:g} s")
        g_ax.legend(fontsize="small")
        g_ax.set_title("repeated reads: spread against conductance")
        for level in levels:
            per_t = [stats[(stats[:, 0] == t) & (stats[:, 1] == level), 3].mean() * 1e9 for t in times]
            t_ax.plot(times, per_t, marker="o", label=f"{level * 1e6:g} µS")
        if np.all(times > 0):
            t_ax.set_xscale("log")
        t_ax.grid(True, which="major", alpha=0.3)
        t_ax.legend(fontsize="small", title="level")
        t_ax.set_title("mean spread per level against time")
