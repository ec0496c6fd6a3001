"""read_map: the conductance of every cell, read row by row by the board at a small voltage."""
from labctl.engine import Protocol, RunContext
from labctl.params import Parameter

from .common import V_GATE, V_READ


class ReadMap(Protocol):
    name = "read_map"
    title = "Conductance map"
    parameters = (
        V_READ,
        V_GATE,
        Parameter("t_read", "float", 1e-6, "s", minimum=1e-7, maximum=1e-2, doc="read pulse per row"),
    )

    def run(self, ctx: RunContext) -> dict:
        p = ctx.params
        ctx.progress(0, 1, "reading the array")
        g_map = ctx.crossbar.read_map(p["v_read"], p["v_gate"], p["t_read"])
        ctx.save_array("g_map", g_map, "S")
        ctx.progress(1, 1, "done")
        return {"g_map": g_map.tolist(), "g_mean": float(g_map.mean()), "g_std": float(g_map.std()),
                "g_min": float(g_map.min()), "g_max": float(g_map.max())}
