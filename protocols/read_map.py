"""read_map: the conductance of every cell, read row by row by the board at a small voltage."""
import numpy as np

from labctl.engine import Protocol, RunContext
from labctl.live import LivePlot
from labctl.params import Parameter

from .common import V_GATE, V_READ


class ReadMap(Protocol):
    name = "read_map"
    title = "Conductance map"
    live_plots = (LivePlot("g_map", "column (BL/SL)", "row (WL)", "conductance map", kind="image"),)
    arrays = {"g_map": "S"}
    parameters = (
        V_READ,
        V_GATE,
        Parameter("t_read", "float", 1e-6, "s", minimum=1e-7, maximum=1e-2, doc="read pulse per row"),
    )

    def run(self, ctx: RunContext) -> dict:
        p = ctx.params
        ctx.progress(0, 1, "reading the array")
        g_map = ctx.crossbar.read_map(p["v_read"], p["v_gate"], p["t_read"])
        ctx.save_array("g_map", g_map)
        ctx.progress(1, 1, "done")
        return {"g_map": g_map.tolist(), "g_mean": float(g_map.mean()), "g_std": float(g_map.std()),
                "g_min": float(g_map.min()), "g_max": float(g_map.max())}

    @staticmethod
    def plot(run: dict, fig) -> None:
        """Heat map of the conductances (uS), rows = WL, columns = BL/SL, values written in if small."""
        from labctl.plots import cell_map, no_data

        ax = fig.subplots()
        g_map = run["data"].get("g_map")
        if g_map is None:
            no_data(ax, "no conductance map recorded")
            return
        g = np.asarray(g_map, dtype=float) * 1e6
        params = run["attrs"].get("parameters", {})
        cell_map(fig, ax, g, "conductance G (µS)", fmt="{:.1f}" if np.nanmax(np.abs(g)) < 100 else "{:.0f}")
        ax.set_title(f"{g.shape[0]} x {g.shape[1]} cells read at {params.get('v_read', float('nan')):g} V, "
                     f"gate {params.get('v_gate', float('nan')):g} V\n"
                     f"mean {np.nanmean(g):.3g} µS, std {np.nanstd(g):.3g} µS, "
                     f"min {np.nanmin(g):.3g} µS, max {np.nanmax(g):.3g} µS")
