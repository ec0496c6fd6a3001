"""Virtual Keithley 2450 SourceMeter in its native SCPI command set, sourcing voltage into a load.

It follows the 2450 Reference Manual for the subset labctl uses: source level, current limit
(and its trip flag), NPLC, source delay, output, :READ?, linear and list sweeps that :INIT runs
point by point into a reading buffer, :TRAC:ACT?/:TRAC:CLE/:TRAC:DATA? and the event-log format of
:SYST:ERR?. A sweep command builds the trigger model with a source configuration list that stores
the source settings of that moment (current limit, source delay); every :INIT runs it again,
recalling them, until another sweep command or *RST replaces it. Simplifications: the source function is voltage only, auto delay counts as 0 s, the
line frequency is 60 Hz, and an infinite sweep count is refused.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from itertools import accumulate, islice, repeat

from .loads import SmuLoad, hold_in_compliance, quiet_readings
from .scpi import (
    Call,
    ScpiError,
    ScpiTwin,
    float_in,
    format_bool,
    format_number,
    to_bool,
    to_float,
    to_int,
    to_keyword,
    unquote,
)

V_MAX = 210.0
LINE_FREQUENCY = 60.0
BUFFER_CAPACITY = 100_000
LIST_MAX = 2500
ELEMENTS = ("READing", "SOURce", "RELative")


class _Buffer:
    """A reading buffer filled continuously: (source, reading, time) rows, oldest dropped."""

    def __init__(self, capacity: int):
        self.rows: deque[tuple[float, float, float]] = deque(maxlen=capacity)
        self.t0 = 0.0

    def append(self, source: float, reading: float, t: float) -> None:
        if not self.rows:
            self.t0 = t
        self.rows.append((source, reading, t))

    def extend(self, rows: list[tuple[float, float, float]]) -> None:
        if rows and not self.rows:
            self.t0 = rows[0][2]
        self.rows.extend(rows)


class VirtualKeithley2450(ScpiTwin):
    """A 2450 whose output drives `load`; its time (`elapsed`, s) passes only through the load.

    `output_on` and `source_level` (the programmed level, V) are plain attributes so tests and the
    bench can check the safe state (0 V, output off).
    """

    def __init__(self, load: SmuLoad, serial: str = "04000001"):
        super().__init__(f"KEITHLEY INSTRUMENTS,MODEL 2450,{serial},1.7.12b")
        self.load = load
        self.elapsed = 0.0
        self.buffers = {name: _Buffer(BUFFER_CAPACITY) for name in ("defbuffer1", "defbuffer2")}
        src, sense = ":SOURce#:VOLTage", "[:SENSe#]:CURRent[:DC]"
        self.register("*LANG?", lambda call: "SCPI")
        self.register(":SOURce#:FUNCtion[:MODE]", self._set_source_function, nargs=1)
        self.register(":SOURce#:FUNCtion[:MODE]?", lambda call: "VOLT")
        self.register_setting(src + "[:LEVel][:IMMediate][:AMPLitude]", "source_level",
                              float_in(-V_MAX, V_MAX), format_number)
        self.register_setting(src + ":ILIMit[:LEVel]", "current_limit", float_in(1e-9, 1.05),
                              format_number)
        self.register(src + ":ILIMit[:LEVel]:TRIPped?", lambda call: format_bool(self.tripped))
        self.register_setting(src + ":DELay", "source_delay", float_in(0.0, 10_000.0), format_number)
        self.register_setting(src + ":RANGe:AUTO", "source_autorange", to_bool, format_bool)
        self.register_setting(":OUTPut#[:STATe]", "output_on", to_bool, format_bool)
        self.register("[:SENSe#]:FUNCtion[:ON]", self._set_sense_function, nargs=1)
        self.register("[:SENSe#]:FUNCtion[:ON]?", lambda call: f'"{self.sense_function}:DC"')
        self.register_setting(sense + ":NPLCycles", "nplc", float_in(0.01, 10.0), format_number)
        self.register_setting(sense + ":RANGe:AUTO", "sense_autorange", to_bool, format_bool)
        self.register(":READ?", self._read, nargs=(0, 1 + 14))
        self.register(":SOURce#:LIST:VOLTage", self._set_list, nargs=(1, 100))
        self.register(":SOURce#:LIST:VOLTage:APPend", self._append_list, nargs=(1, 100))
        self.register(":SOURce#:LIST:VOLTage?",
                      lambda call: ",".join(map(format_number, self.source_list)))
        self.register(":SOURce#:SWEep:VOLTage:LINear", self._sweep_linear, nargs=(3, 9))
        self.register(":SOURce#:SWEep:VOLTage:LIST", self._sweep_list, nargs=(1, 5))
        self.register(":INITiate[:IMMediate]", self._initiate)
        self.register(":TRACe:CLEar", lambda call: self._buffer(call.params).rows.clear(),
                      nargs=(0, 1))
        self.register(":TRACe:ACTual?", lambda call: str(len(self._buffer(call.params).rows)),
                      nargs=(0, 1))
        self.register(":TRACe:DATA?", self._trace_data, nargs=(2, 3 + 14))
        self.reset()

    def reset(self) -> None:
        self.source_level = 0.0
        self.output_on = False
        self.current_limit = 105e-6
        self.tripped = False
        self.source_delay = 0.0
        self.source_autorange = True
        self.sense_function = "CURR"
        self.sense_autorange = True
        self.nplc = 1.0
        self.source_list: list[float] = []
        # levels, count, delay, fail_abort, buffer, and the source configuration: limit, source delay
        self._sweep: tuple[list[float], int, float, bool, _Buffer, float, float] | None = None
        for buffer in self.buffers.values():
            buffer.rows.clear()

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
        buffer, names = self._buffer(call.params[:1]), _elements(call.params[1:])
        source, reading = self._source_point(self.source_level, self.source_delay)
        buffer.append(source, reading, self.elapsed)
        return _format(buffer, [buffer.rows[-1]], names)

    def _set_source_function(self, call: Call) -> None:
        if to_keyword(call.params[0], "VOLTage", "CURRent") == "CURRent":
            raise ScpiError(-221, "Settings conflict; current source not simulated")

    def _set_sense_function(self, call: Call) -> None:
        name = to_keyword(unquote(call.params[0]), "CURRent[:DC]", "VOLTage[:DC]")
        self.sense_function = name[:4].upper()

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

    def _trace_data(self, call: Call) -> str:
        buffer, names = self._buffer(call.params[2:3]), _elements(call.params[3:])
        n = len(buffer.rows)
        start = to_int(call.params[0], 1, max(n, 1))
        end = to_int(call.params[1], start, n)
        return _format(buffer, islice(buffer.rows, start - 1, end), names)


def _elements(params: list[str]) -> list[str]:
    return [to_keyword(p, *ELEMENTS) for p in params] or ["READing"]


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
