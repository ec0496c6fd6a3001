"""Virtual Keysight 33500B / 33600A series waveform generator driving a PulseLoad.

It follows the Operating and Service Guide for the subset labctl uses: function, levels (as
amplitude/offset or high/low, scaled by the OUTPut:LOAD setting), pulse period/frequency, width
and edges, triggered bursts, trigger source, output state, load and polarity, *TRG and the
+0,"No error" format of SYST:ERR?. Only triggered bursts of the pulse function reach the load:
on *TRG each channel whose trigger source is BUS, in triggered-burst mode with its output on,
holds the load at the pulse level for the width and at the rest level for the rest of each
period. Free-running output, other functions, gated bursts and the IMMediate/EXTernal/TIMer
trigger sources are accepted but deliver nothing. Where the real instrument adjusts a coupled
setting and reports an error, the twin reports the same kind of error and keeps the old value.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from labctl.instruments.keysight33500b_spec import (
    AMPLITUDE_OPEN_MIN,
    BURST_MAX,
    MAX_PERIOD,
    MODELS,
    V_OPEN_MAX,
    ModelSpec,
    edge_limits,
    width_limits,
)

from .loads import PulseLoad, open_circuit_gain
from .scpi import (
    Call,
    ScpiError,
    ScpiTwin,
    query_number,
    short_form,
    to_bool,
    to_float,
    to_keyword,
    to_number,
)

FUNCTIONS = ("SINusoid", "SQUare", "TRIangle", "RAMP", "PULSe", "PRBS", "NOISe", "ARB", "DC")
LOAD_MAX = 10e3  # ohm
INFINITY_REPLY = 9.9e37  # what the instrument sends for INFinity


@dataclass
class Channel:
    """One output's settings; levels are open-circuit volts (what a high-Z load sees)."""

    function: str = "SIN"
    high: float = 0.1  # V: *RST is 100 mVpp, 0 V offset into the default 50 ohm load
    low: float = -0.1
    load: float = 50.0  # ohm, math.inf for INFinity
    inverted: bool = False
    period: float = 1e-3
    width: float = 100e-6
    lead: float = 10e-9
    trail: float = 10e-9
    output: bool = False
    burst: bool = False
    burst_mode: str = "TRIG"
    burst_count: int = 1
    trigger_source: str = "IMM"

    @property
    def amplitude(self) -> float:
        return self.high - self.low

    @property
    def offset(self) -> float:
        return (self.high + self.low) / 2

    @property
    def levels(self) -> tuple[float, float]:
        """(pulse level, rest level) at open circuit; both the DC level for the DC function."""
        if self.function == "DC":
            return self.offset, self.offset
        return (self.low, self.high) if self.inverted else (self.high, self.low)


class VirtualKeysight33500B(ScpiTwin):
    """A 33500B/33600A series generator (`model`) whose outputs drive `load`.

    `channels[n]` (n = 1, or 1 and 2) holds each output's settings as plain attributes for tests
    and the bench: `output`, `levels`, `high`/`low` (open-circuit V), `period`, `width`, ...
    """

    def __init__(self, load: PulseLoad, model: str = "33522B", serial: str = "MY00000001"):
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r} (choose from {', '.join(MODELS)})")
        firmware = "A.03.03-3.15-03-64-02" if model.endswith("A") else "5.00-1.19-2.00-58-00"
        super().__init__(f"Keysight Technologies,{model},{serial},{firmware}")
        self.load = load
        self.model = model
        self.spec: ModelSpec = MODELS[model]
        self.channels: dict[int, Channel] = {}
        src, pulse = "[:SOURce#]", "[:SOURce#]:FUNCtion:PULSe"
        level = src + ":VOLTage[:LEVel][:IMMediate]"
        self._setting(src + ":FUNCtion[:SHAPe]", self._set_function, lambda c: c.function)
        self._level(level + "[:AMPLitude]", "amplitude", self._set_amplitude, AMPLITUDE_OPEN_MIN,
                    2 * V_OPEN_MAX)
        self._level(level + ":OFFSet", "offset", self._set_offset, -V_OPEN_MAX, V_OPEN_MAX)
        self._level(level + ":HIGH", "high", self._set_high, -V_OPEN_MAX, V_OPEN_MAX)
        self._level(level + ":LOW", "low", self._set_low, -V_OPEN_MAX, V_OPEN_MAX)
        self._number(pulse + ":PERiod", self._apply_period, lambda c: c.period,
                     lambda c: (self.spec.min_period, MAX_PERIOD))
        self._number(src + ":FREQuency", lambda c, f: self._apply_period(c, 1 / f), lambda c: 1 / c.period,
                     lambda c: (1 / MAX_PERIOD, 1 / self.spec.min_period))
        self._number(pulse + ":WIDTh", self._set_width, lambda c: c.width,
                     lambda c: width_limits(self.spec, c.period))
        self._number(pulse + ":TRANsition[:BOTH]", self._set_edges, lambda c: c.lead,
                     lambda c: (self.spec.min_edge, min(edge_limits(c.width, c.period))))
        self._number(pulse + ":TRANsition:LEADing", self._set_lead, lambda c: c.lead,
                     lambda c: (self.spec.min_edge, edge_limits(c.width, c.period)[0]))
        self._number(pulse + ":TRANsition:TRAiling", self._set_trail, lambda c: c.trail,
                     lambda c: (self.spec.min_edge, edge_limits(c.width, c.period)[1]))
        self._setting(src + ":BURSt:STATe", self._set_burst, lambda c: str(int(c.burst)))
        self._setting(src + ":BURSt:MODE", self._set_burst_mode, lambda c: c.burst_mode)
        self.register(src + ":BURSt:NCYCles", self._set_burst_count, nargs=1,
                      suffix_max=self.spec.channels)
        self.register(src + ":BURSt:NCYCles?", lambda call: self._reply(query_number(
            call.params, self._channel(call).burst_count, 1, BURST_MAX)), nargs=(0, 1),
            suffix_max=self.spec.channels)
        self._setting(":TRIGger#:SOURce", self._set_trigger_source, lambda c: c.trigger_source)
        self._setting(":OUTPut#[:STATe]", self._set_output, lambda c: str(int(c.output)))
        self._setting(":OUTPut#:LOAD", self._set_load,
                      lambda c: self._reply(INFINITY_REPLY if math.isinf(c.load) else c.load))
        self._setting(":OUTPut#:POLarity", self._set_polarity,
                      lambda c: "INV" if c.inverted else "NORM")
        self.register("*TRG", self._trigger)
        self.reset()

    def reset(self) -> None:
        self.channels = {n: Channel() for n in range(1, self.spec.channels + 1)}

    def format_error(self, code: int, message: str, t: float) -> str:
        return f'{code:+d},"{message}"'

    @staticmethod
    def _reply(value: float) -> str:
        return f"{value:+.14E}"  # 15 significant digits

    def _setting(self, pattern: str, setter: Callable[[Channel, str], None],
                 getter: Callable[[Channel], str]) -> None:
        """A per-channel command `setter(channel, param)` and its query `getter(channel)`."""
        n = self.spec.channels
        self.register(pattern, lambda call: setter(self._channel(call), call.params[0]), nargs=1,
                      suffix_max=n)
        self.register(pattern + "?", lambda call: getter(self._channel(call)), suffix_max=n)

    def _number(self, pattern: str, put: Callable[[Channel, float], None],
                get: Callable[[Channel], float], bounds: Callable[[Channel], tuple[float, float]],
                integer: bool = False) -> None:
        """A per-channel number: `{<value>|MINimum|MAXimum}` in the command and the query."""
        self.register_bounded(pattern, self._channel, put, get, bounds, fmt=self._reply,
                              integer=integer, suffix_max=self.spec.channels)

    def _level(self, pattern: str, attribute: str, put: Callable[[Channel, float], None],
               low: float, high: float) -> None:
        """A level: programmed for the expected load (volts / gain) on the wire, kept at open
        circuit within [low, high]."""
        def set_open_circuit(channel: Channel, volts: float) -> None:
            put(channel, volts * open_circuit_gain(channel.load))

        def programmed(channel: Channel) -> float:
            return getattr(channel, attribute) / open_circuit_gain(channel.load)

        def bounds(channel: Channel) -> tuple[float, float]:
            gain = open_circuit_gain(channel.load)
            return low / gain, high / gain
        self._number(pattern, set_open_circuit, programmed, bounds)

    def _channel(self, call: Call) -> Channel:
        return self.channels[call.suffixes[0]]

    # -- levels (open-circuit volts inside, programmed volts on the wire)

    def _set_levels(self, channel: Channel, high: float, low: float) -> None:
        if high - low < AMPLITUDE_OPEN_MIN:
            raise ScpiError(-221)
        channel.high, channel.low = high, low

    def _set_high(self, channel: Channel, high: float) -> None:
        self._set_levels(channel, high, channel.low)

    def _set_low(self, channel: Channel, low: float) -> None:
        self._set_levels(channel, channel.high, low)

    def _set_amplitude(self, channel: Channel, amplitude: float) -> None:
        if channel.function != "DC" and abs(channel.offset) + amplitude / 2 > V_OPEN_MAX:
            raise ScpiError(-221)
        offset = channel.offset
        channel.high, channel.low = offset + amplitude / 2, offset - amplitude / 2

    def _set_offset(self, channel: Channel, offset: float) -> None:
        if channel.function != "DC" and abs(offset) + channel.amplitude / 2 > V_OPEN_MAX:
            raise ScpiError(-221)
        half = channel.amplitude / 2
        channel.high, channel.low = offset + half, offset - half

    def _set_load(self, channel: Channel, param: str) -> None:
        try:
            keyword = to_keyword(param, "INFinity", "MINimum", "MAXimum")
        except ScpiError:
            channel.load = to_float(param, 1.0, LOAD_MAX)
        else:
            channel.load = {"INFinity": math.inf, "MINimum": 1.0, "MAXimum": LOAD_MAX}[keyword]

    # -- function and pulse timing

    def _set_function(self, channel: Channel, param: str) -> None:
        name = short_form(to_keyword(param, *FUNCTIONS))
        if name == "DC" and channel.burst:
            raise ScpiError(-221)
        if name != "DC" and abs(channel.offset) + channel.amplitude / 2 > V_OPEN_MAX:
            raise ScpiError(-221)
        channel.function = name

    def _apply_period(self, channel: Channel, period: float) -> None:
        """The period, if the present width and edges still fit (-221 otherwise)."""
        low, high = width_limits(self.spec, period)
        lead_max, trail_max = edge_limits(channel.width, period)
        if not low <= channel.width <= high or channel.trail > trail_max or channel.lead > lead_max:
            raise ScpiError(-221)
        channel.period = period

    def _set_width(self, channel: Channel, width: float) -> None:
        lead_max, trail_max = edge_limits(width, channel.period)
        if channel.lead > lead_max or channel.trail > trail_max:
            raise ScpiError(-221)
        channel.width = width

    def _set_edges(self, channel: Channel, edge: float) -> None:
        channel.lead = channel.trail = edge

    def _set_lead(self, channel: Channel, edge: float) -> None:
        channel.lead = edge

    def _set_trail(self, channel: Channel, edge: float) -> None:
        channel.trail = edge

    # -- burst, trigger and output

    def _set_burst(self, channel: Channel, param: str) -> None:
        on = to_bool(param)
        if on and channel.function == "DC":
            raise ScpiError(-221)
        channel.burst = on

    def _set_burst_mode(self, channel: Channel, param: str) -> None:
        channel.burst_mode = short_form(to_keyword(param, "TRIGgered", "GATed"))

    def _set_burst_count(self, call: Call) -> None:
        param = call.params[0]
        if param.upper() in ("INF", "INFINITY"):
            raise ScpiError(-221, "Settings conflict; infinite bursts are not simulated")
        self._channel(call).burst_count = int(to_number(param, 1, BURST_MAX, integer=True))

    def _set_trigger_source(self, channel: Channel, param: str) -> None:
        channel.trigger_source = short_form(to_keyword(param, "IMMediate", "EXTernal", "TIMer",
                                                       "BUS"))

    def _set_output(self, channel: Channel, param: str) -> None:
        channel.output = to_bool(param)

    def _set_polarity(self, channel: Channel, param: str) -> None:
        channel.inverted = to_keyword(param, "NORMal", "INVerted") == "INVerted"

    def _trigger(self, call: Call) -> None:
        armed = {n: c for n, c in self.channels.items() if c.trigger_source == "BUS"}
        if not armed:
            raise ScpiError(-211, "Trigger ignored")
        # Channels fire one after the other: the load sees them in sequence, not overlapping.
        for n, channel in armed.items():
            if channel.output and channel.burst and channel.burst_mode == "TRIG" \
                    and channel.function == "PULS":
                pulse, rest = channel.levels
                for _ in range(channel.burst_count):
                    self.load.hold(n, pulse, channel.width)
                    self.load.hold(n, rest, channel.period - channel.width)
