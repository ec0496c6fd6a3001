"""Physics of a 1T1R CMO/HfOx ReRAM array, vectorized over the whole array.

Each cell is an n-MOSFET selector (gate on its word line) in series with an analog ReRAM
between the cell's bit line and source line. A bias held for some duration may form a pristine
cell (gate-limited) or move a formed cell's conductance toward its window bound (SET for
V_BL > V_SL, RESET for V_BL < V_SL) with exponential voltage acceleration; the transistor
limits the current and so the voltage the ReRAM sees.
"""
from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from .clock import VirtualClock

DEFAULT_DEVICE_FILE = Path(__file__).with_name("device_cmo_hfox.toml")
_NEWTON_STEPS = 60
_SUBSTEPS = 8  # re-solve the series circuit while a cell switches (self-limiting SET/RESET)


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
    v_th: float
    v_gate_ref: float
    i_sat_ref: float
    r_on_ref: float
    tau_set_ref: float
    v_set_ref: float
    tau_reset_ref: float
    v_reset_ref: float
    v_slope: float
    d2d_rate: float
    v_read: float
    t_read: float

    @classmethod
    def load(cls, path: str | Path | None = None) -> "DeviceParams":
        """Read a device file: sections of `name = {value, unit, source}` entries."""
        path = Path(path) if path else DEFAULT_DEVICE_FILE
        with open(path, "rb") as f:
            doc = tomllib.load(f)
        values = {name: entry["value"] for section in doc.values() for name, entry in section.items()}
        expected = {f.name for f in fields(cls)}
        missing, unknown = expected - values.keys(), values.keys() - expected
        if missing or unknown:
            raise ValueError(f"{path}: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}")
        return cls(**{k: float(v) for k, v in values.items()})


class ArrayPhysics:
    """State and dynamics of a rows x cols 1T1R array on a virtual clock with a seeded RNG."""

    STATE_KEYS = ("g", "formed", "g_lo", "g_hi", "v_form", "g_formed", "rate")

    def __init__(self, rows: int, cols: int, params: DeviceParams | None = None, seed: int = 0,
                 clock: VirtualClock | None = None):
        if rows < 1 or cols < 1:
            raise ValueError(f"array must be at least 1x1, got {rows}x{cols}")
        self.rows, self.cols, self.seed = rows, cols, seed
        self.shape = (rows, cols)
        self.p = params or DeviceParams.load()
        self.clock = clock or VirtualClock()
        self.reset()

    def reset(self) -> None:
        """A pristine chip: device-to-device draws from the seed, nothing formed."""
        p, shape = self.p, self.shape
        self.rng = rng = np.random.default_rng(self.seed)
        self.g_lo = p.g_min * rng.lognormal(0.0, p.d2d_window, shape)
        self.g_hi = p.g_max * rng.lognormal(0.0, p.d2d_window, shape)
        self.v_form = rng.normal(p.v_form_mean, p.v_form_std, shape)
        self.g_formed = np.clip(rng.normal(p.g_formed_mean, p.g_formed_std, shape), self.g_lo, self.g_hi)
        self.rate = rng.lognormal(0.0, p.d2d_rate, shape)
        self.formed = np.zeros(shape, dtype=bool)
        self.g = np.full(shape, p.g_pristine)

    # -- circuit -------------------------------------------------------------------------------
    def _selector(self, v_gate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Saturation current and knee voltage of the selector for each gate voltage.

        Smooth triode-to-saturation law I_T = I_sat tanh(V_DS / V_knee): slope 1/R_on at small
        V_DS, the gate-set limit I_sat at large V_DS; I_sat ~ overdrive^2, R_on ~ 1/overdrive.
        """
        p = self.p
        overdrive = np.clip(v_gate - p.v_th, 0.0, None) / (p.v_gate_ref - p.v_th)
        return p.i_sat_ref * overdrive**2, p.i_sat_ref * p.r_on_ref * overdrive

    def _reram(self, v: np.ndarray, formed: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ReRAM current and slope: ohmic once formed, tunnelling-like (sinh) while pristine."""
        p = self.p
        x = v / p.v_pristine
        i = np.where(formed, g * v, p.g_pristine * p.v_pristine * np.sinh(x))
        return i, np.where(formed, g, p.g_pristine * np.cosh(x))

    def _solve(self, v_cell: np.ndarray, v_gate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Voltage across the ReRAM and the current of every cell for v_cell = V_BL - V_SL.

        Only cells with a bias and an open selector conduct. For those, Kirchhoff's
        I_ReRAM(x) = I_T(V - x) has a residual increasing and convex in x; Newton started at the
        linear divider (which over-estimates x) converges monotonically in a few steps.
        """
        v_r, current = np.zeros(self.shape), np.zeros(self.shape)
        v_cell, v_gate = np.broadcast_to(v_cell, self.shape), np.broadcast_to(v_gate, self.shape)
        on = np.nonzero((v_cell != 0) & (v_gate > self.p.v_th))
        if not on[0].size:
            return v_r, current
        sign, v = np.sign(v_cell[on]), np.abs(v_cell[on])
        formed, g = self.formed[on], self.g[on]
        i_sat, v_knee = self._selector(v_gate[on])
        g_on = i_sat / v_knee
        g_small = np.where(formed, g, self.p.g_pristine)
        x = v * g_on / (g_on + g_small)
        for _ in range(_NEWTON_STEPS):
            i_r, di_r = self._reram(x, formed, g)
            t = np.tanh((v - x) / v_knee)
            step = (i_r - i_sat * t) / (di_r + g_on * (1.0 - t * t))
            x = np.clip(x - step, 0.0, v)
            if np.max(np.abs(step)) < 1e-10:
                break
        v_r[on] = sign * x
        current[on] = sign * self._reram(x, formed, g)[0]
        return v_r, current

    def _bias(self, v_wl, v_bl, v_sl) -> tuple[np.ndarray, np.ndarray]:
        """Per-cell bias V_BL - V_SL (shape (1, cols)) and gate voltage (shape (rows, 1))."""
        v_wl, v_bl, v_sl = (np.asarray(a, dtype=float) for a in (v_wl, v_bl, v_sl))
        if v_wl.shape != (self.rows,) or v_bl.shape != (self.cols,) or v_sl.shape != (self.cols,):
            raise ValueError(f"line voltages must have shapes ({self.rows},), ({self.cols},), ({self.cols},)")
        v_cell = v_bl - v_sl
        return np.where(np.isnan(v_cell), 0.0, v_cell)[None, :], np.where(np.isnan(v_wl), 0.0, v_wl)[:, None]

    def currents(self, v_wl, v_bl, v_sl) -> np.ndarray:
        """Current through every cell from BL to SL (A); changes nothing.

        v_wl has shape (rows,), v_bl and v_sl (cols,); NaN marks a floating line: a floating WL
        leaves its gates at 0 V, a column with a floating BL or SL carries no current.
        """
        v_cell, v_gate = self._bias(v_wl, v_bl, v_sl)
        return self._solve(v_cell, v_gate)[1]

    # -- dynamics ------------------------------------------------------------------------------
    def apply(self, v_wl, v_bl, v_sl, duration: float) -> np.ndarray:
        """Hold the bias for `duration` s: cells form or switch, the clock advances.

        Returns the cell currents (A, BL to SL) at the end of the interval.
        """
        if duration < 0:
            raise ValueError(f"duration must be >= 0 s, got {duration}")
        v_cell, v_gate = self._bias(v_wl, v_bl, v_sl)
        v_r, i = self._solve(v_cell, v_gate)
        newly = ~self.formed & (v_r >= self.v_form)
        if newly.any():
            self.formed |= newly
            self.g = np.where(newly, self.g_formed, self.g)
            v_r, i = self._solve(v_cell, v_gate)
        dt = duration / _SUBSTEPS
        for _ in range(_SUBSTEPS):
            if not self._switch(v_r, dt, skip=newly):
                break
            v_r, i = self._solve(v_cell, v_gate)
        self.clock.advance(duration)
        return i

    def _switch(self, v_r: np.ndarray, dt: float, skip: np.ndarray) -> bool:
        """Soft-bounds step toward g_hi (SET) or g_lo (RESET); False when nothing moved."""
        p = self.p
        active = self.formed & ~skip
        with np.errstate(over="ignore"):
            k_set = self.rate / p.tau_set_ref * np.exp((v_r - p.v_set_ref) / p.v_slope)
            k_reset = self.rate / p.tau_reset_ref * np.exp((-v_r - p.v_reset_ref) / p.v_slope)
        frac_set = np.where(active & (v_r > 0), -np.expm1(-k_set * dt), 0.0)
        frac_reset = np.where(active & (v_r < 0), -np.expm1(-k_reset * dt), 0.0)
        if max(frac_set.max(), frac_reset.max()) < 1e-12:
            return False
        self.g = self.g + frac_set * (self.g_hi - self.g) - frac_reset * (self.g - self.g_lo)
        return True

    def reseed(self, seed: int) -> None:
        """Restart the noise RNG (the chip's device-to-device draws stay as they are)."""
        self.rng = np.random.default_rng(seed)

    # -- persistence ---------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """Everything needed to resume this chip later (arrays only: saved without pickle)."""
        arrays = {key: getattr(self, key) for key in self.STATE_KEYS}
        meta = {"rows": self.rows, "cols": self.cols, "seed": self.seed, "now": self.clock.now,
                "rng": self.rng.bit_generator.state}
        return arrays | {"meta": np.array(json.dumps(meta))}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], params: DeviceParams | None = None) -> "ArrayPhysics":
        meta = json.loads(str(state["meta"]))
        chip = cls(meta["rows"], meta["cols"], params, seed=meta["seed"], clock=VirtualClock(meta["now"]))
        for key in cls.STATE_KEYS:
            setattr(chip, key, np.array(state[key]))
        chip.rng.bit_generator.state = meta["rng"]
        return chip
