"""Virtual Keithley 2450 SourceMeter in its native SCPI command set, sourcing voltage into a load.

It follows the 2450 Reference Manual for the subset written down in docs/instruments/keithley2450.md
("Supported subset"): source level, range, limit (and its trip flag), delays and read-back per
source function; range, NPLC, autozero, 4-wire sense, user delays and averaging per measure
function; :MEASure?/:READ?/:FETCh? with a buffer name and buffer elements; linear and list sweeps
that :INIT runs point by point into a reading buffer; reading buffers (:TRAC:MAKE, :POIN,
:ACT, :CLE, :DATA?, :TRIG); and the event-log format of :SYST:ERR?. Numeric queries take
MINimum / MAXimum / DEFault. A sweep command builds the trigger model with a source configuration
list that stores the source settings of that moment (current limit, source delay); every :INIT
runs it again, recalling them, until another sweep command or *RST replaces it.

Simplifications: only the voltage source drives the load (the current source's settings are kept
and reported, :SOUR:FUNC CURR gives -221), resistance is not measured (-221), auto delay counts
as 0 s, ranges are reported but do not limit a reading, averaging is not applied, the line
frequency is 60 Hz, and an infinite sweep count is refused.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from itertools import accumulate, islice, repeat

from .loads import SmuLoad, hold_in_compliance, quiet_readings
from .scpi import (
    Call,
    ScpiError,
    ScpiTwin,
    format_bool,
    format_number,
    query_number,
    short_form,
    to_bool,
    to_bound,
    to_float,
    to_int,
    to_keyword,
    to_number,
    unquote,
)

V_MAX = 210.0
I_MAX = 1.05
LINE_FREQUENCY = 60.0
BUFFER_CAPACITY = 100_000  # defbuffer1 and defbuffer2 at *RST
BUFFER_MAX = 6_875_000  # the largest :TRAC:POIN / :TRAC:MAKE size (standard style)
LIST_MAX = 2500
COUNT_MAX = 300_000  # [:SENSe]:COUNt
DELAY_MAX = 10_000.0
USER_DELAYS = 5  # :DELay:USER1..5
ELEMENTS = ("READing", "SOURce", "RELative")
NOT_SIMULATED_ELEMENTS = ("DATE", "FORMatted", "FRACtional", "SEConds", "SOURFORMatted",
                          "SOURSTATus", "SOURUNIT", "STATus", "TIME", "TSTamp", "UNIT")
# The ranges of each function (manual, :RANGe); a value picks the smallest range that holds it.
SENSE_RANGES = {"CURR": (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0),
                "VOLT": (0.02, 0.2, 2.0, 20.0, 200.0),
                "RES": (20.0, 200.0, 2e3, 2e4, 2e5, 2e6, 2e7, 2e8)}
SOURCE_RANGES = {"VOLT": SENSE_RANGES["VOLT"], "CURR": SENSE_RANGES["CURR"]}
SENSE_FUNCTIONS = {"CURR": "CURRent[:DC]", "VOLT": "VOLTage[:DC]", "RES": "RESistance"}
SOURCE_FUNCTIONS = {"VOLT": "VOLTage", "CURR": "CURRent"}
# Per source function: its level's bound, the limit's keyword, the limit's range and *RST value.
SOURCE_LIMITS = {"VOLT": (V_MAX, "ILIMit", (1e-9, I_MAX), 1.05e-4),
                 "CURR": (I_MAX, "VLIMit", (0.02, V_MAX), 21.0)}
# *RST ranges (assumed, not from the manual): what the twin reports until a range is set.
RESET_SENSE_RANGE = {"CURR": 1e-4, "VOLT": 0.02, "RES": 2e5}
RESET_SOURCE_RANGE = {"VOLT": 0.02, "CURR": 1e-8}
OFF_MODES = ("NORMal", "HIMPedance", "ZERO", "GUARd")
FILTER_TYPES = ("REPeat", "MOVing")
FORMATS = ("ASCii", "REAL", "SREal")
DISPLAY_LIGHTS = ("ON100", "ON75", "ON50", "ON25", "OFF", "BLACkout")


@dataclass
class _Sense:
    """One measure function's settings, at their *RST values."""

    range: float
    autorange: bool = True
    nplc: float = 1.0
    autozero: bool = True
    four_wire: bool = False
    average: bool = False
    average_type: str = "REPeat"
    average_count: float = 10
    user_delays: list[float] = field(default_factory=lambda: [0.0] * USER_DELAYS)


@dataclass
class _Source:
    """One source function's settings, at their *RST values."""

    range: float
    limit: float
    level: float = 0.0
    autorange: bool = True
    delay: float = 0.0
    auto_delay: bool = True
    read_back: bool = True
    off_mode: str = "NORMal"
    user_delays: list[float] = field(default_factory=lambda: [0.0] * USER_DELAYS)


class _Buffer:
    """A reading buffer filled continuously: (source, reading, time) rows, oldest dropped."""

    def __init__(self, capacity: int):
        self.rows: deque[tuple[float, float, float]] = deque(maxlen=capacity)
        self.t0 = 0.0

    @property
    def capacity(self) -> int:
        return self.rows.maxlen or 0

    def resize(self, capacity: int) -> None:
        """A new size empties the buffer."""
        self.rows = deque(maxlen=capacity)

    def append(self, source: float, reading: float, t: float) -> None:
        if not self.rows:
            self.t0 = t
        self.rows.append((source, reading, t))

    def extend(self, rows: list[tuple[float, float, float]]) -> None:
        if rows and not self.rows:
            self.t0 = rows[0][2]
        self.rows.extend(rows)


class _VoltageSourceSetting:
    """A setting of the voltage source (the one that drives the load) as a plain twin attribute."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, twin: VirtualKeithley2450, owner: type | None = None) -> float:
        return getattr(twin.source["VOLT"], self.name)

    def __set__(self, twin: VirtualKeithley2450, value: float) -> None:
        setattr(twin.source["VOLT"], self.name, value)


class VirtualKeithley2450(ScpiTwin):
    """A 2450 whose output drives `load`; its time (`elapsed`, s) passes only through the load.

    `output_on` and `source_level` (the programmed voltage, V) read and set as plain attributes so
    tests and the bench can check the safe state (0 V, output off); `sense` and `source` hold each
    measure and source function's settings.
    """

    def __init__(self, load: SmuLoad, serial: str = "04000001"):
        super().__init__(f"KEITHLEY INSTRUMENTS,MODEL 2450,{serial},1.7.12b")
        self.load = load
        self.elapsed = 0.0
        self.buffers: dict[str, _Buffer] = {}
        self.sense: dict[str, _Sense] = {}
        self.source: dict[str, _Source] = {}
        self.register("*LANG?", lambda call: "SCPI")
        self.register("*TRG", lambda call: None)  # a bus trigger: no trigger model waits for it here
        self.register(":ABORt", lambda call: None)  # a trigger model runs to its end before the next command
        self.register(":SOURce#:FUNCtion[:MODE]", self._set_source_function, nargs=1)
        self.register(":SOURce#:FUNCtion[:MODE]?", lambda call: "VOLT")
        for key, name in SOURCE_FUNCTIONS.items():
            self._register_source(key, ":SOURce#:" + name)
        self.register_setting(":OUTPut#[:STATe]", "output_on", to_bool, format_bool)
        self.register("[:SENSe#]:FUNCtion[:ON]", self._set_sense_function, nargs=1)
        self.register("[:SENSe#]:FUNCtion[:ON]?", lambda call: f'"{self.sense_function}:DC"')
        for key, name in SENSE_FUNCTIONS.items():
            self._register_sense(key, "[:SENSe#]:" + name)
            self.register(f":MEASure:{name}?", partial(self._measure, key), nargs=(0, 1 + 14))
        self.register_number("[:SENSe#]:COUNt", "count", 1, COUNT_MAX, 1, fmt=str, integer=True)
        self.register("[:SENSe#]:AZERo:ONCE", lambda call: None)
        self.register(":READ?", self._read, nargs=(0, 1 + 14))
        self.register(":MEASure?", self._read, nargs=(0, 1 + 14))
        self.register(":FETCh?", self._fetch, nargs=(0, 1 + 14))
        self.register(":SOURce#:LIST:VOLTage", self._set_list, nargs=(1, 100))
        self.register(":SOURce#:LIST:VOLTage:APPend", self._append_list, nargs=(1, 100))
        self.register(":SOURce#:LIST:VOLTage?",
                      lambda call: ",".join(map(format_number, self.source_list)))
        self.register(":SOURce#:SWEep:VOLTage:LINear", self._sweep_linear, nargs=(3, 9))
        self.register(":SOURce#:SWEep:VOLTage:LIST", self._sweep_list, nargs=(1, 5))
        self.register(":INITiate[:IMMediate]", self._initiate)
        self._register_buffers()
        self.register_setting(":ROUTe:TERMinals", "terminals",
                              lambda p: to_keyword(p, "FRONt", "REAR"), short_form)
        self.register_setting(":FORMat[:DATA]", "data_format", self._set_format, short_form)
        self.register_setting(":DISPlay:LIGHt:STATe", "display_light",
                              lambda p: to_keyword(p, *DISPLAY_LIGHTS), short_form)
        self.register(":SYSTem:LFRequency?", lambda call: format_number(LINE_FREQUENCY))
        self.register(":SYSTem:BEEPer[:IMMediate]", lambda call: None, nargs=2)
        self.register(":SYSTem:CLEar", lambda call: self.errors.clear())
        self.register(":STATus:CLEar", lambda call: None)  # status registers are not simulated
        self.register(":SYSTem:EVENtlog:NEXT?", lambda call: self._next_error(), nargs=(0, 1))
        self.register(":SYSTem:EVENtlog:COUNt?", lambda call: str(len(self.errors)), nargs=(0, 1))
        self.reset()

    def _register_source(self, key: str, root: str) -> None:
        """The settings of one source function, in `self.source[key]`."""
        level_max, limit_name, (limit_low, limit_high), limit_default = SOURCE_LIMITS[key]

        def owner(call: Call) -> _Source:  # looked up per command: *RST replaces the settings
            return self.source[key]
        self.register_number(root + "[:LEVel][:IMMediate][:AMPLitude]", "level", -level_max,
                             level_max, 0.0, owner=owner)
        self._range(root + ":RANGe", owner, SOURCE_RANGES[key], RESET_SOURCE_RANGE[key])
        self._flag(root + ":RANGe:AUTO", "autorange", owner)
        self.register_number(f"{root}:{limit_name}[:LEVel]", "limit", limit_low, limit_high,
                             limit_default, owner=owner)
        self.register(f"{root}:{limit_name}[:LEVel]:TRIPped?",
                      lambda call: format_bool(self.tripped and key == "VOLT"))
        self.register_number(root + ":DELay", "delay", 0.0, DELAY_MAX, 0.0, owner=owner,
                             after=lambda s: setattr(s, "auto_delay", False))  # a delay ends auto delay
        self._flag(root + ":DELay:AUTO", "auto_delay", owner)
        self._user_delays(root + ":DELay:USER#", owner)
        self._flag(root + ":READ:BACK", "read_back", owner)
        self.register_setting(f":OUTPut#:{SOURCE_FUNCTIONS[key]}:SMODe", "off_mode",
                              lambda p: to_keyword(p, *OFF_MODES), short_form, owner=owner)

    def _register_sense(self, key: str, root: str) -> None:
        """The settings of one measure function, in `self.sense[key]`."""
        def owner(call: Call) -> _Sense:
            return self.sense[key]
        self._range(root + ":RANGe[:UPPer]", owner, SENSE_RANGES[key], RESET_SENSE_RANGE[key])
        self._flag(root + ":RANGe:AUTO", "autorange", owner)
        self.register_number(root + ":NPLCycles", "nplc", 0.01, 10.0, 1.0, owner=owner)
        self._flag(root + ":AZERo[:STATe]", "autozero", owner)
        self._flag(root + ":RSENse", "four_wire", owner)
        self._user_delays(root + ":DELay:USER#", owner)
        self._flag(root + ":AVERage[:STATe]", "average", owner)
        self.register_setting(root + ":AVERage:TCONtrol", "average_type",
                              lambda p: to_keyword(p, *FILTER_TYPES), short_form, owner=owner)
        self.register_number(root + ":AVERage:COUNt", "average_count", 1, 100, 10, fmt=str,
                             integer=True, owner=owner)

    def _flag(self, pattern: str, attribute: str, owner: Callable[[Call], object]) -> None:
        self.register_setting(pattern, attribute, to_bool, format_bool, owner=owner)

    def _range(self, pattern: str, owner: Callable[[Call], _Sense | _Source], ranges: tuple[float, ...],
               default: float) -> None:
        """A range: a value selects the smallest range that holds it (up to 105 % of the top one)
        and ends autorange."""
        def put(call: Call) -> None:
            top = ranges[-1] * 1.05
            bound = to_bound(call.params[0], ranges[0], ranges[-1], default)
            value = abs(to_float(call.params[0], -top, top)) if bound is None else bound
            settings = owner(call)
            settings.range = next(r for r in ranges if value <= r * 1.05)
            settings.autorange = False
        self.register(pattern, put, nargs=1)
        self.register(pattern + "?", lambda call: format_number(query_number(
            call.params, owner(call).range, ranges[0], ranges[-1], default)), nargs=(0, 1))

    def _user_delays(self, pattern: str, owner: Callable[[Call], _Sense | _Source]) -> None:
        """:DELay:USER<n>, n = 1..5, 0 to 10 ks."""
        def index(call: Call) -> int:
            if call.suffixes[0] != 1:  # the first suffix is SOURce# / SENSe#: there is one channel
                raise ScpiError(-114)
            return call.suffixes[-1] - 1

        def put(call: Call) -> None:
            owner(call).user_delays[index(call)] = to_number(call.params[0], 0.0, DELAY_MAX, default=0.0)
        self.register(pattern, put, nargs=1, suffix_max=USER_DELAYS)
        self.register(pattern + "?", lambda call: format_number(query_number(
            call.params, owner(call).user_delays[index(call)], 0.0, DELAY_MAX, 0.0)),
            nargs=(0, 1), suffix_max=USER_DELAYS)

    def _register_buffers(self) -> None:
        self.register(":TRACe:MAKE", self._make_buffer, nargs=(2, 3))
        self.register(":TRACe:DELete", self._delete_buffer, nargs=1)
        self.register(":TRACe:POINts", self._resize_buffer, nargs=(1, 2))
        self.register(":TRACe:POINts?", lambda call: str(self._buffer(call.params).capacity),
                      nargs=(0, 1))
        self.register(":TRACe:CLEar", lambda call: self._buffer(call.params).rows.clear(),
                      nargs=(0, 1))
        self.register(":TRACe:ACTual?", lambda call: str(len(self._buffer(call.params).rows)),
                      nargs=(0, 1))
        self.register(":TRACe:ACTual:STARt?", lambda call: str(min(1, len(self._buffer(call.params).rows))),
                      nargs=(0, 1))
        self.register(":TRACe:ACTual:END?", lambda call: str(len(self._buffer(call.params).rows)),
                      nargs=(0, 1))
        self.register(":TRACe:DATA?", self._trace_data, nargs=(2, 3 + 14))
        self.register(":TRACe:TRIGger", lambda call: self._measure_into(self._buffer(call.params)),
                      nargs=(0, 1))

    def reset(self) -> None:
        self.output_on = False
        self.tripped = False
        self.sense_function = "CURR"
        self.sense = {key: _Sense(range=RESET_SENSE_RANGE[key]) for key in SENSE_FUNCTIONS}
        self.source = {key: _Source(range=RESET_SOURCE_RANGE[key], limit=SOURCE_LIMITS[key][3])
                       for key in SOURCE_FUNCTIONS}
        self.count = 1
        self.terminals = "FRONt"
        self.data_format = "ASCii"
        self.display_light = "ON100"  # *RST value assumed
        self.source_list: list[float] = []
        # levels, count, delay, fail_abort, buffer, and the source configuration: limit, source delay
        self._sweep: tuple[list[float], int, float, bool, _Buffer, float, float] | None = None
        self.buffers = {name: _Buffer(BUFFER_CAPACITY) for name in ("defbuffer1", "defbuffer2")}

    source_level = _VoltageSourceSetting("level")  # V
    current_limit = _VoltageSourceSetting("limit")  # A

    @property
    def source_delay(self) -> float:
        """The source delay in effect (s): the programmed one, 0 under auto delay."""
        volt = self.source["VOLT"]
        return 0.0 if volt.auto_delay else volt.delay

    @source_delay.setter
    def source_delay(self, value: float) -> None:
        self.source["VOLT"].delay = value

    @property
    def nplc(self) -> float:
        return self.sense[self.sense_function].nplc

    def now(self) -> float:
        return self.elapsed

    def format_error(self, code: int, message: str, t: float) -> str:
        if code == 0:
            return '0,"No error;0;0 0"'
        stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}"
        return f'{code},"{message};1;{stamp}"'  # 1: severity "error"

    # -- sourcing and measuring

    def _apply(self, v: float | None, duration: float) -> float:
        current = self.load.apply(v, duration)
        self.elapsed += duration
        return current

    def _source_point(self, level: float, delay: float) -> tuple[float, float]:
        """Source `level` for `delay` then one integration time; return (source, reading)."""
        integration = self.nplc / LINE_FREQUENCY
        if not self.output_on:
            self._apply(None, delay + integration)
            self.tripped = False
            return 0.0, 0.0
        v, current, self.tripped = hold_in_compliance(
            self.load.current, self._apply, level, self.current_limit, (delay, integration),
            getattr(self.load, "current_function", None))
        return v, (current if self.sense_function == "CURR" else v)

    def _read(self, call: Call) -> str:
        """:READ? / :MEASure? ["<buffer>"[, <elements>]]: `count` readings into the buffer; the
        last one is the reply."""
        buffer, names = self._buffer(call.params[:1]), _elements(call.params[1:])
        self._measure_into(buffer)
        return _format(buffer, [buffer.rows[-1]], names)

    def _measure(self, function: str, call: Call) -> str:
        """:MEASure:<function>? selects the function, then reads."""
        self._select_sense(function)
        return self._read(call)

    def _measure_into(self, buffer: _Buffer) -> None:
        for _ in range(self.count):
            source, reading = self._source_point(self.source_level, self.source_delay)
            buffer.append(source, reading, self.elapsed)

    def _fetch(self, call: Call) -> str:
        """:FETCh? ["<buffer>"[, <elements>]]: the buffer's latest reading, measuring nothing."""
        buffer, names = self._buffer(call.params[:1]), _elements(call.params[1:])
        if not buffer.rows:
            raise ScpiError(-230, "Data corrupt or stale; reading buffer is empty")
        return _format(buffer, [buffer.rows[-1]], names)

    def _set_source_function(self, call: Call) -> None:
        if to_keyword(call.params[0], "VOLTage", "CURRent") == "CURRent":
            raise ScpiError(-221, "Settings conflict; current source not simulated")

    def _set_sense_function(self, call: Call) -> None:
        name = to_keyword(unquote(call.params[0]), *SENSE_FUNCTIONS.values())
        self._select_sense(next(key for key, pattern in SENSE_FUNCTIONS.items() if pattern == name))

    def _select_sense(self, function: str) -> None:
        if function == "RES":
            raise ScpiError(-221, "Settings conflict; resistance measurement not simulated")
        self.sense_function = function

    @staticmethod
    def _set_format(param: str) -> str:
        name = to_keyword(param, *FORMATS)
        if name != "ASCii":
            raise ScpiError(-221, "Settings conflict; binary data formats not simulated")
        return name

    # -- sweeps

    def _set_list(self, call: Call) -> None:
        self.source_list = [to_float(p, -V_MAX, V_MAX) for p in call.params]

    def _append_list(self, call: Call) -> None:
        levels = [to_float(p, -V_MAX, V_MAX) for p in call.params]
        if len(self.source_list) + len(levels) > LIST_MAX:
            raise ScpiError(-223)
        self.source_list += levels

    def _sweep_linear(self, call: Call) -> None:
        start, stop, points, *rest = call.params
        options = dict(zip(("delay", "count", "range", "fail_abort", "dual", "buffer"), rest))
        start_v, stop_v = to_float(start, -V_MAX, V_MAX), to_float(stop, -V_MAX, V_MAX)
        n = to_int(points, 2, 1_000_000)
        levels = [start_v + (stop_v - start_v) * k / (n - 1) for k in range(n - 1)] + [stop_v]
        to_keyword(options.get("range", "BEST"), "AUTO", "BEST", "FIXed")  # no source ranges here
        if to_bool(options.get("dual", "OFF")):
            levels += levels[::-1]
        self._configure_sweep(levels, options, default_delay="-1")

    def _sweep_list(self, call: Call) -> None:
        index, *rest = call.params
        options = dict(zip(("delay", "count", "fail_abort", "buffer"), rest))
        if not self.source_list:
            raise ScpiError(-221)
        start = to_int(index, 1, len(self.source_list))
        self._configure_sweep(self.source_list[start - 1:], options, default_delay="0")

    def _configure_sweep(self, levels: list[float], options: dict[str, str],
                         default_delay: str) -> None:
        delay = to_float(options.get("delay", default_delay))
        if delay == -1:
            delay = 0.0  # auto delay
        elif delay != 0 and not 50e-6 <= delay <= 10_000:
            raise ScpiError(-222)
        count = to_int(options.get("count", "1"), 1, 268_435_455)
        fail_abort = to_bool(options.get("fail_abort", "ON"))
        buffer = self._buffer([options["buffer"]] if "buffer" in options else [])
        # the levels once and the count (levels * count: 10^6 x 268435455 points, a MemoryError)
        self._sweep = (levels, count, delay, fail_abort, buffer, self.current_limit, self.source_delay)

    def _initiate(self, call: Call) -> None:
        if self._sweep is None:
            raise ScpiError(-221, "Settings conflict; trigger model is empty")
        levels, count, delay, fail_abort, buffer, self.current_limit, self.source_delay = self._sweep
        self.output_on = True  # the sweep's trigger model turns the output on and leaves it on
        point = delay + self.source_delay + self.nplc / LINE_FREQUENCY
        for _ in range(count):
            if not self._run_sweep(levels, delay, point, fail_abort, buffer):
                break

    def _run_sweep(self, levels: list[float], delay: float, point: float, fail_abort: bool,
                   buffer: _Buffer) -> bool:
        """One pass of the sweep's levels; False if fail-abort ended it."""
        k = 0
        while k < len(levels):
            readings = quiet_readings(self.load, levels[k:], point, self.current_limit)
            if len(readings):
                n = len(readings)
                sources = levels[k:k + n]
                times = list(accumulate(repeat(point, n), initial=self.elapsed))[1:]  # as += per point
                values = list(map(float, readings)) if self.sense_function == "CURR" else sources
                buffer.extend(list(zip(sources, values, times)))
                self.source_level, self.tripped, self.elapsed = sources[-1], False, times[-1]
                k += n
            if k == len(levels):
                break
            self.source_level = levels[k]
            source, reading = self._source_point(levels[k], delay + self.source_delay)
            buffer.append(source, reading, self.elapsed)
            k += 1
            if fail_abort and self.tripped:
                return False
        return True

    # -- reading buffers

    def _buffer(self, params: list[str]) -> _Buffer:
        name = unquote(params[0]) if params else "defbuffer1"
        if name not in self.buffers:
            raise ScpiError(-224, "Illegal parameter value; reading buffer not found")
        return self.buffers[name]

    def _make_buffer(self, call: Call) -> None:
        """:TRACe:MAKE "<name>", <size>[, <style>]; only the STANdard style is simulated."""
        name = unquote(call.params[0])
        if name in self.buffers or not name:
            raise ScpiError(-224, "Illegal parameter value; reading buffer exists")
        size = to_int(call.params[1], 1, BUFFER_MAX)
        if call.params[2:] and to_keyword(call.params[2], "STANdard", "FULL", "COMPact",
                                          "WRITable", "FULLWRITable") != "STANdard":
            raise ScpiError(-221, "Settings conflict; only standard buffers are simulated")
        self.buffers[name] = _Buffer(size)

    def _delete_buffer(self, call: Call) -> None:
        name = unquote(call.params[0])
        self._buffer([name])
        if name.startswith("defbuffer"):
            raise ScpiError(-224, "Illegal parameter value; a default buffer cannot be deleted")
        del self.buffers[name]

    def _resize_buffer(self, call: Call) -> None:
        """:TRACe:POINts <size>[, "<name>"]; a new size empties the buffer."""
        self._buffer(call.params[1:]).resize(to_int(call.params[0], 1, BUFFER_MAX))

    def _trace_data(self, call: Call) -> str:
        buffer, names = self._buffer(call.params[2:3]), _elements(call.params[3:])
        n = len(buffer.rows)
        start = to_int(call.params[0], 1, max(n, 1))
        end = to_int(call.params[1], start, n)
        return _format(buffer, islice(buffer.rows, start - 1, end), names)


def _elements(params: list[str]) -> list[str]:
    names = [to_keyword(p, *ELEMENTS, *NOT_SIMULATED_ELEMENTS) for p in params] or ["READing"]
    if any(name not in ELEMENTS for name in names):
        raise ScpiError(-221, "Settings conflict; buffer element not simulated")
    return names


_NUMBERS: dict[float, str] = {}  # "%+.6E" % x of nonzero numbers met (bounded): sweep levels and
# the readings of pristine cells repeat cell after cell, and the conversion is most of a reply


def _number(x: float) -> str:
    text = f"{x:+.6E}"
    if x and x == x:  # not 0.0 / -0.0 (equal keys, two texts) nor NaN
        if len(_NUMBERS) >= 1 << 16:
            _NUMBERS.clear()
        _NUMBERS[x] = text
    return text


def _format(buffer: _Buffer, rows: Iterable[tuple[float, float, float]], names: list[str]) -> str:
    """The elements `names` of each row, in the ASCII number format (format_number)."""
    if names == ["SOURce", "READing"]:  # what sweeps read back: no per-row lookups
        known = _NUMBERS.get
        return ",".join([known(x) or _number(x) for source, reading, _ in rows for x in (source, reading)])
    t0, fields = buffer.t0, []
    for source, reading, t in rows:
        values = {"READing": reading, "SOURce": source, "RELative": t - t0}
        fields += [format_number(values[name]) for name in names]
    return ",".join(fields)
