"""forming: electroform every cell with a voltage ramp under gate-limited current.

Row by row: one board read of the row tells which cells are already formed (they are skipped, as
re-forming a formed cell would only stress it). Each other cell is routed to the SMU once for a
hardware-timed ramp on the BL, with the WL gate setting the selector's current limit, that ends at
the first point where the SMU reaches `i_stop` (the forming event), and a verify read by the SMU
on the same routing decides whether the cell formed. The SMU keeps the ramp between cells (it is
only re-armed). Rows are stored in blocks, at the end of each array row and at least every second.
"""
import numpy as np

from labctl.engine import Protocol, RunContext
from labctl.live import LivePlot
from labctl.params import Parameter
from labctl.store import TableBuffer

from .common import V_GATE, V_READ

STATUS_FORMED, STATUS_ALREADY, STATUS_FAILED = b"formed", b"already_formed", b"not_formed"


class Forming(Protocol):
    name = "forming"
    title = "Electroforming"
    live_plots = (
        LivePlot("ramp", "v", "i", "forming ramps: I vs V per cell", group_by=("row", "col")),
        LivePlot("v_form_map", "column (BL/SL)", "row (WL)", "forming voltage per cell", kind="image"),
    )
    arrays = {"formed_map": "", "v_form_map": "V"}
    tables = {
        "ramp": [("row", "i4", ""), ("col", "i4", ""), ("v", "f8", "V"), ("i", "f8", "A")],
        "cells": [("row", "i4", ""), ("col", "i4", ""), ("status", "S16", ""), ("v_form", "f8", "V"),
                  ("g_after", "f8", "S")],
    }
    parameters = (
        Parameter("v_start", "float", 0.0, "V", minimum=0.0, soa="max_v_bl", doc="ramp start"),
        Parameter("v_stop", "float", 4.0, "V", minimum=0.1, soa="max_v_bl", doc="ramp end (highest voltage)"),
        Parameter("v_step", "float", 0.01, "V", minimum=1e-3, maximum=0.5, doc="ramp step"),
        Parameter("delay", "float", 0.0, "s", minimum=0.0, maximum=1.0, doc="source delay per point"),
        Parameter("i_stop", "float", 100e-6, "A", minimum=1e-6, soa="max_current",
                  doc="SMU compliance that ends the ramp at the forming event"),
        V_GATE,
        V_READ,
        Parameter("g_formed_min", "float", 2e-6, "S", minimum=0.0,
                  doc="a cell reading above this conductance counts as formed"),
    )

    def run(self, ctx: RunContext) -> dict:
        p, xbar = ctx.params, ctx.crossbar
        rows, cols = xbar.shape
        ramp = np.arange(p["v_start"], p["v_stop"] + p["v_step"] / 2, p["v_step"])
        ctx.table("ramp")
        ctx.table("cells")
        formed = np.zeros((rows, cols), dtype=bool)
        v_form = np.full((rows, cols), np.nan)
        n_already = 0
        with TableBuffer(ctx.append) as store:
            for r in range(rows):
                g_row = xbar.read_map(p["v_read"], p["v_gate"], block=(r, 0, 1, cols))[0]
                for c in range(cols):
                    ctx.progress(r * cols + c, rows * cols, f"forming cell ({r}, {c})")
                    g = float(g_row[c])
                    if g >= p["g_formed_min"]:
                        status, n_already = STATUS_ALREADY, n_already + 1
                    else:
                        with xbar.cell(r, c, p["v_gate"]) as cell:
                            v, i = cell.sweep(ramp, p["i_stop"], p["delay"], stop_at_limit=True)
                            g = cell.read(p["v_read"])
                        store.add("ramp", row=r, col=c, v=v, i=i)
                        tripped = len(i) > 0 and abs(i[-1]) >= 0.99 * p["i_stop"]
                        status = STATUS_FORMED if g >= p["g_formed_min"] else STATUS_FAILED
                        if status == STATUS_FORMED and tripped:
                            v_form[r, c] = ramp[len(i) - 1]  # programmed level at the trip point
                    formed[r, c] = status != STATUS_FAILED
                    store.add("cells", row=r, col=c, status=status, v_form=v_form[r, c], g_after=g)
                store.flush()  # one block per table and array row
        ctx.progress(rows * cols, rows * cols, "done")
        ctx.save_array("formed_map", formed.astype(np.uint8))
        ctx.save_array("v_form_map", v_form)
        new = v_form[~np.isnan(v_form)]
        return {"yield": float(formed.mean()), "cells": rows * cols, "formed": int(formed.sum()),
                "formed_now": int(new.size), "already_formed": n_already,
                "v_form_mean": float(new.mean()) if new.size else None,
                "v_form_std": float(new.std(ddof=1)) if new.size > 1 else None}

    @staticmethod
    def plot(run: dict, fig) -> None:
        """Histogram of the forming voltages of the cells formed in this run, and their map."""
        from labctl.plots import cell_map, no_data

        data, params = run["data"], run["attrs"].get("parameters", {})
        cells = data.get("cells")
        chip = run["attrs"].get("station", {}).get("chip", {})
        if "v_form_map" in data:
            v_form = np.asarray(data["v_form_map"], dtype=float)
        elif cells is not None and len(cells):  # a run that stopped before its maps were saved
            shape = (chip.get("rows") or int(cells["row"].max()) + 1,
                     chip.get("cols") or int(cells["col"].max()) + 1)
            v_form = np.full(shape, np.nan)
            v_form[cells["row"], cells["col"]] = cells["v_form"]
        else:
            v_form = None
        hist_ax, map_ax = fig.subplots(1, 2, width_ratios=[1.0, 1.25])
        new = v_form[np.isfinite(v_form)] if v_form is not None else np.array([])
        hist_ax.set_xlabel(r"forming voltage $V_\mathrm{form}$ (V)")
        hist_ax.set_ylabel("cells")
        if new.size:
            step = float(params.get("v_step", 0.01))  # no finer than the ramp's resolution
            width = max(step, float(np.ptp(new)) / max(1.0, 2.0 * np.cbrt(new.size)))
            bins = np.arange(new.min() - width / 2, new.max() + width, width)
            hist_ax.hist(new, bins=bins, color="tab:blue", edgecolor="white")
            mean = float(new.mean())
            spread = f", std {1e3 * new.std(ddof=1):.0f} mV" if new.size > 1 else ""
            hist_ax.axvline(mean, color="black", linestyle="--", label=f"mean {mean:.3f} V{spread}")
            hist_ax.legend(loc="upper left", fontsize="small")
            hist_ax.yaxis.get_major_locator().set_params(integer=True)
        else:
            no_data(hist_ax, "no cell formed in this run")
        hist_ax.set_title(f"{new.size} cells formed in this run")
        if v_form is None:
            no_data(map_ax, "no cell recorded")
            return
        cell_map(fig, map_ax, v_form, r"$V_\mathrm{form}$ (V)", cmap="plasma", fmt="{:.2f}")
        title = "forming voltage per cell"
        if cells is not None and len(cells):
            failed = cells[cells["status"] == STATUS_FAILED]
            already = cells[cells["status"] == STATUS_ALREADY]
            if len(failed):
                map_ax.plot(failed["col"], failed["row"], "x", color="red", markersize=8, linestyle="none",
                            label="not formed")
                map_ax.legend(loc="upper right", bbox_to_anchor=(1.0, -0.12), fontsize="small", frameon=False)
            title += f"\n{len(cells) - len(failed)}/{len(cells)} formed" + \
                (f", grey: {len(already)} already formed before" if len(already) else "")
        map_ax.set_title(title)
