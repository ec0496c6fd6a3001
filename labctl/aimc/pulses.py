"""Stochastic pulse trains of parallel updates (Gokmen & Vlasov 2016) and their transport: bit
trains, segments packed into 32-slot trains, and a queue that sends a training step's trains as
one UPDATE_SEQUENCE request per matrix."""
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


def bounding_block(blocks: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    """The smallest block (r0, c0, rows, cols) that holds all of `blocks`."""
    r0, c0 = min(b[0] for b in blocks), min(b[1] for b in blocks)
    return r0, c0, max(b[0] + b[2] for b in blocks) - r0, max(b[1] + b[3] for b in blocks) - c0


class PulseQueue:
    """Parallel updates of the matrices of one block, queued and sent to the board at flush():
    per owner (a matrix) one update_sequence on the bounding block of its queued trains (SET
    trains first, in the order queued within a polarity). Matrices hold disjoint cells, so their
    order does not matter; the twin's cost of a request grows with trains x cells of its block,
    so per-matrix requests cost less than one request on the whole run's block (digits ttv2:
    4.2 ms instead of 6.2 ms per step). Every read of a matrix flushes its queue first, so a read
    always sees the updates queued before it."""

    def __init__(self, xbar, block: tuple[int, int, int, int], setup: PulseSetup):
        self.xbar, self.block, self.setup = xbar, block, setup
        self._trains: dict[int, list[tuple[Any, int, tuple[int, int, int, int], np.ndarray, np.ndarray, int]]] = {}

    def add(self, owner, block: tuple[int, int, int, int], polarity: int, rows: np.ndarray, cols: np.ndarray,
            seg_len: int) -> None:
        """Queue segments (rows (n, block rows), cols (n, block columns) bit trains of seg_len
        slots) of `block`, inside the queue's block; their coincidences are added to
        owner.coincidences at the flush."""
        if not len(rows):
            return
        if bounding_block([block, self.block]) != self.block:
            raise ValueError(f"block {block} is outside the queue's block {self.block}")
        rows, cols, length = pack_segments(rows, cols, seg_len)
        self._trains.setdefault(id(owner), []).extend((owner, polarity, block, r, c, length)
                                                      for r, c in zip(rows, cols))

    def flush(self) -> int:
        """Send the queued trains; returns their coincidences."""
        groups, self._trains = list(self._trains.values()), {}
        s, total = self.setup, 0
        for trains in groups:
            trains = sorted(trains, key=lambda t: -t[1])
            r0, c0, n_rows, n_cols = block = bounding_block(list({t[2] for t in trains}))
            rows, cols = np.zeros((len(trains), n_rows), np.uint32), np.zeros((len(trains), n_cols), np.uint32)
            for k, (_, _, (br, bc, nr, nc), r, c, _) in enumerate(trains):
                rows[k, br - r0:br - r0 + nr] = r
                cols[k, bc - c0:bc - c0 + nc] = c
            counts = self.xbar.update_sequence(rows, cols, [t[5] for t in trains], [t[1] for t in trains],
                                               [s.amplitude(t[1]) for t in trains], s.width, None, s.v_gate, block)
            trains[0][0].coincidences += int(np.sum(counts))
            total += int(np.sum(counts))
        return total
