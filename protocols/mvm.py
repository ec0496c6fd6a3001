"""mvm: program a random weight matrix with write-verify, then measure forward and backward MVM.

Weights. W (n_rows x n_cols, seeded by `seed`) is uniform in [-1, 1] and mapped affinely onto the
window [g_lo, g_hi] with one device per weight (as in the published 64x64 benchmark):

    G = g_offset + g_scale W,   g_offset = (g_lo + g_hi) / 2,   g_scale = (g_hi - g_lo) / 2.

The targets are apparent conductances (I / v_read with the selector in series, as read_map and
write-verify read them). Every cell of the block is write-verified (labctl.writeverify); t = 0 is
the end of programming (the last verify read).

MVM. At t = `t_after` (waited with RunContext.wait: virtual time on a simulator) the board runs
`batch` forward MVMs with inputs x in [-1, 1]^n_rows on the rows and `batch` backward MVMs with
inputs d in [-1, 1]^n_cols on the columns (row-serial on the board). The measured currents
(A) are converted back to weight units by undoing the affine map, using the known input sums:

    y_forward  = (I_col / v_read - g_offset sum_i x_i) / g_scale    (compare x @ W)
    y_backward = (I_row / v_read - g_offset sum_j d_j) / g_scale    (compare d @ W.T)

Error metric (the one every key below uses). Weights and inputs are normalised to full scale 1
(|W| <= 1, |x| <= 1), so outputs are in units of one full-scale weight times one full-scale
input, and

    rmse = sqrt(mean over batch and outputs of (y_meas - y_true)^2).

This is the RMSE against the exact floating-point product of the published 64x64 benchmark (no
further division; published ~0.05 at 1 s and ~0.25 at 10 years after 0.2 % write-verify; the
simulator with the default 10-80 uS window gives 0.055 and 0.27: tests/test_protocols_aimc.py,
bench/aimc_reference.py).
For independent per-weight errors of std s it is ~ s sqrt(n_inputs / 3): it grows with the block
size. The relative error ||y_meas - y_true|| / ||y_true|| (Frobenius norms over the batch;
~ rmse / sqrt(n_inputs / 9) for uniform weights and inputs) is reported too, as `rel_error_*`.

Periphery: "ideal" = ideal converters (dac_bits = adc_bits = 0); "board" = `dac_bits` input DACs
and `adc_bits` ADCs (default 8 and 10 bits) whose current range is derived from the block: full
scale +-i_range = v_read g_hi min(n_in, 4 sqrt(n_in / 3)) for n_in inputs (4 standard deviations
of the largest possible output current for uniform inputs, never beyond n_in g_hi v_read);
"both" (default) measures with the ideal periphery and then the board's on the same x and d.

Summary (S, s, weight units as above; null when not measured): rmse_forward, rmse_backward
(ideal periphery), rmse_forward_board, rmse_backward_board, rel_error_forward,
rel_error_backward, rel_error_forward_board, rel_error_backward_board, t_after, rows, cols,
batch, g_offset, g_scale, i_range_forward, i_range_backward (A, board periphery), success_rate,
pulses_mean, pulses_max (write-verify), weight_rmse_programmed (RMSE of (G_verify - g_offset) /
g_scale - W, last verify reads), weight_rmse_at_t (the same from a read_map at t_after).

Data: table "cells" (as write_verify); arrays weights, g_target, g_programmed (last verify
reads), g_read (read_map at t_after), x, d, y_forward_true, y_backward_true and per periphery
i_forward / i_backward (A) and y_forward / y_backward (weight units), with suffix _board for the
board periphery.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from labctl.engine import Protocol, RunContext
from labctl.params import Parameter

from .matrix import (
    COLS,
    MAPPING,
    ROWS,
    SEED,
    block_shape,
    check_block,
    check_window,
    program_block,
    relative_error,
    rmse,
    weight_map,
)
from .programming import PROGRAMMING


def adc_range(n_in: int, g_hi: float, v_read: float) -> float:
    """ADC full scale (A) for n_in inputs: v_read g_hi min(n_in, 4 sqrt(n_in / 3))."""
    return float(v_read * g_hi * min(n_in, 4.0 * np.sqrt(n_in / 3.0)))


class MVM(Protocol):
    name = "mvm"
    title = "Matrix-vector multiplication (forward / backward)"
    parameters = (
        ROWS,
        COLS,
        SEED,
        Parameter("batch", "int", 100, "", minimum=1, maximum=10000, doc="input vectors per direction"),
        Parameter("t_after", "float", 1.0, "s", minimum=0.0,
                  doc="time after programming at which the MVMs run (3.15e8 s = 10 years)"),
        Parameter("periphery", "str", "both", "", choices=("ideal", "board", "both"),
                  doc="ideal converters, the board's DAC/ADC resolution, or both in turn"),
        Parameter("dac_bits", "int", 8, "", minimum=2, maximum=16, doc="input DAC resolution (board periphery)"),
        Parameter("adc_bits", "int", 10, "", minimum=2, maximum=24, doc="output ADC resolution (board periphery)"),
        Parameter("t_int", "float", 1e-6, "s", minimum=1e-9, maximum=1e-2, doc="integration time per MVM"),
        *MAPPING,
        *PROGRAMMING,
    )

    def check(self, params: dict, config) -> None:
        check_block(params, config)
        check_window(params)

    def run(self, ctx: RunContext) -> dict[str, Any]:
        """Summary keys: see the module docstring."""
        p, xbar = ctx.params, ctx.crossbar
        n_rows, n_cols = block_shape(p, ctx.crossbar.shape)
        block = (0, 0, n_rows, n_cols)
        rng = np.random.default_rng(p["seed"])
        weights = rng.uniform(-1.0, 1.0, (n_rows, n_cols))
        x = rng.uniform(-1.0, 1.0, (p["batch"], n_rows))
        d = rng.uniform(-1.0, 1.0, (p["batch"], n_cols))
        g_offset, g_scale = weight_map(p["g_lo"], p["g_hi"])
        targets = g_offset + g_scale * weights
        ctx.save_array("weights", weights, "")
        ctx.save_array("g_target", targets, "S")

        result = program_block(ctx, targets)
        g_prog = result.g.reshape(n_rows, n_cols)
        ctx.save_array("g_programmed", g_prog, "S")

        ctx.progress(0, 1, f"waiting until t = {p['t_after']:g} s after programming")
        ctx.wait(p["t_after"])
        g_read = xbar.read_map(p["v_read"], p["v_gate"], block=block)
        ctx.save_array("g_read", g_read, "S")

        y_forward_true, y_backward_true = x @ weights, d @ weights.T
        for name, data in (("x", x), ("d", d), ("y_forward_true", y_forward_true),
                           ("y_backward_true", y_backward_true)):
            ctx.save_array(name, data, "")
        summary: dict[str, Any] = {"t_after": p["t_after"], "rows": n_rows, "cols": n_cols, "batch": p["batch"],
                                   "g_offset": g_offset, "g_scale": g_scale,
                                   "i_range_forward": None, "i_range_backward": None}
        peripheries = ["ideal", "board"] if p["periphery"] == "both" else [p["periphery"]]
        for k, periphery in enumerate(["ideal", "board"]):
            suffix = "_board" if periphery == "board" else ""
            keys = [f"{m}_{direction}{suffix}" for m in ("rmse", "rel_error") for direction in ("forward", "backward")]
            summary.update(dict.fromkeys(keys))
            if periphery not in peripheries:
                continue
            ctx.progress(k, 2, f"MVM with the {periphery} periphery")
            bits = (p["dac_bits"], p["adc_bits"]) if periphery == "board" else (0, 0)
            outputs = {}
            for direction, inputs, n_in, true in (("forward", x, n_rows, y_forward_true),
                                                  ("backward", d, n_cols, y_backward_true)):
                i_range = adc_range(n_in, p["g_hi"], p["v_read"]) if periphery == "board" else 1e-3
                xbar.configure_mvm(p["v_read"], p["v_gate"], p["t_int"], *bits, i_range=i_range)
                if direction == "forward":
                    current = xbar.mvm_forward(inputs, block)
                else:
                    current = xbar.mvm_backward(inputs, block)
                y = (current / p["v_read"] - g_offset * inputs.sum(axis=1, keepdims=True)) / g_scale
                outputs[direction] = y
                ctx.save_array(f"i_{direction}{suffix}", current, "A")
                ctx.save_array(f"y_{direction}{suffix}", y, "")
                summary[f"rmse_{direction}{suffix}"] = rmse(y, true)
                summary[f"rel_error_{direction}{suffix}"] = relative_error(y, true)
                if periphery == "board":
                    summary[f"i_range_{direction}"] = i_range
        ctx.progress(2, 2, "done")
        summary.update({
            "success_rate": float(result.success.mean()),
            "pulses_mean": float(result.pulses.mean()),
            "pulses_max": int(result.pulses.max()),
            "weight_rmse_programmed": rmse((g_prog - g_offset) / g_scale, weights),
            "weight_rmse_at_t": rmse((g_read - g_offset) / g_scale, weights),
        })
        return summary

    @staticmethod
    def plot(run: dict[str, Any], fig) -> None:
        """Measured vs exact outputs (weight units) of the forward and backward MVMs, ideal
        periphery in blue, board periphery in orange, with the y = x line."""
        from labctl.plots import no_data

        data, summary = run["data"], run["attrs"].get("summary", {})
        params = run["attrs"].get("parameters", {})
        axes = fig.subplots(1, 2)
        for ax, direction, label in zip(axes, ("forward", "backward"), ("x @ W", "d @ Wᵀ")):
            ax.set_xlabel(f"exact {label}")
            ax.set_ylabel("measured (weight units)")
            true = data.get(f"y_{direction}_true")
            drawn = []
            for suffix, color, name in (("", "tab:blue", "ideal"), ("_board", "tab:orange", "board")):
                meas = data.get(f"y_{direction}{suffix}")
                if true is None or meas is None:
                    continue
                value = summary.get(f"rmse_{direction}{suffix}")
                text = f"{name}: RMSE {value:.3g}" if isinstance(value, (int, float)) else name
                ax.scatter(np.ravel(true), np.ravel(meas), s=4, alpha=0.4, color=color, label=text,
                           rasterized=True)
                drawn.append(np.ravel(true))
            if not drawn:
                no_data(ax, f"no {direction} MVM recorded")
                continue
            lim = float(np.max(np.abs(np.concatenate(drawn)))) * 1.05 or 1.0
            ax.plot([-lim, lim], [-lim, lim], color="0.3", linewidth=0.8)
            ax.set_aspect("equal", adjustable="datalim")
            ax.legend(fontsize="small", markerscale=3)
            ax.set_title(f"{direction} MVM at t = {params.get('t_after', float('nan')):g} s")
