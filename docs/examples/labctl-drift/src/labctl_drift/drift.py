"""drift: one cell's conductance read again and again while time passes."""
from __future__ import annotations

from typing import Any

import numpy as np

from labctl.engine import Protocol, RunContext
from labctl.live import LivePlot
from labctl.params import Parameter, ParameterError


class Drift(Protocol):
    name = "drift"
    title = "Conductance drift of one cell"
    parameters = (
        Parameter("row", "int", 0, "", minimum=0, doc="word line of the cell"),
        Parameter("col", "int", 0, "", minimum=0, doc="bit/source-line pair of the cell"),
        Parameter("reads", "int", 20, "", minimum=2, maximum=100000, doc="reads in all"),
        Parameter("interval", "float", 60.0, "s", minimum=0.0, doc="time between two reads"),
        Parameter("v_read", "float", 0.2, "V", minimum=0.01, maximum=1.0, soa="max_v_bl", doc="read voltage"),
        Parameter("v_gate", "float", 1.2, "V", minimum=0.0, soa="max_v_wl", doc="word-line gate voltage"),
    )
    tables = {"reads": [("t", "f8", "s"), ("g", "f8", "S")]}
    live_plots = (LivePlot("reads", "t", "g", "conductance against time"),)

    def check(self, params: dict, config) -> None:
        if params["row"] >= config.chip.rows or params["col"] >= config.chip.cols:
            raise ParameterError(f"cell ({params['row']}, {params['col']}) is outside the "
                                 f"{config.chip.rows}x{config.chip.cols} chip")

    def run(self, ctx: RunContext) -> dict[str, Any]:
        p, xbar = ctx.params, ctx.crossbar
        ctx.table("reads")
        g = np.empty(p["reads"])
        for k in range(p["reads"]):
            if k:
                ctx.wait(p["interval"])
            g[k] = xbar.read_cell(p["row"], p["col"], p["v_read"], p["v_gate"])
            ctx.append("reads", t=k * p["interval"], g=g[k])
            ctx.progress(k + 1, p["reads"], f"read {k + 1}/{p['reads']}")
        return {"g_first": float(g[0]), "g_last": float(g[-1]), "drift": float((g[-1] - g[0]) / g[0])}

    @staticmethod
    def plot(run: dict[str, Any], fig) -> None:
        ax = fig.subplots()
        reads = run["data"]["reads"]
        ax.plot(reads["t"], reads["g"] * 1e6, "o-")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("G (µS)")
