"""Where the matrices of a network sit on the array: a differential weight matrix with its bias
pair per layer (w = (G+ - G-) / g_scale), left to right from an origin; see
labctl/protocols/train.py for the map drawn out."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MatrixCells:
    """Where a differential weight matrix with its bias pair sits (see the module docstring)."""

    r0: int
    c0: int
    n_in: int
    n_out: int

    @property
    def weight_block(self) -> tuple[int, int, int, int]:
        return (self.r0, self.c0, self.n_in, 2 * self.n_out)

    @property
    def bias_block(self) -> tuple[int, int, int, int]:
        return (self.r0, self.c0 + 2 * self.n_out, self.n_out, 2)

    @property
    def n_rows(self) -> int:
        return max(self.n_in, self.n_out)

    @property
    def n_cols(self) -> int:
        return 2 * self.n_out + 2


def layout(layers: tuple[int, ...], fast_arrays: bool, row0: int = 0, col0: int = 0
           ) -> tuple[list[MatrixCells], list[MatrixCells | None], tuple[int, int, int, int]]:
    """(C per layer, A per layer (None without fast_arrays), bounding block (r0, c0, rows, cols))
    of a model: per layer its weight array C, then its fast array A beside it."""
    c, weights, fast = col0, [], []
    for n_in, n_out in zip(layers[:-1], layers[1:]):
        C = MatrixCells(row0, c, n_in, n_out)
        c += C.n_cols
        A = None
        if fast_arrays:
            A = MatrixCells(row0, c, n_in, n_out)
            c += A.n_cols
        weights.append(C)
        fast.append(A)
    rows = max(m.n_rows for m in weights)
    return weights, fast, (row0, col0, rows, c - col0)


def used_mask(matrices: list[MatrixCells], block: tuple[int, int, int, int]) -> np.ndarray:
    """Boolean (rows, cols) of the bounding block: cells that hold a weight or a bias."""
    r0, c0, n_rows, n_cols = block
    mask = np.zeros((n_rows, n_cols), dtype=bool)
    for m in matrices:
        for br, bc, nr, nc in (m.weight_block, m.bias_block):
            mask[br - r0:br - r0 + nr, bc - c0:bc - c0 + nc] = True
    return mask
