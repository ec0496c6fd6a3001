"""A weight matrix with bias on an array block (AnalogMatrix: MVMs, stochastic updates, row
reads and writes, in weight units) and the device preparation before training (symmetry point,
step calibration)."""
from __future__ import annotations

import numpy as np

from .layout import MatrixCells
from .pulses import PulseQueue, PulseSetup, bit_trains, bounding_block, first_bits


class AnalogMatrix:
    """A weight matrix with bias on the array: forward/backward MVM, stochastic rank-one updates,
    row reads and row writes, all in weight units (w = (G+ - G-) / g_scale). Updates and writes
    go to `pulses` (a queue shared by the matrices of a run; default one of its own), which each
    read flushes first."""

    def __init__(self, xbar, cells: MatrixCells, setup: PulseSetup, rng: np.random.Generator, name: str,
                 pulses: PulseQueue | None = None):
        self.xbar, self.cells, self.setup, self.rng, self.name = xbar, cells, setup, rng, name
        self.pulses = pulses or PulseQueue(xbar, (cells.r0, cells.c0, cells.n_rows, cells.n_cols), setup)
        self.unit = setup.v_read * setup.g_scale  # A per unit weight per unit input
        self.dw = float("nan")  # weight change of one coincidence (calibrated)
        self.coincidences = 0

    # reads
    def forward(self, x: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
        """z = x W + b for a batch x (B, n_in) in [-1, 1]; b read with a backward MVM unless given."""
        return self.product(x) + (self.bias() if bias is None else bias)

    def product(self, x: np.ndarray) -> np.ndarray:
        """x W (no bias) for a batch x (B, n_in) in [-1, 1]: one forward MVM request."""
        x = np.atleast_2d(x)
        if not len(x):
            return np.empty((0, self.cells.n_out))
        n = self.cells.n_out
        self.pulses.flush()
        i = np.atleast_2d(self.xbar.mvm_forward(x, self.cells.weight_block))
        return (i[:, :n] - i[:, n:]) / self.unit

    def bias(self) -> np.ndarray:
        (b,) = read_biases([self])
        return b

    def backward(self, d: np.ndarray) -> np.ndarray:
        """d W^T for a batch d (B, n_out) (any scale; normalised per vector for the MVM)."""
        d = np.atleast_2d(d)
        s = np.max(np.abs(d), axis=1, keepdims=True)
        s[s == 0] = 1.0
        self.pulses.flush()
        i = np.atleast_2d(self.xbar.mvm_backward(np.hstack([d / s, -d / s]), self.cells.weight_block))
        return i * s / self.unit

    def one_hot(self, rows: np.ndarray) -> np.ndarray:
        """Forward MVM inputs that read weight rows `rows` (< n_in) of W, one vector per row."""
        x = np.zeros((len(rows), self.cells.n_in))
        x[np.arange(len(rows)), rows] = 1.0
        return x

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        """Rows of the augmented matrix [W; b] (row n_in = bias), (len(rows), n_out)."""
        rows = np.asarray(rows, dtype=int)
        weight = rows < self.cells.n_in
        return self.assemble_rows(rows, self.product(self.one_hot(rows[weight])),
                                  self.bias() if (~weight).any() else None)

    def assemble_rows(self, rows: np.ndarray, weight_rows: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
        """Rows `rows` of [W; b] from the read weight rows (in order) and the read bias."""
        out = np.empty((rows.size, self.cells.n_out))
        weight = rows < self.cells.n_in
        out[weight] = weight_rows
        if bias is not None:
            out[~weight] = bias
        return out

    def read_conductances(self) -> tuple[np.ndarray, np.ndarray]:
        """(G of the weight block (n_in, 2 n_out), G of the bias pair (n_out, 2)) in S."""
        s = self.setup
        self.pulses.flush()
        return (self.xbar.read_map(s.v_read, s.v_gate, block=self.cells.weight_block),
                self.xbar.read_map(s.v_read, s.v_gate, block=self.cells.bias_block))

    def weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(W, b, G weights, G bias) from a read_map of the matrix's cells."""
        g_w, g_b = self.read_conductances()
        n = self.cells.n_out
        return ((g_w[:, :n] - g_w[:, n:]) / self.setup.g_scale, (g_b[:, 0] - g_b[:, 1]) / self.setup.g_scale,
                g_w, g_b)

    # updates
    def update(self, x: np.ndarray, d: np.ndarray, lr: float) -> None:
        """Stochastic rank-one updates W -= lr x_b d_b^T, one per sample b of the batch."""
        L = self.setup.train_length
        x, d = np.atleast_2d(x), np.atleast_2d(d)
        x_max, d_max = np.max(np.abs(x), axis=1), np.max(np.abs(d), axis=1)
        live = (x_max > 0) & (d_max > 0)
        x, d, x_max, d_max = x[live], d[live], x_max[live, None], d_max[live, None]
        a = np.minimum(np.sqrt(lr * x_max * d_max / (self.dw * L)), 1.0)  # = b
        row_bits = bit_trains(np.abs(x) / x_max * a, L, self.rng)
        col_bits = bit_trains(np.abs(d) / d_max * a, L, self.rng)
        # Per sign of x one segment per sample (the x > 0 rows, then the x < 0 rows), the same
        # for both calls; w_ij grows where x_i d_j < 0: the SET call pulses G+ of those
        # columns and G- of the others, the RESET call the other way round.
        rows = np.vstack([row_bits * (x > 0), row_bits * (x < 0)])
        grow, shrink = col_bits * (d < 0), col_bits * (d > 0)  # the columns whose w grows for x > 0
        up, down = np.hstack([grow, shrink]), np.hstack([shrink, grow])
        fires = rows.any(axis=1) & np.tile(up.any(axis=1), 2)
        rows = rows[fires]
        for polarity, cols in ((1, np.vstack([up, down])), (-1, np.vstack([down, up]))):
            self.pulses.add(self, self.cells.weight_block, polarity, rows, cols[fires], L)

    def update_bias(self, grad: np.ndarray, lr: float) -> None:
        """Stochastic update b -= lr grad (one train of train_length slots per call)."""
        L = self.setup.train_length
        n = lr * np.abs(grad) / self.dw  # expected coincidences
        rows_bits = bit_trains(np.minimum(n / L, 1.0), L, self.rng)
        self._bias_pulses(rows_bits, -np.sign(grad), L, first_bits(np.array([L]))[0])

    def _bias_pulses(self, row_bits: np.ndarray, direction: np.ndarray, seg_len: int, on: np.uint64) -> None:
        """Bias rows j fire row_bits[j]; the pair's + column (or - column) fires `on` so b_j moves
        in `direction[j]` (+1 / -1) by one step per coincidence."""
        up, down = row_bits * (direction > 0), row_bits * (direction < 0)
        cols = np.array([[on, 0], [0, on]], dtype=np.uint64)
        for polarity, rows in ((1, np.array([up, down])), (-1, np.array([down, up]))):
            fires = rows.any(axis=1)
            self.pulses.add(self, self.cells.bias_block, polarity, rows[fires], cols[fires], seg_len)

    def write_rows(self, rows: np.ndarray, pulses: np.ndarray) -> None:
        """Give row k of [W; b] pulses[k, j] steps (sign = direction) on every output j."""
        rows = np.asarray(rows, dtype=int)
        pulses = np.asarray(pulses, dtype=np.int64)
        M = max(int(np.max(np.abs(pulses), initial=0)), 1)
        zero = np.uint64(0)
        on = first_bits(np.array([M]))[0]
        bias = rows == self.cells.n_in
        for n in pulses[bias]:
            if n.any():
                self._bias_pulses(first_bits(np.abs(n)), np.sign(n), M, on)
        rows, pulses = rows[~bias], pulses[~bias]
        one_hot = np.where(rows[:, None] == np.arange(self.cells.n_in), on, zero)
        bits = first_bits(np.abs(pulses))
        for polarity in (1, -1):
            cols = np.hstack([np.where(np.sign(pulses) == polarity, bits, zero),
                              np.where(np.sign(pulses) == -polarity, bits, zero)])
            fires = cols.any(axis=1)
            self.pulses.add(self, self.cells.weight_block, polarity, one_hot[fires], cols[fires], M)


def _flush(matrices: list[AnalogMatrix]) -> None:
    for queue in {id(m.pulses): m.pulses for m in matrices}.values():
        queue.flush()


def read_biases(matrices: list[AnalogMatrix]) -> list[np.ndarray]:
    """The biases of `matrices` from one backward MVM request on the bounding block of their bias
    pairs: per matrix one vector, (+1, -1) on its pair and 0 V on every other column (a cell at
    0 V carries no current)."""
    blocks = [m.cells.bias_block for m in matrices]
    r0, c0, n_rows, n_cols = block = bounding_block(blocks)
    d = np.zeros((len(matrices), n_cols))
    for k, (_, bc, _, _) in enumerate(blocks):
        d[k, bc - c0], d[k, bc - c0 + 1] = 1.0, -1.0
    _flush(matrices)
    i = np.atleast_2d(matrices[0].xbar.mvm_backward(d, block))
    return [i[k, br - r0:br - r0 + nr] / m.unit for k, (m, (br, _, nr, _)) in enumerate(zip(matrices, blocks))]


def program_symmetry_point(xbar, block, cycles: int, width: float, setup: PulseSetup) -> None:
    """`cycles` x (one SET pulse, one RESET pulse) on every cell of `block`, one request: soft-bounds devices
    settle where up and down steps balance (their symmetry point)."""
    if cycles <= 0:
        return
    _, _, n_rows, n_cols = block
    polarities = np.tile([1, -1], cycles)
    xbar.update_sequence(np.ones((polarities.size, n_rows), np.uint32), np.ones((polarities.size, n_cols), np.uint32),
                         1, polarities, [setup.amplitude(p) for p in polarities], width, None, setup.v_gate, block)


def calibrate_steps(xbar, block, setup: PulseSetup, pulses: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Mean step per pulse, up and down (S), of each cell of `block`: read, `pulses` SET pulses,
    read, `pulses` RESET pulses, read."""
    _, _, n_rows, n_cols = block
    rows, cols = np.full(n_rows, (1 << pulses) - 1, np.uint32), np.full(n_cols, (1 << pulses) - 1, np.uint32)
    g0 = xbar.read_map(setup.v_read, setup.v_gate, block=block)
    xbar.parallel_update(rows, cols, pulses, 1, setup.v_set, setup.width, None, setup.v_gate, block)
    g1 = xbar.read_map(setup.v_read, setup.v_gate, block=block)
    xbar.parallel_update(rows, cols, pulses, -1, setup.v_reset, setup.width, None, setup.v_gate, block)
    g2 = xbar.read_map(setup.v_read, setup.v_gate, block=block)
    return (g1 - g0) / pulses, (g1 - g2) / pulses
