"""Stochastic pulse trains of parallel updates (Gokmen & Vlasov 2016) and their transport: bit
trains, segments packed into 32-slot trains, and a queue that sends a training step's trains as
one UPDATE_SEQUENCE request per matrix."""
from __future__ import annotations

import sys
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
    shape): bit t set with that probability, independently; one compiled pass keyed by one
    output of `rng` (labctl.aimc.bits)."""
    if not 1 <= length <= MAX_SLOTS:
        raise ValueError(f"length={length}: a train has 1..{MAX_SLOTS} slots")
    try:
        bits = sys.modules[_BITS]
    except KeyError:  # numba's import on the first train, not labctl.aimc's
        from . import bits
    probability = np.ascontiguousarray(probability, dtype=np.float64)
    out = np.empty(probability.shape, np.uint64)
    bits.bernoulli_trains(np.uint64(rng.bit_generator.random_raw()), probability.reshape(-1), length, out.reshape(-1))
    return out


_BITS = __name__.rpartition(".")[0] + ".bits"


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
    if per_train == 1:
        return rows.astype(np.uint32), cols.astype(np.uint32), seg_len
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
    4.2 ms instead of 6.2 ms per step). With the compiled update one request on the bounding
    block of every matrix was 7-10 % faster in wall time (sgd, ttv2), but its trains carry a
    word for every line of that block: a ttv2 digits epoch spent 165 s instead of 119 s of
    virtual time on the 921600-baud link, the cells aged that much more between update and
    read, and ttv2's 40-epoch accuracy fell from 95.4 to 92.6 %: per matrix it stays. Every
    read of a matrix flushes its queue first, so a read always sees the updates queued before
    it."""

    def __init__(self, xbar, block: tuple[int, int, int, int], setup: PulseSetup):
        self.xbar, self.block, self.setup = xbar, block, setup
        # per owner: its queued chunks (polarity, block, row trains, column trains, train length)
        self._queued: dict[int, tuple[Any, list[tuple[int, tuple[int, int, int, int], np.ndarray, np.ndarray,
                                                       int]]]] = {}

    def add(self, owner, block: tuple[int, int, int, int], polarity: int, rows: np.ndarray, cols: np.ndarray,
            seg_len: int) -> None:
        """Queue segments (rows (n, block rows), cols (n, block columns) bit trains of seg_len
        slots) of `block`, inside the queue's block; their coincidences are added to
        owner.coincidences at the flush."""
        if not len(rows):
            return
        (r0, c0, n_rows, n_cols), (br, bc, nr, nc) = self.block, block
        if br < r0 or bc < c0 or br + nr > r0 + n_rows or bc + nc > c0 + n_cols:
            raise ValueError(f"block {block} is outside the queue's block {self.block}")
        rows, cols, length = pack_segments(rows, cols, seg_len)
        self._queued.setdefault(id(owner), (owner, []))[1].append((polarity, block, rows, cols, length))

    def flush(self) -> int:
        """Send the queued trains; returns their coincidences."""
        groups, self._queued = list(self._queued.values()), {}
        s, total = self.setup, 0
        for owner, chunks in groups:
            chunks = sorted(chunks, key=lambda chunk: -chunk[0])  # SET first, stable within a polarity
            r0, c0, n_rows, n_cols = block = bounding_block(list({chunk[1] for chunk in chunks}))
            n = sum(len(chunk[2]) for chunk in chunks)
            rows, cols = np.zeros((n, n_rows), np.uint32), np.zeros((n, n_cols), np.uint32)
            lengths, polarities, start = np.empty(n, np.int64), np.empty(n, np.int64), 0
            for polarity, (br, bc, nr, nc), r, c, length in chunks:
                end = start + len(r)
                rows[start:end, br - r0:br - r0 + nr] = r
                cols[start:end, bc - c0:bc - c0 + nc] = c
                lengths[start:end], polarities[start:end], start = length, polarity, end
            amplitudes = np.where(polarities > 0, s.v_set, s.v_reset)
            counts = self.xbar.update_sequence(rows, cols, lengths, polarities, amplitudes, s.width, None, s.v_gate,
                                               block)
            owner.coincidences += int(np.sum(counts))
            total += int(np.sum(counts))
        return total
