"""The safe operating area (SOA): limits every request is checked against before it reaches a line."""
from __future__ import annotations

from dataclasses import asdict, dataclass


class SafetyError(ValueError):
    """A request exceeds the safe operating area; nothing was applied. Names the limit."""


@dataclass(frozen=True)
class SafeOperatingArea:
    """Limits for the chip on this station (volts, amperes)."""

    max_v_bl: float
    max_v_sl: float
    max_v_wl: float
    max_current: float
    max_pulse_width: float = 1e-3
    max_pulses: float = 1e6

    REQUIRED = ("max_v_bl", "max_v_sl", "max_v_wl", "max_current")
    DESCRIPTIONS = {"max_v_bl": ("|V| on a bit line", "V"), "max_v_sl": ("|V| on a source line", "V"),
                    "max_v_wl": ("|V| on a word line (gate)", "V"),
                    "max_current": ("current compliance", "A"),
                    "max_pulse_width": ("pulse width", "s"), "max_pulses": ("pulses per request", "")}

    def check(self, limit: str, value: float, what: str) -> float:
        """Return value if |value| <= the named limit, else raise SafetyError naming both."""
        bound = getattr(self, limit)
        if not abs(value) <= bound:
            text, unit = self.DESCRIPTIONS[limit]
            raise SafetyError(f"{what}={value:g}{' ' + unit if unit else ''} exceeds the safe operating "
                              f"area: {text} <= {bound:g}{' ' + unit if unit else ''} ({limit})")
        return value

    def as_dict(self) -> dict[str, float]:
        return asdict(self)
