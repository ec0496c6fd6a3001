"""Keysight (Agilent) 81160A and 81150A pulse/function/arbitrary generators, two channels.

Channel-specific SCPI headers carry the channel as a numeric suffix where the 81150A/81160A
User's Guide puts it (``:VOLT2:HIGH``, ``:PULS:WIDT2``, ``:ARM:SOUR2``, ``:TRIG2:COUN``,
``:OUTP2``). Every argument is checked against the instrument's ranges before anything is sent.
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

from .base import SCPIInstrument, in_range, num, parse_bool
from .transport import Transport

CHANNELS = (1, 2)
HIGH_Z = 1e6  # the largest expected load (:OUTP:IMP:EXT MAX): high impedance, like the chip
V_MAX = 10.0  # |level| into high impedance (+-5 V into 50 ohm)
AMPLITUDE = (0.1, 10.0)  # peak-to-peak into high impedance (50 mVpp to 5 Vpp into 50 ohm)
PERIOD_MAX = 1e6
EDGE_MAX = 1e3
COUNT_MAX = 2**31 - 1
EDGE_FACTOR = 1.6  # the manual's coupling: period >= width + 1.6 * edge


@dataclass(frozen=True)
class Limits:
    """Model-dependent timing minimums (s)."""

    period_min: float
    width_min: float
    edge_min: float


LIMITS = {
    "81150A": Limits(period_min=8.33e-9, width_min=4.1e-9, edge_min=2.5e-9),
    "81160A": Limits(period_min=3.03e-9, width_min=1.5e-9, edge_min=1e-9),
}


def _check_channel(name: str, channel: object) -> int:
    if isinstance(channel, bool) or channel not in CHANNELS:
        raise ValueError(f"{name} channel={channel!r} is not one of 1, 2")
    return int(channel)


class Keysight81160A(SCPIInstrument):
    """81160A or 81150A used as the pulse source of the chip (a high-impedance load).

    Until :meth:`check_identity` has read the model, timing is checked against the stricter
    81150A minimums. Both channels are assumed present (two-channel option).
    """

    models = ("81160A", "81150A")

    def __init__(self, transport: Transport, name: str = "pulse"):
        super().__init__(transport, name)
        self.limits = LIMITS["81150A"]

    def check_identity(self) -> str:
        """Check *IDN? names an 81160A or 81150A and adopt that model's limits."""
        idn = super().check_identity()
        model = idn.split(",")[1].strip().upper()
        self.limits = LIMITS["81160A" if "81160A" in model else "81150A"]
        return idn

    def configure_burst(self, amplitude: float, width: float, count: int, period: float,
                        channel: int = 1, base: float = 0.0, edge: float | None = None) -> None:
        """Arm `channel` for `count` pulses from `base` to `base + amplitude` V at the chip.

        The expected load is set to high impedance, so the programmed levels are the levels at
        the chip; a negative amplitude inverts the output polarity. `width` (s) is measured from
        the start of the leading to the start of the trailing edge, which with equal edges is the
        width at 50 %; `edge` (s, both edges) defaults to the instrument's fastest. The output is
        switched off first and left off; the burst starts on a bus trigger (:meth:`fire`).
        Nothing is sent if an argument is out of range; raises InstrumentError if the instrument
        rejects the setup.
        """
        where = f"{type(self).__name__}.configure_burst"
        ch = _check_channel(where, channel)
        offset, spread, polarity = self._levels(where, amplitude, base)
        self._check_timing(where, width, period, edge)
        if isinstance(count, bool) or not isinstance(count, Integral) \
                or not 1 <= count <= COUNT_MAX:
            raise ValueError(f"{where} count={count!r} must be an integer in [1, {COUNT_MAX}]")
        edge_arg = "MIN" if edge is None else num(edge)
        self.write(f":OUTP{ch} OFF")
        # Manual arming ends free running (the *RST arm source, immediate, is continuous output).
        self.write(f":ARM:SOUR{ch} MAN")
        self.write(f":ARM:SENS{ch} EDGE")
        self.write(f":FUNC{ch} PULS")
        self.write(f":OUTP{ch}:IMP:EXT {num(HIGH_Z)}")
        self.write(f":OUTP{ch}:POL {polarity}")
        # Offset 0 first, so no intermediate (amplitude, offset) pair leaves the level window.
        self.write(f":VOLT{ch}:OFFS 0")
        self.write(f":VOLT{ch} {num(spread)}")
        self.write(f":VOLT{ch}:OFFS {num(offset)}")
        # Edges and width to their minimums first: every intermediate timing then satisfies
        # period >= width + 1.6 * edge, whatever the instrument held before.
        self.write(f":PULS:TRAN{ch} MIN")
        self.write(f":PULS:TRAN{ch}:TRA MIN")
        self.write(f":PULS:WIDT{ch} MIN")
        self.write(f":PULS:PER{ch} {num(period)}")
        self.write(f":PULS:WIDT{ch} {num(width)}")
        self.write(f":PULS:TRAN{ch} {edge_arg}")
        self.write(f":PULS:TRAN{ch}:TRA {edge_arg}")
        self.write(f":PULS:DEL{ch} 0")
        self.write(f":TRIG{ch}:COUN {int(count)}")
        self.check_errors()

    @staticmethod
    def _levels(where: str, amplitude: float, base: float) -> tuple[float, float, str]:
        """(offset, peak-to-peak, polarity) of a pulse from `base` to `base + amplitude` V."""
        for label, value in (("amplitude", amplitude), ("base", base)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{where} {label} must be a number, got {value!r}")
        spread = abs(amplitude)
        if not AMPLITUDE[0] <= spread <= AMPLITUDE[1]:
            raise ValueError(f"{where} |amplitude|={spread:g} V is outside "
                             f"[{AMPLITUDE[0]:g}, {AMPLITUDE[1]:g}] V")
        pulse = base + amplitude
        for label, level in (("base", base), ("base + amplitude", pulse)):
            in_range(-V_MAX, V_MAX, " V")(f"{where} {label}", level)
        # Inverted, the output idles at the high level and pulses to the low level.
        return (base + pulse) / 2, spread, "NORM" if amplitude > 0 else "INV"

    def _check_timing(self, where: str, width: float, period: float, edge: float | None) -> None:
        limits = self.limits
        in_range(limits.period_min, PERIOD_MAX, " s")(f"{where} period", period)
        in_range(limits.width_min, PERIOD_MAX, " s")(f"{where} width", width)
        if edge is not None:
            in_range(limits.edge_min, EDGE_MAX, " s")(f"{where} edge", edge)
        slowest = limits.edge_min if edge is None else edge
        if width + EDGE_FACTOR * slowest > period:
            raise ValueError(f"{where} width={width:g} s + {EDGE_FACTOR:g} x edge={slowest:g} s "
                             f"exceeds period={period:g} s")

    def set_output(self, on: bool, channel: int = 1) -> None:
        """Switch the channel's output on or off."""
        where = f"{type(self).__name__}.set_output"
        ch = _check_channel(where, channel)
        if on not in (True, False):
            raise TypeError(f"{where} on must be True or False, got {on!r}")
        self.write(f":OUTP{ch} {'ON' if on else 'OFF'}")

    def outputs_on(self) -> list[int]:
        """The channels whose output the instrument reports on."""
        return [ch for ch in CHANNELS if self.ask_as(f":OUTP{ch}?", parse_bool, idempotent=True)]

    def fire(self) -> None:
        """Bus trigger, then wait until the burst has been delivered (the transport's timeout must
        exceed the burst)."""
        self.write("*TRG")
        self.ask("*OPC?", idempotent=True)

    def safe_state(self) -> None:
        """Both outputs off, then both channels at 0 V (DC function, zero offset)."""
        for ch in CHANNELS:
            self.write(f":OUTP{ch} OFF")
        for ch in CHANNELS:
            self.write(f":FUNC{ch} DC")
            self.write(f":VOLT{ch}:OFFS 0")
        self.confirm()
