"""What the estimators share: an estimate with its uncertainty and provenance, the error a bad or
insufficient input raises, and the simulator's circuit (labctl.sim.physics) turned around, to take
what a station measures (the 1T1R cell's conductance I(v_read) / v_read, a ramp voltage across
the whole cell) back to the ReRAM quantities the device file holds."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from labctl.sim.physics import G_NOISE_REF, ArrayPhysics, DeviceParams

G_GRID = np.geomspace(1e-8, 2e-3, 4001)  # S: ReRAM conductances the inverse maps are tabulated on


class FitError(ValueError):
    """A run file, run or parameter the fit cannot use; the message names it and what is missing."""


@dataclass
class Estimate:
    """One device parameter estimated from runs: value and standard uncertainty (1 sigma, SI),
    the runs it came from (`sources`: "file run_id"), how much data (`basis`, e.g. "64 cells"),
    and notes (e.g. why the uncertainty is wide)."""

    name: str
    value: float
    uncertainty: float
    sources: list[str]
    basis: str
    notes: list[str] = field(default_factory=list)

    @property
    def relative(self) -> float:
        return abs(self.uncertainty / self.value) if self.value else float("inf")


@dataclass
class Figure:
    """A measured figure that is not a parameter of the device file (e.g. write-verify effort, the
    symmetry point): recorded in the fitted file's header and compared by --validate."""

    name: str
    value: float
    uncertainty: float
    unit: str
    source: str
    basis: str


def combine(estimates: list[Estimate]) -> Estimate:
    """Several runs' estimates of one parameter as their inverse-variance weighted mean."""
    if len(estimates) == 1:
        return estimates[0]
    values = np.array([e.value for e in estimates])
    weights = 1.0 / np.maximum(np.array([e.uncertainty for e in estimates]), 1e-300) ** 2
    value = float(np.sum(weights * values) / weights.sum())
    return Estimate(estimates[0].name, value, float(weights.sum() ** -0.5),
                    [s for e in estimates for s in e.sources], " + ".join(e.basis for e in estimates),
                    [n for e in estimates for n in e.notes] + [f"inverse-variance mean of {len(estimates)} runs"])


class Circuit:
    """The simulator's series circuit (selector + ReRAM) for one set of device parameters: the
    transistor and conduction parameters are not fitted (no characterization run separates them),
    so the base device file's are used for every conversion."""

    def __init__(self, params: DeviceParams):
        self.p = params
        self._physics = ArrayPhysics(1, 1, params)
        self._cache: dict[tuple, np.ndarray] = {}

    def _solve(self, v: float, v_gate: float, g: np.ndarray, formed: bool = True) -> tuple[np.ndarray, np.ndarray]:
        n = g.size
        return self._physics._solve(np.full(n, float(v)), np.full(n, float(v_gate)), np.full(n, formed), g)

    def _measured_table(self, v_read: float, v_gate: float) -> np.ndarray:
        key = ("read", v_read, v_gate)
        if key not in self._cache:
            self._cache[key] = self._solve(v_read, v_gate, G_GRID)[1] / v_read
        return self._cache[key]

    def measured_g(self, g, v_read: float, v_gate: float) -> np.ndarray:
        """The 1T1R conductance a read at v_read (gate v_gate) reports for ReRAM conductance g."""
        return np.interp(np.log(np.asarray(g, dtype=float)), np.log(G_GRID), self._measured_table(v_read, v_gate))

    def reram_g(self, g_measured, v_read: float, v_gate: float) -> np.ndarray:
        """ReRAM conductance (S) of a cell whose read reports g_measured (NaN stays NaN)."""
        table = self._measured_table(v_read, v_gate)
        g = np.asarray(g_measured, dtype=float)
        out = np.exp(np.interp(g, table, np.log(G_GRID)))
        return np.where(np.isfinite(g), out, np.nan)

    def drive(self, g, v_cell: float, v_gate: float) -> np.ndarray:
        """Switching drive ((|V_ReRAM| - V_th) / (V_ref - V_th))^v_power at the start of a pulse
        of v_cell (> 0 SET, < 0 RESET) on a cell of ReRAM conductance g (tabulated in g)."""
        key = ("drive", v_cell, v_gate)
        if key not in self._cache:
            p = self.p
            x = np.abs(self._solve(v_cell, v_gate, G_GRID)[0])
            th, ref = (p.v_set_th, p.v_set_ref) if v_cell > 0 else (p.v_reset_th, p.v_reset_ref)
            self._cache[key] = np.maximum((x - th) / (ref - th), 0.0) ** p.v_power
        g = np.asarray(g, dtype=float)
        return np.interp(np.log(np.maximum(g, G_GRID[0])), np.log(G_GRID), self._cache[key])

    def pristine_voltage(self, v_cell, v_gate: float) -> np.ndarray:
        """ReRAM voltage of a pristine (unformed) cell with v_cell across the whole 1T1R cell."""
        v = np.atleast_1d(np.asarray(v_cell, dtype=float))
        flat = v.ravel()
        n = max(flat.size, 9)  # the array form of the solve (the scalar loop is for a few cells)
        levels = np.resize(flat, n)
        x = self._physics._solve(levels, np.full(n, float(v_gate)), np.zeros(n, dtype=bool),
                                 np.full(n, self.p.g_pristine))[0]
        return x[:flat.size].reshape(v.shape)

    def read_noise_sigma(self, g, age: float, read_noise: float | None = None) -> np.ndarray:
        """The read-noise law's sigma (S) for ReRAM conductance g at `age` s after programming."""
        p = self.p
        amplitude = p.read_noise if read_noise is None else read_noise
        growth = max(np.log((age + p.t_read_noise) / (2 * p.t_read_noise)), 0.0)
        return amplitude * np.log10(np.maximum(np.asarray(g, dtype=float), G_NOISE_REF) / G_NOISE_REF) * np.sqrt(growth)
