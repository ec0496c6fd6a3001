"""What the matrix protocols (mvm, weight_transfer, parallel_update) share (not a protocol
itself): a block of the array at its origin (0, 0) holding a matrix, the map of weights onto a
conductance window, its programming, and the error figures."""
from __future__ import annotations

import numpy as np

from labctl.engine import RunContext
from labctl.params import Parameter, ParameterError
from labctl.writeverify import WriteVerifyResult

from .common import block_cell_list
from .programming import program_cells

ROWS = Parameter("rows", "int", 0, "", minimum=0, doc="block rows (word lines) from row 0; 0 = every row")
COLS = Parameter("cols", "int", 0, "", minimum=0, doc="block columns (BL/SL pairs) from column 0; 0 = every column")
SEED = Parameter("seed", "int", 0, "", minimum=0, doc="seed of the random weights (and inputs)")
G_LO = Parameter("g_lo", "float", 10e-6, "S", minimum=1e-7, maximum=1e-3,
                 doc="apparent conductance of weight -1 (bottom of the mapped window)")
G_HI = Parameter("g_hi", "float", 80e-6, "S", minimum=1e-7, maximum=1e-3,
                 doc="apparent conductance of weight +1 (top of the mapped window)")
MAPPING = (G_LO, G_HI)


def block_shape(params: dict, chip_shape: tuple[int, int]) -> tuple[int, int]:
    """(n_rows, n_cols) of the block at (0, 0): `rows`/`cols`, 0 meaning the whole chip."""
    return params["rows"] or chip_shape[0], params["cols"] or chip_shape[1]


def check_block(params: dict, config) -> None:
    """The block (`rows` x `cols` at (0, 0)) fits the chip."""
    rows, cols = config.chip.rows, config.chip.cols
    if params["rows"] > rows:
        raise ParameterError(f"rows={params['rows']} is above its maximum {rows} (chip has {rows} rows)")
    if params["cols"] > cols:
        raise ParameterError(f"cols={params['cols']} is above its maximum {cols} (chip has {cols} columns)")


def check_window(params: dict) -> None:
    """The mapped window [g_lo, g_hi] is not empty."""
    if not params["g_lo"] < params["g_hi"]:
        raise ParameterError(f"g_lo={params['g_lo']:g} S must be below g_hi={params['g_hi']:g} S")


def weight_map(g_lo: float, g_hi: float) -> tuple[float, float]:
    """(g_offset, g_scale) of the affine map G = g_offset + g_scale w, w in [-1, 1] -> [g_lo, g_hi]."""
    return (g_lo + g_hi) / 2, (g_hi - g_lo) / 2


def program_block(ctx: RunContext, targets: np.ndarray) -> WriteVerifyResult:
    """Write-verify every cell of the block at (0, 0) to targets (n_rows x n_cols, S) with the
    run's programming parameters; stores table "cells" and returns the result (cells row-major)."""
    return program_cells(ctx, block_cell_list((0, 0, *targets.shape)), targets.reshape(-1))


def rmse(y_meas: np.ndarray, y_true: np.ndarray) -> float:
    """sqrt(mean((y_meas - y_true)^2)) in the outputs' units."""
    return float(np.sqrt(np.mean((np.asarray(y_meas) - np.asarray(y_true)) ** 2)))


def relative_error(y_meas: np.ndarray, y_true: np.ndarray) -> float | None:
    """||y_meas - y_true|| / ||y_true|| (Frobenius norms); None if y_true is all zero."""
    norm = float(np.linalg.norm(y_true))
    return float(np.linalg.norm(np.asarray(y_meas) - y_true)) / norm if norm > 0 else None
