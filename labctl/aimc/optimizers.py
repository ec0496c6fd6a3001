"""The in-situ training algorithms, one class each with one interface:
`Algorithm(network, fast, settings)`, `prepare()` once before training, per mini-batch
`row_reads()` (rows of the fast arrays to read along with the forward pass:
`AnalogNetwork.forward_reading`) then `step(acts, deltas, values)` with what was read, and the
counters `transfers` and `c_writes`. ALGORITHMS maps their names to them.

- sgd (AnalogSGD): plain analog SGD on the weight arrays C.
- ttv2 (TikiTakaV2): Tiki-Taka v2 (Gokmen 2021): the gradient on fast arrays A, rows of A
  transferred to C through a digital buffer with threshold.
- agad (AGAD): chopped TTv2 with a dynamic reference (Rasch et al. 2023/24).
labctl/protocols/train.py describes each in full."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .network import AnalogNetwork, RowRead
from .tile import AnalogMatrix


@dataclass(frozen=True)
class Settings:
    """An algorithm's rates and schedule (the train protocol's parameters of the same names)."""

    lr: float
    transfer_lr: float = 0.0
    transfer_every: int = 1
    chop_period: int = 4


class Algorithm:
    """The interface: built from the network (its weight arrays C), the fast arrays A (one per
    layer when `fast_arrays`, else none) and the settings."""

    name = ""
    fast_arrays = False  # whether the algorithm needs an array A beside each C

    def __init__(self, network: AnalogNetwork, fast: list[AnalogMatrix], settings: Settings):
        self.network, self.fast, self.settings, self.lr = network, fast, settings, settings.lr
        self.transfers = 0  # rows transferred from A to C
        self.c_writes = 0  # pulses written to C by transfers

    def prepare(self) -> None:
        """Once after the symmetry-point programming, before the first step."""

    def row_reads(self) -> list[RowRead | None]:
        """Per layer, (fast array, rows of its [W; b]) that the coming forward pass should read
        along with the layer's forward MVM (one request), or None; their values go to step()."""
        return [None] * len(self.network.layers)

    def step(self, acts: list[np.ndarray], deltas: list[np.ndarray],
             values: list[np.ndarray | None] | None = None) -> None:
        """One mini-batch: the layers' inputs, their errors dLoss/dz and the rows read for
        row_reads() (None: read them now, each in a request of its own)."""
        raise NotImplementedError


class AnalogSGD(Algorithm):
    """Plain analog SGD: every sample's rank-one update goes to C; biases once per batch."""

    name = "sgd"

    def step(self, acts: list[np.ndarray], deltas: list[np.ndarray],
             values: list[np.ndarray | None] | None = None) -> None:
        for layer, x, d in zip(self.network.layers, acts, deltas):
            layer.update(x, d, self.lr)
            layer.update_bias(d.sum(axis=0), self.lr)


class TikiTakaV2(Algorithm):
    """Tiki-Taka v2: gradient on the fast arrays A, periodic row transfer to C through a
    digital buffer H with threshold (labctl/protocols/train.py)."""

    name = "ttv2"
    fast_arrays = True
    momentum = 0.1  # fraction of H kept after a write (aihwkit BufferedTransferCompound default)
    threshold = 1.0  # |H| (C pulses) at which a transfer writes C

    def __init__(self, network: AnalogNetwork, fast: list[AnalogMatrix], settings: Settings):
        super().__init__(network, fast, settings)
        self.transfer_lr, self.transfer_every = settings.transfer_lr, settings.transfer_every
        self.H = [np.zeros((A.cells.n_in + 1, A.cells.n_out)) for A in fast]
        self.next_row = [0] * len(fast)
        self.due = [0.0] * len(fast)
        self.reads = [np.zeros(A.cells.n_in + 1, dtype=np.int64) for A in fast]
        self.ref: list[np.ndarray] = []
        self.pending: list[np.ndarray | None] = []  # the rows of row_reads(), per layer

    def prepare(self) -> None:
        """Store A's reference: its read at the symmetry point (TTv2's reference array)."""
        self.ref = [A.read_rows(np.arange(A.cells.n_in + 1)) for A in self.fast]

    def chopper(self, k: int) -> np.ndarray:
        return np.ones(self.fast[k].cells.n_in + 1)

    def row_reads(self) -> list[RowRead | None]:
        """The transfers due from the samples of the steps so far: `count` consecutive rows of
        each A (cyclic), read with the next forward pass, i.e. A as the last step left it."""
        self.pending = []
        for k in range(len(self.fast)):
            count = int(self.due[k])
            self.due[k] -= count
            self.pending.append(self.next_rows(k, count) if count else None)
        return [None if rows is None else (A, rows) for A, rows in zip(self.fast, self.pending)]

    def step(self, acts: list[np.ndarray], deltas: list[np.ndarray],
             values: list[np.ndarray | None] | None = None) -> None:
        """The transfers of the rows read (those of row_reads()), then the gradient update of A."""
        if values is None:
            values = [None if read is None else read[0].read_rows(read[1]) for read in self.row_reads()]
        for k, (rows, v) in enumerate(zip(self.pending, values)):
            if rows is not None and v is not None:
                self.apply_transfer(k, rows, v)
        self.pending = []
        n = len(acts[0])
        for k, (A, x, d) in enumerate(zip(self.fast, acts, deltas)):
            c = self.chopper(k)
            A.update(x * c[:-1], d, self.lr)
            A.update_bias(c[-1] * d.sum(axis=0), self.lr)
            self.due[k] += n / self.transfer_every

    def next_rows(self, k: int, count: int) -> np.ndarray:
        """The next `count` rows of A_k's [W; b] in the transfer's cyclic order."""
        n_rows = self.fast[k].cells.n_in + 1
        rows = (self.next_row[k] + np.arange(count)) % n_rows
        self.next_row[k] = int((self.next_row[k] + count) % n_rows)
        return rows

    def transfer(self, k: int, count: int) -> None:
        """Read the next `count` rows of A_k now and transfer them."""
        rows = self.next_rows(k, count)
        self.apply_transfer(k, rows, self.fast[k].read_rows(rows))

    def apply_transfer(self, k: int, rows: np.ndarray, values: np.ndarray) -> None:
        """Add rows `rows` of A_k, read as `values`, to the buffer H; write C where |H| >= threshold.
        Vectorized over runs of distinct rows (consecutive cyclic rows are distinct within
        n_in + 1; a read of more wraps and takes the rows' second reads after the first)."""
        C = self.network.layers[k]
        n_rows, limit = self.fast[k].cells.n_in + 1, C.setup.transfer_pulses
        pulses = np.zeros((len(rows), C.cells.n_out), dtype=np.int64)
        for start in range(0, len(rows), n_rows):
            r, v = rows[start:start + n_rows], values[start:start + n_rows]
            signal, active = self.transfer_signal(k, r, v)
            H = self.H[k][r]
            H[active] += self.transfer_lr * signal[active] / C.dw
            fire = (np.abs(H) >= self.threshold) & active[:, None]
            pulses[start:start + len(r)] = np.where(fire, np.clip(np.trunc(H), -limit, limit), 0)
            H[fire] *= self.momentum
            self.H[k][r] = H
            self.reads[k][r] += 1
            self.after_read(k, r)
        self.transfers += len(rows)
        if pulses.any():
            self.c_writes += int(np.abs(pulses).sum())
            C.write_rows(rows, pulses)

    def transfer_signal(self, k: int, rows: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(what the reads v of distinct rows `rows` add to H before the gain, which rows add)."""
        return v - self.ref[k][rows], np.ones(len(rows), dtype=bool)

    def after_read(self, k: int, rows: np.ndarray) -> None:
        """Hook after every read of distinct rows (AGAD's chopper)."""


class AGAD(TikiTakaV2):
    """AGAD: chopped gradient on A with a dynamic reference (labctl/protocols/train.py)."""

    name = "agad"
    momentum = 0.0  # aihwkit DynamicTransferCompound: forget_buffer with momentum 0
    # C is written once H holds 3 pulses (aihwkit: 1): the transfer signal's fluctuations (read
    # noise, the gradient's sample noise on A) then mostly cancel in H instead of reaching C
    threshold = 3.0
    tail_weight = 5.0

    def __init__(self, network: AnalogNetwork, fast: list[AnalogMatrix], settings: Settings):
        super().__init__(network, fast, settings)
        chop_period = self.chop_period = settings.chop_period
        self.beta = min(self.tail_weight / chop_period, 1.0)
        self.chop = [np.ones(A.cells.n_in + 1) for A in fast]
        self.switched = [np.zeros(A.cells.n_in + 1, dtype=bool) for A in fast]
        self.mean = [np.zeros((A.cells.n_in + 1, A.cells.n_out)) for A in fast]
        self.past = [np.zeros((A.cells.n_in + 1, A.cells.n_out)) for A in fast]

    def prepare(self) -> None:
        """No reference array: the reference is tracked during training."""

    def chopper(self, k: int) -> np.ndarray:
        return self.chop[k]

    def transfer_signal(self, k: int, rows: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        switched = rows[self.switched[k][rows]]
        self.past[k][switched] = self.mean[k][switched]
        self.mean[k][rows] = (1.0 - self.beta) * self.mean[k][rows] + self.beta * v
        # the chopper sign that modulated the accumulation since the last switch; no writes
        # during the first chopper period: the reference is not known yet
        return (self.chop[k][rows, None] * (v - self.past[k][rows]),
                self.reads[k][rows] >= self.chop_period)

    def after_read(self, k: int, rows: np.ndarray) -> None:
        self.switched[k][rows] = False
        flip = rows[self.reads[k][rows] % self.chop_period == 0]
        self.chop[k][flip] = -self.chop[k][flip]
        self.switched[k][flip] = True


ALGORITHMS: dict[str, type[Algorithm]] = {a.name: a for a in (AnalogSGD, TikiTakaV2, AGAD)}
