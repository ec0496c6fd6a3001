"""Stochastic pulse trains of parallel updates (Gokmen & Vlasov 2016) and their transport: bit
trains, segments packed into 32-slot trains, and a queue that sends a training step's trains as
one UPDATE_SEQUENCE request."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_SLOTS = 32  # slots of one board train


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


def bit_trains(probability: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """uint64 stochastic pulse trains of `length` slots, one per entry of `probability` (any
    shape): bit t set with that probability, independently."""
    probability = np.asarray(probability, dtype=float)
    bits = rng.random((*probability.shape, length)) < probability[..., None]
    return (bits.astype(np.uint64) << np.arange(length, dtype=np.uint64)).sum(axis=-1, dtype=np.uint64)


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
