"""Physics of a 1T1R CMO/HfOx ReRAM array, vectorized over the whole array.

Each cell is an n-MOSFET selector (gate on its word line) in series with an analog ReRAM
between the cell's bit line and source line. A bias held for some duration may form a pristine
cell (gate-limited) or step a formed cell's conductance toward its window bound (SET for
V_BL > V_SL, RESET for V_BL < V_SL): generalized soft bounds with a threshold-power voltage
law, device-to-device and cycle-to-cycle noise; the selector limits the current and so the
voltage the ReRAM sees. After programming, the conductance relaxes (log-time law); every read
carries 1/f noise that grows with the time since programming; cycling closes the window.
"""
from __future__ import annotations

import json
import sys
import tomllib
from dataclasses import dataclass, fields
from math import cosh, sinh, tanh
from pathlib import Path
from typing import Any

import numpy as np

from .clock import VirtualClock
from .readout import _RELAX_STATE, ReadState

DEFAULT_DEVICE_FILE = Path(__file__).with_name("device_cmo_hfox.toml")
_NEWTON_STEPS = 60
_SUBSTEPS = 8  # re-solve the series circuit while a cell switches (self-limiting SET/RESET)
_FIT_STEP = 0.05  # V: read_rows fits I(V) up to max|V| rounded up to this (few fits, reused)
_CHUNK = 1 << 16  # elements of a reused work buffer (256-512 kB)
G_NOISE_REF = 1e-6  # S: the read-noise law grows with log10(G / G_NOISE_REF)
_STEP_STATE = ("_formed", "_stuck", "_g", "_t_prog", "_z_relax", "_cycles", "_g_lo", "_g_hi")  # what the update kernel takes
SEGMENT_COINCIDENCES = 32  # the most one train gives a cell: consecutive trains compose in closed form up to it
_SMALL = 4096  # conductance() of fewer cells: plain numpy (a chunked pass costs more calls)
_READ_CHUNK = _CHUNK  # cells per pass of conductance()'s law (float64 work buffers of 512 kB)


def load_kernels():
    """The compiled kernels (sim_backend.kernels), imported on first use: numba's import and the
    kernels' cache load take ~0.4 s, which a process that never simulates (most CLI commands,
    which import this module) need not pay."""
    kernels = sys.modules.get(_KERNELS)
    if kernels is None:
        from . import kernels
    return kernels


_KERNELS = __name__.rpartition(".")[0] + ".kernels"


def _block_index(rows, cols) -> tuple:
    """Index of the block rows x cols (line indices): slices where the lines are contiguous, so
    that the block of a cached array is a view, not a copy."""
    def axis(lines):
        lines = np.asarray(lines, dtype=np.intp).reshape(-1)
        # increasing with first and last lines size - 1 apart: contiguous (np.diff costs ~5 us)
        if lines.size and lines[-1] - lines[0] == lines.size - 1 and (lines[1:] > lines[:-1]).all():
            return slice(int(lines[0]), int(lines[-1]) + 1)
        return lines
    r, c = axis(rows), axis(cols)
    return np.ix_(r, c) if not isinstance(r, slice) and not isinstance(c, slice) else (r, c)


def _driven(lines, inputs: np.ndarray) -> tuple:
    """(lines, inputs) of a read restricted to the lines some vector drives (inputs: (batch,
    lines)): a cell on an undriven line carries exactly nothing (a gate open for 0 s, a column at
    0 V: I(0) = 0, and its noise variance goes with the input squared), so the read neither
    reads nor refreshes it; e.g. the border pixels of a digits batch, whose cells never see an
    update either and would be the old ones of a refresh. Unchanged when every line or none is
    driven (the batch's draws are per output, the same either way)."""
    driven = inputs.any(axis=0)  # (nonzero, NaN included)
    if driven.all() or not driven.any():
        return lines, inputs
    return np.asarray(lines).reshape(-1)[driven], inputs[:, driven]


def _at_least(x: np.ndarray, bound: float, out: np.ndarray) -> np.ndarray:
    """np.maximum(x, bound, out=out) for a scalar bound, as np.clip (twice as fast here)."""
    return np.clip(x, bound, np.inf, out=out)


def _at_most(x: np.ndarray, bound: float, out: np.ndarray) -> np.ndarray:
    """np.minimum(x, bound, out=out) for a scalar bound, as np.clip."""
    return np.clip(x, -np.inf, bound, out=out)


def _length(index, n: int) -> int:
    """Number of lines an axis index of _block_index selects out of n."""
    return len(range(n)[index]) if isinstance(index, slice) else np.asarray(index).size


class _StateArray:
    """A per-cell state array, public for tests, benchmarks and studies. Reaching it from outside
    drops the cached read state (the caller may write into it); the model uses the private one.
    Write through the attribute (`chip.g[...] = ...`), not through a reference kept from an
    earlier access: that write would not reach the cache."""

    def __set_name__(self, owner, name: str) -> None:
        self.private = "_" + name

    def __get__(self, chip, owner=None):
        if chip is None:
            return self
        chip._read.invalidate()
        return getattr(chip, self.private)

    def __set__(self, chip, value) -> None:
        chip._read.invalidate()
        setattr(chip, self.private, value)


@dataclass(frozen=True)
class DeviceParams:
    """Device parameters (SI units); see device_cmo_hfox.toml for the source of each."""

    g_min: float
    g_max: float
    d2d_window: float
    v_form_mean: float
    v_form_std: float
    g_formed_mean: float
    g_formed_std: float
    g_pristine: float
    v_pristine: float
    p_unformable: float
    p_stuck: float
    v_th: float
    v_gate_ref: float
    i_sat_ref: float
    r_on_ref: float
    v_nonlinear: float
    tau_set: float
    v_set_ref: float
    v_set_th: float
    tau_reset: float
    v_reset_ref: float
    v_reset_th: float
    v_power: float
    d2d_rate: float
    c2c_noise: float
    drift_mean: float
    drift_sigma_slope: float
    drift_sigma_0: float
    read_noise: float
    t_read_noise: float
    endurance_n0: float
    endurance_closing: float
    v_read: float
    t_read: float

    @classmethod
    def load(cls, path: str | Path | None = None) -> DeviceParams:
        """Read a device file: sections of `name = {value, unit, source}` entries."""
        path = Path(path) if path else DEFAULT_DEVICE_FILE
        with open(path, "rb") as f:
            try:
                doc = tomllib.load(f)
            except ValueError as exc:  # TOMLDecodeError, UnicodeDecodeError, an integer of > 4300 digits
                raise ValueError(f"{path}: not a valid TOML file ({exc})") from exc
        values = {}
        for section_name, section in doc.items():  # every entry checked: errors name file and key
            if not isinstance(section, dict):
                raise ValueError(f"{path}: {section_name} must be a [section] of entries, got {section!r}")
            for name, entry in section.items():
                value = entry.get("value") if isinstance(entry, dict) else None
                # not NaN, inf, nor an integer beyond a float (10**400: OverflowError)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not abs(value) <= _FLOAT_MAX:
                    raise ValueError(f"{path}: [{section_name}] {name} must be {{value = <finite number>, ...}}, "
                                     f"got {entry!r}")
                if name in values:
                    raise ValueError(f"{path}: [{section_name}] {name} is defined twice")
                values[name] = value
        expected = {f.name for f in fields(cls)}
        missing, unknown = expected - values.keys(), values.keys() - expected
        if missing or unknown:
            raise ValueError(f"{path}: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}")
        return cls(**{k: float(v) for k, v in values.items()})


_FLOAT_MAX = sys.float_info.max


def _state_meta(state: dict[str, np.ndarray]) -> dict[str, Any]:
    """The 'meta' entry of a chip state: rows, cols, seed, now and rng, each checked."""
    if "meta" not in state:
        raise ValueError("chip state has no 'meta'")
    try:
        meta = json.loads(str(state["meta"]))
    except ValueError as exc:
        raise ValueError(f"chip state 'meta' is not JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"chip state 'meta' must be a JSON object, got {type(meta).__name__}")
    for key, low in (("rows", 1), ("cols", 1), ("seed", 0)):
        if type(meta.get(key)) is not int or meta[key] < low:
            raise ValueError(f"chip state 'meta' {key} must be an integer >= {low}, got {meta.get(key)!r}")
    now = meta.get("now")
    if isinstance(now, bool) or not isinstance(now, (int, float)) or not 0 <= now <= _FLOAT_MAX:
        raise ValueError(f"chip state 'meta' now must be a finite time >= 0, got {now!r}")
    if not isinstance(meta.get("rng"), dict):
        raise ValueError(f"chip state 'meta' rng must be a bit generator state, got {meta.get('rng')!r}")
    return meta


class ArrayPhysics:
    """State and dynamics of a rows x cols 1T1R array on a virtual clock with a seeded RNG.

    `g` is each cell's conductance at its last programming event (at the read voltage, the
    selector excluded); `conductance()` adds the relaxation since then. Read-only operations
    (read_forward, read_rows) take what they need from a cached read state (sim_backend.readout)
    that programming events and the clock keep up to date.
    """

    STATE_KEYS = ("g", "formed", "t_prog", "z_relax", "cycles", "stuck", "g_lo", "g_hi", "v_form",
                  "g_formed", "rate")
    g, formed, t_prog, z_relax, cycles, stuck, g_lo, g_hi, v_form, g_formed, rate = (
        _StateArray() for _ in STATE_KEYS)

    def __init__(self, rows: int, cols: int, params: DeviceParams | None = None, seed: int = 0,
                 clock: VirtualClock | None = None):
        self._configure(rows, cols, params, seed, clock)
        self.reset()

    def _configure(self, rows: int, cols: int, params: DeviceParams | None, seed: int,
                   clock: VirtualClock | None) -> None:
        """Everything but the per-cell state."""
        if rows < 1 or cols < 1:
            raise ValueError(f"array must be at least 1x1, got {rows}x{cols}")
        self.rows, self.cols, self.seed = rows, cols, seed
        self.shape = (rows, cols)
        self._read = ReadState(self)
        self._scratch: dict[tuple, np.ndarray] = {}
        self._buffers: dict[str, np.ndarray] = {}
        load_kernels()  # compiled (a fresh checkout, ~12 s) or loaded from numba's cache here, not in an update
        self.p = params or DeviceParams.load()
        self.clock = clock or VirtualClock()

    @property
    def p(self) -> DeviceParams:
        return self._p

    @p.setter
    def p(self, params: DeviceParams) -> None:
        self._p = params
        self._read.invalidate()
        # soft_bounds_steps' constants of these parameters (sim_backend.kernels gives their order)
        self._step_law = np.array([params.c2c_noise, params.endurance_n0, params.endurance_closing / np.log(10.0),
                                   params.drift_mean, params.drift_sigma_slope, params.drift_sigma_0,
                                   params.read_noise, np.log(2.0 * params.t_read_noise), G_NOISE_REF])
        # relax_cells' (kernels.relax_cells gives their order)
        self._relax_law = np.array([params.read_noise, params.t_read_noise, params.drift_sigma_slope,
                                    params.drift_sigma_0, params.drift_mean, params.endurance_n0,
                                    params.endurance_closing, G_NOISE_REF])

    def reset(self) -> None:
        """A pristine chip: device-to-device draws from the seed, nothing formed."""
        p, shape = self.p, self.shape
        self.rng = rng = np.random.default_rng(self.seed)
        self._g_lo = p.g_min * rng.lognormal(0.0, p.d2d_window, shape)
        self._g_hi = p.g_max * rng.lognormal(0.0, p.d2d_window, shape)
        self._v_form = np.where(rng.random(shape) < p.p_unformable, np.inf,
                               rng.normal(p.v_form_mean, p.v_form_std, shape))
        self._g_formed = np.clip(rng.normal(p.g_formed_mean, p.g_formed_std, shape), self._g_lo, self._g_hi)
        self._rate = rng.lognormal(0.0, p.d2d_rate, shape)
        self._stuck = rng.random(shape) < p.p_stuck
        self._formed = np.zeros(shape, dtype=bool)
        self._g = np.full(shape, p.g_pristine)
        self._t_prog = np.zeros(shape)
        self._z_relax = np.zeros(shape)
        self._cycles = np.zeros(shape)
        self._read.invalidate()

    # -- conductance --------------------------------------------------------------------------
    def bounds(self, cells=...) -> tuple[np.ndarray, np.ndarray]:
        """Window of the cells (default all) after their cycling so far: endurance closes it,
        mostly from above."""
        p = self.p
        closing = np.minimum(0.9, p.endurance_closing * np.log10(1.0 + self._cycles[cells] / p.endurance_n0))
        g_lo, g_hi = self._g_lo[cells], self._g_hi[cells]
        span = g_hi - g_lo
        return g_lo + 0.25 * closing * span, g_hi - 0.75 * closing * span

    def conductance(self, cells=...) -> np.ndarray:
        """Conductance now (S) of the cells (an index into the array; default all): programmed
        value plus relaxation since programming.

        Relaxation shifts the mean by -drift_mean ln t (t in s) with a spread that, read out with
        the 1/f read noise on top, gives the published measured spread
        drift_sigma_slope ln t + drift_sigma_0: the relaxation's own spread is that law minus the
        read noise in quadrature. One draw per cell and programming event (a consistent
        trajectory); it ramps in over the first second and stays inside the window. Pristine
        cells report g_pristine.
        """
        p = self.p
        age = self.clock.now - self._t_prog[cells]
        if np.size(age) > _SMALL:  # the same law in chunks (_relaxed)
            state = [getattr(self, name)[cells] for name in _RELAX_STATE]
            out = np.empty(np.shape(age))
            self._relaxed([np.reshape(array, -1) for array in state], self.clock.now, out.reshape(-1))
            return out
        log_t = np.log(np.maximum(age, 1.0))
        g = self._g[cells]
        measured = p.drift_sigma_slope * log_t + p.drift_sigma_0
        spread = np.sqrt(np.maximum(measured**2 - self.read_noise_sigma(g, np.maximum(age, 1.0))**2, 0.0))
        drift = np.minimum(age, 1.0) * (-p.drift_mean * log_t + spread * self._z_relax[cells])
        lo, hi = self.bounds(cells)
        return np.where(self._formed[cells], np.minimum(np.maximum(g + drift, lo), hi), g)

    def read_noise_sigma(self, g: np.ndarray, age: np.ndarray) -> np.ndarray:
        """1/f read noise (S): read_noise * log10(G/uS) * sqrt(ln((t + t_r) / (2 t_r)))."""
        p = self.p
        growth = np.log((np.maximum(age, 0.0) + p.t_read_noise) / (2 * p.t_read_noise))
        return p.read_noise * np.log10(np.maximum(g, G_NOISE_REF) / G_NOISE_REF) * np.sqrt(np.maximum(growth, 0.0))

    def _relaxed(self, state, now: float, out: np.ndarray, rel2: np.ndarray | None = None,
                 expiry: np.ndarray | None = None, fresh: float = 0.0) -> None:
        """conductance()'s law for flat cells: `state` holds 1-D arrays of the _RELAX_STATE
        values of the cells (g, t_prog, z_relax, cycles, g_lo, g_hi, formed); `out` (float64)
        gets their conductance now, `rel2` (if given, float64 or float32) the relative read-noise
        variance (read_noise_sigma(G, age) / G)^2 of formed cells (0 for pristine ones) and
        `expiry` (if given) now + fresh max(age, 1 s).

        The same float64 operations as the law's plain numpy form, in chunks of _READ_CHUNK cells
        with reused work buffers and in place (a fresh temporary of megabytes costs more in page
        faults than the arithmetic on it), except that squares of square roots are taken as their
        argument (results equal to a few ulp). Per-cell logs of the age are numbers when every
        cell of a chunk is younger than 1 s (ln max(t, 1) = 0, the read noise at 1 s) or all
        share one age (the cells of a dense update); the window closing is skipped for
        never-cycled cells. A float32 `rel2` is computed in float32 from G (a relative
        rounding of ~1e-7 of the noise variance, where the float32 read state rounds it anyway).
        """
        g, t_prog, z_relax, cycles, g_lo, g_hi, formed = state
        n = len(g)
        for start in range(0, n, _READ_CHUNK):
            part = slice(start, min(start + _READ_CHUNK, n))
            self._relaxed_chunk(g[part], t_prog[part], z_relax[part], cycles[part], g_lo[part], g_hi[part],
                                formed[part], now, out[part], None if rel2 is None else rel2[part],
                                None if expiry is None else expiry[part], fresh)

    def _relaxed_chunk(self, g, t_prog, z_relax, cycles, g_lo, g_hi, formed, now: float, out,
                       rel2, expiry, fresh: float, split: bool = True) -> None:
        """_relaxed for at most _READ_CHUNK cells. When at most 1/8 of them are older than the
        youngest (a dense update leaves its stuck and unpulsed cells older), all are first
        evaluated at the youngest age (one number: its logs are numbers), then the others on
        their own."""
        p, n = self.p, len(g)

        def work(name: str, dtype=np.float64) -> np.ndarray:
            return self._work("relax_" + name, n, dtype)

        two_t_r = 2 * p.t_read_noise
        age = np.subtract(now, t_prog, out=work("age"))
        oldest, youngest = float(age.max()), float(age.min())
        others = None
        if split and oldest > 1.0 and oldest != youngest:
            older = age != youngest
            if np.count_nonzero(older) <= n // 8:  # counted first: most chunks of a read have more
                others = np.flatnonzero(older)
                oldest = youngest  # every cell as if of that age; the others are redone below
        young = oldest <= 1.0  # max(age, 1) = 1, ln of it 0, min(age, 1) = age
        shared = oldest == youngest  # one age (a dense update): its logs are numbers
        # read noise at max(age, 1 s), squared: (read_noise log10(max(g, 1 uS) / 1 uS))^2 growth
        noise2 = _at_least(g, G_NOISE_REF, work("noise2"))
        noise2 /= G_NOISE_REF
        np.log10(noise2, out=noise2)
        # one age >= 0: its ramp min(age, 1) folded in, ramp^2 inside the square root
        ramp = min(oldest, 1.0) if shared and oldest >= 0 else 1.0
        if young or shared:
            at_least_1 = max(oldest, 1.0)
            log_t = float(np.log(np.float64(at_least_1)))
            growth_1 = max(float(np.log(np.float64(at_least_1 + p.t_read_noise) / two_t_r)), 0.0)
            noise2 *= p.read_noise * np.sqrt(growth_1) * ramp
            noise2 *= noise2
            measured = (p.drift_sigma_slope * log_t + p.drift_sigma_0) * ramp
            spread = np.subtract(measured * measured, noise2, out=noise2)
        else:
            noise2 *= p.read_noise
            noise2 *= noise2
            at_least_1 = _at_least(age, 1.0, work("at_least_1"))
            growth = np.add(at_least_1, p.t_read_noise, out=work("growth"))
            growth /= two_t_r
            np.log(growth, out=growth)
            _at_least(growth, 0.0, growth)
            noise2 *= growth
            log_t = np.log(at_least_1, out=at_least_1)
            measured = np.multiply(log_t, p.drift_sigma_slope, out=work("measured"))
            measured += p.drift_sigma_0
            measured *= measured
            spread = np.subtract(measured, noise2, out=noise2)
        _at_least(spread, 0.0, spread)
        np.sqrt(spread, out=spread)  # the relaxation's own spread
        drift = np.multiply(spread, z_relax, out=spread)
        if young or shared:
            if log_t:  # -drift_mean ln 1 = -0 adds nothing
                drift -= p.drift_mean * log_t * ramp
            if shared:
                if ramp == 1.0 and oldest < 1.0:  # a negative age: not folded
                    drift *= oldest
            else:
                drift *= age
        else:
            drift -= np.multiply(log_t, p.drift_mean, out=work("measured"))
            drift *= _at_most(age, 1.0, work("ramp"))
        np.add(g, drift, out=out)
        # window after cycling (bounds())
        if cycles.any():
            closing = np.divide(cycles, p.endurance_n0, out=work("closing"))
            np.log1p(closing, out=closing)  # ln 10 log10(1 + x)
            closing *= p.endurance_closing / np.log(10.0)
            _at_most(closing, 0.9, closing)
            closing *= np.subtract(g_hi, g_lo, out=work("bound"))
            bound = np.multiply(closing, 0.25, out=work("bound"))
            bound += g_lo
            np.maximum(out, bound, out=out)
            bound = np.multiply(closing, -0.75, out=bound)
            bound += g_hi
            np.minimum(out, bound, out=out)
        else:
            np.maximum(out, g_lo, out=out)
            np.minimum(out, g_hi, out=out)
        pristine = np.logical_not(formed, out=work("pristine", bool))
        some_pristine = bool(pristine.any())
        if some_pristine:
            np.copyto(out, g, where=pristine)
        if rel2 is not None:  # (read_noise_sigma(G, age) / G)^2
            g_now = out
            if rel2.dtype != np.float64:
                g_now = work("g_now", rel2.dtype)
                np.copyto(g_now, out, casting="same_kind")
            level = _at_least(g_now, G_NOISE_REF, rel2)
            level /= G_NOISE_REF
            np.log10(level, out=level)
            if oldest == youngest:  # the growth's square root folded in
                level *= p.read_noise * np.sqrt(
                    max(float(np.log((np.float64(max(oldest, 0.0)) + p.t_read_noise) / two_t_r)), 0.0))
                level /= g_now
                level *= level
            else:
                level *= p.read_noise
                level /= g_now
                level *= level
                if youngest >= 1.0:  # the growth at max(age, 1) is this one
                    np.multiply(level, growth, out=level, casting="same_kind")
                else:
                    growth = _at_least(age, 0.0, work("growth"))
                    growth += p.t_read_noise
                    growth /= two_t_r
                    np.log(growth, out=growth)
                    _at_least(growth, 0.0, growth)
                    np.multiply(level, growth, out=level, casting="same_kind")
            if some_pristine:
                np.copyto(rel2, 0.0, where=pristine)
        if expiry is not None:
            if young or shared:
                expiry.fill(now + fresh * max(oldest, 1.0))
            else:
                _at_least(age, 1.0, expiry)
                expiry *= fresh
                expiry += now
        if others is not None and others.size:
            inputs = [array.take(others, out=self._work(f"relax_in_{i}", others.size, array.dtype))
                      for i, array in enumerate((g, t_prog, z_relax, cycles, g_lo, g_hi, formed))]
            outputs = [None if array is None else self._work(f"relax_out_{i}", others.size, array.dtype)
                       for i, array in enumerate((out, rel2, expiry))]
            # mypy cannot count *inputs' items (python/mypy#14648), so it also maps them onto `split`
            self._relaxed_chunk(*inputs, now, *outputs, fresh, split=False)  # type: ignore[call-arg,misc]
            for array, values in zip((out, rel2, expiry), outputs):
                if array is not None:
                    array[others] = values

    # -- circuit -------------------------------------------------------------------------------
    def _selector(self, v_gate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Saturation current and knee voltage of the selector for each gate voltage.

        Smooth triode-to-saturation law I_T = I_sat tanh(V_DS / V_knee): slope 1/R_on at small
        V_DS, the gate-set limit I_sat at large V_DS; I_sat ~ overdrive^2, R_on ~ 1/overdrive.
        """
        p = self.p
        overdrive = np.maximum(v_gate - p.v_th, 0.0) / (p.v_gate_ref - p.v_th)
        return p.i_sat_ref * overdrive**2, p.i_sat_ref * p.r_on_ref * overdrive

    def _conduction(self, formed: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) of every cell's ReRAM law I = a b sinh(V / b): formed cells are sinh-like
        (trap-assisted tunnelling) with b = v_nonlinear, scaled so that I = g V at the read
        voltage (near-ohmic there); pristine cells leak weakly with b = v_pristine."""
        p = self.p
        scale = np.sinh(p.v_read / p.v_nonlinear) / (p.v_read / p.v_nonlinear)
        return (np.where(formed, g / scale, p.g_pristine),
                np.where(formed, p.v_nonlinear, p.v_pristine))

    def _solve(self, v_cell: np.ndarray, v_gate: np.ndarray, formed: np.ndarray,
               g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Voltage across the ReRAM and the current of conducting cells (1-D arrays) for
        v_cell = V_BL - V_SL.

        Kirchhoff's I_ReRAM(x) = I_T(V - x) has a residual increasing and convex in x; Newton
        started at the linear divider (which over-estimates x) converges monotonically in a few
        steps. Up to 8 cells (e.g. the cell routed to the SMU) go one by one through
        _solve_cell: numpy's per-call cost dominates tiny arrays.
        """
        if v_cell.size <= 8 and np.shape(v_gate) == np.shape(formed) == np.shape(g) == v_cell.shape:
            x_out, i_out = np.empty(v_cell.size), np.empty(v_cell.size)
            for k, cell in enumerate(zip(v_cell.tolist(), v_gate.tolist(), formed.tolist(), g.tolist())):
                x_out[k], i_out[k] = self._solve_cell(*cell)
            return x_out, i_out
        return self._solve_array(v_cell, v_gate, formed, g)

    def _solve_cell(self, v: float, v_gate: float, formed: bool, g: float) -> tuple[float, float]:
        """_solve of one cell in Python floats: the same laws and arithmetic (results equal to a
        few ulp), stopping when its own step is converged; the array form for a closed selector,
        NaN or an overflow (inf / NaN as numpy gives them)."""
        p = self.p
        overdrive = max(v_gate - p.v_th, 0.0) / (p.v_gate_ref - p.v_th)
        if overdrive > 0 and v == v and g == g:
            try:
                u_read = p.v_read / p.v_nonlinear
                a, b = (g / (sinh(u_read) / u_read), p.v_nonlinear) if formed else (p.g_pristine, p.v_pristine)
                ab = a * b
                i_sat, v_knee = p.i_sat_ref * overdrive**2, p.i_sat_ref * p.r_on_ref * overdrive
                g_sel = i_sat / v_knee
                sign, v = (1.0 if v > 0 else -1.0 if v < 0 else 0.0), abs(v)
                x = v * g_sel / (g_sel + a)
                for _ in range(_NEWTON_STEPS):
                    u = x / b
                    t = tanh((v - x) / v_knee)
                    step = (ab * sinh(u) - i_sat * t) / (a * cosh(u) + g_sel * (1.0 - t * t))
                    x = min(max(x - step, 0.0), v)
                    if abs(step) < 1e-10:
                        break
                return sign * x, sign * ab * sinh(x / b)
            except (OverflowError, ZeroDivisionError):
                pass
        x_arr, i_arr = self._solve_array(np.array([v]), np.array([v_gate]), np.array([formed]), np.array([g]))
        return float(x_arr[0]), float(i_arr[0])

    def _solve_array(self, v_cell: np.ndarray, v_gate: np.ndarray, formed: np.ndarray,
                     g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """_solve in numpy."""
        sign, v = np.sign(v_cell), np.abs(v_cell)
        a, b = self._conduction(formed, g)
        ab = a * b
        i_sat, v_knee = self._selector(v_gate)
        g_sel = i_sat / v_knee
        x = v * g_sel / (g_sel + a)
        for _ in range(_NEWTON_STEPS):
            u = x / b
            t = np.tanh((v - x) / v_knee)
            step = (ab * np.sinh(u) - i_sat * t) / (a * np.cosh(u) + g_sel * (1.0 - t * t))
            x = np.minimum(np.maximum(x - step, 0.0), v)  # np.clip costs ~10x more on tiny arrays
            if np.abs(step).max() < 1e-10:
                break
        return sign * x, sign * ab * np.sinh(x / b)

    def _conducting(self, v_wl, v_bl, v_sl) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
        """Index of the cells with a bias and an open selector, their bias V_BL - V_SL and gate
        voltage; every other cell carries no current and sees no voltage on its ReRAM. The bias
        is per column and the gate per row, so the cost follows the conducting cells."""
        v_cell, v_gate = self._bias(v_wl, v_bl, v_sl)
        rows, cols = np.nonzero(v_gate[:, 0] > self.p.v_th)[0], np.nonzero(v_cell[0])[0]
        on = (np.repeat(rows, cols.size), np.tile(cols, rows.size))
        return on, v_cell[0, on[1]], v_gate[on[0], 0]

    def _bias(self, v_wl, v_bl, v_sl) -> tuple[np.ndarray, np.ndarray]:
        """Per-cell bias V_BL - V_SL (shape (1, cols)) and gate voltage (shape (rows, 1))."""
        v_wl, v_bl, v_sl = (np.asarray(a, dtype=float) for a in (v_wl, v_bl, v_sl))
        if v_wl.shape != (self.rows,) or v_bl.shape != (self.cols,) or v_sl.shape != (self.cols,):
            raise ValueError(f"line voltages must have shapes ({self.rows},), ({self.cols},), ({self.cols},)")
        v_cell = v_bl - v_sl
        return np.where(np.isnan(v_cell), 0.0, v_cell)[None, :], np.where(np.isnan(v_wl), 0.0, v_wl)[:, None]

    def currents(self, v_wl, v_bl, v_sl) -> np.ndarray:
        """Current through every cell from BL to SL (A), noise-free; changes nothing.

        v_wl has shape (rows,), v_bl and v_sl (cols,); NaN marks a floating line: a floating WL
        leaves its gates at 0 V, a column with a floating BL or SL carries no current.
        """
        on, v, v_gate = self._conducting(v_wl, v_bl, v_sl)
        current = np.zeros(self.shape)
        if on[0].size:
            formed = self._formed[on]  # conductance() of pristine cells is their programmed g
            current[on] = self._solve(v, v_gate, formed, self.conductance(on) if formed.any() else self._g[on])[1]
        return current

    def read_only(self, v: float) -> bool:
        """Whether a bias of at most |v| across any cell can neither form nor switch one (the
        ReRAM never sees more than the cell)."""
        return abs(v) < min(self.p.v_set_th, self.p.v_reset_th, self._read.v_form_min)

    def read_forward(self, rows, cols, x, v_read: float, v_gate: float, duration: float) -> np.ndarray:
        """Column currents of the block rows x cols (chip line indices) for a batch of row inputs
        in [-1, 1], pulse-width encoded: input x[b, i] opens row i's gates at v_gate for
        |x[b, i]| of `duration` s (per vector) with the block's BLs at sign(x) v_read; returns
        sum_i x[b, i] I_ij(v_read) (A-equivalent: charge / duration), shape (batch, len(cols)),
        each vector with its own read-noise draw (I(-v) = -I(v)). Only for a read-only v_read;
        nothing changes but the clock, by len(x) * duration. Rows no vector drives are left out
        (_driven).
        """
        x = np.atleast_2d(np.asarray(x))
        if not self.read_only(v_read):
            raise ValueError(f"read_forward: {v_read:g} V could switch or form a cell; use apply()")
        rows, x = _driven(rows, x)
        block = _block_index(rows, cols)
        if v_read > 0 and v_gate > self.p.v_th:
            view = self._read.view(v_gate, v_read)
            current, noise = (array[block] for array in self._read.cell_pair(view, "at_max", block))
            x = x.astype(current.dtype, copy=False)
            out = self._noisy(x @ current, (x * x) @ noise)
        else:
            out = np.zeros((len(x), _length(block[1], self.cols)))
        self.clock.advance(len(x) * duration)
        return out

    def read_rows(self, rows, cols, v_cols, v_gate: float, duration: float) -> np.ndarray:
        """Row currents of the block rows x cols (chip line indices) for a batch of column biases:
        vector b puts V_BL - V_SL = v_cols[b, j] on column j with the block's gates at v_gate for
        `duration` s; returns sum_j I_ij(v_cols[b, j]) (A), shape (batch, len(rows)), each vector
        with its own read-noise draw. Only for read-only biases (read_only); nothing changes but
        the clock.

        Each cell's I(V) is the odd polynomial of the cached read state (sim_backend.readout),
        fitted up to max|V| rounded up to 50 mV, so the batch costs a few matrix products. The
        read noise of a sum of independent per-cell draws (relative sigma / G, as in apply) is
        Gaussian and drawn in distribution, with each cell's small-signal slope (its sigma is
        under 0.7 % low at 0.2 V, where I(V) / V is 0.7 % above the slope). Columns no vector
        biases are left out (_driven).
        """
        v_cols = np.atleast_2d(np.asarray(v_cols))
        v_max = float(np.abs(v_cols).max(initial=0.0))
        if not self.read_only(v_max):
            raise ValueError(f"read_rows: {v_max:g} V could switch or form a cell; use apply()")
        cols, v_cols = _driven(cols, v_cols)
        block = _block_index(rows, cols)
        if v_max > 0 and v_gate > self.p.v_th:
            view = self._read.view(v_gate, _FIT_STEP * np.ceil(v_max / _FIT_STEP))
            coef, noise = self._read.cell_pair(view, "coef", block)
            coef, noise = coef[(slice(None),) + block], noise[block]
            # products as (rows, cols) @ (cols, batch): the cached arrays row-major on the left
            # (BLAS ~20 % faster than with their transposes on the right), results transposed back
            v = np.ascontiguousarray(v_cols.T, dtype=coef.dtype)
            v2 = v * v
            mean, power = coef[0] @ v, v
            for c in coef[1:]:
                power = power * v2
                mean += c @ power
            out = self._noisy(mean.T, (noise @ v2).T)
        else:
            out = np.zeros((len(v_cols), _length(block[0], self.rows)))
        self.clock.advance(len(v_cols) * duration)
        return out

    def _noisy(self, mean: np.ndarray, variance: np.ndarray) -> np.ndarray:
        """mean + a Gaussian draw of the given variance for each element (2-D arrays; float64
        out, C order), in one compiled pass (kernels.add_noise: Box-Muller pairs of the
        kernels' generator, float32, 6e-8 of a sigma, tails to 6.8 sigma), keyed by one 64-bit
        output of the chip's generator. A sixteenth of the cost of Generator.standard_normal's
        ziggurat, which draws one value at a time (a forward MVM's batch spent ~0.3 ms on it)."""
        out = np.empty(np.shape(mean))
        kernels = load_kernels()
        kernels.add_noise(np.uint64(self.rng.bit_generator.random_raw()), mean, variance, out, kernels.CONSTANTS)
        return out

    # -- dynamics ------------------------------------------------------------------------------
    def apply(self, v_wl, v_bl, v_sl, duration: float) -> np.ndarray:
        """Hold the bias for `duration` s: cells form or switch, the clock advances.

        Returns the cell currents (A, BL to SL) as measured at the end of the interval, with
        the read noise of each formed cell. Only biased cells with an open selector cost work.
        """
        if duration < 0:
            raise ValueError(f"duration must be >= 0 s, got {duration}")
        on, v, v_gate = self._conducting(v_wl, v_bl, v_sl)
        current = np.zeros(self.shape)
        if not on[0].size:
            self.clock.advance(duration)
            return current
        g_now, i, changed = self._evolve(on, v, v_gate, duration, self.clock.now + duration)
        self.clock.advance(duration)
        formed = self._formed[on]
        if not formed.any():  # pristine cells: conductance() is their programmed g, no read noise
            if changed or not np.array_equal(self._g[on], g_now):
                i = self._solve(v, v_gate, formed, self._g[on])[1]
            self.rng.standard_normal(i.size)  # the draw a formed cell would take (one stream)
            current[on] = i
            return current
        g_end = self.conductance(on)
        if changed or not np.array_equal(g_end, g_now):
            i = self._solve(v, v_gate, formed, g_end)[1]
        sigma = self.read_noise_sigma(g_end, self.clock.now - self._t_prog[on])
        current[on] = np.where(formed, i * (1.0 + sigma / g_end * self.rng.standard_normal(i.size)), i)
        return current

    def quiet_ramp(self, v_wl, v_bl, v_sl, on_ramp, levels, duration: float, weights,
                   limit: float = np.inf, first: int = 16) -> np.ndarray:
        """A ramp on the lines marked by on_ramp = (WL, BL, SL masks): they take levels[k] (V)
        in turn, each held `duration` s from now, while the other lines stay at v_wl, v_bl, v_sl
        (shapes (rows,), (cols,), (cols,); NaN floating). Returns the readings of the leading
        levels that form or switch no cell and whose current through the per-column `weights`
        (cols,; read noise included) is at most `limit` (A), and advances the clock by them:
        exactly what apply() would give one by one, so from the first level not taken on,
        apply() must take over.

        The levels go in chunks of `first`, 2 first, 4 first, ...: each takes the conductances
        at its start (relaxation moves them by a few 1e-7 relative over a chunk, two
        orders below the read noise) and one read-noise draw
        per (level, conducting cell); a chunk with an active level or one over the limit is
        the last. Only lines that can conduct cost work: a cell needs an open gate and a bias
        at some level. Pristine cells neither relax nor show read noise, so a ramp on them is
        solved once for all its levels and its noise draws taken in one call (the same draws:
        the generator fills element by element)."""
        p, levels = self.p, np.asarray(levels, dtype=float).reshape(-1)
        n_levels = levels.size
        if not n_levels:
            return np.empty(0)
        at_level = levels[:, None]
        wl_on, bl_on, sl_on = (np.asarray(mask, dtype=bool) for mask in on_ramp)
        v_wl, v_bl, v_sl = (np.asarray(a, dtype=float) for a in (v_wl, v_bl, v_sl))
        # lines that may conduct: a gate that is open or follows the ramp; a column with one
        # line on the ramp, or a fixed bias; then their voltages per level (or one for all)
        fixed_bias = v_bl - v_sl
        rows = np.flatnonzero(wl_on | (v_wl > p.v_th))
        cols = np.flatnonzero((bl_on != sl_on) | (~bl_on & ~sl_on & (fixed_bias != 0) & ~np.isnan(fixed_bias)))
        v_gate = np.where(wl_on[rows], at_level, v_wl[rows]) if wl_on[rows].any() else v_wl[rows][None, :]
        if (bl_on[cols] | sl_on[cols]).any():
            v_cell = np.where(bl_on[cols], at_level, v_bl[cols]) - np.where(sl_on[cols], at_level, v_sl[cols])
        else:
            v_cell = fixed_bias[cols][None, :]
        v_gate, v_cell = np.where(np.isnan(v_gate), 0.0, v_gate), np.where(np.isnan(v_cell), 0.0, v_cell)
        gate_on, biased = v_gate > p.v_th, v_cell != 0
        keep_rows, keep_cols = np.flatnonzero(gate_on.any(axis=0)), np.flatnonzero(biased.any(axis=0))
        rows, cols = rows[keep_rows], cols[keep_cols]
        v_gate, gate_on, v_cell, biased = (v_gate[:, keep_rows], gate_on[:, keep_rows], v_cell[:, keep_cols],
                                           biased[:, keep_cols])
        level, r, c = np.nonzero(np.broadcast_to(gate_on[:, :, None] & biased[:, None, :],
                                                 (n_levels, rows.size, cols.size)))
        v_pair = v_cell[level if len(v_cell) > 1 else 0, c]
        gate_pair = v_gate[level if len(v_gate) > 1 else 0, r]
        # the state of each cell once (the block rows x cols), then per (level, cell)
        block = np.ix_(rows, cols)
        formed, stuck = self._formed[block][r, c], self._stuck[block][r, c]
        v_form, t_prog = self._v_form[block][r, c], self._t_prog[block][r, c]
        w = np.asarray(weights, dtype=float)[cols[c]]
        bounds = np.searchsorted(level, np.arange(n_levels + 1))  # pairs of level k: bounds[k]:bounds[k + 1]
        chunks, start, size = [], 0, first  # (start, stop) of each chunk
        while start < n_levels:
            chunks.append((start, min(start + size, n_levels)))
            start, size = chunks[-1][1], 2 * size
        if not formed.any():  # pristine: no relaxation, no read noise
            v_r, i = self._read.pristine_solve(v_pair, gate_pair, self._g[block][r, c])
            currents = np.bincount(level, w * i, n_levels)
            active = level[v_r >= v_form]
            over = np.flatnonzero(np.abs(currents) > limit)
            end = min(int(active[0]) if active.size else n_levels, int(over[0]) if over.size else n_levels)
            for start, stop in chunks:
                self.clock.advance((min(end, stop) - start) * duration)
                if end < stop:
                    break
            self.rng.standard_normal(int(bounds[stop]))  # the read-noise draws, one per (level, cell)
            return currents[:end]
        readings = []
        for start, stop in chunks:
            lo, hi = bounds[start], bounds[stop]
            currents, quiet = np.zeros(stop - start), stop - start
            if hi > lo:
                at, f = level[lo:hi] - start, formed[lo:hi]
                g = self.conductance(block)[r[lo:hi], c[lo:hi]]
                v_r, i = self._solve(v_pair[lo:hi], gate_pair[lo:hi], f, g)
                active = np.where(f, ~stuck[lo:hi] & ((v_r > p.v_set_th) | (v_r < -p.v_reset_th)),
                                  v_r >= v_form[lo:hi])
                noise = self.rng.standard_normal(hi - lo)
                sigma = self.read_noise_sigma(g, self.clock.now + (at + 1) * duration - t_prog[lo:hi])
                i = np.where(f, i * (1.0 + sigma / g * noise), i)
                quiet = int(at[active].min(initial=stop - start))
                currents += np.bincount(at, w[lo:hi] * i, stop - start)
            over = np.flatnonzero(np.abs(currents) > limit)
            used = min(quiet, int(over[0]) if over.size else stop - start)
            self.clock.advance(used * duration)
            readings.append(currents[:used])
            if used < stop - start:
                break
        return np.concatenate(readings) if readings else np.empty(0)

    def _evolve(self, on, v, v_gate, duration, t_end) -> tuple[np.ndarray, np.ndarray, bool]:
        """Forming and switching of the conducting cells `on` over `duration` (s, one for all
        or one per cell) ending at virtual time(s) `t_end`. Returns their conductance and
        current at the start, and whether any cell changed."""
        p, formed = self.p, self._formed[on]
        g_now = self.conductance(on) if formed.any() else self._g[on]  # pristine: programmed g
        v_r, i = self._solve(v, v_gate, formed, g_now)
        newly = ~formed & (v_r >= self._v_form[on])
        if newly.any():
            cells = tuple(axis[newly] for axis in on)
            self._formed[cells] = True
            self._g[cells] = self._g_formed[cells]
            self._programmed(cells, self.clock.now)
            formed, g_now = self._formed[on], np.where(newly, self._g[on], g_now)
            v_r, i = self._solve(v, v_gate, formed, g_now)
        moving = formed & ~newly & ~self._stuck[on] & ((v_r > p.v_set_th) | (v_r < -p.v_reset_th))
        if moving.any():
            per_cell = np.broadcast_to(duration, v.shape)[moving], np.broadcast_to(t_end, v.shape)[moving]
            self._switch(tuple(axis[moving] for axis in on), v[moving], v_gate[moving], g_now[moving],
                         v_r[moving], *per_cell)
        return g_now, i, bool(newly.any() or moving.any())

    def _switch(self, cells, v, v_gate, g_start, v_r, duration, t_end) -> None:
        """Soft-bounds steps of formed `cells` over `duration` (s, per cell) ending at `t_end`
        (their relaxation so far is the starting point), re-solving the circuit as the conductance changes; then cycle-to-cycle
        noise proportional to each step (less for a pulse that saturates against the bound)."""
        p = self.p
        lo, hi = self.bounds(cells)
        rate, formed = self._rate[cells], np.ones(v.size, dtype=bool)
        g = g_start.copy()
        dt = duration / _SUBSTEPS
        for k in range(_SUBSTEPS):
            drive_set = np.maximum((v_r - p.v_set_th) / (p.v_set_ref - p.v_set_th), 0.0) ** p.v_power
            drive_reset = np.maximum((-v_r - p.v_reset_th) / (p.v_reset_ref - p.v_reset_th), 0.0) ** p.v_power
            frac_set = -np.expm1(-rate * drive_set * dt / p.tau_set)
            frac_reset = -np.expm1(-rate * drive_reset * dt / p.tau_reset)
            g = g + frac_set * (hi - g) - frac_reset * (g - lo)
            if k < _SUBSTEPS - 1:
                v_r = self._solve(v, v_gate, formed, g)[0]
        step = g - g_start
        # noise proportional to the step, fading as a long pulse saturates against the bound
        headroom = np.where(step > 0, hi - g_start, g_start - lo)
        saturation = np.minimum(np.abs(step) / np.maximum(headroom, 1e-12), 1.0)
        g = g + p.c2c_noise * np.abs(step) * (1.0 - saturation) * self.rng.standard_normal(step.size)
        moved = step != 0
        done = tuple(axis[moved] for axis in cells)
        self._g[done] = np.minimum(np.maximum(g[moved], lo[moved]), hi[moved])
        self._cycles[done] += np.abs(step[moved]) / (2 * (self._g_hi[done] - self._g_lo[done]))
        self._programmed(done, t_end[moved])

    def pulse_cells(self, rows, cols, v_cell, v_gate: float, width, period: float) -> None:
        """Pulse distinct cells one after another, pulse k starting at k * period: cell k alone
        selected (its WL at v_gate, V_BL - V_SL = v_cell[k] for width[k] s; v_cell and width one
        per cell or one for all), as a board-timed write-verify round does. With one cell biased
        at a time the cells do not interact, so all are solved together; the clock advances by
        len(rows) * period.
        """
        on = (np.asarray(rows, dtype=int).reshape(-1), np.asarray(cols, dtype=int).reshape(-1))
        n = on[0].size
        if on[1].size != n or np.unique(on[0] * self.cols + on[1]).size != n:
            raise ValueError("pulse_cells: rows and cols must list distinct cells, as many of each")
        v = np.broadcast_to(np.asarray(v_cell, dtype=float), (n,))
        width = np.broadcast_to(np.asarray(width, dtype=float), (n,))
        t_end = self.clock.now + np.arange(n) * period + width
        biased = np.flatnonzero(v != 0) if v_gate > self.p.v_th else np.arange(0)
        if biased.size:
            self._evolve(tuple(axis[biased] for axis in on), v[biased], np.full(biased.size, float(v_gate)),
                         width[biased], t_end[biased])
        self.clock.advance(n * period)

    def pulse_counts(self, counts: np.ndarray, v_cell: float, v_gate: float, width: float,
                     period: float) -> None:
        """Give every cell `counts[i, j]` identical pulses of V_BL - V_SL = v_cell (V) on a gate
        of v_gate, `width` s each, one every `period` s: the coincidences of a parallel
        stochastic update. The soft-bounds steps of n pulses compose in closed form,
        g_n = bound - (bound - g) (1 - f)^n at the ReRAM voltage of the train's start, and their
        independent cycle-to-cycle noise adds to a spread ~ step / sqrt(n); no loop over pulses.
        Each cell's switching drive at v_cell is interpolated in G from exact circuit solves
        (sim_backend.readout). One compiled pass over the cells (sim_backend.kernels,
        soft_bounds_steps: its docstring gives the arithmetic and its precision), which skips
        blocks of cells without a coincidence. With the gates at or below the selector's
        threshold no current flows and no cell changes (the pulses still take their time).
        """
        counts = np.asarray(counts)
        if counts.shape != self.shape or (counts.dtype.kind != "u" and counts.min(initial=0) < 0):
            raise ValueError(f"counts must be non-negative with shape {self.shape}")
        n_max = int(counts.max(initial=0))
        if n_max and v_gate > self.p.v_th:
            self._train(counts, n_max, float(v_cell), float(v_gate), float(width), self.clock.now + n_max * period)
        self.clock.advance(n_max * period)

    def pulse_trains(self, rows, cols, gates: np.ndarray, pulses: np.ndarray, runs: np.ndarray,
                     amplitudes: np.ndarray, lengths: np.ndarray, v_gate: float, width: float,
                     period: float) -> np.ndarray:
        """Fire the trains of a parallel update one after the other on chip rows `rows` and
        columns `cols` (line indices): train k opens row i's gates at v_gate in the slots of
        gates[k, i] (a bitmask) and pulses column j in the slots of pulses[0, k, j] with
        V_BL - V_SL = +amplitudes[k] (SET) or of pulses[1, k, j] with -amplitudes[k] (RESET),
        `width` s each, a slot every `period` s; train k lasts lengths[k] slots. A cell steps
        once per slot in which its row and its column pulse. Returns each train's coincidences.

        Consecutive trains of one run (runs[k] is train k's: 0, 1, ... in order; a run is
        consecutive trains of one polarity and amplitude) compose like the slots of one train
        (pulse_counts' closed form from the conductance at the start) while no cell collects
        more coincidences than one train can give it (32): each side of such a segment is one
        pulse_counts, all of them in one compiled call (kernels.fire_segments). One generator
        output keys their draws: the first takes those pulse_counts would, the others continue
        its stream past the chip's cells."""
        kernels = load_kernels()
        rows, cols = (np.asarray(lines, np.int64).reshape(-1) for lines in (rows, cols))
        gates, pulses = (a if a.dtype == np.uint32 and a.flags.c_contiguous and a.flags.writeable
                         else np.require(a, np.uint32, ["C", "W"]) for a in (gates, pulses))
        n, size = len(gates), self.rows * self.cols
        if gates.shape != (n, rows.size) or pulses.shape != (2, n, cols.size) or len(runs) != n:
            raise ValueError(f"pulse_trains: gates {gates.shape}, pulses {pulses.shape} and {len(runs)} runs "
                             f"for {rows.size} rows and {cols.size} columns")
        pulsed = np.any(pulses, axis=2)
        counts = self._buffer("segment_counts", (2, rows.size, cols.size), np.uint8)
        totals = np.zeros(n, np.int64)
        whole = (rows.size == self.rows and cols.size == self.cols and np.array_equal(rows, np.arange(self.rows))
                 and np.array_equal(cols, np.arange(self.cols)))
        gate_open = v_gate > self.p.v_th
        key = np.uint64(self.rng.bit_generator.random_raw() if gate_open else 0)
        tables, table_of, scale = self._read.train_tables(runs, amplitudes, pulsed if gate_open else None, v_gate)
        read = self._read
        fresh = (np.array([read._evaluated_at, read.fresh_until]) if read.g is not None and read.expiry is not None
                 else np.array([1.0, 0.0]))
        state = read.flat(_STEP_STATE)
        cached = state[_STEP_STATE.index("_g")] if read.g is None else read.g.reshape(-1)  # (unused without fresh)
        now, n_stepped, all_stale = kernels.fire_segments(
            gates, pulses, pulsed, np.asarray(runs, np.int64), SEGMENT_COINCIDENCES, counts, totals, rows, cols,
            self.cols, whole, np.empty(0, np.uint8) if whole else self._chip_counts(), table_of, tables, scale,
            np.asarray(lengths, np.int64), gate_open, np.array([width / self.p.tau_set, width / self.p.tau_reset]),
            float(period), *state, read.static("rate"),
            read.static("cycles_per_step"), cached, fresh,
            self.clock.now, key, self._step_law, np.empty(0) if read.expiry is None else read.expiry.reshape(-1),
            self._buffer("touched", (-(-size // kernels.BLOCK),), np.int64), self._buffer("stepped", (size // 4 + 1,), np.int64),
            kernels.CONSTANTS)
        if all_stale:
            read.programmed(...)
        elif n_stepped:
            read.marked_stale()
        self.clock.now = now
        return totals

    def _chip_counts(self) -> np.ndarray:
        """fire_segments' flat uint8 counts of the whole chip (zero: it leaves them so)."""
        if "chip_counts" not in self._buffers:
            self._buffers["chip_counts"] = np.zeros(self.rows * self.cols, np.uint8)
        return self._buffers["chip_counts"]

    def _buffer(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """A reused array of this shape (uninitialized): a fresh one of the block's size at every
        update would cost its page faults (512 kB at 512 x 512)."""
        array = self._buffers.get(name)
        if array is None or array.shape != shape or array.dtype != dtype:
            array = self._buffers[name] = np.empty(shape, dtype)
        return array

    def _flat(self, name: str) -> np.ndarray:
        """The private state array `name` as a flat view (made C-contiguous first if needed)."""
        array = getattr(self, name)
        if not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)
            setattr(self, name, array)
        return array.reshape(-1)

    def _train(self, counts: np.ndarray, n_max: int, v_cell: float, v_gate: float, width: float, at: float) -> None:
        """pulse_counts' steps, programmed at `at`: the kernel's arguments and the read state's
        bookkeeping. Counts go in as uint8 (what the board sends) or, above 255, uint32 (a
        second compiled form)."""
        p, size = self.p, self.rows * self.cols
        dtype = np.uint8 if n_max <= 0xFF else np.uint32
        if counts.dtype != dtype or not (counts.flags.c_contiguous and counts.flags.writeable):
            # (writable too: numba compiles a read-only array type apart)
            counts = np.require(counts, dtype, ["C", "W"])
        flat = counts.reshape(-1)
        formed, stuck, *state = self._read.flat(_STEP_STATE)
        # the read state keeps these as the kernel was compiled for: flat float32, complex64, float64
        rate, per_step = self._read.static("rate"), self._read.static("cycles_per_step")
        table, scale = self._read.drive_table(v_cell, v_gate)
        cached = self._read.fresh_g()  # every cell's conductance now, when the read state has it
        setting = v_cell >= 0
        key = np.uint64(self.rng.bit_generator.random_raw())  # seeds the kernel's generator
        kernels = load_kernels()
        touched = np.empty(-(-size // kernels.BLOCK), np.int64)
        n_active, n_touched = kernels.soft_bounds_steps(
            flat, formed, stuck, *state, rate, per_step, state[0] if cached is None else cached.reshape(-1),
            cached is not None, table.view(np.uint64), scale, setting, width / (p.tau_set if setting else p.tau_reset),
            self.clock.now, at, key, self._step_law, touched, kernels.CONSTANTS)
        if 4 * n_active > size:  # more than a quarter stale: the next refresh re-evaluates every cell anyway
            self._read.programmed(...)
        elif n_active:
            stepped = np.empty(n_active, np.int64)
            kernels.stepped_cells(flat, formed, stuck, touched[:n_touched], stepped)
            self._read.programmed_flat(stepped)

    def _work(self, name: str, n: int, dtype=np.float32) -> np.ndarray:
        """A reused work buffer of n <= _CHUNK elements: a fresh temporary of megabytes costs
        its page faults, several times the arithmetic on it."""
        key = name, dtype
        if key not in self._scratch:
            self._scratch[key] = np.empty(_CHUNK, dtype)
        return self._scratch[key][:n]

    def _programmed(self, cells, at: float) -> None:
        """Restart the relaxation of `cells` (an index): programming time and trajectory draw."""
        self._t_prog[cells] = at
        self._z_relax[cells] = self.rng.standard_normal(self._t_prog[cells].size)
        self._read.programmed(cells)

    def reseed(self, seed: int) -> None:
        """Restart the noise RNG (the chip's device-to-device draws stay as they are)."""
        self.rng = np.random.default_rng(seed)

    # -- persistence ---------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """Everything needed to resume this chip later (arrays only: saved without pickle)."""
        arrays = {key: getattr(self, "_" + key) for key in self.STATE_KEYS}
        meta = {"rows": self.rows, "cols": self.cols, "seed": self.seed, "now": self.clock.now,
                "rng": self.rng.bit_generator.state}
        return arrays | {"meta": np.array(json.dumps(meta))}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], params: DeviceParams | None = None, *,
                   copy: bool = True) -> ArrayPhysics:
        """The chip of a state() dict; ValueError naming the entry if one is missing or not what
        state() writes (a corrupted or edited file). copy=False takes the arrays over instead of
        copying them (a state just read from a file: at 4096 x 4096 the copies were 12 fresh
        134 MB arrays, ~2.7 s of page faults on this machine)."""
        meta = _state_meta(state)
        chip = cls.__new__(cls)  # no fresh device-to-device draws: the state replaces them all
        chip._configure(meta["rows"], meta["cols"], params, meta["seed"], VirtualClock(meta["now"]))
        for key in cls.STATE_KEYS:
            if key not in state:
                raise ValueError(f"chip state has no {key!r}")
            value = np.array(state[key], copy=copy or None)
            if value.shape != chip.shape:
                raise ValueError(f"chip state {key!r} has shape {value.shape}, expected {chip.shape}")
            boolean = key in ("formed", "stuck")
            if value.dtype.kind != ("b" if boolean else "f"):
                raise ValueError(f"chip state {key!r} has dtype {value.dtype}, expected {'bool' if boolean else 'float'}")
            if not boolean and (np.isnan(value).any() or (np.isneginf if key == "v_form" else np.isinf)(value).any()):
                raise ValueError(f"chip state {key!r} holds NaN or infinite values")  # v_form: inf = unformable
            setattr(chip, key, value)
        chip.rng = np.random.default_rng(meta["seed"])
        try:
            chip.rng.bit_generator.state = meta["rng"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"chip state 'meta' has a bad rng state ({type(exc).__name__}: {exc})") from exc
        return chip
