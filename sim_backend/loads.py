"""What a virtual instrument's output terminals are connected to; the simulated bench provides these."""
from __future__ import annotations

from typing import Protocol


class SmuLoad(Protocol):
    """What the SMU's HI terminal drives (LO grounded)."""

    def apply(self, v: float | None, duration: float) -> float:
        """Hold v volts for `duration` s (None: output off, time passes); return the current into
        HI at the end (A). Evolves the chip and the virtual clock."""

    def current(self, v: float) -> float:
        """Current into HI at v volts, changing nothing (to solve compliance)."""


class PulseLoad(Protocol):
    """What a pulse generator's output channel drives."""

    def hold(self, channel: int, v: float | None, duration: float) -> None:
        """Hold the channel's open-circuit output at v volts for `duration` s (None: output off).
        A burst of N pulses is N pairs of hold(high, width), hold(base, period - width)."""
