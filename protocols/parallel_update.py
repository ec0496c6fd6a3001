"""parallel_update: rank-1 updates by coincident stochastic pulse trains (Gokmen & Vlasov 2016).

Setup. The block (`rows` x `cols` at (0, 0), 0 = the whole chip) is first write-verified to
`g_init` (default 40 uS, near the symmetry point, with acceptance `init_acceptance`) so that
every cell starts in the window's linear part; g_init = 0 skips this.

Each of `updates` updates draws x (n_rows) and d (n_cols) uniform in [-1, 1] (seeded by `seed`)
and applies the outer product x d^T with bit trains of `train_length` (BL) slots: every slot of
row i fires with probability p_max |x_i|, every slot of column j with probability p_max |d_j|,
independently. A cell steps once per slot where its row and its column both fire, so it gets on
average BL p_max^2 |x_i d_j| pulses. The sign comes from four board transactions (phases):
rows x > 0 with columns d > 0 and rows x < 0 with columns d < 0 get SET pulses (`v_set`,
polarity +1); rows x > 0 with columns d < 0 and rows x < 0 with columns d > 0 get RESET pulses
(`v_reset`, polarity -1). The block is read (read_map) before the first update and after each.

Expected change of cell (i, j) in update k, in pulses: e = BL p_max^2 x_i d_j (the expected net
number of SET minus RESET coincidences). The measured change is dG = G_after - G_before (S).
Over all cells and updates:

- slope (S per expected pulse) and intercept (S): least-squares line dG = intercept + slope e;
- correlation: Pearson correlation of dG and e;
- residual_std (S): standard deviation of dG - (intercept + slope e) (includes cycle-to-cycle
  noise, the stochastic pulse counts and the read noise of both reads);
- slope_set / slope_reset (S per expected pulse): the same fit through the origin on the points
  with e > 0 / e < 0 only (SET and RESET steps differ);
- correlation_counts: correlation of dG with the realized signed coincidence count n (SET
  counts positive), i.e. without the stochastic-encoding noise;
- dg_per_pulse_set / dg_per_pulse_reset (S): mean dG per realized pulse on cells that got only
  SET / only RESET pulses in an update (null if none);
- updates, cells (block size), pulses_total (coincidences the board reported over all updates),
  g_mean_initial / g_mean_final (S, block mean before the first / after the last update),
  init_success_rate (fraction of cells inside the band after the g_init write-verify; null if
  skipped).

Data: table "updates" (update, row, col, x, d, expected, count, g_before, g_after, dg) with
one row per cell and update; arrays g_initial and g_final (S).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from labctl.aimc import bit_trains
from labctl.engine import Protocol, RunContext
from labctl.params import Parameter, ParameterError
from labctl.writeverify import write_verify

from .common import V_GATE, V_READ, block_cell_list
from .matrix import COLS, ROWS, SEED, block_shape, check_block
from .programming import MAX_PULSES, REFINE, WIDTH


def coincidences(row_trains: np.ndarray, col_trains: np.ndarray) -> np.ndarray:
    """(n_rows, n_cols) popcount(row_i & col_j)."""
    both = row_trains.astype(np.uint32)[:, None] & col_trains.astype(np.uint32)[None, :]
    return np.bitwise_count(both).astype(np.int64)


def _fit_origin(e: np.ndarray, dg: np.ndarray) -> float | None:
    denominator = float(np.dot(e, e))
    return float(np.dot(e, dg) / denominator) if denominator > 0 else None


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.size < 2 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


class ParallelUpdate(Protocol):
    name = "parallel_update"
    title = "Parallel stochastic update (rank-1)"
    tables = {
        "updates": [("update", "i4", ""), ("row", "i4", ""), ("col", "i4", ""), ("x", "f8", ""), ("d", "f8", ""),
                    ("expected", "f8", "pulses"), ("count", "i4", "pulses"), ("g_before", "f8", "S"),
                    ("g_after", "f8", "S"), ("dg", "f8", "S")],
    }
    parameters = (
        ROWS,
        COLS,
        SEED,
        Parameter("updates", "int", 20, "", minimum=1, maximum=100000, doc="rank-1 updates to apply"),
        Parameter("train_length", "int", 31, "", minimum=1, maximum=32, soa="max_pulses",
                  doc="slots per stochastic bit train (BL)"),
        Parameter("p_max", "float", 0.5, "", minimum=0.0, maximum=1.0,
                  doc="firing probability per slot of a line whose |x| or |d| is 1"),
        Parameter("v_set", "float", 1.35, "V", minimum=0.05, soa="max_v_bl",
                  doc="SET pulse amplitude V_BL - V_SL (on the BL)"),
        Parameter("v_reset", "float", -1.3, "V", maximum=-0.05, soa="max_v_sl",
                  doc="RESET pulse amplitude V_BL - V_SL (negative; on the SL)"),
        WIDTH,
        Parameter("period", "float", 0.0, "s", minimum=0.0, doc="slot period; 0 = twice the width"),
        Parameter("g_init", "float", 40e-6, "S", minimum=0.0, maximum=1e-3,
                  doc="write-verify every block cell here first; 0 = start from the present state"),
        Parameter("init_acceptance", "float", 0.02, "", minimum=1e-4, maximum=0.5,
                  doc="acceptance band of the g_init write-verify (fraction of g_init)"),
        MAX_PULSES,
        REFINE,
        V_GATE,
        V_READ,
    )

    def check(self, params: dict, config) -> None:
        check_block(params, config)
        if params["period"] and params["period"] < params["width"]:
            raise ParameterError(f"period={params['period']:g} s is below the pulse width {params['width']:g} s")

    def run(self, ctx: RunContext) -> dict[str, Any]:
        """Summary keys: see the module docstring."""
        p, xbar = ctx.params, ctx.crossbar
        n_rows, n_cols = block_shape(p, ctx.crossbar.shape)
        block = (0, 0, n_rows, n_cols)
        length, p_max = p["train_length"], p["p_max"]
        period = p["period"] or 2 * p["width"]
        rng = np.random.default_rng(p["seed"])

        init_success = None
        if p["g_init"] > 0:
            result = write_verify(xbar, block_cell_list((0, 0, n_rows, n_cols)), p["g_init"], p["init_acceptance"],
                                  p["max_pulses"], p["width"], p["v_gate"], p["v_read"],
                                  checkpoint=ctx.progress, refine=p["refine"])
            init_success = float(result.success.mean())

        ctx.table("updates")
        rows, cols = np.divmod(np.arange(n_rows * n_cols), n_cols)
        g = xbar.read_map(p["v_read"], p["v_gate"], block=block)
        ctx.save_array("g_initial", g, "S")
        g_initial = g
        expected_all, count_all, dg_all = [], [], []
        pulses_total = 0
        for k in range(p["updates"]):
            ctx.progress(k, p["updates"], f"update {k + 1}/{p['updates']}")
            x = rng.uniform(-1.0, 1.0, n_rows)
            d = rng.uniform(-1.0, 1.0, n_cols)
            row_trains = bit_trains(p_max * np.abs(x), length, rng).astype(np.uint32)
            col_trains = bit_trains(p_max * np.abs(d), length, rng).astype(np.uint32)
            count = np.zeros((n_rows, n_cols), dtype=np.int64)
            for polarity, row_sign, col_sign in ((1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1)):
                rt = np.where(np.sign(x) == row_sign, row_trains, 0).astype(np.uint32)
                ct = np.where(np.sign(d) == col_sign, col_trains, 0).astype(np.uint32)
                phase = coincidences(rt, ct)
                if not phase.any():
                    continue  # no cell would step: skip the transaction
                amplitude = p["v_set"] if polarity > 0 else -p["v_reset"]
                pulses_total += xbar.parallel_update(rt, ct, length, polarity, amplitude, p["width"], period,
                                                     p["v_gate"], block)
                count += polarity * phase
            g_after = xbar.read_map(p["v_read"], p["v_gate"], block=block)
            expected = length * p_max**2 * np.outer(x, d)
            dg = g_after - g
            ctx.append("updates", update=k, row=rows, col=cols, x=x[rows], d=d[cols], expected=expected.ravel(),
                       count=count.ravel(), g_before=g.ravel(), g_after=g_after.ravel(), dg=dg.ravel())
            expected_all.append(expected.ravel())
            count_all.append(count.ravel())
            dg_all.append(dg.ravel())
            g = g_after
        ctx.save_array("g_final", g, "S")
        ctx.progress(p["updates"], p["updates"], "done")

        e, n, dg = np.concatenate(expected_all), np.concatenate(count_all), np.concatenate(dg_all)
        if np.std(e) > 0:
            slope, intercept = (float(v) for v in np.polyfit(e, dg, 1))
            residual = dg - (intercept + slope * e)
            residual_std = float(np.std(residual, ddof=2)) if e.size > 2 else None
        else:
            slope = intercept = residual_std = None
        set_only, reset_only = n > 0, n < 0
        return {
            "slope": slope,
            "intercept": intercept,
            "correlation": _correlation(e, dg),
            "residual_std": residual_std,
            "slope_set": _fit_origin(e[e > 0], dg[e > 0]),
            "slope_reset": _fit_origin(e[e < 0], dg[e < 0]),
            "correlation_counts": _correlation(n.astype(float), dg),
            "dg_per_pulse_set": float(np.sum(dg[set_only]) / np.sum(n[set_only])) if set_only.any() else None,
            "dg_per_pulse_reset": float(np.sum(dg[reset_only]) / np.sum(-n[reset_only])) if reset_only.any() else None,
            "updates": p["updates"],
            "cells": n_rows * n_cols,
            "pulses_total": pulses_total,
            "g_mean_initial": float(np.mean(g_initial)),
            "g_mean_final": float(np.mean(g)),
            "init_success_rate": init_success,
        }

    @staticmethod
    def plot(run: dict[str, Any], fig) -> None:
        """Measured dG (µS) of every cell and update against the expected pulses BL p² x d, with
        the least-squares line."""
        from labctl.plots import no_data

        ax = fig.subplots()
        ax.set_xlabel("expected net pulses  BL·p²·x·d")
        ax.set_ylabel("measured ΔG (µS)")
        table, summary = run["data"].get("updates"), run["attrs"].get("summary", {})
        if table is None or not len(table):
            no_data(ax, "no update recorded")
            return
        ax.scatter(table["expected"], table["dg"] * 1e6, s=5, alpha=0.35, rasterized=True)
        slope, intercept = summary.get("slope"), summary.get("intercept")
        if isinstance(slope, (int, float)) and isinstance(intercept, (int, float)):
            e = np.array([table["expected"].min(), table["expected"].max()])
            ax.plot(e, (intercept + slope * e) * 1e6, color="tab:red",
                    label=f"slope {slope * 1e9:.0f} nS/pulse, r = {summary.get('correlation', float('nan')):.2f}")
            ax.legend(fontsize="small")
        ax.axhline(0, color="0.6", linewidth=0.6)
        ax.axvline(0, color="0.6", linewidth=0.6)
        ax.set_title(f"{int(table['update'].max()) + 1} rank-1 updates on {len(np.unique(table['row']))} x "
                     f"{len(np.unique(table['col']))} cells")
