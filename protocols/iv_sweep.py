"""iv_sweep: bipolar DC I-V loop on one cell (0 -> +v_set_max -> 0 -> v_reset_max -> 0)."""
import numpy as np

from labctl.engine import Protocol, RunContext
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


def _mean(values: list[float | None]) -> float | None:
    known = [x for x in values if x is not None]
    return float(np.mean(known)) if known else None


class IVSweep(Protocol):
    name = "iv_sweep"
    title = "DC I-V loop"
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
        ctx.table("iv", [("cycle", "i4", ""), ("v", "f8", "V"), ("i", "f8", "A")])
        g_lrs, g_hrs = [], []
        for cycle in range(p["cycles"]):
            ctx.progress(cycle, p["cycles"], f"loop {cycle + 1}/{p['cycles']} on cell ({p['row']}, {p['col']})")
            v, i = xbar.sweep(p["row"], p["col"], volts, p["current_limit"], p["v_gate"], p["delay"], p["nplc"])
            ctx.append("iv", cycle=cycle, v=v, i=i)
            index, top, bottom = np.arange(len(v)), int(np.argmax(v)), int(np.argmin(v))
            g_lrs.append(low_field_conductance(v, i, (index > top) & (index < bottom), 0.3))  # after SET
            g_hrs.append(low_field_conductance(v, i, index > bottom, 0.3))  # after RESET
        ctx.progress(p["cycles"], p["cycles"], "done")
        lrs, hrs = _mean(g_lrs), _mean(g_hrs)
        return {"points": int(len(volts) * p["cycles"]), "g_lrs": lrs, "g_hrs": hrs,
                "on_off_ratio": lrs / hrs if lrs and hrs else None}
