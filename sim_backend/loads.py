"""What a virtual instrument's output terminals are connected to; the simulated bench provides these.

Also the output physics the twins share: an SMU's compliance solver and a 50 ohm generator's
open-circuit gain.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

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
    # nothing and stay within the limit, time passed for them (see quiet_readings);
    # current_function() -> current(v) for the load as it is now, valid until it changes
    # (see hold_in_compliance).


class PulseLoad(Protocol):
    """What a pulse generator's output channel drives."""

    def hold(self, channel: int, v: float | None, duration: float) -> None:
        """Hold the channel's open-circuit output at v volts for `duration` s (None: output off).
        A burst of N pulses is N pairs of hold(high, width), hold(base, period - width)."""


def compliance_voltage(current: Callable[[float], float], level: float, limit: float,
                       near: float | None = None) -> float:
    """`level`, or the voltage between 0 V and it at which the load draws the current limit:
    where |current(v)| (A, from SmuLoad.current) reaches `limit`, bracketed to
    COMPLIANCE_RESOLUTION on the side within the limit (see solve_compliance)."""
    return solve_compliance(current, level, limit, near)[0]


def solve_compliance(current: Callable[[float], float], level: float, limit: float,
                     near: float | None = None) -> tuple[float, float]:
    """(compliance_voltage, the load's current at `level`): the second comes with the solve
    (its first evaluation), e.g. for the sign of an in-compliance reading.

    Safeguarded secant: each probe is the secant through the last two probes (the ends of the
    bracket at first), kept inside the bracket and at least half the resolution away from its
    ends, so that next to the root a probe lands on the far side and closes the bracket; after
    two probes in a row that neither shrink the excess fourfold nor halve the bracket, a
    bisection. Monotonic smooth loads take
    about 8 evaluations from scratch where bisection takes ~35; `near`, a previous solution, is
    tried first (two evaluations when it still holds)."""
    at_level = current(level)
    excess = abs(at_level) - limit
    if excess <= 0:
        return level, at_level
    tol = COMPLIANCE_RESOLUTION * abs(level)
    inside, low, outside, high = 0.0, -limit, level, excess  # ends and their excess; 0 V draws nothing
    probes = [(0.0, -limit), (level, excess)]  # the last two (v, excess) for the secant

    def probe(v: float) -> None:
        nonlocal inside, low, outside, high
        excess = abs(current(v)) - limit
        if excess > 0:
            outside, high = v, excess
        else:
            inside, low = v, excess
        probes[:] = probes[-1], (v, excess)

    if near is not None and 0 < near / level < 1:
        probe(near)
        probe(near + math.copysign(tol, level) * (1 if inside == near else -1))
    slow = 0  # probes in a row that failed to halve the bracket
    while abs(outside - inside) > tol:
        width = abs(outside - inside)
        lo, hi = sorted((inside, outside))
        if slow >= 2:
            estimate, slow = 0.5 * (inside + outside), 0
        else:
            (v0, f0), (v1, f1) = probes
            estimate = v1 - f1 * (v1 - v0) / (f1 - f0) if f1 != f0 else math.nan
            if not lo < estimate < hi:  # also NaN: regula falsi on the bracket
                estimate = (inside * high - outside * low) / (high - low)
        probe(min(max(estimate, lo + tol / 2), hi - tol / 2))  # on the root: tests the far side too
        converging = abs(probes[1][1]) < 0.25 * abs(probes[0][1]) or abs(outside - inside) <= width / 2
        slow = 0 if converging else slow + 1
    return inside, at_level


def hold_in_compliance(current: Callable[[float], float], hold: Callable[[float, float], float],
                       level: float, limit: float, durations: Iterable[float],
                       freeze: Callable[[], Callable[[float], float]] | None = None
                       ) -> tuple[float, float, bool]:
    """Source `level` for each of `durations` (s, zero ones skipped) through hold(v, duration),
    which returns the current at its end. The voltage is clamped to compliance_voltage, solved
    again per phase and once more at the end, as the load may change while it is held.

    `freeze`, if given (e.g. SimLab.current_function), returns what `current` computes for the
    load as it is at that moment: each solve, where nothing changes between its evaluations,
    uses one.

    Returns (the voltage at the terminals, the current reading, whether in compliance); in
    compliance the reading is the limit with the sign of the load's current at `level`.
    """
    def solve(near: float | None) -> tuple[float, float]:
        return solve_compliance(freeze() if freeze else current, level, limit, near)

    v, reading, at_level = level, 0.0, None
    for duration in durations:
        if duration > 0:
            v, at_level = solve(v if v != level else None)
            reading = hold(v, duration)
    if v != level or abs(reading) > limit:
        v, at_level = solve(v if v != level else None)
        if v == level:  # out of compliance again: back at the programmed level
            reading = at_level
    tripped = v != level
    if tripped:
        if at_level is None:  # unreachable: v leaves `level` only through solve(), which sets at_level
            raise AssertionError("out of compliance without a compliance solution")
        reading = math.copysign(limit, at_level)
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
