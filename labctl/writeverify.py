"""Closed-loop programming (write-verify) of many cells in lockstep, built on the crossbar API.

Every round reads the cells still being programmed in one board transaction, then gives each
cell outside its acceptance band [target (1 - acceptance), target (1 + acceptance)] one SET
pulse (below the band) or one RESET pulse (above it), with the amplitude the published table
picks for its target; the board fires the round's pulses cell after cell in one transaction
(Crossbar.pulse_cells). A cell whose verify read jumped across its band (an overshoot) gets
pulses half as wide from then on, down to width / 2**refine: the step, and the cycle-to-cycle
noise that scales with it, shrink as the cell closes in, so it lands in a narrow band instead
of bouncing around it. A cell stops once a verify read falls inside its band or once it has
had `max_pulses` pulses; its final conductance is its last verify read. Protocols
(write_verify, retention, read_noise, mvm, ...) share this one implementation.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# Target range (S, lower edge inclusive) -> (SET amplitude, RESET amplitude) in V, as published
# for the CMO/HfOx array (arXiv 2502.04524); all |V| <= 1.5 V.
AMPLITUDE_TABLE: dict[tuple[float, float], tuple[float, float]] = {
    (10e-6, 30e-6): (1.35, -1.5),
    (30e-6, 60e-6): (1.35, -1.3),
    (60e-6, 90e-6): (1.5, -1.3),
}

Checkpoint = Callable[[int, int, str], None]
OnRead = Callable[[np.ndarray, np.ndarray, np.ndarray], None]


def amplitudes(targets, table: dict[tuple[float, float], tuple[float, float]] = AMPLITUDE_TABLE
               ) -> tuple[np.ndarray, np.ndarray]:
    """(v_set, v_reset) in V for each target conductance (S).

    Ranges are [low, high): a target on an edge takes the upper range's amplitudes (30 uS ->
    the 30-60 uS row); targets below the first range or at/above the last take the nearest row.
    """
    targets = np.asarray(targets, dtype=float)
    rows = sorted(table.items())
    lows = np.array([low for (low, _), _ in rows])
    k = np.clip(np.searchsorted(lows, targets, side="right") - 1, 0, len(rows) - 1)
    v_set = np.array([v for _, (v, _) in rows])[k]
    v_reset = np.array([v for _, (_, v) in rows])[k]
    return v_set, v_reset


@dataclass
class WriteVerifyResult:
    """Per cell, in the order of `cells`: the outcome of write_verify.

    g: last verify read (S); g_initial: the read before any pulse (S); pulses: pulses applied;
    success: whether g is inside the band; rounds: verify rounds run (reads after the first).
    """

    cells: np.ndarray  # (n, 2) int: row, col
    targets: np.ndarray  # (n,) S
    g: np.ndarray
    g_initial: np.ndarray
    pulses: np.ndarray
    success: np.ndarray
    rounds: int

    @property
    def error(self) -> np.ndarray:
        """g - target (S)."""
        return self.g - self.targets


def read_cells(crossbar, cells: np.ndarray, v_read: float, v_gate: float, t_read: float = 1e-6) -> np.ndarray:
    """Conductance (S) of `cells` ((n, 2) row, col) from one read_map of their bounding block."""
    cells = np.asarray(cells, dtype=int).reshape(-1, 2)
    r0, c0 = cells.min(axis=0)
    r1, c1 = cells.max(axis=0)
    block = crossbar.read_map(v_read, v_gate, t_read, block=(int(r0), int(c0), int(r1 - r0 + 1), int(c1 - c0 + 1)))
    return np.asarray(block)[cells[:, 0] - r0, cells[:, 1] - c0]


def write_verify(crossbar, cells: Sequence[tuple[int, int]] | np.ndarray, targets, acceptance: float,
                 max_pulses: int, width: float, v_gate: float, v_read: float,
                 checkpoint: Checkpoint | None = None, *, refine: int = 2, t_read: float = 1e-6,
                 table: dict[tuple[float, float], tuple[float, float]] = AMPLITUDE_TABLE,
                 on_read: OnRead | None = None) -> WriteVerifyResult:
    """Program `cells` ((row, col) pairs, distinct) to `targets` (S, one per cell or one for all).

    acceptance: half-width of the band as a fraction of the target (0.002 = 0.2 %).
    max_pulses: pulses allowed per cell. width: first pulse width (s); refine: how many times a
    cell's width halves, once per overshoot (0 = fixed width). v_gate: WL gate during pulses
    and reads; v_read: read voltage (V); t_read: read time per row (s).
    checkpoint(done, total, message) runs once per round with the number of cells settled
    (pass RunContext.progress: progress report and pause/abort point).
    on_read(index, pulses, g) gets every verify read: the cell indices read, their pulse counts
    so far (0 = the initial read) and conductances (S), e.g. to store a trace.
    """
    cells = np.asarray(cells, dtype=int).reshape(-1, 2)
    n = len(cells)
    if n == 0:
        raise ValueError("write_verify: no cells given")
    if len({(int(r), int(c)) for r, c in cells}) != n:
        raise ValueError("write_verify: cells must be distinct")
    targets = np.broadcast_to(np.asarray(targets, dtype=float), (n,)).copy()
    if np.any(targets <= 0):
        raise ValueError("write_verify: targets must be positive conductances (S)")
    if not 0 < acceptance < 1:
        raise ValueError(f"write_verify: acceptance={acceptance} must be a fraction in (0, 1)")
    if max_pulses < 0:
        raise ValueError(f"write_verify: max_pulses={max_pulses} must be >= 0")
    if refine < 0:
        raise ValueError(f"write_verify: refine={refine} must be >= 0")
    low, high = targets * (1 - acceptance), targets * (1 + acceptance)
    v_set, v_reset = amplitudes(targets, table)
    pulses = np.zeros(n, dtype=int)
    halvings = np.zeros(n, dtype=int)  # of each cell's pulse width so far
    direction = np.zeros(n, dtype=int)  # of each cell's last pulse: +1 SET, -1 RESET, 0 none yet
    everyone = np.arange(n)

    g = read_cells(crossbar, cells, v_read, v_gate, t_read)
    g_initial = g.copy()
    if on_read is not None:
        on_read(everyone, pulses.copy(), g.copy())
    rounds = 0
    while True:
        inside = (g >= low) & (g <= high)
        active = np.flatnonzero(~inside & (pulses < max_pulses))
        if checkpoint is not None:
            checkpoint(n - active.size, n, f"write-verify round {rounds}: {int(inside.sum())}/{n} cells in band")
        if active.size == 0:
            break
        up = g[active] < low[active]
        step = np.where(up, 1, -1)
        overshot = (direction[active] != 0) & (direction[active] != step)
        halvings[active] = np.minimum(halvings[active] + overshot, refine)
        direction[active] = step
        crossbar.pulse_cells(cells[active], np.where(up, v_set[active], v_reset[active]),
                             width / 2.0 ** halvings[active], v_gate)
        pulses[active] += 1
        g[active] = read_cells(crossbar, cells[active], v_read, v_gate, t_read)
        rounds += 1
        if on_read is not None:
            on_read(active, pulses[active], g[active].copy())
    return WriteVerifyResult(cells, targets, g, g_initial, pulses, (g >= low) & (g <= high), rounds)


def assign_targets(shape: tuple[int, int], levels: Sequence[float], repeats: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Cells (row-major from (0, 0)) and their targets: `repeats` cells per level, levels
    interleaved (cell k gets level k mod len(levels)) so no level sits in one corner.

    repeats <= 0 fills the array (rows * cols // len(levels) cells per level).
    """
    rows, cols = shape
    n_levels = len(levels)
    if repeats <= 0:
        repeats = rows * cols // n_levels
    n = repeats * n_levels
    if n < 1 or n > rows * cols:
        raise ValueError(f"{n_levels} levels x {repeats} cells need {n} cells; the array has {rows * cols}")
    k = np.arange(n)
    cells = np.stack([k // cols, k % cols], axis=1)
    return cells, np.asarray(levels, dtype=float)[k % n_levels]
