"""Keysight (Agilent) 33500B and 33600A series waveform generators as burst pulse sources.

A burst is the pulse function in triggered-burst mode with the bus trigger: configure_burst sets
it up with the output off, set_output switches the output, fire sends *TRG and waits on *OPC?.
The model table and limits (Operating and Service Guide, data sheets) are in
instruments/keysight33500b_spec.py, shared with the twin so both refuse the same settings.
"""
from __future__ import annotations

from numbers import Integral

from .base import InstrumentError, SCPIInstrument, boolean, in_range, parse_bool
from .keysight33500b_spec import (
    AMPLITUDE_OPEN_MIN,
    BURST_MAX,
    MAX_PERIOD,
    MODELS,
    V_OPEN_MAX,
    ModelSpec,
    edge_limits,
    width_limits,
)


def _num(value: float) -> str:
    """The shortest text that reads back as the same float (a limit like 1/30 MHz stays valid)."""
    text = repr(float(value))
    return text.removesuffix(".0")


class Keysight33500B(SCPIInstrument):
    """A 33500B or 33600A series generator whose channel drives the board's pulse input.

    Call :meth:`check_identity` once after connecting (the model decides the channel count and
    timing limits; other methods ask *IDN? themselves if it has not been called). The output
    load is set to high impedance, so programmed levels are the levels at the high-Z chip.
    """

    models = tuple(MODELS)

    def __init__(self, transport, name: str = "pulse"):
        super().__init__(transport, name)
        self.model: str | None = None
        self._spec: ModelSpec | None = None

    def check_identity(self) -> str:
        idn = super().check_identity()
        model = idn.split(",")[1].strip().upper()
        if model not in MODELS:
            raise InstrumentError(f"{self.name} at {self.transport.resource}: model {model!r} is "
                                  f"not one of {', '.join(MODELS)} (*IDN? said {idn!r})")
        self.model, self._spec = model, MODELS[model]
        return idn

    @property
    def spec(self) -> ModelSpec:
        """The connected model's channel count and limits."""
        if self._spec is None:
            self.check_identity()
        if self._spec is None:  # check_identity() sets it or raises; a subclass might not
            raise InstrumentError(f"{self.name} at {self.transport.resource}: model unknown after *IDN?")
        return self._spec

    def _channel(self, channel: int) -> int:
        channels = self.spec.channels
        if isinstance(channel, bool) or not isinstance(channel, Integral) \
                or not 1 <= channel <= channels:
            raise ValueError(f"Keysight33500B channel={channel!r}: the {self.model} has "
                             f"{'channels 1 and 2' if channels == 2 else 'channel 1 only'}")
        return int(channel)

    def configure_burst(self, amplitude: float, width: float, count: int, period: float,
                        channel: int = 1, base: float = 0.0, edge: float | None = None) -> None:
        """Set up `count` pulses from `base` to `base + amplitude` V (negative amplitude: a
        negative-going pulse), `width` s at 50 %, every `period` s, with `edge` s transitions
        (None: the model's fastest), fired by *TRG. Turns the output off first and leaves it
        off. Nothing is sent if a value is outside the model's range; raises InstrumentError
        if the instrument reports an error."""
        n = self._channel(channel)
        spec, what = self.spec, "Keysight33500B.configure_burst"
        in_range(-2 * V_OPEN_MAX, 2 * V_OPEN_MAX, " V")(f"{what} amplitude", amplitude)
        if abs(amplitude) < AMPLITUDE_OPEN_MIN:
            raise ValueError(f"{what} amplitude={amplitude:g} V: |amplitude| must be at least "
                             f"{AMPLITUDE_OPEN_MIN:g} V")
        in_range(-V_OPEN_MAX, V_OPEN_MAX, " V")(f"{what} base", base)
        in_range(-V_OPEN_MAX, V_OPEN_MAX, " V")(f"{what} base + amplitude", base + amplitude)
        in_range(spec.min_period, MAX_PERIOD, " s")(f"{what} period", period)
        in_range(*width_limits(spec, period), " s")(f"{what} width", width)
        edge = spec.min_edge if edge is None else edge
        in_range(spec.min_edge, min(edge_limits(width, period)), " s")(f"{what} edge", edge)
        if isinstance(count, bool) or not isinstance(count, Integral) \
                or not 1 <= count <= BURST_MAX:
            raise ValueError(f"{what} count={count!r} must be an integer in [1, {BURST_MAX}]")

        high, low = max(base, base + amplitude), min(base, base + amplitude)
        source = f"SOUR{n}:"
        self.write(f"OUTP{n} OFF")
        self.write(f"OUTP{n}:LOAD INF")
        self.write(source + "FUNC PULS")
        # Inverted, the pulse goes to the low level and rests at the high one (= base).
        self.write(f"OUTP{n}:POL {'NORM' if amplitude > 0 else 'INV'}")
        # Each step below is valid whatever the previous settings were, so the instrument
        # never has to adjust a coupled value (which it would report as an error).
        self.write(source + "VOLT:LOW MIN")
        self.write(source + f"VOLT:HIGH {_num(high)}")
        self.write(source + f"VOLT:LOW {_num(low)}")
        self.write(source + "FUNC:PULS:TRAN MIN")
        self.write(source + "FUNC:PULS:WIDT MIN")
        self.write(source + f"FUNC:PULS:PER {_num(period)}")
        self.write(source + f"FUNC:PULS:WIDT {_num(width)}")
        self.write(source + f"FUNC:PULS:TRAN {_num(edge)}")
        self.write(source + "BURS:MODE TRIG")
        self.write(source + f"BURS:NCYC {int(count)}")
        self.write(f"TRIG{n}:SOUR BUS")
        self.write(source + "BURS:STAT ON")
        self.check_errors()

    def set_output(self, on: bool, channel: int = 1) -> None:
        """Switch the channel's output on (True) or off."""
        state = boolean("Keysight33500B.set_output on", on)
        self.write(f"OUTP{self._channel(channel)} {'ON' if state else 'OFF'}")

    def outputs_on(self) -> list[int]:
        """The channels whose output the instrument reports on."""
        return [n for n in range(1, self.spec.channels + 1)
                if self.ask_as(f"OUTP{n}?", parse_bool, idempotent=True)]

    def fire(self) -> None:
        """Bus trigger, then wait until every armed burst has been delivered; the transport
        timeout must exceed the burst (count x period)."""
        self.write("*TRG")
        self.ask("*OPC?", idempotent=True)

    def safe_state(self) -> None:
        """Every output off, then each channel a 0 V DC level (burst off, DC function)."""
        channels = range(1, self.spec.channels + 1)
        for n in channels:
            self.write(f"OUTP{n} OFF")
        for n in channels:
            self.write(f"SOUR{n}:BURS:STAT OFF")
            self.write(f"SOUR{n}:FUNC DC")
            self.write(f"SOUR{n}:VOLT:OFFS 0")
        self.confirm()
