"""weight_transfer: program a weight matrix into the array with write-verify; per-weight error.

The matrix comes from a .npy file (`weights`: a 2-D float array, at most the chip's size) or, if
`weights` is empty, is drawn uniform in [-1, 1] (rows x cols, seeded by `seed`). Weights are
mapped affinely onto the window, one device per weight, as in the mvm protocol:

    G = g_offset + g_scale w / w_max,   g_offset = (g_lo + g_hi) / 2,   g_scale = (g_hi - g_lo) / 2,

with w_max = `w_max`, or if 0 the largest |w| of the matrix (1 for a random matrix). The block
at (0, 0) with the matrix's shape is write-verified (labctl.writeverify), then read back once
with read_map right after programming. The programmed weight of a cell is that read-back
converted with the inverse map, w_prog = (G_read - g_offset) / g_scale * w_max, and its error is
w_prog - w (in the matrix's units).

Summary: weight_rmse (sqrt(mean((w_prog - w)^2))), weight_error_max (max |w_prog - w|),
weight_error_mean (mean w_prog - w), weight_rmse_verify (the same RMSE from the last verify
reads instead of the read-back), g_error_rms (S, read-back minus target), pulses_mean,
pulses_max, success_rate (fraction of cells whose last verify read was inside the acceptance
band), w_max, rows, cols, g_offset, g_scale (S).

Data: table "cells" (per cell as in write_verify); arrays weights, g_target, g_verify
(last verify reads), g_read (read-back), weights_programmed, pulses (per cell).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from labctl.engine import Protocol, RunContext
from labctl.params import Parameter, ParameterError

from .matrix import COLS, MAPPING, ROWS, SEED, block_shape, check_block, check_window, program_block, rmse, weight_map
from .programming import PROGRAMMING


def load_weights(path: str, chip_shape: tuple[int, int]) -> np.ndarray:
    """The matrix of a .npy file, checked: 2-D, finite, not larger than the chip."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ParameterError(f"weights={path!r}: no such file")
    try:
        weights = np.load(file, allow_pickle=False)
    except Exception as exc:  # not a .npy file, or an object array
        raise ParameterError(f"weights={path!r} is not a numeric .npy array: {exc}") from None
    if weights.ndim != 2 or weights.size == 0 or weights.dtype.kind not in "iuf":
        raise ParameterError(f"weights={path!r} must hold a non-empty 2-D numeric array, got shape "
                             f"{weights.shape} of {weights.dtype}")
    if not np.all(np.isfinite(weights)):
        raise ParameterError(f"weights={path!r} has NaN or infinite entries")
    rows, cols = chip_shape
    if weights.shape[0] > rows or weights.shape[1] > cols:
        raise ParameterError(f"weights={path!r} is {weights.shape[0]}x{weights.shape[1]}; the chip is "
                             f"{rows}x{cols}")
    return weights.astype(float)


class WeightTransfer(Protocol):
    name = "weight_transfer"
    title = "Weight transfer (write-verify of a matrix)"
    parameters = (
        Parameter("weights", "str", "", "",
                  doc=".npy file with the 2-D weight matrix; empty = a random matrix in [-1, 1]"),
        ROWS,
        COLS,
        SEED,
        Parameter("w_max", "float", 0.0, "", minimum=0.0,
                  doc="weight mapped to g_hi (-w_max to g_lo); 0 = the largest |w| of the matrix"),
        *MAPPING,
        *PROGRAMMING,
    )

    def check(self, params: dict, config) -> None:
        check_window(params)
        if not params["weights"]:
            check_block(params, config)
            return
        weights = load_weights(params["weights"], (config.chip.rows, config.chip.cols))
        for name, size in (("rows", weights.shape[0]), ("cols", weights.shape[1])):
            if params[name] not in (0, size):
                raise ParameterError(f"{name}={params[name]} does not match the {weights.shape[0]}x"
                                     f"{weights.shape[1]} matrix in {params['weights']!r} (use 0)")
        w_max = params["w_max"] or float(np.max(np.abs(weights)))
        if w_max == 0:
            raise ParameterError(f"weights={params['weights']!r} is all zero; give w_max")
        if np.max(np.abs(weights)) > w_max:
            raise ParameterError(f"the matrix has |w| up to {np.max(np.abs(weights)):g}, above w_max={w_max:g}")

    def run(self, ctx: RunContext) -> dict[str, Any]:
        """Summary keys: see the module docstring."""
        p = ctx.params
        if p["weights"]:
            weights = load_weights(p["weights"], ctx.crossbar.shape)
            w_max = p["w_max"] or float(np.max(np.abs(weights)))
        else:
            n_rows, n_cols = block_shape(p, ctx.crossbar.shape)
            weights = np.random.default_rng(p["seed"]).uniform(-1.0, 1.0, (n_rows, n_cols))
            w_max = p["w_max"] or 1.0
            if np.max(np.abs(weights)) > w_max:
                raise ParameterError(f"w_max={w_max:g} is below the random weights' range [-1, 1]")
        n_rows, n_cols = weights.shape
        g_offset, g_scale = weight_map(p["g_lo"], p["g_hi"])
        targets = g_offset + g_scale * weights / w_max
        ctx.save_array("weights", weights, "")
        ctx.save_array("g_target", targets, "S")

        result = program_block(ctx, targets)
        g_verify = result.g.reshape(n_rows, n_cols)
        g_read = ctx.crossbar.read_map(p["v_read"], p["v_gate"], block=(0, 0, n_rows, n_cols))
        w_prog = (g_read - g_offset) / g_scale * w_max
        error = w_prog - weights
        ctx.save_array("g_verify", g_verify, "S")
        ctx.save_array("g_read", g_read, "S")
        ctx.save_array("weights_programmed", w_prog, "")
        ctx.save_array("pulses", result.pulses.reshape(n_rows, n_cols), "")
        ctx.progress(1, 1, "done")
        return {
            "rows": n_rows,
            "cols": n_cols,
            "w_max": w_max,
            "g_offset": g_offset,
            "g_scale": g_scale,
            "weight_rmse": rmse(w_prog, weights),
            "weight_error_max": float(np.max(np.abs(error))),
            "weight_error_mean": float(np.mean(error)),
            "weight_rmse_verify": rmse((g_verify - g_offset) / g_scale * w_max, weights),
            "g_error_rms": rmse(g_read, targets),
            "pulses_mean": float(result.pulses.mean()),
            "pulses_max": int(result.pulses.max()),
            "success_rate": float(result.success.mean()),
        }

    @staticmethod
    def plot(run: dict[str, Any], fig) -> None:
        """Histogram of the weight errors w_prog - w, and programmed vs target weights."""
        from labctl.plots import no_data

        data, summary = run["data"], run["attrs"].get("summary", {})
        hist_ax, scatter_ax = fig.subplots(1, 2)
        hist_ax.set_xlabel("programmed - target weight")
        hist_ax.set_ylabel("weights")
        scatter_ax.set_xlabel("target weight")
        scatter_ax.set_ylabel("programmed weight (read back)")
        weights, programmed = data.get("weights"), data.get("weights_programmed")
        if weights is None or programmed is None:
            no_data(hist_ax, "no weight programmed")
            no_data(scatter_ax, "no weight programmed")
            return
        error = np.ravel(programmed - weights)
        hist_ax.hist(error, bins=int(np.clip(error.size // 4, 5, 60)), color="tab:blue")
        value = summary.get("weight_rmse")
        hist_ax.set_title(f"RMSE {value:.3g}" if isinstance(value, (int, float)) else "weight error")
        scatter_ax.scatter(np.ravel(weights), np.ravel(programmed), s=6, alpha=0.5, rasterized=True)
        lim = float(np.max(np.abs(weights))) * 1.05 or 1.0
        scatter_ax.plot([-lim, lim], [-lim, lim], color="0.3", linewidth=0.8)
        rate = summary.get("success_rate")
        scatter_ax.set_title(f"{np.size(weights)} weights, {rate * 100:.0f} % in band"
                             if isinstance(rate, (int, float)) else f"{np.size(weights)} weights")
