"""What the crossbar needs from any source-measure unit; every SMU driver provides it."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt


@runtime_checkable
class SourceMeter(Protocol):
    """One SMU channel used as a voltage source measuring current (the channel wired to the board)."""

    name: str

    def check_identity(self) -> str:
        """Read *IDN? (or the model's equivalent); raise InstrumentError for a wrong model."""

    def configure_voltage_source(self, current_limit: float, nplc: float = 1.0,
                                 source_delay: float = 0.0) -> None:
        """Source V, measure I, autorange; check the instrument's error queue afterwards."""

    source_voltage: float  # V, settable
    output_enabled: bool  # settable

    def measure_current(self) -> float:
        """One current reading (A) at the present source level."""

    def sweep_list(self, voltages: npt.ArrayLike, delay: float,
                   fail_abort: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Hardware-timed sweep through `voltages`; (source V, current A) per point taken.
        With fail_abort the sweep ends at the first point in compliance (that point included)."""

    def sweep_linear(self, start: float, stop: float, points: int, delay: float,
                     fail_abort: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Hardware-timed linear staircase; as sweep_list."""

    def source_off(self) -> None:
        """The safe state: source at 0 V, then output off."""

    def confirm(self, always: bool = False) -> None:
        """*OPC?: the commands sent so far have arrived (unless `always`, only after a link failure)."""

    def close(self) -> None: ...


def sweep_levels(where: str, voltages: npt.ArrayLike, most: int, v_max: float) -> np.ndarray:
    """`voltages` as a flat float array for a list sweep; raises ValueError (naming `where`) unless
    there are 1 to `most` of them, each within [-v_max, v_max] V."""
    levels = np.asarray(voltages, dtype=float).ravel()
    if not 1 <= levels.size <= most:
        raise ValueError(f"{where} takes 1 to {most} voltages, got {levels.size}")
    outside = levels[~(np.abs(levels) <= v_max)]
    if outside.size:
        raise ValueError(f"{where} voltage {outside[0]:g} V is outside [{-v_max:g}, {v_max:g}] V")
    return levels
