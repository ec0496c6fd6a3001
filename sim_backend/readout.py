"""The array's read state, cached between programming events: what a read-only operation needs.

A read (an MVM, a row-serial backward pass) changes no cell, so everything it needs of a cell is a
function of the cell's conductance now: its read-regime I(V) and its read-noise sigma. This
module keeps, for every cell,

- the conductance (ArrayPhysics.conductance: the programmed value plus relaxation), re-evaluated
  only for cells that were programmed since, or whose age has grown by more than FRESH of itself
  (at least 1 s): in between, relaxation (0.089 uS + 0.042 uS |z| per unit of ln t) moves a
  conductance by ~1 nS (FRESH x that), two orders below its read noise (~0.1 uS);
- the relative read-noise variance (sigma / G)^2 at that time;
- per read configuration (gate voltage, largest |V|), the odd polynomial I(V) = sum_k c_k V^(2k+1)
  of the selector + ReRAM circuit. Formed cells differ only in G, so c_k(G) is tabulated once on a
  fine grid of G from exact circuit solves and interpolated per cell (relative error < 1e-9);
  pristine cells share one law.

Arrays are float32 above F32_CELLS cells (matrix products at twice the speed; a rounding of ~1e-7
relative, four orders below the read noise), float64 below (small arrays are cheap and exact).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FRESH = 1e-2
F32_CELLS = 1 << 16
_GRID = 1 << 15  # conductance grid of the I(V) tables: linear interpolation to < 1e-10 relative
_MAX_TERMS = 4  # odd terms of I(V): V, V^3, V^5, V^7
_TERM_RTOL = 1e-9  # fewest terms whose polynomial matches the circuit this closely up to v_max
_DRIVE_STEP = 8  # drive tables of pulse_counts take every 8th node of the grid
_KEPT = 4  # read configurations (forward, backward, ...) and pulse amplitudes kept tabulated


@dataclass
class _View:
    """One read configuration: the tables over G and the per-cell arrays derived from them."""

    g_top: float
    tables: np.ndarray  # (terms, _GRID) coefficients c_k over the grid of formed-cell G
    at_max: np.ndarray  # (_GRID,) exact I(v_max)
    pristine: np.ndarray  # (terms,) coefficients of every pristine cell
    pristine_at_max: float
    cells: dict[str, np.ndarray] = field(default_factory=dict)  # lazily built per-cell arrays
    dirty: np.ndarray | None = None  # cells refreshed since `cells` were derived


class ReadState:
    """Cached read state of one ArrayPhysics (its `_read`)."""

    def __init__(self, chip):
        self.chip = chip
        self.invalidate()

    @property
    def dtype(self) -> type:
        return np.float32 if self.chip.rows * self.chip.cols > F32_CELLS else np.float64

    def invalidate(self) -> None:
        """Forget everything (a state array or a parameter may have changed)."""
        self.g = self.rel2 = self.expiry = None
        self.fresh_until = -np.inf
        self._evaluated_at = -np.inf
        self.views: dict[tuple, _View] = {}
        self.tables: dict[tuple, np.ndarray] = {}
        self.drives: dict[tuple, np.ndarray] = {}
        self.statics: dict[str, np.ndarray] = {}
        self._v_form_min: float | None = None
        self._top: float | None = None

    def programmed(self, cells) -> None:
        """`cells` (an index) were programmed: their read state is stale."""
        if self.expiry is not None:
            self.expiry[cells] = -np.inf
            self.fresh_until = -np.inf

    def fresh_g(self) -> np.ndarray | None:
        """Every cell's conductance now as a read sees it (the cached one, within FRESH of
        its relaxation) when no cell is stale; None otherwise."""
        now = self.chip.clock.now
        if self.expiry is not None and self._evaluated_at <= now <= self.fresh_until:
            return self.g
        return None

    def static(self, name: str) -> np.ndarray:
        """A flat float32 copy of a per-cell array that only a state write changes: "span"
        (g_hi - g_lo) or "rate"."""
        if name not in self.statics:
            chip = self.chip
            value = chip._g_hi - chip._g_lo if name == "span" else chip._rate
            self.statics[name] = np.ascontiguousarray(value, dtype=np.float32).reshape(-1)
        return self.statics[name]

    @property
    def v_form_min(self) -> float:
        if self._v_form_min is None:
            self._v_form_min = float(self.chip._v_form.min())
        return self._v_form_min

    # -- per-cell state --------------------------------------------------------------------------
    def refresh(self) -> None:
        """Bring the conductance and noise of stale cells up to the clock."""
        chip, now = self.chip, self.chip.clock.now
        if self.expiry is not None and now <= self.fresh_until and now >= self._evaluated_at:
            return
        if self.expiry is None or now < self._evaluated_at:
            stale = ...
            self.g = np.empty(chip.shape)
            self.rel2 = np.empty(chip.shape)
            self.expiry = np.empty(chip.shape)
        else:
            stale = np.nonzero(self.expiry < now)
            if stale[0].size > chip.rows * chip.cols // 4:
                stale = ...
        age = now - chip._t_prog[stale]
        g = chip.conductance(stale)
        formed = chip._formed[stale]
        self.g[stale] = g
        self.rel2[stale] = np.where(formed, (chip.read_noise_sigma(g, age) / g) ** 2, 0.0)
        self.expiry[stale] = now + FRESH * np.maximum(age, 1.0)
        self.fresh_until = float(self.expiry.min())
        self._evaluated_at = now
        for view in self.views.values():  # derived arrays follow when a read asks for them
            if stale is ...:
                view.cells, view.dirty = {}, None
            elif view.cells:
                if view.dirty is None:
                    view.dirty = np.zeros(chip.shape, dtype=bool)
                view.dirty[stale] = True

    def reram_voltage(self, v_cell: float, v_gate: float, g: np.ndarray) -> np.ndarray:
        """Voltage across the ReRAM of formed cells of conductance g (at the start of a pulse of
        v_cell on a gate of v_gate), interpolated from exact solves over the grid of G."""
        return _interp(self._reram_table(v_cell, v_gate), g, self._g_top)

    def _reram_table(self, v_cell: float, v_gate: float) -> np.ndarray:
        def tabulate() -> np.ndarray:
            return self.chip._solve(np.full(_GRID, v_cell), np.full(_GRID, v_gate), np.ones(_GRID, dtype=bool),
                                    self._grid())[0]
        return _remember(self.tables, (v_cell, v_gate), tabulate)

    def drive_table(self, v_cell: float, v_gate: float) -> tuple[np.ndarray, float]:
        """Switching drive of formed cells over the grid of G at the start of a pulse of v_cell
        on a gate of v_gate, ((|V_ReRAM| - V_th) / (V_ref - V_th))^v_power with the SET (v_cell
        >= 0) or RESET law, as complex64 (value + 1j * rise to the next node), and the scale from
        G to grid position: drive(G) = value[i] + f rise[i] at i + f = scale G. The table takes
        every _DRIVE_STEP-th node of the grid (4096 nodes, 23 nS apart: it stays in L1 cache);
        interpolating the drive there rather than the voltage on the full grid differs by
        < 2e-7 relative (float32 rounding included) except within one node of the threshold,
        where the drive is ~0."""
        def tabulate() -> np.ndarray:
            p, v_r = self.chip.p, self._reram_table(v_cell, v_gate)
            if v_cell >= 0:
                drive = np.maximum((v_r - p.v_set_th) / (p.v_set_ref - p.v_set_th), 0.0) ** p.v_power
            else:
                drive = np.maximum((-v_r - p.v_reset_th) / (p.v_reset_ref - p.v_reset_th), 0.0) ** p.v_power
            drive = drive[::_DRIVE_STEP]
            return (drive + 1j * np.append(np.diff(drive), 0.0)).astype(np.complex64)
        return _remember(self.drives, (v_cell, v_gate), tabulate), (_GRID - 1) / _DRIVE_STEP / self._g_top

    def _grid(self) -> np.ndarray:
        grid = np.linspace(0.0, self._g_top, _GRID)
        grid[0] = grid[1] * 1e-3  # a conductance of exactly 0 has no I(V) to fit
        return grid

    @property
    def _g_top(self) -> float:
        """Top of the conductance grid: no formed cell goes above its upper bound."""
        if self._top is None:
            self._top = 1.001 * float(self.chip._g_hi.max())
        return self._top

    # -- read configurations ---------------------------------------------------------------------
    def view(self, v_gate: float, v_max: float) -> _View:
        key = (float(v_gate), float(v_max))
        return _remember(self.views, key, lambda: self._tabulate(*key))

    def cell_array(self, view: _View, name: str) -> np.ndarray:
        """A per-cell array of `view`, up to date: "at_max" (I(v_max)), "noise_at_max"
        ((I(v_max) sigma / G)^2), "coef" ((terms, rows, cols) c_k) or "noise_slope"
        ((c_0 sigma / G)^2 with c_0 the small-signal slope)."""
        self.refresh()
        if view.dirty is not None:
            cells = np.nonzero(view.dirty)
            for known in view.cells:
                view.cells[known] = self._derive(view, known, cells, view.cells[known])
            view.dirty = None
        if name not in view.cells:
            view.cells[name] = self._derive(view, name, ..., None)
        return view.cells[name]

    def _derive(self, view: _View, name: str, cells, out: np.ndarray | None) -> np.ndarray:
        g, formed = self.g[cells], self.chip._formed[cells]
        if name in ("at_max", "noise_at_max"):
            value = np.where(formed, _interp(view.at_max, g, view.g_top), view.pristine_at_max)
            if name == "noise_at_max":
                value = value * value * self.rel2[cells]
        elif name == "coef":
            pristine = np.reshape(view.pristine, (-1,) + (1,) * np.ndim(g))
            value = np.where(formed, _interp(view.tables, g, view.g_top), pristine)
        else:  # noise_slope
            slope = np.where(formed, _interp(view.tables[0], g, view.g_top), view.pristine[0])
            value = slope * slope * self.rel2[cells]
        if out is None or cells is ...:
            return np.ascontiguousarray(value, dtype=self.dtype)
        if name == "coef":
            out[(slice(None),) + cells] = value
        else:
            out[cells] = value
        return out

    def _tabulate(self, v_gate: float, v_max: float) -> _View:
        """I(V) of formed cells over a grid of G and of pristine cells, through exact solves at
        v_max (k / terms), k = 1..terms, with the fewest terms that match the circuit to
        _TERM_RTOL at intermediate voltages."""
        chip, g_top = self.chip, self._g_top
        g = np.append(self._grid(), chip.p.g_pristine)  # the grid of formed cells, one pristine cell
        formed = np.arange(g.size) < _GRID

        def solve(v: float) -> np.ndarray:
            return chip._solve(np.full(g.size, v), np.full(g.size, v_gate), formed, g)[1]

        check = v_max * np.array([0.13, 0.37, 0.61, 0.89])
        exact = np.array([solve(v) for v in check])
        for terms in range(1, _MAX_TERMS + 1):
            nodes = v_max * np.arange(1, terms + 1) / terms
            powers = 2 * np.arange(terms) + 1
            currents = np.array([solve(v) for v in nodes])
            tables = np.linalg.solve(nodes[:, None] ** powers, currents)
            fitted = (check[:, None] ** powers) @ tables
            if np.max(np.abs(fitted - exact) / np.abs(exact)) < _TERM_RTOL:
                break
        return _View(g_top, tables[:, :-1], currents[-1, :-1], tables[:, -1], float(currents[-1, -1]))


def _remember(cache: dict, key, make):
    """cache[key], made on first use; the oldest entry goes when _KEPT are held."""
    if key not in cache:
        if len(cache) >= _KEPT:
            cache.pop(next(iter(cache)))
        cache[key] = make()
    return cache[key]


def _interp(table: np.ndarray, g: np.ndarray, g_top: float) -> np.ndarray:
    """Linear interpolation of `table` (on the uniform grid 0..g_top; a stack of tables along
    the first axis shares one lookup) at conductances g."""
    n = table.shape[-1]
    u = np.asarray(g) * ((n - 1) / g_top)
    i = np.minimum(u.astype(np.intp), n - 2)
    f = u - i
    low = table[..., i]
    return low + (table[..., i + 1] - low) * f
