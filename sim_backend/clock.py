"""Virtual clock: simulated time advances only when the simulated bench does something."""
from __future__ import annotations


class VirtualClock:
    """Seconds since the chip was made; "10 years" costs no wall time."""

    def __init__(self, now: float = 0.0):
        self.now = float(now)

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"cannot advance the clock by {seconds} s")
        self.now += seconds
        return self.now
