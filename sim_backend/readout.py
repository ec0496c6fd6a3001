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
A float32 read state also keeps (sigma / G)^2 in float32, fits I(V) with the fewest terms
matching the circuit to its own rounding (2^-24) rather than to 1e-9: 3 terms at 0.2 V, not 4,
and interpolates its tables in float32 (< 3e-7 relative).
The conductance stays float64 (ArrayPhysics._relaxed, to a few ulp of conductance()).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from types import EllipsisType

import numpy as np

FRESH = 1e-2
F32_CELLS = 1 << 15  # 128 x 256 and below: float64; 256 x 256 and above: float32
_GRID = 1 << 15  # conductance grid of the I(V) tables: linear interpolation to < 1e-10 relative
_MAX_TERMS = 4  # odd terms of I(V): V, V^3, V^5, V^7
_TERM_RTOL = 1e-9  # fewest terms whose polynomial matches the circuit this closely up to v_max
_TERM_RTOL_F32 = 2.0 ** -24  # the same in a float32 read state: its own rounding (half an ulp)
_RELAX_STATE = ("_g", "_t_prog", "_z_relax", "_cycles", "_g_lo", "_g_hi", "_formed")  # what conductance() reads
_DERIVE_CHUNK = 1 << 16  # cells per pass of the per-cell arrays' interpolation (work buffers)
_GROUPS = {"at_max": ("at_max", "noise_at_max"), "noise_at_max": ("at_max", "noise_at_max"),
           "coef": ("coef", "noise_slope"), "noise_slope": ("coef", "noise_slope")}
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
    rises: np.ndarray = field(init=False)  # (terms, _GRID - 1) tables[:, i + 1] - tables[:, i]
    rise_at_max: np.ndarray = field(init=False)
    cells: dict[str, np.ndarray] = field(default_factory=dict)  # lazily built per-cell arrays
    narrow: dict[str, np.ndarray] = field(default_factory=dict)  # float32 tables of a float32 read state
    # cells refreshed since `cells` were derived: None, a flat mask or ... (all)
    dirty: np.ndarray | EllipsisType | None = None

    def __post_init__(self) -> None:
        self.rises, self.rise_at_max = np.diff(self.tables), np.diff(self.at_max)


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
        # conductance, relative read-noise variance and expiry of every cell: set together by refresh()
        self.g: np.ndarray | None = None
        self.rel2: np.ndarray | None = None
        self.expiry: np.ndarray | None = None
        self.fresh_until = -np.inf
        self._evaluated_at = -np.inf
        self.views: dict[tuple, _View] = {}
        self.tables: dict[tuple, np.ndarray] = {}
        self.drives: dict[tuple, np.ndarray] = {}
        self.train_stacks: dict[tuple, np.ndarray] = {}
        self.pristine_solves: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        self.statics: dict[str, np.ndarray] = {}
        self._flats: dict[tuple[str, ...], list[np.ndarray]] = {}
        self._lines: tuple = (None, None)  # (the last block, its lines): a read asks twice
        self._v_form_min: float | None = None
        self._top: float | None = None

    def programmed(self, cells) -> None:
        """`cells` (an index) were programmed: their read state is stale."""
        if self.expiry is not None:
            self.expiry[cells] = -np.inf
            self.fresh_until = -np.inf

    def programmed_flat(self, cells: np.ndarray) -> None:
        """programmed() of cells given by flat index (what the update kernel reports)."""
        if self.expiry is not None:
            self.expiry.put(cells, -np.inf)
            self.fresh_until = -np.inf

    def marked_stale(self) -> None:
        """Cells were marked stale in `expiry` directly (kernels.fire_segments): none is fresh
        until the next refresh."""
        self.fresh_until = -np.inf

    def fresh_g(self) -> np.ndarray | None:
        """Every cell's conductance now as a read sees it (the cached one, within FRESH of
        its relaxation) when no cell is stale; None otherwise."""
        now = self.chip.clock.now
        if self.expiry is not None and self._evaluated_at <= now <= self.fresh_until:
            return self.g
        return None

    def static(self, name: str) -> np.ndarray:
        """A flat float32 copy of a per-cell array that only a state write or new parameters
        change: "rate" or "cycles_per_step" (1 / (2 (g_hi - g_lo)), the cycles a step of 1 S
        counts)."""
        if name not in self.statics:
            chip = self.chip
            if name == "rate":
                value = np.ascontiguousarray(chip._rate, dtype=np.float32).reshape(-1)
            else:  # in float64 through a reused buffer, rounded into the one new array (at 4096 x 4096
                # two fresh float64 temporaries cost ~0.5 s of page faults)
                value = np.empty(chip.rows * chip.cols, np.float32)
                g_lo, g_hi = chip._flat("_g_lo"), chip._flat("_g_hi")
                for start in range(0, value.size, _DERIVE_CHUNK):
                    part = slice(start, min(start + _DERIVE_CHUNK, value.size))
                    span = np.subtract(g_hi[part], g_lo[part], out=chip._work("span", part.stop - start, np.float64))
                    np.divide(0.5, span, out=span)
                    value[part] = span
            self.statics[name] = value
        return self.statics[name]

    def flat(self, names: tuple[str, ...]) -> list[np.ndarray]:
        """The chip's private state arrays `names` as flat views (ArrayPhysics._flat), kept
        until invalidate(): every replacement of a state array goes through it."""
        views = self._flats.get(names)
        if views is None:
            views = self._flats[names] = [self.chip._flat(name) for name in names]
        return views

    def block_lines(self, block) -> tuple[np.ndarray, np.ndarray]:
        """_block_lines of `block`, kept for the last block asked (a read's refresh and its
        derivation ask for the same one)."""
        if self._lines[0] is not block:
            self._lines = (block, _block_lines(block, self.chip.shape))
        return self._lines[1]

    @property
    def v_form_min(self) -> float:
        if self._v_form_min is None:
            self._v_form_min = float(self.chip._v_form.min())
        return self._v_form_min

    # -- per-cell state --------------------------------------------------------------------------
    def refresh(self, block=...) -> None:
        """Bring the conductance and noise of the stale cells of `block` (an index of
        physics._block_index; default all) up to the clock: every cell by ArrayPhysics._relaxed
        (chunked, in reused buffers), the stale cells by flat index when they are few or the
        block is part of the array by the compiled kernels.relax_cells (gathered, evaluated and
        scattered in one pass). A read refreshes only the block it reads: the cells a training
        step programs in other matrices wait for their own reads."""
        chip, now = self.chip, self.chip.clock.now
        if self.expiry is not None and now <= self.fresh_until and now >= self._evaluated_at:
            return
        size = chip.rows * chip.cols
        whole = _whole(block, chip.shape)
        if self.expiry is None or now < self._evaluated_at:
            stale = ...
            self.g = np.empty(chip.shape)
            self.rel2 = np.empty(chip.shape, dtype=self.dtype)
            self.expiry = np.empty(chip.shape)
        elif whole:
            expired = self.expiry < now
            # counted first: the indices of most of a large array cost more than the count
            stale = ... if np.count_nonzero(expired) > size // 4 else np.flatnonzero(expired)
        else:
            rows, cols = self.block_lines(block)
            stale = np.empty(rows.size * cols.size, np.int64)
            stale = stale[:_kernels().cells_below(self.expiry.reshape(-1), chip.cols, rows, cols, now, stale)]
            if not stale.size:
                return
        g, rel2, expiry = self._cells()
        outputs = g.reshape(-1), rel2.reshape(-1), expiry.reshape(-1)
        state = self.flat(_RELAX_STATE)
        if stale is ...:
            chip._relaxed(state, now, *outputs, fresh=FRESH)
        else:
            _kernels().relax_cells(stale, *state, chip._relax_law, now, FRESH, *outputs)
        if whole:  # the earliest expiry of a part is not that of the array
            self.fresh_until = float(expiry.min())
        self._evaluated_at = now
        for view in self.views.values():  # derived arrays follow when a read asks for them
            if not view.cells or view.dirty is ...:
                continue
            if stale is ...:
                view.dirty = ...
            else:
                if view.dirty is None:
                    view.dirty = np.zeros(size, dtype=bool)
                view.dirty[stale] = True

    def _cells(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(g, rel2, expiry), which the first refresh() allocates."""
        if self.g is None or self.rel2 is None or self.expiry is None:
            raise AssertionError("the read state's per-cell arrays are used before refresh()")
        return self.g, self.rel2, self.expiry

    def reram_voltage(self, v_cell: float, v_gate: float, g: np.ndarray) -> np.ndarray:
        """Voltage across the ReRAM of formed cells of conductance g (at the start of a pulse of
        v_cell on a gate of v_gate), interpolated from exact solves over the grid of G."""
        return _interp(self._reram_table(v_cell, v_gate), g, self._g_top)

    def _reram_table(self, v_cell: float, v_gate: float) -> np.ndarray:
        def tabulate() -> np.ndarray:
            return self.chip._solve(np.full(_GRID, v_cell), np.full(_GRID, v_gate), np.ones(_GRID, dtype=bool),
                                    self._grid())[0]
        return _remember(self.tables, (v_cell, v_gate), tabulate)

    def pristine_solve(self, v_cell: np.ndarray, v_gate: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """chip._solve of pristine cells (1-D arrays; read-only results): they change only by
        forming, so a forming ramp solves the same levels for cell after cell."""
        key = b"".join(array.tobytes() for array in np.broadcast_arrays(v_cell, v_gate, g))
        return _remember(self.pristine_solves, key,
                         lambda: self.chip._solve(v_cell, v_gate, np.zeros(v_cell.size, dtype=bool), g))

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
        return _remember(self.drives, (v_cell, v_gate), tabulate), self.drive_scale

    def train_tables(self, runs: np.ndarray, amplitudes: np.ndarray, pulsed: np.ndarray | None, v_gate: float
                     ) -> tuple[np.ndarray, np.ndarray, float]:
        """The drive tables an update's trains need (kernels.fire_segments): (the tables of the
        v_cells used, stacked (k, nodes) as uint64; per run r (runs: each train's, from 0 up by
        one) and side s the row of its v_cell, +amplitude on side 0, -amplitude on side 1, in
        table_of[r, s]; the scale). Only the sides a run pulses (pulsed, (2, trains); None:
        none) are tabulated; one stack per set of v_cells is kept."""
        n, n_runs = len(runs), int(runs[-1]) + 1
        table_of = np.zeros((n_runs, 2), np.int64)
        needed: list[float] = []
        if pulsed is not None:
            starts = [0, n] if n_runs == 1 else np.searchsorted(runs, np.arange(n_runs + 1)).tolist()
            for run in range(n_runs):
                start, end = starts[run], starts[run + 1]
                for side in range(2):
                    if pulsed[side, start:end].any():
                        v_cell = float(amplitudes[start]) * (1.0 if side == 0 else -1.0)
                        if v_cell not in needed:
                            needed.append(v_cell)
                        table_of[run, side] = needed.index(v_cell)
        key = (tuple(needed), float(v_gate))

        def stack() -> np.ndarray:
            if not needed:
                return np.zeros((1, 1), np.uint64)
            return np.stack([self.drive_table(v_cell, v_gate)[0].view(np.uint64) for v_cell in needed])
        return _remember(self.train_stacks, key, stack), table_of, self.drive_scale

    @property
    def drive_scale(self) -> float:
        """Nodes of a drive table per siemens of conductance."""
        return (_GRID - 1) / _DRIVE_STEP / self._g_top

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

    def cell_array(self, view: _View, name: str, block=...) -> np.ndarray:
        """A per-cell array of `view`, up to date in `block` (default everywhere): "at_max"
        (I(v_max)), "noise_at_max" ((I(v_max) sigma / G)^2), "coef" ((terms, rows, cols) c_k)
        or "noise_slope" ((c_0 sigma / G)^2 with c_0 the small-signal slope). The arrays come
        in pairs (at_max with noise_at_max, coef with noise_slope) from one interpolation; after
        a refresh they are re-derived in place, at the refreshed cells of the block only when
        those are few."""
        return self.cell_pair(view, name, block)[0 if name in ("at_max", "coef") else 1]

    def cell_pair(self, view: _View, name: str, block=...) -> tuple[np.ndarray, np.ndarray]:
        """(at_max, noise_at_max) or (coef, noise_slope) of `view` (name: either of the pair),
        up to date in `block` (see cell_array): one refresh and one derivation for both."""
        group = _GROUPS[name]
        self.refresh(block)
        self._derive_dirty(view, block)
        if group[0] not in view.cells:
            self._derive(view, group, ...)
        return view.cells[group[0]], view.cells[group[1]]

    def _derive_dirty(self, view: _View, block) -> None:
        """Re-derive the view's arrays at its dirty cells in `block` (all of them when every
        cell is dirty or the block is the whole array)."""
        shape, mask = self.chip.shape, view.dirty
        if mask is None:
            return
        if mask is ... or _whole(block, shape):
            cells = mask if mask is ... else np.flatnonzero(mask)
            view.dirty = None
        else:
            rows, cols = self.block_lines(block)
            cells = np.empty(rows.size * cols.size, np.int64)
            cells = cells[:_kernels().take_marked(mask, shape[1], rows, cols, cells)]
            if not cells.size:
                return
        for group in {_GROUPS[known] for known in view.cells}:
            self._derive(view, group, cells)

    def _derive(self, view: _View, group: tuple[str, str], cells) -> None:
        """Interpolate the pair `group` of per-cell arrays at `cells`: ... for all (into the
        arrays already held, or new ones), in chunks of _DERIVE_CHUNK with reused buffers;
        otherwise flat indices (a read's refreshed cells), in one compiled pass of the same
        operations (kernels.derive_cells). The grid position in float64 as _interp, the
        interpolation in the read state's dtype (float32: the tables rounded to float32 and two
        float32 operations, < 3e-7 relative against the float64 interpolation, < 6e-7 for the
        squared noise arrays: four orders below the read noise, as the float32 storage)."""
        chip, dtype = self.chip, self.dtype
        value_name, noise_name = group
        coef = value_name == "coef"
        tables = view.tables if coef else view.at_max[None, :]
        rises = view.rises if coef else view.rise_at_max[None, :]
        if dtype != np.float64:
            if value_name not in view.narrow:
                view.narrow[value_name] = tables.astype(dtype)
                view.narrow[value_name + "_rises"] = rises.astype(dtype)
            tables, rises = view.narrow[value_name], view.narrow[value_name + "_rises"]
        pristine = view.pristine if coef else np.array([view.pristine_at_max])
        shape = (len(tables),) + chip.shape if coef else chip.shape
        if value_name not in view.cells:
            view.cells[value_name] = np.empty(shape, dtype)
            view.cells[noise_name] = np.empty(chip.shape, dtype)
            cells = ...
        values = view.cells[value_name].reshape(len(tables), -1)
        noise = view.cells[noise_name].reshape(-1)
        g, rel2, _ = self._cells()
        g, rel2, formed = g.reshape(-1), rel2.reshape(-1), chip._flat("_formed")
        scale = (_GRID - 1) / view.g_top
        if cells is not ...:
            _kernels().derive_cells(cells, g, rel2, formed, tables, rises, pristine, scale, values, noise)
            return
        for start in range(0, g.size, _DERIVE_CHUNK):
            part = slice(start, min(start + _DERIVE_CHUNK, g.size))
            g_part, rel2_part, formed_part = g[part], rel2[part], formed[part]

            def work(name: str, dtype=np.float64, n=g_part.size) -> np.ndarray:
                return chip._work("derive_" + name, n, dtype)

            u = np.multiply(g_part, scale, out=work("u"))
            whole = np.floor(u, out=work("whole"))  # u >= 0: the truncation of _interp
            if whole[-1] > _GRID - 2 or whole.max() > _GRID - 2:
                np.minimum(whole, _GRID - 2, out=whole)
            u -= whole  # the fraction
            i = work("i", np.intp)
            np.copyto(i, whole, casting="unsafe")
            if dtype != np.float64:
                frac = work("frac", dtype)
                np.copyto(frac, u, casting="same_kind")
                u = frac
            pristine_part = np.logical_not(formed_part, out=work("pristine", bool))
            some_pristine = bool(pristine_part.any())
            low = work("low", dtype)
            for k, (table, rise) in enumerate(zip(tables, rises)):
                high = values[k, part]  # in place
                table.take(i, out=low, mode="clip")  # i is in range: clip only skips the check
                rise.take(i, out=high, mode="clip")  # table[i + 1] - table[i]
                high *= u
                high += low
                if some_pristine:
                    np.copyto(high, pristine[k], where=pristine_part)
                if k == 0:
                    slope2 = np.multiply(high, high, out=low)
                    np.multiply(slope2, rel2_part, out=noise[part], casting="same_kind")

    def _tabulate(self, v_gate: float, v_max: float) -> _View:
        """I(V) of formed cells over a grid of G and of pristine cells, through exact solves at
        v_max (k / terms), k = 1..terms, with the fewest terms that match the circuit to
        _TERM_RTOL at intermediate voltages."""
        chip, g_top = self.chip, self._g_top
        g = np.append(self._grid(), chip.p.g_pristine)  # the grid of formed cells, one pristine cell
        formed = np.arange(g.size) < _GRID

        def solve(v: float) -> np.ndarray:
            return chip._solve(np.full(g.size, v), np.full(g.size, v_gate), formed, g)[1]

        tolerance = _TERM_RTOL if self.dtype == np.float64 else _TERM_RTOL_F32
        check = v_max * np.array([0.13, 0.37, 0.61, 0.89])
        exact = np.array([solve(v) for v in check])
        for terms in range(1, _MAX_TERMS + 1):
            nodes = v_max * np.arange(1, terms + 1) / terms
            powers = 2 * np.arange(terms) + 1
            currents = np.array([solve(v) for v in nodes])
            tables = np.linalg.solve(nodes[:, None] ** powers, currents)
            fitted = (check[:, None] ** powers) @ tables
            if np.max(np.abs(fitted - exact) / np.abs(exact)) < tolerance:
                break
        # (contiguous, all of them: the compiled derivation is warmed up for contiguous arrays; a
        # strided pristine column compiled a second form, 0.17 s, in a session's first backward read)
        return _View(g_top, np.ascontiguousarray(tables[:, :-1]), np.ascontiguousarray(currents[-1, :-1]),
                     np.ascontiguousarray(tables[:, -1]), float(currents[-1, -1]))


def _kernels():
    """sim_backend.kernels, as physics.load_kernels gives it (physics imports this module, so
    not at its top; an import statement per call cost ~3 us, ~16 calls a digits batch)."""
    physics = sys.modules[__name__.rpartition(".")[0] + ".physics"]
    return physics.load_kernels()


def _whole(block, shape: tuple[int, int]) -> bool:
    """Whether an index of physics._block_index (or ...) selects every cell."""
    if block is ...:
        return True
    return all(isinstance(axis, slice) and axis.indices(n)[:2] == (0, n) and (axis.step or 1) == 1
               for axis, n in zip(block, shape))


def _block_lines(block, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The row and column lines (int64) of an index of physics._block_index."""
    rows, cols = (np.arange(*axis.indices(n), dtype=np.int64) if isinstance(axis, slice)
                  else np.asarray(axis, dtype=np.int64).reshape(-1) for axis, n in zip(block, shape))
    return rows, cols


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
