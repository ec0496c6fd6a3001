"""Virtual Keysight 81160A / 81150A: two pulse channels driving a PulseLoad.

It parses the 81150A/81160A User's Guide forms of the subset in docs/instruments/keysight81160a.md
(function, levels as high/low or amplitude/offset, expected load, polarity, period or frequency,
width or duty cycle and what a new period holds, delay, edges, arm source and sense, burst count,
output state) with the channel as a numeric suffix and `{<value>|MINimum|MAXimum}` for numbers
(in queries too), and queues errors in the instrument's format (``-222,"Data out of range"``,
30 entries).

Only triggered bursts reach the load: on ``*TRG`` every channel armed for the manual/bus trigger
(``:ARM:SOUR MAN``, edge sense) with its output on and the pulse function plays its burst through
``load.hold``. Continuous (free-running) and gated output, the other functions and the edge shapes
(the load sees rectangular pulses) are not simulated; the channels of one trigger are played one
after the other.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .loads import PulseLoad, open_circuit_gain
from .scpi import (
    Call,
    ScpiError,
    ScpiTwin,
    format_number,
    short_form,
    to_bool,
    to_float,
    to_keyword,
)

# The source impedance is 50 ohm (sim_backend.loads); the 81150A's optional 5 ohm is not simulated.
V_OC_MAX = 10.0  # open-circuit level window +-10 V (+-5 V into 50 ohm)
AMPLITUDE_OC = (0.1, 10.0)  # open-circuit peak-to-peak
LOAD_RANGE = (0.3, 1e6)  # the largest (MAXimum, 1 Mohm) stands for high Z: open circuit
PERIOD_MAX = 1e6
EDGE_MAX = 1e3
DELAY_MAX = 1e6
COUNT_MAX = 2**31 - 1
EDGE_FACTOR = 1.6  # period >= width + 1.6 * edge
FIRMWARE = "2.0.0.0-2.6"

# The twin keeps its own table of the instrument's limits (not the driver's) so that tests of the
# driver against the twin check the driver's numbers. (period, width, edge) minimums in s:
MINIMUMS = {"81150A": (8.33e-9, 4.1e-9, 2.5e-9), "81160A": (3.03e-9, 1.5e-9, 1e-9)}

FUNCTIONS = ("SINusoid", "SQUare", "RAMP", "PULSe", "NOISe", "DC", "USER", "PATTern")
ARM_SOURCES = ("IMMediate", "INTernal2", "EXTernal", "MANual")
ARM_SENSES = ("EDGE", "LEVel")
POLARITIES = ("NORMal", "INVerted")
HOLDS = ("WIDTh", "DCYCle", "TDELay")


@dataclass
class ChannelState:
    """One channel's settings; levels are programmed values (V into the expected load)."""

    function: str
    amplitude: float
    offset: float
    load: float
    polarity: str
    period: float
    width: float
    delay: float
    leading: float
    trailing: float
    arm_source: str
    arm_sense: str
    count: int
    output: bool
    hold: str = "WIDTh"  # what a new period keeps: the width or the duty cycle

    @property
    def high(self) -> float:
        return self.offset + (0.0 if self.function == "DC" else self.amplitude / 2)

    @property
    def low(self) -> float:
        return self.offset - (0.0 if self.function == "DC" else self.amplitude / 2)

    def open_circuit(self, v: float) -> float:
        """The open-circuit voltage that puts `v` across the expected load."""
        return v * open_circuit_gain(self.load, LOAD_RANGE[1])


class VirtualKeysight81160A(ScpiTwin):
    """An 81160A (or 81150A) whose two outputs drive `load`.

    `channels[1]`, `channels[2]` hold each channel's settings; `outputs` and `levels` summarise
    them for the bench and tests.
    """

    def __init__(self, load: PulseLoad, model: str = "81160A", serial: str = "DE00000001"):
        if model not in MINIMUMS:
            raise ValueError(f"model {model!r} is not one of {', '.join(MINIMUMS)}")
        super().__init__(f"Agilent Technologies,{model},{serial},{FIRMWARE}", error_capacity=30)
        self.load = load
        self.model = model
        self.period_min, self.width_min, self.edge_min = MINIMUMS[model]
        self.channels: dict[int, ChannelState] = {}
        volt, pulse = "[:SOURce]:VOLTage#[:LEVel][:IMMediate]", "[:SOURce]:PULSe"
        self._channel_setting("[:SOURce]:FUNCtion#[:SHAPe]", self._set_function,
                              lambda s: short_form(s.function))
        self._channel_number(volt + "[:AMPLitude]", self._set_amplitude, lambda s: s.amplitude,
                             self._amplitude_range)
        self._channel_setting(volt + ":OFFSet", self._set_offset,
                              lambda s: format_number(s.offset))
        self._channel_setting(volt + ":HIGH", self._set_high, lambda s: format_number(s.high))
        self._channel_setting(volt + ":LOW", self._set_low, lambda s: format_number(s.low))
        self._channel_number(pulse + ":PERiod#", self._set_period, lambda s: s.period,
                             lambda s: (self.period_min, PERIOD_MAX))
        for frequency in (pulse + ":FREQuency#", "[:SOURce]:FREQuency#[:CW]", "[:SOURce]:FREQuency#:FIXed"):
            self._channel_number(frequency, lambda state, f: self._set_period(state, 1 / f),
                                 lambda s: 1 / s.period, lambda s: (1 / PERIOD_MAX, 1 / self.period_min))
        self._channel_number(pulse + ":WIDTh#", self._set_width, lambda s: s.width,
                             lambda s: (self.width_min, PERIOD_MAX))
        # The duty cycle and hold, also in the 33250A-compatible FUNCtion[1|2]:PULSe forms
        # (User's Guide, Remote Programming Reference)
        for root in (pulse + ":DCYCle#", "[:SOURce]:FUNCtion#:PULSe:DCYCle"):
            self._channel_number(root, self._set_duty_cycle, lambda s: 100 * s.width / s.period,
                                 lambda s: (0.0, 100.0))
        for root in (pulse + ":HOLD#", "[:SOURce]:FUNCtion#:PULSe:HOLD"):
            self._channel_setting(root, self._set_hold, lambda s: short_form(s.hold))
        self._channel_number(pulse + ":DELay#", self._set_delay, lambda s: s.delay,
                             lambda s: (0.0, DELAY_MAX))
        self._channel_number(pulse + ":TRANsition#[:LEADing]", self._set_leading,
                             lambda s: s.leading, lambda s: (self.edge_min, EDGE_MAX))
        self._channel_number(pulse + ":TRANsition#:TRAiling", self._set_trailing,
                             lambda s: s.trailing, lambda s: (self.edge_min, EDGE_MAX))
        self._channel_setting(":OUTPut#[:STATe]", self._set_output, lambda s: str(int(s.output)))
        self._channel_number(":OUTPut#:IMPedance:EXTernal", self._set_load, lambda s: s.load,
                             lambda s: LOAD_RANGE)
        self._channel_setting(":OUTPut#:POLarity", self._set_polarity,
                              lambda s: short_form(s.polarity))
        self._channel_setting(":ARM:SOURce#", self._set_arm_source,
                              lambda s: short_form(s.arm_source))
        self._channel_setting(":ARM:SENSe#", self._set_arm_sense, lambda s: short_form(s.arm_sense))
        self._channel_number(":TRIGger#:COUNt", self._set_count, lambda s: s.count,
                             lambda s: (1, COUNT_MAX), fmt=lambda n: str(int(n)), integer=True)
        self.register("*TRG", self._trigger)
        self.reset()

    def _channel_setting(self, pattern: str, setter: Callable[[ChannelState, str], None],
                         fmt: Callable[[ChannelState], str]) -> None:
        """A per-channel command taking one parameter, and its query."""
        self.register(pattern, lambda call: setter(self._channel(call), call.params[0]), nargs=1,
                      suffix_max=2)
        self.register(pattern + "?", lambda call: fmt(self._channel(call)), suffix_max=2)

    def _channel_number(self, pattern: str, setter: Callable[[ChannelState, float], None],
                        value: Callable[[ChannelState], float],
                        bounds: Callable[[ChannelState], tuple[float, float]],
                        fmt: Callable[[float], str] = format_number, integer: bool = False) -> None:
        """A per-channel number within `bounds(state)`: the command takes a number or MINimum /
        MAXimum (User's Guide: `{<value>|MINimum|MAXimum}`), and so does the query."""
        self.register_bounded(pattern, self._channel, setter, value, bounds, fmt=fmt,
                              integer=integer, suffix_max=2)

    def _channel(self, call: Call) -> ChannelState:
        return self.channels[call.suffixes[0]]

    def reset(self) -> None:
        # Period 1 us is the manual's default; the other values are assumed (see the docs).
        self.channels = {ch: ChannelState(
            function="SINusoid", amplitude=0.1, offset=0.0, load=50.0, polarity="NORMal",
            period=1e-6, width=100e-9, delay=0.0, leading=self.edge_min, trailing=self.edge_min,
            arm_source="IMMediate", arm_sense="EDGE", count=1, output=False) for ch in (1, 2)}

    @property
    def outputs(self) -> dict[int, bool]:
        return {ch: s.output for ch, s in self.channels.items()}

    @property
    def levels(self) -> dict[int, tuple[float, float]]:
        """Programmed (high, low) V per channel; (offset, offset) for the DC function."""
        return {ch: (s.high, s.low) for ch, s in self.channels.items()}

    # -- levels

    @staticmethod
    def _check_levels(function: str, amplitude: float, offset: float, load: float) -> None:
        """The open-circuit levels must stay within the window."""
        scale = open_circuit_gain(load, LOAD_RANGE[1])
        spread = 0.0 if function == "DC" else amplitude
        if abs(offset) * scale + spread * scale / 2 > V_OC_MAX * (1 + 1e-12):
            raise ScpiError(-222)

    def _apply_levels(self, state: ChannelState, amplitude: float, offset: float) -> None:
        self._check_levels(state.function, amplitude, offset, state.load)
        state.amplitude, state.offset = amplitude, offset

    def _set_function(self, state: ChannelState, param: str) -> None:
        function = to_keyword(param, *FUNCTIONS)
        self._check_levels(function, state.amplitude, state.offset, state.load)
        state.function = function

    def _amplitude_range(self, state: ChannelState) -> tuple[float, float]:
        scale = open_circuit_gain(state.load, LOAD_RANGE[1])
        return AMPLITUDE_OC[0] / scale, AMPLITUDE_OC[1] / scale

    def _set_amplitude(self, state: ChannelState, amplitude: float) -> None:
        self._apply_levels(state, amplitude, state.offset)

    def _set_offset(self, state: ChannelState, param: str) -> None:
        self._apply_levels(state, state.amplitude, to_float(param))

    def _set_high(self, state: ChannelState, param: str) -> None:
        self._set_high_low(state, to_float(param), state.low)

    def _set_low(self, state: ChannelState, param: str) -> None:
        self._set_high_low(state, state.high, to_float(param))

    def _set_high_low(self, state: ChannelState, high: float, low: float) -> None:
        low_amplitude, high_amplitude = self._amplitude_range(state)
        if not low_amplitude <= high - low <= high_amplitude:
            raise ScpiError(-222)
        self._apply_levels(state, high - low, (high + low) / 2)

    def _set_load(self, state: ChannelState, load: float) -> None:
        # The programmed levels are kept; they must still fit the window for the new load.
        self._check_levels(state.function, state.amplitude, state.offset, load)
        state.load = load

    def _set_polarity(self, state: ChannelState, param: str) -> None:
        state.polarity = to_keyword(param, *POLARITIES)

    # -- timing (each new value must keep period >= width + 1.6 * slower edge)

    @staticmethod
    def _check_timing(period: float, width: float, leading: float, trailing: float) -> None:
        if width + EDGE_FACTOR * max(leading, trailing) > period * (1 + 1e-12):
            raise ScpiError(-222)

    def _set_period(self, state: ChannelState, period: float) -> None:
        width = state.width * period / state.period if state.hold == "DCYCle" else state.width
        if width < self.width_min * (1 - 1e-12):
            raise ScpiError(-222)
        self._check_timing(period, width, state.leading, state.trailing)
        state.period, state.width = period, width

    def _set_duty_cycle(self, state: ChannelState, percent: float) -> None:
        width = state.period * percent / 100
        if width < self.width_min * (1 - 1e-12):
            raise ScpiError(-222)
        self._set_width(state, width)

    def _set_hold(self, state: ChannelState, param: str) -> None:
        hold = to_keyword(param, *HOLDS)
        if hold == "TDELay":
            raise ScpiError(-221, "Settings conflict; holding the trailing delay is not simulated")
        state.hold = hold

    def _set_width(self, state: ChannelState, width: float) -> None:
        self._check_timing(state.period, width, state.leading, state.trailing)
        state.width = width

    def _set_leading(self, state: ChannelState, leading: float) -> None:
        self._check_timing(state.period, state.width, leading, state.trailing)
        state.leading = leading

    def _set_trailing(self, state: ChannelState, trailing: float) -> None:
        self._check_timing(state.period, state.width, state.leading, trailing)
        state.trailing = trailing

    def _set_delay(self, state: ChannelState, delay: float) -> None:
        state.delay = delay

    # -- arming, output, trigger

    def _set_arm_source(self, state: ChannelState, param: str) -> None:
        state.arm_source = to_keyword(param, *ARM_SOURCES)

    def _set_arm_sense(self, state: ChannelState, param: str) -> None:
        state.arm_sense = to_keyword(param, *ARM_SENSES)

    def _set_count(self, state: ChannelState, count: float) -> None:
        state.count = int(count)

    def _set_output(self, state: ChannelState, param: str) -> None:
        state.output = to_bool(param)

    def _trigger(self, call: Call) -> None:
        armed = [ch for ch, s in self.channels.items() if s.arm_source == "MANual"]
        if not armed:
            raise ScpiError(-211, "Trigger ignored")
        for ch in armed:
            state = self.channels[ch]
            if not state.output:
                continue
            if state.function != "PULSe":
                self.push_error(-221, "Settings conflict; only the pulse function is simulated")
            elif state.arm_sense != "EDGE":
                self.push_error(-221, "Settings conflict; gated mode is not simulated")
            else:
                self._burst(ch, state)

    def _burst(self, ch: int, state: ChannelState) -> None:
        high, low = state.open_circuit(state.high), state.open_circuit(state.low)
        base, pulse = (low, high) if state.polarity == "NORMal" else (high, low)
        if state.delay > 0:
            self.load.hold(ch, base, state.delay)
        for _ in range(state.count):
            self.load.hold(ch, pulse, state.width)
            self.load.hold(ch, base, state.period - state.width)
