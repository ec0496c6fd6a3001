"""iv_sweep: bipolar DC I-V loop on one cell (0 -> +v_set_max -> 0 -> v_reset_max -> 0)."""
import numpy as np

from labctl.engine import Protocol, RunContext
from labctl.live import LivePlot
from labctl.params import Parameter

from .common import COL, ROW, V_GATE, check_cell


def loop_voltages(v_set_max: float, v_reset_max: float, v_step: float) -> np.ndarray:
    def leg(a: float, b: float) -> np.ndarray:
        n = max(1, int(round(abs(b - a) / v_step)))
        return np.linspace(a, b, n + 1)[1:]

    return np.concatenate([[0.0], leg(0, v_set_max), leg(v_set_max, 0), leg(0, v_reset_max), leg(v_reset_max, 0)])


def low_field_conductance(v: np.ndarray, i: np.ndarray, mask: np.ndarray, v_max: float) -> float | None:
    """Slope I/V of the points in `mask` with 0 < |V| <= v_max (the loop's read-like region)."""
    sel = mask & (np.abs(v) > 0) & (np.abs(v) <= v_max)
    return float(np.sum(i[sel] * v[sel]) / np.sum(v[sel] ** 2)) if sel.any() else None


def switching_voltage(v: np.ndarray, i: np.ndarray, leg: np.ndarray, direction: int) -> float | None:
    """Voltage (V) of the largest conductance change I/V in `direction` (+1 jump: SET, -1 drop:
    RESET) between consecutive points of one leg of the loop (a boolean mask, |V| > 0)."""
    sel = np.flatnonzero(leg & (v != 0))
    if sel.size < 2:
        return None
    change = direction * np.diff(i[sel] / v[sel])
    k = int(np.argmax(change))
    return float(v[sel[k + 1]]) if change[k] > 0 else None


def _mean(values: list[float | None]) -> float | None:
    known = [x for x in values if x is not None]
    return float(np.mean(known)) if known else None


class IVSweep(Protocol):
    name = "iv_sweep"
    title = "DC I-V loop"
    live_plots = (LivePlot("iv", "v", "i", "I-V loop", group_by="cycle"),)
    tables = {
        "iv": [("cycle", "i4", ""), ("v", "f8", "V"), ("i", "f8", "A")],
    }
    parameters = (
        ROW,
        COL,
        Parameter("v_set_max", "float", 1.5, "V", minimum=0.0, soa="max_v_bl", doc="positive (SET) turning point"),
        Parameter("v_reset_max", "float", -1.5, "V", maximum=0.0, soa="max_v_bl",
                  doc="negative (RESET) turning point"),
        Parameter("v_step", "float", 0.02, "V", minimum=1e-3, maximum=0.5, doc="voltage step"),
        Parameter("delay", "float", 0.0, "s", minimum=0.0, maximum=1.0, doc="source delay per point"),
        Parameter("nplc", "float", 1.0, "", minimum=0.01, maximum=10.0, doc="integration time, power-line cycles"),
        Parameter("current_limit", "float", 500e-6, "A", minimum=1e-9, soa="max_current", doc="SMU compliance"),
        V_GATE,
        Parameter("cycles", "int", 1, "", minimum=1, maximum=1000, doc="number of loops"),
    )

    def check(self, params: dict, config) -> None:
        check_cell(params, config)

    def run(self, ctx: RunContext) -> dict:
        p, xbar = ctx.params, ctx.crossbar
        volts = loop_voltages(p["v_set_max"], p["v_reset_max"], p["v_step"])
        ctx.table("iv")
        g_lrs, g_hrs, v_set, v_reset = [], [], [], []
        for cycle in range(p["cycles"]):
            ctx.progress(cycle, p["cycles"], f"loop {cycle + 1}/{p['cycles']} on cell ({p['row']}, {p['col']})")
            v, i = xbar.sweep(p["row"], p["col"], volts, p["current_limit"], p["v_gate"], p["delay"], p["nplc"])
            ctx.append("iv", cycle=cycle, v=v, i=i)
            index, top, bottom = np.arange(len(v)), int(np.argmax(v)), int(np.argmin(v))
            g_lrs.append(low_field_conductance(v, i, (index > top) & (index < bottom), 0.3))  # after SET
            g_hrs.append(low_field_conductance(v, i, index > bottom, 0.3))  # after RESET
            v_set.append(switching_voltage(v, i, index <= top, +1))  # rising positive leg
            falling = (index > top) & (index <= bottom) & (v < 0)  # 0 -> v_reset_max
            v_reset.append(switching_voltage(v, i, falling, -1))
        ctx.progress(p["cycles"], p["cycles"], "done")
        lrs, hrs = _mean(g_lrs), _mean(g_hrs)
        return {"points": int(len(volts) * p["cycles"]), "g_lrs": lrs, "g_hrs": hrs,
                "on_off_ratio": lrs / hrs if lrs and hrs else None,
                "v_set": _mean(v_set), "v_reset": _mean(v_reset)}

    @staticmethod
    def plot(run: dict, fig) -> None:
        """The I-V loop, one line per cycle: current (uA) linear and |I| (A) on a log axis."""
        import matplotlib
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        from labctl.plots import no_data

        iv, params = run["data"].get("iv"), run["attrs"].get("parameters", {})
        summary = run["attrs"].get("summary", {})
        lin_ax, log_ax = fig.subplots(1, 2)
        lin_ax.set_xlabel("voltage $V_{BL} - V_{SL}$ (V)")
        lin_ax.set_ylabel("current (µA)")
        log_ax.set_xlabel("voltage $V_{BL} - V_{SL}$ (V)")
        log_ax.set_ylabel("|current| (A)")
        cell = f"cell (row {params.get('row', '?')}, col {params.get('col', '?')})"
        lin_ax.set_title(f"I-V loop, {cell}")
        log_ax.set_title("|I| on a log scale")
        if iv is None or not len(iv):
            no_data(lin_ax, "no I-V point recorded")
            no_data(log_ax, "no I-V point recorded")
            return
        cycles = np.unique(iv["cycle"])
        many = len(cycles) > 8
        cmap, norm = matplotlib.colormaps["viridis"], Normalize(cycles.min(), max(cycles.max(), cycles.min() + 1))
        for cycle in cycles:
            sel = iv["cycle"] == cycle
            v, i = iv["v"][sel], iv["i"][sel]
            color = cmap(norm(cycle)) if many else None
            lin_ax.plot(v, i * 1e6, color=color, linewidth=1.0, label=None if many else f"cycle {cycle + 1}")
            magnitude = np.abs(i)
            log_ax.plot(v, np.where(magnitude > 0, magnitude, np.nan), color=color, linewidth=1.0)
        if many:
            fig.colorbar(ScalarMappable(norm, cmap), ax=log_ax, label="cycle (0-based)")
        else:
            lin_ax.legend(fontsize="small", loc="upper left")
        limit = params.get("current_limit")
        if limit:
            log_ax.axhline(limit, color="red", linestyle=":", linewidth=1.0)
            log_ax.annotate(f"compliance {limit * 1e6:g} µA", (0.02, limit), xycoords=("axes fraction", "data"),
                            va="bottom", color="red", fontsize="small")
        log_ax.set_yscale("log")
        for ax in (lin_ax, log_ax):
            ax.axvline(0.0, color="0.6", linewidth=0.6)
            ax.grid(True, which="major", alpha=0.3)
        lin_ax.axhline(0.0, color="0.6", linewidth=0.6)
        text = [f"{name} {summary[key] * 1e6:.1f} µS" for name, key in (("LRS", "g_lrs"), ("HRS", "g_hrs"))
                if summary.get(key) is not None]
        if summary.get("on_off_ratio") is not None:
            text.append(f"on/off {summary['on_off_ratio']:.1f}")
        if text:
            lin_ax.text(0.98, 0.03, "\n".join(text), transform=lin_ax.transAxes, ha="right", va="bottom",
                        fontsize="small", bbox={"facecolor": "white", "edgecolor": "0.7", "alpha": 0.9})
