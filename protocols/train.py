"""train: in-situ training of a small classifier on the array, with a floating-point baseline.

Task and model (by `dataset`; data from labctl.datasets, a deterministic stratified split with
`test_fraction` held out, seeded by `seed`):

- iris: 4 inputs -> 3 classes, one layer with bias (softmax regression). Inputs: the training
  set's range of each feature mapped onto [-1, 1].
- digits: 64 inputs (8x8 pixels / 16) -> 32 hidden (sigmoid) -> 10 classes, biases on both layers.

Forward, backward and update are analog; the host keeps only what the algorithms keep digital:
the activations, the sigmoid and its derivative, the softmax / cross-entropy error, the bit-train
probabilities, and for ttv2 / agad the transfer schedule and their digital buffers.

Cell map. A weight matrix W (n_in x n_out) with bias b (n_out) is a differential pair per weight,
w_ij = (G+_ij - G-_ij) / g_scale, laid out from its origin (r, c):

    rows r .. r+n_in-1  x  cols c .. c+n_out-1          G+ (input i on row r+i, output j on col c+j)
    rows r .. r+n_in-1  x  cols c+n_out .. c+2n_out-1   G-
    rows r .. r+n_out-1 x  col  c+2n_out, c+2n_out+1    bias pair: b_j = (G[r+j, c+2n_out] -
                                                        G[r+j, c+2n_out+1]) / g_scale

i.e. 2 n_out + 2 columns per matrix. The bias is stored transposed (one row per output) so that
it needs no extra input row: it is read with one backward MVM, d = (+1, -1) on its two columns
(z_j = I+ - I-), and updated with the outputs' trains on its rows and an always-on train on its
columns. Matrices are placed left to right from (`row0`, `col0`): for each layer its weight
array C, then (ttv2 / agad) its fast array A with the same layout. Iris with sgd fills the
packaged 4x8 chip exactly (cols 0-2 G+, 3-5 G-, 6-7 bias pair on rows 0-2; cell (3, 6) and
(3, 7) unused); ttv2 / agad on Iris need 16 columns (e.g. sim:4x16). Digits use 176 of the
columns of a 64-row array: C1 cols 0-65, A1 66-131, C2 132-153 (rows 0-31), A2 154-175.

Analog operations (labctl.crossbar; inputs of an MVM in [-1, 1], currents in A):
- forward: z = (I[:, G+] - I[:, G-]) / (v_read g_scale) + b, I = mvm_forward(x, weight block);
- backward: e = W d by mvm_backward with (d/s, -d/s) on (G+, G-), s = max |d| per vector;
- update: per training sample, the rank-one step dW = -lr x d^T as stochastic pulse trains of
  `train_length` slots (Gokmen & Vlasov 2016): row i fires with probability a |x_i| / max|x|,
  column j with b |d_j| / max|d|, a b = lr max|x| max|d| / (dw L), a = b (clipped at 1), where
  dw is the measured weight change of one coincidence. Sign by phases: per sign of x, one SET
  call (G+ of the columns whose weights must grow, G- of those that must shrink) and one RESET
  call (the other way round), so every coincidence moves both devices of its pair in opposite
  directions. Biases get one such update per mini-batch from the summed error. Segments shorter
  than 32 slots are packed into one train (a cell only sees coincidences of its own segment). A
  step's trains (every matrix, weights and biases, transfers' row writes) are queued and sent as
  one UPDATE_SEQUENCE request (SET trains first), flushed before any read of the array.

Before training every device is brought to its symmetry point (`sp_cycles` alternating SET and
RESET pulses of width `sp_width` on the whole used block), which leaves small random weights
(the device-to-device spread) as initial weights; then 4 SET and 4 RESET pulses measure the mean
step up and down (S) of the used cells, giving dw = (step_up + step_down) / g_scale.

Algorithms (`algorithm`):
- sgd: plain analog SGD, the update above applied to C itself.
- ttv2: Tiki-Taka v2 (Gokmen 2021). The gradient goes to the fast array A (learning rate `lr`);
  every `transfer_every` samples one row of A (an input's weights, the bias row last, cyclic) is
  read with a one-hot forward MVM (the bias row with its backward MVM) and added, relative to
  A's reference, to a digital buffer H in units of C pulses: H += transfer_lr (A_row - ref) /
  dw_C. Where |H| >= 1, C gets trunc(H) pulses (at most `transfer_pulses`) and H keeps 0.1 of
  its value (aihwkit's BufferedTransferCompound defaults). A's reference is its symmetry point:
  A is read once after symmetry-point programming and that read is subtracted (the role of a
  reference array programmed to the symmetry point).
- agad: AGAD, the variant the published work used (Rasch et al. 2023/24, aihwkit's
  DynamicTransferCompound). As ttv2, but A needs no reference: every input row i has a chopper
  c_i = +-1 that multiplies its input during the gradient update (A += -lr (c x) d^T) and flips
  after every `chop_period` reads of that row. Each read v of row i updates a running mean
  m_i <- (1 - beta) m_i + beta v (beta = min(5 / chop_period, 1)); at the first read after a flip
  the reference p_i <- m_i (A's mean over the end of the previous chopper period); the
  transfer uses the change since that reference, H_i += transfer_lr c_i (v - p_i) / dw_C, so
  A's offset and its drift toward its symmetry point cancel; C writes start after the first
  chopper period, and H is reset where it transferred.

Learning rates left at 0 take the dataset's defaults (tuned on the simulated CMO/HfOx device
with 1.2 V / 5 ns update pulses and g_scale 20 uS; bench/training.py measures them):

    dataset  lr (sgd / ttv2 / agad)  transfer_lr (ttv2 / agad)  fp_lr
    iris     0.1 / 0.1 / 0.1         0.03 / 0.3                 0.1
    digits   0.05 / 0.05 / 0.05      0.03 / 0.3                 0.05

The floating-point baseline trains the same model on the same split, sample order, batch and
epochs with plain SGD (learning rate `fp_lr`, Xavier-normal initial weights from `seed`).

Data: table "history" (epoch 0 = before training: epoch, loss (mean cross-entropy on the
training set), train_acc, test_acc, fp_loss, fp_train_acc, fp_test_acc); table "calibration"
(array, step_up, step_down (S), dw); arrays x_offset, x_scale (input scaling), train_index,
test_index, g_final (read_map of the used block after training, S), per layer k:
weights_k (n_in x n_out), bias_k (the digital weights the read-back conductances represent),
g_weights_k (n_in x 2 n_out: G+ then G-, S), g_bias_k (n_out x 2, S), fp_weights_k, fp_bias_k.

Summary: dataset, algorithm, layers, epochs, test_accuracy, train_accuracy, loss (last
epoch), fp_test_accuracy, fp_train_accuracy, fp_loss, lr, fp_lr, transfer_lr (the rates used;
null for sgd), g_scale (S), dw (per matrix: C1[, A1, C2, A2]), step_up / step_down
(S, mean over the used cells), coincidences (pulses applied by parallel updates during training),
transfers (rows transferred, ttv2 / agad), c_writes (pulses written to C by transfers), cells
(used block: rows, cols, origin).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.datasets import load_dataset, stratified_split
from labctl.live import LivePlot
from labctl.engine import Protocol, RunContext
from labctl.params import Parameter, ParameterError

from .common import V_GATE, V_READ, bit_trains


MAX_SLOTS = 32
G_FORMED_MIN = 2e-6  # S: a cell reading below this is not formed
TRANSFER_ALGORITHMS = ("ttv2", "agad")


# -- task, data and model --------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """A dataset's model and default learning rates (per algorithm)."""

    dataset: str
    layers: tuple[int, ...]
    lr: dict[str, float]
    fp_lr: float
    transfer_lr: dict[str, float]


# Defaults tuned on the simulated CMO/HfOx device (module docstring; bench/training.py).
TASKS = {
    "iris": Task("iris", (4, 3), {"sgd": 0.1, "ttv2": 0.1, "agad": 0.1}, 0.1, {"ttv2": 0.03, "agad": 0.3}),
    "digits": Task("digits", (64, 32, 10), {"sgd": 0.05, "ttv2": 0.05, "agad": 0.05}, 0.05,
                   {"ttv2": 0.03, "agad": 0.3}),
}


@dataclass
class Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_index: np.ndarray
    test_index: np.ndarray
    x_offset: np.ndarray
    x_scale: np.ndarray
    n_classes: int


def scale_inputs(X: np.ndarray, offset: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Inputs as MVM inputs: (X - offset) / scale, clipped to [-1, 1]."""
    return np.clip((X - offset) / scale, -1.0, 1.0)


def prepare_data(dataset: str, test_fraction: float, seed: int) -> Data:
    """The dataset split (stratified, seeded) and scaled (Iris: the training set's range mapped
    onto [-1, 1]; digits: pixel / 16, in [0, 1])."""
    X, y = load_dataset(dataset)
    train, test = stratified_split(y, test_fraction, seed)
    if dataset == "digits":
        offset, scale = np.zeros(X.shape[1]), np.full(X.shape[1], 16.0)
    else:
        lo, hi = X[train].min(axis=0), X[train].max(axis=0)
        offset, scale = (lo + hi) / 2, np.maximum((hi - lo) / 2, 1e-12)
    Xs = scale_inputs(X, offset, scale)
    return Data(Xs[train], y[train], Xs[test], y[test], train, test, offset, scale, int(y.max()) + 1)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def cross_entropy(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-12))))


def output_error(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(softmax probabilities, dLoss/dz) of a batch of logits for labels y."""
    p = softmax(z)
    d = p.copy()
    d[np.arange(len(y)), y] -= 1.0
    return p, d


# -- floating-point baseline ----------------------------------------------------------------
class FloatMLP:
    """The same model in numpy float64: sigmoid hidden layers, softmax output, plain SGD."""

    def __init__(self, layers: tuple[int, ...], rng: np.random.Generator):
        self.W = [rng.normal(0.0, 1.0 / np.sqrt(n_in), (n_in, n_out))
                  for n_in, n_out in zip(layers[:-1], layers[1:])]
        self.b = [np.zeros(n_out) for n_out in layers[1:]]

    def forward(self, x: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        acts = [x]
        for k, (W, b) in enumerate(zip(self.W, self.b)):
            z = acts[-1] @ W + b
            if k == len(self.W) - 1:
                return acts, z
            acts.append(sigmoid(z))
        raise AssertionError("unreachable")

    def step(self, x: np.ndarray, y: np.ndarray, lr: float) -> None:
        acts, z = self.forward(x)
        _, d = output_error(z, y)
        for k in range(len(self.W) - 1, -1, -1):
            grad_w, grad_b = acts[k].T @ d, d.sum(axis=0)
            if k:
                d = (d @ self.W[k].T) * acts[k] * (1.0 - acts[k])
            self.W[k] -= lr * grad_w
            self.b[k] -= lr * grad_b

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """(loss, accuracy)."""
        _, z = self.forward(x)
        return cross_entropy(softmax(z), y), float(np.mean(np.argmax(z, axis=1) == y))


# -- cell map --------------------------------------------------------------------------------
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


def layout(layers: tuple[int, ...], algorithm: str, row0: int = 0, col0: int = 0
           ) -> tuple[list[MatrixCells], list[MatrixCells | None], tuple[int, int, int, int]]:
    """(C per layer, A per layer or None, bounding block (r0, c0, rows, cols)) of a model."""
    c, weights, fast = col0, [], []
    for n_in, n_out in zip(layers[:-1], layers[1:]):
        C = MatrixCells(row0, c, n_in, n_out)
        c += C.n_cols
        A = None
        if algorithm in TRANSFER_ALGORITHMS:
            A = MatrixCells(row0, c, n_in, n_out)
            c += A.n_cols
        weights.append(C)
        fast.append(A)
    rows = max(m.n_rows for m in weights)
    return weights, fast, (row0, col0, rows, c - col0)


@dataclass(frozen=True)
class PulseSetup:
    """Update and read settings shared by every matrix of a run."""

    v_read: float
    v_gate: float
    g_scale: float
    v_set: float
    v_reset: float
    width: float
    train_length: int
    transfer_pulses: int = 1

    def amplitude(self, polarity: int) -> float:
        return self.v_set if polarity > 0 else self.v_reset


def first_bits(n: np.ndarray) -> np.ndarray:
    """uint64 trains with the first n[i] slots set."""
    n = np.asarray(n, dtype=np.int64)
    return ((np.uint64(1) << n.astype(np.uint64)) - np.uint64(1)).astype(np.uint64)


def pack_segments(rows: np.ndarray, cols: np.ndarray, seg_len: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Segments (rows (n, n_rows), cols (n, n_cols): bit trains of seg_len slots) packed as many as
    fit into 32 slots per train, segment m of a train in slots m seg_len ..; a cell only sees
    coincidences of its own segment. Returns (row trains, col trains) as uint32 and the train
    length."""
    per_train = max(1, MAX_SLOTS // seg_len)
    n = -(-len(rows) // per_train) * per_train
    shifts = (np.arange(per_train, dtype=np.uint64) * np.uint64(seg_len))[None, :, None]

    def packed(segments: np.ndarray) -> np.ndarray:
        padded = np.zeros((n, segments.shape[1]), np.uint64)
        padded[:len(segments)] = segments
        return (padded.reshape(-1, per_train, segments.shape[1]) << shifts).sum(axis=1, dtype=np.uint64
                                                                                ).astype(np.uint32)

    return packed(rows), packed(cols), min(per_train, len(rows)) * seg_len


class PulseQueue:
    """Parallel updates of the matrices of one block, queued and sent to the board as one
    update_sequence (the trains fired back to back, SET trains first, in the order queued within
    a polarity) at flush(): a training step's updates cost one request. Every read of a matrix
    flushes its queue first, so a read always sees the updates queued before it."""

    def __init__(self, xbar, block: tuple[int, int, int, int], setup: PulseSetup):
        self.xbar, self.block, self.setup = xbar, block, setup
        self._trains: list[tuple[Any, int, np.ndarray, np.ndarray, int]] = []

    def add(self, owner, block: tuple[int, int, int, int], polarity: int, rows: np.ndarray, cols: np.ndarray,
            seg_len: int) -> None:
        """Queue segments (rows (n, block rows), cols (n, block columns) bit trains of seg_len
        slots) of `block`, inside the queue's block; their coincidences are added to
        owner.coincidences at the flush."""
        if not len(rows):
            return
        r0, c0, n_rows, n_cols = self.block
        br, bc, nr, nc = block
        rows, cols, length = pack_segments(rows, cols, seg_len)
        all_rows, all_cols = np.zeros((len(rows), n_rows), np.uint32), np.zeros((len(rows), n_cols), np.uint32)
        all_rows[:, br - r0:br - r0 + nr] = rows
        all_cols[:, bc - c0:bc - c0 + nc] = cols
        self._trains.extend((owner, polarity, r, c, length) for r, c in zip(all_rows, all_cols))

    def flush(self) -> int:
        """Send the queued trains; returns their coincidences."""
        if not self._trains:
            return 0
        trains = sorted(self._trains, key=lambda t: -t[1])
        self._trains = []
        s = self.setup
        counts = self.xbar.update_sequence(np.array([t[2] for t in trains]), np.array([t[3] for t in trains]),
                                           [t[4] for t in trains], [t[1] for t in trains],
                                           [s.amplitude(t[1]) for t in trains], s.width, None, s.v_gate,
                                           self.block)
        for (owner, *_), n in zip(trains, counts):
            owner.coincidences += int(n)
        return int(np.sum(counts))


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
    def forward(self, x: np.ndarray) -> np.ndarray:
        """z = x W + b for a batch x (B, n_in) in [-1, 1]."""
        n = self.cells.n_out
        self.pulses.flush()
        i = np.atleast_2d(self.xbar.mvm_forward(np.atleast_2d(x), self.cells.weight_block))
        return (i[:, :n] - i[:, n:]) / self.unit + self.bias()

    def bias(self) -> np.ndarray:
        self.pulses.flush()
        return np.asarray(self.xbar.mvm_backward(np.array([1.0, -1.0]), self.cells.bias_block)) / self.unit

    def backward(self, d: np.ndarray) -> np.ndarray:
        """d W^T for a batch d (B, n_out) (any scale; normalised per vector for the MVM)."""
        d = np.atleast_2d(d)
        s = np.max(np.abs(d), axis=1, keepdims=True)
        s[s == 0] = 1.0
        self.pulses.flush()
        i = np.atleast_2d(self.xbar.mvm_backward(np.hstack([d / s, -d / s]), self.cells.weight_block))
        return i * s / self.unit

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        """Rows of the augmented matrix [W; b] (row n_in = bias), (len(rows), n_out)."""
        rows = np.asarray(rows, dtype=int)
        out = np.empty((rows.size, self.cells.n_out))
        weight = rows < self.cells.n_in
        if weight.any():
            n = self.cells.n_out
            self.pulses.flush()
            onehot = np.zeros((int(weight.sum()), self.cells.n_in))
            onehot[np.arange(onehot.shape[0]), rows[weight]] = 1.0
            i = np.atleast_2d(self.xbar.mvm_forward(onehot, self.cells.weight_block))
            out[weight] = (i[:, :n] - i[:, n:]) / self.unit
        if (~weight).any():
            out[~weight] = self.bias()
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
        grow = -np.sign(d)  # direction of w_ij for x_i > 0
        zero = np.uint64(0)
        for polarity in (1, -1):
            rows, cols = [], []
            for x_sign in (1.0, -1.0):
                s = x_sign * grow
                rows.append(np.where(np.sign(x) == x_sign, row_bits, zero))
                cols.append(np.hstack([np.where(s == polarity, col_bits, zero), np.where(s == -polarity, col_bits, zero)]))
            rows, cols = np.vstack(rows), np.vstack(cols)
            fires = rows.any(axis=1) & cols.any(axis=1)
            self.pulses.add(self, self.cells.weight_block, polarity, rows[fires], cols[fires], L)

    def update_bias(self, grad: np.ndarray, lr: float) -> None:
        """Stochastic update b -= lr grad (one train of train_length slots per call)."""
        L = self.setup.train_length
        n = lr * np.abs(grad) / self.dw  # expected coincidences
        rows_bits = bit_trains(np.minimum(n / L, 1.0), L, self.rng)
        self._bias_pulses(rows_bits, -np.sign(grad), L, first_bits(np.array([L]))[0])

    def _bias_pulses(self, row_bits: np.ndarray, direction: np.ndarray, seg_len: int, on: np.uint64) -> None:
        """Bias rows j fire row_bits[j]; the pair's + column (or - column) fires `on` so b_j moves
        in `direction[j]` (+1 / -1) by one step per coincidence."""
        zero = np.uint64(0)
        for polarity in (1, -1):
            rows = np.array([np.where(direction == sign, row_bits, zero) for sign in (polarity, -polarity)])
            cols = np.array([[on, zero], [zero, on]], dtype=np.uint64)
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


def used_mask(matrices: list[MatrixCells], block: tuple[int, int, int, int]) -> np.ndarray:
    """Boolean (rows, cols) of the bounding block: cells that hold a weight or a bias."""
    r0, c0, n_rows, n_cols = block
    mask = np.zeros((n_rows, n_cols), dtype=bool)
    for m in matrices:
        for br, bc, nr, nc in (m.weight_block, m.bias_block):
            mask[br - r0:br - r0 + nr, bc - c0:bc - c0 + nc] = True
    return mask


# -- analog network and algorithms ----------------------------------------------------------
class AnalogNetwork:
    """Layers of AnalogMatrix (the weight arrays C): sigmoid hidden layers, softmax output."""

    def __init__(self, layers: list[AnalogMatrix]):
        self.layers = layers

    def forward(self, x: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        acts = [x]
        for k, layer in enumerate(self.layers):
            z = layer.forward(acts[-1])
            if k == len(self.layers) - 1:
                return acts, z
            acts.append(sigmoid(z))
        raise AssertionError("unreachable")

    def backward(self, acts: list[np.ndarray], d_out: np.ndarray) -> list[np.ndarray]:
        """Errors dLoss/dz of every layer (backward MVM through the hidden layers)."""
        deltas = [d_out]
        for k in range(len(self.layers) - 1, 0, -1):
            e = self.layers[k].backward(deltas[0])
            deltas.insert(0, e * acts[k] * (1.0 - acts[k]))
        return deltas

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
        """(loss, accuracy, logits) on a dataset."""
        _, z = self.forward(x)
        return cross_entropy(softmax(z), y), float(np.mean(np.argmax(z, axis=1) == y)), z


class AnalogSGD:
    """Plain analog SGD: every sample's rank-one update goes to C; biases once per batch."""

    name = "sgd"

    def __init__(self, network: AnalogNetwork, lr: float):
        self.network, self.lr = network, lr
        self.transfers = 0
        self.c_writes = 0

    def prepare(self) -> None:
        """Nothing to prepare: the weights start at the symmetry point."""

    def step(self, acts: list[np.ndarray], deltas: list[np.ndarray]) -> None:
        for layer, x, d in zip(self.network.layers, acts, deltas):
            layer.update(x, d, self.lr)
            layer.update_bias(d.sum(axis=0), self.lr)


class TikiTakaV2:
    """Tiki-Taka v2: gradient on the fast arrays A, periodic row transfer to C through a
    digital buffer H with threshold (see the module docstring)."""

    name = "ttv2"
    momentum = 0.1  # fraction of H kept after a write (aihwkit BufferedTransferCompound default)

    def __init__(self, network: AnalogNetwork, fast: list[AnalogMatrix], lr: float, transfer_lr: float,
                 transfer_every: int):
        self.network, self.fast, self.lr = network, fast, lr
        self.transfer_lr, self.transfer_every = transfer_lr, transfer_every
        self.H = [np.zeros((A.cells.n_in + 1, A.cells.n_out)) for A in fast]
        self.next_row = [0] * len(fast)
        self.due = [0.0] * len(fast)
        self.reads = [np.zeros(A.cells.n_in + 1, dtype=np.int64) for A in fast]
        self.ref: list[np.ndarray] = []
        self.transfers = 0
        self.c_writes = 0

    def prepare(self) -> None:
        """Store A's reference: its read at the symmetry point (TTv2's reference array)."""
        self.ref = [A.read_rows(np.arange(A.cells.n_in + 1)) for A in self.fast]

    def chopper(self, k: int) -> np.ndarray:
        return np.ones(self.fast[k].cells.n_in + 1)

    def step(self, acts: list[np.ndarray], deltas: list[np.ndarray]) -> None:
        n = len(acts[0])
        for k, (A, x, d) in enumerate(zip(self.fast, acts, deltas)):
            c = self.chopper(k)
            A.update(x * c[:-1], d, self.lr)
            A.update_bias(c[-1] * d.sum(axis=0), self.lr)
            self.due[k] += n / self.transfer_every
            count = int(self.due[k])
            if count:
                self.due[k] -= count
                self.transfer(k, count)

    def transfer(self, k: int, count: int) -> None:
        A, C = self.fast[k], self.network.layers[k]
        n_rows = A.cells.n_in + 1
        rows = (self.next_row[k] + np.arange(count)) % n_rows
        self.next_row[k] = int((self.next_row[k] + count) % n_rows)
        pulses = np.zeros((count, A.cells.n_out), dtype=np.int64)
        values = A.read_rows(rows)
        for m, (row, v) in enumerate(zip(rows, values)):
            signal = self.transfer_signal(k, row, v)
            H = self.H[k][row]
            if signal is not None:
                H += self.transfer_lr * signal / C.dw
                fire = np.abs(H) >= 1.0
                n = np.clip(np.trunc(H), -C.setup.transfer_pulses, C.setup.transfer_pulses).astype(np.int64)
                n[~fire] = 0
                H[fire] *= self.momentum
                pulses[m] = n
            self.reads[k][row] += 1
            self.after_read(k, row)
        self.transfers += count
        if pulses.any():
            self.c_writes += int(np.abs(pulses).sum())
            C.write_rows(rows, pulses)

    def transfer_signal(self, k: int, row: int, v: np.ndarray) -> np.ndarray | None:
        return v - self.ref[k][row]

    def after_read(self, k: int, row: int) -> None:
        """Hook after every read of a row (AGAD's chopper)."""


class AGAD(TikiTakaV2):
    """AGAD: chopped gradient on A with a dynamic reference (see the module docstring)."""

    name = "agad"
    momentum = 0.0  # aihwkit DynamicTransferCompound: forget_buffer with momentum 0
    tail_weight = 5.0

    def __init__(self, network, fast, lr, transfer_lr, transfer_every, chop_period: int):
        super().__init__(network, fast, lr, transfer_lr, transfer_every)
        self.chop_period = chop_period
        self.beta = min(self.tail_weight / chop_period, 1.0)
        self.chop = [np.ones(A.cells.n_in + 1) for A in fast]
        self.switched = [np.zeros(A.cells.n_in + 1, dtype=bool) for A in fast]
        self.mean = [np.zeros((A.cells.n_in + 1, A.cells.n_out)) for A in fast]
        self.past = [np.zeros((A.cells.n_in + 1, A.cells.n_out)) for A in fast]

    def prepare(self) -> None:
        """No reference array: the reference is tracked during training."""

    def chopper(self, k: int) -> np.ndarray:
        return self.chop[k]

    def transfer_signal(self, k: int, row: int, v: np.ndarray) -> np.ndarray | None:
        if self.switched[k][row]:
            self.past[k][row] = self.mean[k][row]
        self.mean[k][row] = (1.0 - self.beta) * self.mean[k][row] + self.beta * v
        # no writes during the first chopper period: the reference is not known yet
        if self.reads[k][row] < self.chop_period:
            return None
        # the chopper sign that modulated the accumulation since the last switch
        return self.chop[k][row] * (v - self.past[k][row])

    def after_read(self, k: int, row: int) -> None:
        self.switched[k][row] = False
        if self.reads[k][row] % self.chop_period == 0:
            self.chop[k][row] = -self.chop[k][row]
            self.switched[k][row] = True


# -- the protocol ------------------------------------------------------------------------------
HISTORY_COLUMNS = [("epoch", "i4", ""), ("loss", "f8", ""), ("train_acc", "f8", ""), ("test_acc", "f8", ""),
                   ("fp_loss", "f8", ""), ("fp_train_acc", "f8", ""), ("fp_test_acc", "f8", "")]


def learning_rates(params: dict) -> tuple[float, float, float]:
    """(lr, fp_lr, transfer_lr) with 0 replaced by the dataset's default."""
    task = TASKS[params["dataset"]]
    algorithm = params["algorithm"]
    return (params["lr"] or task.lr[algorithm], params["fp_lr"] or task.fp_lr,
            params["transfer_lr"] or task.transfer_lr.get(algorithm, 0.0))


def run_fp_baseline(task: Task, data: Data, epochs: int, batch: int, lr: float, seed: int,
                    orders: list[np.ndarray]) -> tuple[FloatMLP, list[tuple[float, float, float, float]]]:
    """Train the float model; per epoch (0 = initial) (loss, train_acc, test_loss, test_acc)."""
    model = FloatMLP(task.layers, np.random.default_rng([seed, 7]))
    history = [(*model.evaluate(data.x_train, data.y_train), *model.evaluate(data.x_test, data.y_test))]
    for order in orders[:epochs]:
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            model.step(data.x_train[idx], data.y_train[idx], lr)
        history.append((*model.evaluate(data.x_train, data.y_train), *model.evaluate(data.x_test, data.y_test)))
    return model, history


class Train(Protocol):
    name = "train"
    title = "In-situ training (analog SGD / Tiki-Taka v2 / AGAD)"
    parameters = (
        Parameter("dataset", "str", "iris", choices=("iris", "digits"),
                  doc="iris: 4-3 softmax regression; digits: 64-32-10 MLP (sigmoid hidden)"),
        Parameter("algorithm", "str", "sgd", choices=("sgd", "ttv2", "agad"),
                  doc="sgd: analog SGD on the weights; ttv2: Tiki-Taka v2; agad: AGAD (chopped TTv2 with "
                      "dynamic reference)"),
        Parameter("epochs", "int", 20, "", minimum=1, maximum=10000, doc="passes over the training set"),
        Parameter("lr", "float", 0.0, "", minimum=0.0, maximum=100.0,
                  doc="learning rate of the analog gradient update (onto C for sgd, onto A for ttv2/agad); "
                      "0 = the dataset's default"),
        Parameter("batch", "int", 10, "", minimum=1, maximum=4096,
                  doc="mini-batch: samples per forward/backward MVM call (updates stay one per sample)"),
        Parameter("seed", "int", 0, "", minimum=0,
                  doc="seed of the data split, sample order, bit trains and float initial weights"),
        Parameter("train_length", "int", 31, "", minimum=1, maximum=32,
                  doc="slots per stochastic pulse train (BL) of a rank-one update"),
        Parameter("test_fraction", "float", 0.2, "", minimum=0.05, maximum=0.5,
                  doc="fraction of each class held out for testing"),
        Parameter("g_scale", "float", 20e-6, "S", minimum=1e-7, maximum=1e-3,
                  doc="conductance difference G+ - G- of one unit of weight"),
        Parameter("row0", "int", 0, "", minimum=0, doc="first row (word line) of the cell map"),
        Parameter("col0", "int", 0, "", minimum=0, doc="first column (BL/SL pair) of the cell map"),
        Parameter("v_set", "float", 1.2, "V", minimum=0.1, soa="max_v_bl",
                  doc="amplitude of the SET pulses of parallel updates"),
        Parameter("v_reset", "float", 1.2, "V", minimum=0.1, soa="max_v_sl",
                  doc="amplitude (magnitude) of the RESET pulses of parallel updates"),
        Parameter("width", "float", 5e-9, "s", minimum=1e-9, soa="max_pulse_width",
                  doc="pulse width of parallel updates"),
        Parameter("sp_cycles", "int", 40, "", minimum=0, maximum=10000,
                  doc="SET/RESET pulse pairs that bring every used device to its symmetry point first"),
        Parameter("sp_width", "float", 100e-9, "s", minimum=1e-9, soa="max_pulse_width",
                  doc="pulse width of the symmetry-point pulses"),
        Parameter("transfer_every", "int", 1, "", minimum=1, maximum=100000,
                  doc="ttv2/agad: training samples between two row transfers (per layer)"),
        Parameter("transfer_lr", "float", 0.0, "", minimum=0.0, maximum=100.0,
                  doc="ttv2/agad: buffer gain, H += transfer_lr * A_row / dw_C; 0 = the dataset's default"),
        Parameter("transfer_pulses", "int", 4, "", minimum=1, maximum=32,
                  doc="ttv2/agad: most pulses one transfer writes to a weight"),
        Parameter("chop_period", "int", 4, "", minimum=2, maximum=10000,
                  doc="agad: reads of a row between two flips of its chopper"),
        Parameter("fp_lr", "float", 0.0, "", minimum=0.0, maximum=100.0,
                  doc="learning rate of the floating-point baseline; 0 = the dataset's default"),
        Parameter("adc_bits", "int", 0, "", minimum=0, maximum=24, doc="MVM output ADC bits (0 = ideal)"),
        Parameter("dac_bits", "int", 0, "", minimum=0, maximum=16, doc="MVM input DAC bits (0 = ideal)"),
        V_READ,
        V_GATE,
    )
    live_plots = (LivePlot("history", "epoch", "test_acc", "test accuracy (analog)"),
                  LivePlot("history", "epoch", "fp_test_acc", "test accuracy (floating point)"),
                  LivePlot("history", "epoch", "loss", "training loss (analog)"))

    def check(self, params: dict, config) -> None:
        task = TASKS[params["dataset"]]
        _, _, (r0, c0, rows, cols) = layout(task.layers, params["algorithm"], params["row0"], params["col0"])
        if r0 + rows > config.chip.rows or c0 + cols > config.chip.cols:
            raise ParameterError(
                f"{params['dataset']} with {params['algorithm']} needs {rows}x{cols} cells from row {r0}, "
                f"column {c0}; the chip has {config.chip.rows}x{config.chip.cols} "
                f"(use a larger array, e.g. --station sim:{max(rows + r0, config.chip.rows)}x{cols + c0})")
        for bits, name in ((params["dac_bits"], "dac_bits"), (params["adc_bits"], "adc_bits")):
            if bits == 1:
                raise ParameterError(f"{name}=1 is not a converter resolution (0 = ideal, else >= 2)")

    def run(self, ctx: RunContext) -> dict[str, Any]:
        p, xbar = ctx.params, ctx.crossbar
        task = TASKS[p["dataset"]]
        lr, fp_lr, transfer_lr = learning_rates(p)
        data = prepare_data(p["dataset"], p["test_fraction"], p["seed"])
        ctx.save_array("x_offset", data.x_offset, "")
        ctx.save_array("x_scale", data.x_scale, "")
        ctx.save_array("train_index", data.train_index, "")
        ctx.save_array("test_index", data.test_index, "")
        order_rng = np.random.default_rng([p["seed"], 1])
        orders = [order_rng.permutation(len(data.y_train)) for _ in range(p["epochs"])]

        # floating-point baseline first: it costs milliseconds and its curve is known up front
        fp_model, fp_history = run_fp_baseline(task, data, p["epochs"], p["batch"], fp_lr, p["seed"], orders)

        setup = PulseSetup(p["v_read"], p["v_gate"], p["g_scale"], p["v_set"], p["v_reset"], p["width"],
                           p["train_length"], p["transfer_pulses"])
        weights_cells, fast_cells, block = layout(task.layers, p["algorithm"], p["row0"], p["col0"])
        all_cells = weights_cells + [a for a in fast_cells if a is not None]
        mask = used_mask(all_cells, block)
        n_in_max = max(m.n_in for m in all_cells)
        xbar.configure_mvm(v_read=p["v_read"], v_gate=p["v_gate"], t_int=1e-6, dac_bits=p["dac_bits"],
                           adc_bits=p["adc_bits"], i_range=n_in_max * p["v_read"] * 100e-6)

        ctx.progress(0, 1, "checking that the cells are formed")
        g0 = xbar.read_map(p["v_read"], p["v_gate"], block=block)
        unformed = np.argwhere(mask & (g0 < G_FORMED_MIN))
        if len(unformed):
            r, c = unformed[0] + np.array(block[:2])
            raise RuntimeError(f"{len(unformed)} used cells read below {G_FORMED_MIN * 1e6:g} uS (first: "
                               f"({r}, {c})): form the array first (protocol forming)")

        ctx.progress(0, 1, "programming the symmetry point")
        program_symmetry_point(xbar, block, p["sp_cycles"], p["sp_width"], setup)
        up, down = calibrate_steps(xbar, block, setup)
        train_rng = np.random.default_rng([p["seed"], 2])
        pulses = PulseQueue(xbar, block, setup)
        C = [AnalogMatrix(xbar, m, setup, train_rng, f"C{k + 1}", pulses) for k, m in enumerate(weights_cells)]
        A = [AnalogMatrix(xbar, m, setup, train_rng, f"A{k + 1}", pulses)
             for k, m in enumerate(fast_cells) if m is not None]
        ctx.table("calibration", [("array", "S8", ""), ("step_up", "f8", "S"), ("step_down", "f8", "S"),
                                  ("dw", "f8", "")])
        for matrix in C + A:
            m = used_mask([matrix.cells], block)
            s_up, s_down = float(np.mean(up[m])), float(np.mean(down[m]))
            if not (s_up > 0 and s_down > 0):
                raise RuntimeError(f"{matrix.name}: no net step measured (up {s_up:g} S, down {s_down:g} S); "
                                   f"check v_set / v_reset / width")
            matrix.dw = (s_up + s_down) / p["g_scale"]
            ctx.append("calibration", array=matrix.name.encode(), step_up=s_up, step_down=s_down, dw=matrix.dw)

        network = AnalogNetwork(C)
        if p["algorithm"] == "sgd":
            optimizer = AnalogSGD(network, lr)
        elif p["algorithm"] == "ttv2":
            optimizer = TikiTakaV2(network, A, lr, transfer_lr, p["transfer_every"])
        else:
            optimizer = AGAD(network, A, lr, transfer_lr, p["transfer_every"], p["chop_period"])
        optimizer.prepare()

        ctx.table("history", HISTORY_COLUMNS)

        def record(epoch: int) -> tuple[float, float, float]:
            loss, train_acc, _ = network.evaluate(data.x_train, data.y_train)
            _, test_acc, _ = network.evaluate(data.x_test, data.y_test)
            fp_loss, fp_train, _, fp_test = fp_history[epoch]
            ctx.append("history", epoch=epoch, loss=loss, train_acc=train_acc, test_acc=test_acc,
                       fp_loss=fp_loss, fp_train_acc=fp_train, fp_test_acc=fp_test)
            return loss, train_acc, test_acc

        loss, train_acc, test_acc = record(0)
        batches = -(-len(data.y_train) // p["batch"])
        total = p["epochs"] * batches
        for epoch, order in enumerate(orders, start=1):
            for n_batch, start in enumerate(range(0, len(order), p["batch"])):
                ctx.progress((epoch - 1) * batches + n_batch, total,
                             f"epoch {epoch}/{p['epochs']}, batch {n_batch + 1}/{batches}")
                idx = order[start:start + p["batch"]]
                acts, z = network.forward(data.x_train[idx])
                _, d = output_error(z, data.y_train[idx])
                optimizer.step(acts, network.backward(acts, d))
                pulses.flush()
            loss, train_acc, test_acc = record(epoch)

        ctx.progress(total, total, "reading back the trained weights")
        ctx.save_array("g_final", xbar.read_map(p["v_read"], p["v_gate"], block=block), "S")
        for k, (layer, W_fp, b_fp) in enumerate(zip(C, fp_model.W, fp_model.b)):
            W, b, g_w, g_b = layer.weights()
            ctx.save_array(f"weights_{k}", W, "")
            ctx.save_array(f"bias_{k}", b, "")
            ctx.save_array(f"g_weights_{k}", g_w, "S")
            ctx.save_array(f"g_bias_{k}", g_b, "S")
            ctx.save_array(f"fp_weights_{k}", W_fp, "")
            ctx.save_array(f"fp_bias_{k}", b_fp, "")
        fp_loss, fp_train, _, fp_test = fp_history[-1]
        return {
            "dataset": p["dataset"],
            "algorithm": p["algorithm"],
            "layers": list(task.layers),
            "epochs": p["epochs"],
            "test_accuracy": test_acc,
            "train_accuracy": train_acc,
            "loss": loss,
            "fp_test_accuracy": fp_test,
            "fp_train_accuracy": fp_train,
            "fp_loss": fp_loss,
            "lr": lr,
            "fp_lr": fp_lr,
            "transfer_lr": transfer_lr if p["algorithm"] in TRANSFER_ALGORITHMS else None,
            "g_scale": p["g_scale"],
            "dw": {m.name: m.dw for m in C + A},
            "step_up": float(np.mean(up[mask])),
            "step_down": float(np.mean(down[mask])),
            "coincidences": int(sum(m.coincidences for m in C + A)),
            "transfers": optimizer.transfers,
            "c_writes": optimizer.c_writes,
            "cells": {"row0": block[0], "col0": block[1], "rows": block[2], "cols": block[3]},
        }

    @staticmethod
    def plot(run: dict[str, Any], fig) -> None:
        """Accuracy per epoch, analog against floating point, and the training loss beside it.

        Test accuracy solid, training accuracy dashed; loss = mean cross-entropy on the training
        set (log axis)."""
        from labctl.plots import no_data

        acc_ax, loss_ax = fig.subplots(1, 2)
        acc_ax.set_xlabel("epoch")
        acc_ax.set_ylabel("accuracy")
        loss_ax.set_xlabel("epoch")
        loss_ax.set_ylabel("cross-entropy loss (training set)")
        history = run["data"].get("history")
        if history is None or not len(history):
            no_data(acc_ax, "no epoch recorded")
            no_data(loss_ax, "no epoch recorded")
            return
        params = run["attrs"].get("parameters", {})
        algorithm = params.get("algorithm", "analog")
        e = history["epoch"]
        acc_ax.plot(e, history["test_acc"], "o-", color="tab:blue", label=f"analog ({algorithm}) test")
        acc_ax.plot(e, history["train_acc"], "--", color="tab:blue", alpha=0.6, label=f"analog ({algorithm}) train")
        acc_ax.plot(e, history["fp_test_acc"], "s-", color="tab:gray", label="floating point test")
        acc_ax.plot(e, history["fp_train_acc"], "--", color="tab:gray", alpha=0.6, label="floating point train")
        acc_ax.set_ylim(0, 1.02)
        acc_ax.grid(True, alpha=0.3)
        acc_ax.legend(fontsize="small", loc="lower right")
        acc_ax.set_title(f"{params.get('dataset', '')}: test {history['test_acc'][-1]:.3f} "
                         f"(fp {history['fp_test_acc'][-1]:.3f})")
        loss_ax.plot(e, history["loss"], "o-", color="tab:blue", label=f"analog ({algorithm})")
        loss_ax.plot(e, history["fp_loss"], "s-", color="tab:gray", label="floating point")
        loss_ax.set_yscale("log")
        loss_ax.grid(True, which="both", alpha=0.3)
        loss_ax.legend(fontsize="small")
