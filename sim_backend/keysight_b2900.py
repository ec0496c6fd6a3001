"""Virtual Keysight B2900A series SMU (B2901A/B2902A/B2911A/B2912A) sourcing voltage into a load.

It follows the B2900 SCPI Command Reference for the subset labctl uses: per-channel source level
and mode (fixed, linear sweep, list), current compliance with its trip flag, output and output
protection, concurrent V/I sensing with NPLC, the trigger system (AINT or timer source, count,
acquire/transient delays), :INIT / :MEAS / :FETC with channel lists, :FORM:ELEM:SENS and the
``+0,"No error"`` error queue. Channel 1 drives the load; channel 2 of a two-channel model is open.

Simplifications (also listed in docs/instruments/keysight_b2900.md): voltage source only; no
MIN/MAX/DEF parameters; the arm layer is fixed at one immediate arm; acquire and transient triggers
must share source, count and timer; the trigger count must equal the sweep or list points; a
transient delay is spent at the previous level before the step and the acquire delay after it;
the timer never loses triggers; channels of one :INIT run one after the other; compliance (and so
output protection) is evaluated only while measuring; resistance is not measured; ASCII data only.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from .loads import SmuLoad, compliance_voltage, hold_in_compliance
from .scpi import (
    Call,
    Handler,
    ScpiError,
    ScpiTwin,
    format_bool,
    format_number,
    query_number,
    short_form,
    to_bool,
    to_float,
    to_index,
    to_keyword,
    to_number,
    unquote,
)

T = TypeVar("T")  # a setting's value: what its parser returns and its formatter takes

MODELS = ("B2901A", "B2902A", "B2911A", "B2912A")
TWO_CHANNEL_MODELS = ("B2902A", "B2912A")
FIRMWARE = "3.4.2011.5100"
V_MAX = 210.0
I_LIMIT = (1e-9, 3.03)
SWEEP_MAX = 2500
TRIGGER_COUNT_MAX = 100_000
APERTURE = (8e-6, 2.0)  # integration time (s): NPLC 4e-4..100 at 50 Hz, 4.8e-4..120 at 60 Hz
NOT_A_NUMBER = 9.91e37  # what ASCII data holds where there is no value
COMPLIANCE = 0b010  # status word: the channel was in compliance
ELEMENTS = ("VOLTage", "CURRent", "RESistance", "TIME", "STATus", "SOURce")  # the reply's order
FUNCTIONS = ("VOLTage", "CURRent", "RESistance")
SOURCES = ("AINT", "BUS", "TIMer", "INT1", "INT2", "LAN", *(f"EXT{n}" for n in range(1, 15)))
SIMULATED_SOURCES = ("AINT", "TIM")
ACTIONS = ("ACQuire", "TRANsient")
_CHANNEL_LIST = re.compile(r"\(@(\d+)(?:([,:])(\d+))?\)")


@dataclass
class _Trigger:
    source: str = "AINT"
    timer: float = 1e-3
    count: int = 1
    delay: float = 0.0


@dataclass
class _Reading:
    voltage: float
    current: float
    time: float
    status: int
    source: float


@dataclass
class _Channel:
    """One channel's settings (*RST values) and the readings of its last :INIT or :MEAS."""

    immediate: float = 0.0  # the fixed level, :SOUR:VOLT
    level: float = 0.0  # what the output is programmed to now: the fixed level or the last step
    output_on: bool = False
    protection: bool = False
    auto_on: bool = True
    current_limit: float = 100e-6
    tripped: bool = False
    nplc: float = 1.0
    mode: str = "FIXed"
    start: float = 0.0
    stop: float = 0.0
    points: int = 1
    source_list: list[float] = field(default_factory=lambda: [0.0])
    functions: set[str] = field(default_factory=lambda: {"VOLTage", "CURRent"})
    source_autorange: bool = True
    sense_autorange: bool = True
    triggers: dict[str, _Trigger] = field(default_factory=lambda: {a: _Trigger() for a in ACTIONS})
    readings: list[_Reading] = field(default_factory=list)

    def levels(self) -> list[float]:
        """The levels one :INIT steps through."""
        if self.mode == "SWEep":
            n = self.points
            if n == 1:
                return [self.start]
            return [self.start + (self.stop - self.start) * k / (n - 1) for k in range(n - 1)] \
                + [self.stop]
        if self.mode == "LIST":
            return list(self.source_list)
        return [self.immediate] * self.triggers["ACQuire"].count


class VirtualKeysightB2900(ScpiTwin):
    """A B2900A whose channel 1 drives `load`; its time (`elapsed`, s) passes only through the load.

    `output_on` and `source_level` (channel 1's programmed output level, V) read and set plain
    channel state, so tests and the bench can check the safe state (0 V, output off).
    """

    def __init__(self, load: SmuLoad, model: str = "B2902A", serial: str = "MY00000001"):
        if model not in MODELS:
            raise ValueError(f"model {model!r} is not one of {', '.join(MODELS)}")
        super().__init__(f"Keysight Technologies,{model},{serial},{FIRMWARE}")
        self.model = model
        self.load = load
        self.elapsed = 0.0
        self.line_frequency = 60.0
        self.n_channels = 2 if model in TWO_CHANNEL_MODELS else 1
        self.channels = {c: _Channel() for c in range(1, self.n_channels + 1)}
        self.elements = list(ELEMENTS)

        src, sense = "[:SOURce#]", ":SENSe#"
        self._register_channel(src + ":FUNCtion:MODE", self._set_source_function, nargs=1)
        self._register_channel(src + ":FUNCtion:MODE?", lambda call: "VOLT")
        self._channel_number(src + ":VOLTage[:LEVel][:IMMediate][:AMPLitude]", "immediate",
                             -V_MAX, V_MAX, 0.0, after=lambda ch: setattr(ch, "level", ch.immediate))
        self._channel_setting(src + ":VOLTage:MODE", "mode",
                              lambda p: to_keyword(p, "FIXed", "LIST", "SWEep"), short_form)
        for bound, attribute in (("STARt", "start"), ("STOP", "stop")):
            self._channel_number(f"{src}:VOLTage:{bound}", attribute, -V_MAX, V_MAX, 0.0)
        for pattern in (src + ":VOLTage:POINts", src + ":SWEep:POINts"):
            self._channel_number(pattern, "points", 1, SWEEP_MAX, 1, fmt=_integer, integer=True)
        self._channel_setting(src + ":VOLTage:RANGe:AUTO", "source_autorange", to_bool, format_bool)
        self._register_channel(src + ":LIST:VOLTage", self._set_list, nargs=(1, SWEEP_MAX))
        self._register_channel(src + ":LIST:VOLTage:APPend", self._append_list,
                               nargs=(1, SWEEP_MAX))
        self._register_channel(src + ":LIST:VOLTage?", lambda call: ",".join(
            map(format_number, self._channel(call).source_list)))
        self._register_channel(src + ":LIST:VOLTage:POINts?",
                               lambda call: str(len(self._channel(call).source_list)))

        self._register_channel(sense + ":FUNCtion[:ON]", self._functions_on, nargs=(1, 3))
        self._register_channel(sense + ":FUNCtion:OFF", self._functions_off, nargs=(1, 3))
        self._register_channel(sense + ":FUNCtion:OFF:ALL",
                               lambda call: self._channel(call).functions.clear())
        self._register_channel(sense + ":FUNCtion[:ON]?", lambda call: ",".join(
            f'"{short_form(f)}"' for f in FUNCTIONS if f in self._channel(call).functions))
        self._channel_number(sense + ":CURRent[:DC]:PROTection[:LEVel]", "current_limit",
                             *I_LIMIT, 100e-6)
        self._register_channel(sense + ":CURRent[:DC]:PROTection:TRIPped?",
                               lambda call: format_bool(self._channel(call).tripped))
        for function in FUNCTIONS[:2]:
            self._channel_setting(f"{sense}:{function}[:DC]:NPLCycles", "nplc",
                                  self._parse_nplc, format_number)
        self._channel_setting(sense + ":CURRent[:DC]:RANGe:AUTO", "sense_autorange", to_bool,
                              format_bool)

        self._channel_setting(":OUTPut#[:STATe]", "output_on", to_bool, format_bool)
        self._channel_setting(":OUTPut#:PROTection[:STATe]", "protection", to_bool, format_bool)
        self._channel_setting(":OUTPut#:ON:AUTO", "auto_on", to_bool, format_bool)

        self._register_trigger("SOURce[:SIGNal]", "source", lambda p: short_form(to_keyword(p, *SOURCES)), str)
        for name, attribute, low, high, default, fmt in (
                ("TIMer", "timer", 1e-5, 1e5, 1e-3, format_number),
                ("COUNt", "count", 1, TRIGGER_COUNT_MAX, 1, _integer),
                ("DELay", "delay", 0.0, 100.0, 0.0, format_number)):
            self._register_trigger(name, attribute, partial(
                to_number, low=low, high=high, integer=fmt is _integer, default=default), fmt,
                (low, high, default))

        self.register(":INITiate[:IMMediate][:ALL]", self._initiate, nargs=(0, 2))
        self.register(":ABORt[:ALL]", self._abort, nargs=(0, 2))
        self.register(":MEASure?", self._measure, nargs=(0, 2))
        self.register(":FETCh[:SCALar]?", lambda call: self._fetch(call, latest=True), nargs=(0, 2))
        self.register(":FETCh:ARRay?", lambda call: self._fetch(call, latest=False), nargs=(0, 2))
        for element in ("CURRent", "VOLTage"):
            self.register(f":MEASure:{element}[:DC]?", partial(self._measure, element=element), nargs=(0, 2))
        for element in ELEMENTS:
            self.register(f":FETCh[:SCALar]:{element}?", partial(self._fetch, latest=True, element=element),
                          nargs=(0, 2))
            self.register(f":FETCh:ARRay:{element}?", partial(self._fetch, latest=False, element=element),
                          nargs=(0, 2))
        self.register(":FORMat:ELEMents:SENSe", self._set_elements, nargs=(1, len(ELEMENTS)))
        self.register(":FORMat:ELEMents:SENSe?",
                      lambda call: ",".join(short_form(e) for e in self.elements))
        self.register(":FORMat[:DATA]", self._set_data_format, nargs=(1, 2))
        self.register(":FORMat[:DATA]?", lambda call: "ASC")
        self.register_setting(":SYSTem:LFRequency", "line_frequency", _parse_line_frequency,
                              lambda f: str(int(f)))
        self.reset()

    # -- bench view of channel 1

    @property
    def output_on(self) -> bool:
        return self.channels[1].output_on

    @output_on.setter
    def output_on(self, value: bool) -> None:
        self.channels[1].output_on = value

    @property
    def source_level(self) -> float:
        return self.channels[1].level

    @source_level.setter
    def source_level(self, value: float) -> None:
        self.channels[1].level = value

    def reset(self) -> None:
        for number in self.channels:
            self.channels[number] = _Channel()
        self.elements = list(ELEMENTS)

    def now(self) -> float:
        return self.elapsed

    def format_error(self, code: int, message: str, t: float) -> str:
        return f'{code:+d},"{message}"'

    # -- registration helpers

    def _register_channel(self, pattern: str, handler: Handler,
                          nargs: int | tuple[int, int] = 0) -> None:
        self.register(pattern, handler, nargs=nargs, suffix_max=self.n_channels)

    def _channel_setting(self, pattern: str, attribute: str, parse: Callable[[str], T],
                         fmt: Callable[[T], str] = str) -> None:
        """A command that sets the addressed channel's `attribute` from one parameter, and its
        query."""
        self.register_setting(pattern, attribute, parse, fmt, owner=self._channel,
                              suffix_max=self.n_channels)

    def _channel_number(self, pattern: str, attribute: str, low: float, high: float,
                        default: float, fmt: Callable[[float], str] = format_number,
                        integer: bool = False, after: Callable[[Any], None] | None = None) -> None:
        """A numeric setting of the addressed channel: `{<value>|MINimum|MAXimum|DEFault}` in the
        command, `[MINimum|MAXimum|DEFault]` in the query (DEFault: the *RST value)."""
        self.register_number(pattern, attribute, low, high, default, fmt=fmt, integer=integer,
                             owner=self._channel, after=after, suffix_max=self.n_channels)

    def _register_trigger(self, name: str, attribute: str, parse: Callable[[str], T],
                          fmt: Callable[[T], str],
                          bounds: tuple[float, float, float] | None = None) -> None:
        """:TRIG[c][:ALL]:<name> sets both actions (its query answers for ACQuire);
        :TRIG[c]:ACQ:<name> and :TRIG[c]:TRAN:<name> set one. With `bounds` (low, high, *RST
        value) the query also takes MINimum|MAXimum|DEFault."""
        def setter(actions):
            def handle(call: Call) -> None:
                value = parse(call.params[0])
                for action in actions:
                    setattr(self._channel(call).triggers[action], attribute, value)
            return handle

        def getter(action):
            def handle(call: Call) -> str:
                value: Any = getattr(self._channel(call).triggers[action], attribute)
                if bounds:
                    value = query_number(call.params, value, *bounds)
                return fmt(value)
            return handle

        for prefix, actions in ((":TRIGger#[:ALL]", ACTIONS), *(
                (f":TRIGger#:{a}", (a,)) for a in ACTIONS)):
            self._register_channel(f"{prefix}:{name}", setter(actions), nargs=1)
            self._register_channel(f"{prefix}:{name}?", getter(actions[0]), nargs=(0, 1) if bounds else 0)

    def _channel(self, call: Call) -> _Channel:
        return self.channels[call.suffixes[0]]

    def _abort(self, call: Call) -> None:
        self._channel_list(call.params)  # a bad channel list is an error; nothing runs to abort

    def _channel_list(self, params: list[str]) -> list[int]:
        """Channels named by a channel list such as (@1), (@1,2) or (@2:1), in order 1, 2."""
        if not params:
            return [1]
        match = _CHANNEL_LIST.fullmatch(",".join(params).replace(" ", ""))
        if not match:
            raise ScpiError(-224)
        first, separator, last = match.groups()
        chosen = {to_index(first)} | ({to_index(last)} if last else set())
        if not chosen <= self.channels.keys():  # a range's ends first: (@1:999999999) is no set to build
            raise ScpiError(-224, "Illegal parameter value; no such channel")
        if separator == ":":
            chosen = set(range(min(chosen), max(chosen) + 1))
        return sorted(chosen)

    # -- settings with more than one effect

    def _set_source_function(self, call: Call) -> None:
        if to_keyword(call.params[0], "VOLTage", "CURRent") == "CURRent":
            raise ScpiError(-221, "Settings conflict; current source not simulated")

    def _set_list(self, call: Call) -> None:
        self._channel(call).source_list = [to_float(p, -V_MAX, V_MAX) for p in call.params]

    def _append_list(self, call: Call) -> None:
        levels = [to_float(p, -V_MAX, V_MAX) for p in call.params]
        channel = self._channel(call)
        if len(channel.source_list) + len(levels) > SWEEP_MAX:
            raise ScpiError(-223)
        channel.source_list += levels

    def _functions_on(self, call: Call) -> None:
        names = {to_keyword(unquote(p), *FUNCTIONS) for p in call.params}
        self._channel(call).functions |= names

    def _functions_off(self, call: Call) -> None:
        names = {to_keyword(unquote(p), *FUNCTIONS) for p in call.params}
        self._channel(call).functions -= names

    def _parse_nplc(self, param: str) -> float:
        nplc = to_float(param)
        if not APERTURE[0] <= nplc / self.line_frequency <= APERTURE[1]:
            raise ScpiError(-222)
        return nplc

    def _set_elements(self, call: Call) -> None:
        chosen = {to_keyword(p, *ELEMENTS) for p in call.params}
        self.elements = [e for e in ELEMENTS if e in chosen]

    def _set_data_format(self, call: Call) -> None:
        if to_keyword(call.params[0], "ASCii", "REAL", "HEXadecimal", "OCTal", "BINary") \
                != "ASCii":
            raise ScpiError(-221, "Settings conflict; only ASCII data is simulated")

    # -- sourcing and measuring

    def _load_current(self, number: int, v: float) -> float:
        return self.load.current(v) if number == 1 else 0.0  # channel 2 is open

    def _hold(self, number: int, v: float | None, duration: float) -> float:
        """Let `duration` pass with channel `number` at v (None: off); the current into its HI.

        Channel 1 drives the load all the while, so time on channel 2 passes through it too."""
        if duration <= 0:
            return 0.0
        current = self.load.apply(v if number == 1 else self._output(1), duration)
        self.elapsed += duration
        return current if number == 1 and v is not None else 0.0

    def _output(self, number: int) -> float | None:
        """The voltage at channel `number`'s terminals between measurements (None: off)."""
        channel = self.channels[number]
        if not channel.output_on:
            return None
        return compliance_voltage(partial(self._load_current, number), channel.level,
                                  channel.current_limit)

    def _step(self, number: int, level: float) -> _Reading:
        """One trigger: the transient delay at the old level, the step, the acquire delay, then
        one integration time; compliance is solved per phase and again at the end, as the load
        may change while it is held."""
        channel = self.channels[number]
        delays = {a: channel.triggers[a].delay for a in ACTIONS}
        integration = channel.nplc / self.line_frequency
        self._hold(number, self._output(number), delays["TRANsient"])
        channel.level = level
        if not channel.output_on:
            self._hold(number, None, delays["ACQuire"] + integration)
            channel.tripped = False
            return _Reading(0.0, 0.0, self.elapsed, 0, level)
        v, current, channel.tripped = hold_in_compliance(
            partial(self._load_current, number), partial(self._hold, number), level,
            channel.current_limit, (delays["ACQuire"], integration))
        reading = _Reading(v, current, self.elapsed, COMPLIANCE if channel.tripped else 0, level)
        if channel.tripped and channel.protection:
            channel.output_on, channel.level = False, 0.0
        return reading

    def _initiate(self, call: Call) -> None:
        for number in self._channel_list(call.params):
            channel = self.channels[number]
            acquire, transient = (channel.triggers[a] for a in ACTIONS)
            if (acquire.source, acquire.count, acquire.timer) != \
                    (transient.source, transient.count, transient.timer):
                raise ScpiError(-221, "Settings conflict; acquire and transient triggers differ "
                                      "(not simulated)")
            if acquire.source not in SIMULATED_SOURCES:
                raise ScpiError(-221, f"Settings conflict; trigger source {acquire.source} not "
                                      "simulated")
            levels = channel.levels()
            if len(levels) != acquire.count:
                raise ScpiError(-221, "Settings conflict; trigger count differs from the "
                                      f"{len(levels)} sweep points (not simulated)")
            if channel.auto_on:
                channel.output_on = True
            channel.readings = []
            for level in levels:
                started = self.elapsed
                channel.readings.append(self._step(number, level))
                if acquire.source == "TIM":
                    self._hold(number, self._output(number),
                               acquire.timer - (self.elapsed - started))

    def _measure(self, call: Call, element: str | None = None) -> str:
        for number in self._channel_list(call.params):
            channel = self.channels[number]
            if element is not None:
                channel.functions.add(element)
            channel.readings = [self._step(number, channel.level)]
        return self._fetch(call, True, element)

    # -- result data

    def _fetch(self, call: Call, latest: bool, element: str | None = None) -> str:
        numbers = self._channel_list(call.params)
        names = [element] if element else self.elements
        series = [self.channels[n].readings[-1:] if latest else self.channels[n].readings
                  for n in numbers]
        values = []
        for row in range(max(1, *map(len, series))):
            for number, readings in zip(numbers, series):
                reading = readings[row] if row < len(readings) else None
                values += [self._value(number, reading, name) for name in names]
        return ",".join(map(format_number, values))

    def _value(self, number: int, reading: _Reading | None, name: str) -> float:
        if reading is None:
            return NOT_A_NUMBER
        measured = self.channels[number].functions
        return {"VOLTage": reading.voltage if "VOLTage" in measured else NOT_A_NUMBER,
                "CURRent": reading.current if "CURRent" in measured else NOT_A_NUMBER,
                "RESistance": NOT_A_NUMBER,
                "TIME": reading.time,
                "STATus": float(reading.status),
                "SOURce": reading.source}[name]


def _integer(value: float) -> str:
    return str(int(value))


def _parse_line_frequency(param: str) -> float:
    value = to_float(param)
    if value not in (50.0, 60.0):
        raise ScpiError(-224)
    return value
