"""What a virtual instrument's output terminals are connected to; the simulated bench provides these.

Also the output physics the twins share: an SMU's compliance solver and a 50 ohm generator's
open-circuit gain.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Protocol, Sequence

SOURCE_IMPEDANCE = 50.0  # ohm, in series with a pulse generator's output
COMPLIANCE_RESOLUTION = 1e-10  # relative: the compliance voltage is solved far finer than any SMU resolves


class SmuLoad(Protocol):
    """What the SMU's HI terminal drives (LO grounded)."""

    def apply(self, v: float | None, duration: float) -> float:
        """Hold v volts for `duration` s (None: output off, time passes); return the current into
        HI at the end (A). Evolves the chip and the virtual clock."""

    def current(self, v: float) -> float:
        """Current into HI at v volts, changing nothing (to solve compliance)."""

    # Optional: quiet_ramp(levels, duration, limit) -> readings of the leading levels that change
    # nothing and stay within the limit, time passed for them (see quiet_readings).


class PulseLoad(Protocol):
    """What a pulse generator's output channel drives."""

    def hold(self, channel: int, v: float | None, duration: float) -> None:
        """Hold the channel's open-circuit output at v volts for `duration` s (None: output off).
        A burst of N pulses is N pairs of hold(high, width), hold(base, period - width)."""


def compliance_voltage(current: Callable[[float], float], level: float, limit: float,
                       near: float | None = None) -> float:
    """`level`, or the voltage between 0 V and it at which the load draws the current limit:
    where |current(v)| (A, from SmuLoad.current) reaches `limit`, bracketed to
    COMPLIANCE_RESOLUTION on the side within the limit. Illinois regula falsi (a handful of load
    evaluations where bisection takes ~35), with a bisection whenever the bracket fails to halve;
    `near`, a previous solution, is tried first (two evaluations when it still holds)."""
    excess = abs(current(level)) - limit
    if excess <= 0:
        return level
    tol = COMPLIANCE_RESOLUTION * abs(level)
    inside, low, outside, high = 0.0, -limit, level, excess  # ends and their excess; 0 V draws nothing
    kept = 0  # the end that stayed at the last probe: +1 outside, -1 inside

    def probe(v: float) -> None:
        nonlocal inside, low, outside, high, kept
        excess = abs(current(v)) - limit
        if excess > 0:
            outside, high, low, kept = v, excess, low / 2 if kept == -1 else low, -1
        else:
            inside, low, high, kept = v, excess, high / 2 if kept == 1 else high, 1

    if near is not None and 0 < near / level < 1:
        probe(near)
        probe(near + math.copysign(tol, level) * (1 if inside == near else -1))
        kept = 0
    while abs(outside - inside) > tol:
        width = abs(outside - inside)
        estimate = (inside * high - outside * low) / (high - low)
        lo, hi = sorted((inside, outside))
        probe(min(max(estimate, lo + tol / 2), hi - tol / 2))  # on the root: tests the far side too
        if abs(outside - inside) > max(width / 2, tol):
            probe(0.5 * (inside + outside))
    return inside


def hold_in_compliance(current: Callable[[float], float], hold: Callable[[float, float], float],
                       level: float, limit: float, durations: Iterable[float]
                       ) -> tuple[float, float, bool]:
    """Source `level` for each of `durations` (s, zero ones skipped) through hold(v, duration),
    which returns the current at its end. The voltage is clamped to compliance_voltage, solved
    again per phase and once more at the end, as the load may change while it is held.

    Returns (the voltage at the terminals, the current reading, whether in compliance); in
    compliance the reading is the limit with the sign of the load's current at `level`.
    """
    v, reading = level, 0.0
    for duration in durations:
        if duration > 0:
            v = compliance_voltage(current, level, limit, v if v != level else None)
            reading = hold(v, duration)
    if v != level or abs(reading) > limit:
        v = compliance_voltage(current, level, limit, v if v != level else None)
        if v == level:  # out of compliance again: back at the programmed level
            reading = current(level)
    tripped = v != level
    if tripped:
        reading = math.copysign(limit, current(level))
    return v, reading, tripped


def quiet_readings(load: SmuLoad, levels: Sequence[float], duration: float, limit: float
                   ) -> Sequence[float]:
    """The readings of the leading sweep `levels`, each held `duration` s, that the load takes
    without changing and within `limit` (A), from its optional bulk quiet_ramp: what
    hold_in_compliance would give point by point, for one physics call. Nothing from a
    load without it; the caller plays the rest point by point."""
    ramp = getattr(load, "quiet_ramp", None)
    return ramp(levels, duration, limit) if ramp else ()


def open_circuit_gain(load: float, high_z: float = math.inf) -> float:
    """Open-circuit volts per programmed volt for an expected-load setting (ohm): a programmed level
    is the level across `load` behind the 50 ohm source. A load of `high_z` or more (the largest
    setting the instrument has, or math.inf for INFinity) counts as open circuit."""
    return 1.0 if load >= high_z else (load + SOURCE_IMPEDANCE) / load
