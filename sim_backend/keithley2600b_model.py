"""The 2600B as its TSP objects: the globals (smua/smub, errorqueue, format, print, printbuffer,
reset, ...) that `tsp_lua.Interpreter` runs chunks against, and what they do.

Each channel drives a load (`loads.SmuLoad`). Time (`elapsed`, s) passes only while a channel
holds its output: the source delay after a source step, then the measure delay and the integration
time (NPLC at 60 Hz) of a measurement. Simplifications: voltage source only, auto delays count as
0 s, a sweep runs to completion when initiated. The objects are those of
docs/instruments/keithley2600b.md.
"""
from __future__ import annotations

import math
from typing import Any

from .loads import SmuLoad, compliance_voltage
from .scpi import ErrorQueue
from .tsp_lua import Attribute, Object, TspError, is_number, number_argument, runtime_error, type_name

LINE_FREQUENCY = 60.0
DELAY_AUTO = -1.0
SEVERITY = 20  # "recoverable": every error the twin queues is caused by what was sent
# model: (channels, largest |source level| (V), current limit range (A), reset limit (A),
#         reset measure delay (s)), per the 2600B Reference Manual
MODELS: dict[str, tuple[int, float, tuple[float, float], float, float]] = {
    "2601B": (1, 40.4, (10e-9, 3.0), 1.0, 0.0),
    "2602B": (2, 40.4, (10e-9, 3.0), 1.0, 0.0),
    "2604B": (2, 40.4, (10e-9, 3.0), 1.0, 0.0),
    "2611B": (1, 202.0, (10e-9, 3.0), 0.1, 0.0),
    "2612B": (2, 202.0, (10e-9, 3.0), 0.1, 0.0),
    "2614B": (2, 202.0, (10e-9, 3.0), 0.1, 0.0),
    "2634B": (2, 202.0, (100e-12, 1.5), 0.1, DELAY_AUTO),
    "2635B": (1, 202.0, (100e-12, 1.5), 0.1, DELAY_AUTO),
    "2636B": (2, 202.0, (100e-12, 1.5), 0.1, DELAY_AUTO),
}
CONSTANTS = dict(OUTPUT_OFF=0.0, OUTPUT_ON=1.0, OUTPUT_DCAMPS=0.0, OUTPUT_DCVOLTS=1.0,
                 AUTORANGE_OFF=0.0, AUTORANGE_ON=1.0, AUTORANGE_FOLLOW_LIMIT=2.0, DISABLE=0.0,
                 ENABLE=1.0, SOURCE_IDLE=0.0, SOURCE_HOLD=1.0, DELAY_OFF=0.0, DELAY_AUTO=DELAY_AUTO,
                 SENSE_LOCAL=0.0, SENSE_REMOTE=1.0, SENSE_CALA=3.0)
# Voltage and current ranges by family (the model number's third digit), per the reference
# manual's range tables; a range setting selects the smallest range that holds the value.
RANGES = {"0": ((0.1, 1.0, 6.0, 40.0), (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 3.0)),
          "1": ((0.2, 2.0, 20.0, 200.0), (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 1.5)),
          "3": ((0.2, 2.0, 20.0, 200.0), (1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 1.5))}
RESET_LIMITV = 20.0  # V, smuX.source.limitv after reset() (assumed for every model)


def _checked(value: Any, name: str, low: float, high: float) -> float:
    value = number_argument(value, name)
    if value > high or value == math.inf:  # inf: a delay of `1e400` (high is inf) made time infinite
        raise TspError(1101, "Parameter too big")
    if value < low:
        raise TspError(1102, "Parameter too small")
    return value


def _setting(owner: Any, attribute: str, low: float, high: float) -> Attribute:
    """A numeric attribute stored as `owner.<attribute>`, checked against [low, high]."""
    def store(value: Any) -> None:
        setattr(owner, attribute, _checked(value, attribute, low, high))

    return Attribute(lambda: getattr(owner, attribute), store)


def _range_setting(owner: Any, attribute: str, ranges: tuple[float, ...]) -> Attribute:
    """A range attribute: the smallest of `ranges` that holds |value| (1101 above the top one)."""
    def store(value: Any) -> None:
        magnitude = abs(_checked(value, attribute, -ranges[-1], ranges[-1]))
        setattr(owner, attribute, next(r for r in ranges if magnitude <= r))

    return Attribute(lambda: getattr(owner, attribute), store)


def _delay_setting(owner: Any, attribute: str) -> Attribute:
    def store(value: Any) -> None:
        if number_argument(value, attribute) != DELAY_AUTO:
            _checked(value, attribute, 0.0, math.inf)
        setattr(owner, attribute, float(value))

    return Attribute(lambda: getattr(owner, attribute), store)


def _delay(value: float) -> float:
    return 0.0 if value == DELAY_AUTO else value


class _LinearLevels:
    """The levels of linearv(start, stop, n) as a sequence, computed per point."""

    def __init__(self, start: float, stop: float, n: int):
        self.start, self.stop, self.n = start, stop, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> float:
        k = range(self.n)[k]
        return self.stop if k == self.n - 1 else self.start + (self.stop - self.start) * k / (self.n - 1)


class _Buffer(Object):
    """A dedicated reading buffer (smuX.nvbufferY): readings and the source values they were
    taken at; ``buffer[k]`` is reading k."""

    def __init__(self) -> None:
        self.readings: list[float] = []
        self.sources: list[float] = []
        self.appendmode = self.collectsourcevalues = 0.0
        super().__init__(
            clear=self.clear, n=Attribute(lambda: float(len(self.readings))),
            readings=Attribute(lambda: list(self.readings)),
            sourcevalues=Attribute(lambda: list(self.sources) if self.collectsourcevalues
                                   else None),
            appendmode=_setting(self, "appendmode", 0, 1),
            collectsourcevalues=_setting(self, "collectsourcevalues", 0, 1))

    def get(self, key: Any) -> Any:
        if is_number(key):
            return self.readings[int(key) - 1] if float(key).is_integer() and \
                1 <= key <= len(self.readings) else None
        return super().get(key)

    def clear(self) -> None:
        self.readings.clear()
        self.sources.clear()

    def begin(self) -> None:
        """A new storing operation: without append mode it replaces the contents."""
        if not self.appendmode:
            self.clear()

    def store(self, source: float, reading: float) -> None:
        self.sources.append(source)
        self.readings.append(reading)


class _Channel:
    """One SMU channel (smua or smub): settings, two reading buffers and the trigger model."""

    def __init__(self, instrument: Instrument2600B, load: SmuLoad):
        self.instrument, self.load = instrument, load
        self.buffers = (_Buffer(), _Buffer())
        self.reset()
        self.object = self._object()

    def reset(self) -> None:
        _, _, _, limit, measure_delay = MODELS[self.instrument.model]
        self.level = self.applied = 0.0  # programmed level, and the level at the terminals
        self.output = False
        self.limit, self.nplc = limit, 1.0
        self.source_autorange = self.measure_autorange = 1.0  # the voltage source, current measure
        self.source_autorangei = self.measure_autorangev = 1.0
        volts, amps = RANGES[self.instrument.model[2]]
        self.source_rangev = self.measure_rangev = volts[0]
        self.source_rangei = self.measure_rangei = amps[0]
        self.leveli, self.limitv, self.sense = 0.0, RESET_LIMITV, CONSTANTS["SENSE_LOCAL"]
        self.source_delay, self.measure_delay = 0.0, measure_delay
        self.count, self.source_action, self.measure_action, self.endsweep = 1.0, 0.0, 0.0, 0.0
        self.sweep: list[float] | _LinearLevels | None = None
        self.sweep_buffer: _Buffer | None = None

    def _object(self) -> Object:
        _, v_max, limits, _, _ = MODELS[self.instrument.model]
        volts, amps = RANGES[self.instrument.model[2]]
        source = Object(
            func=Attribute(lambda: 1.0, self._set_function),
            levelv=Attribute(lambda: self.level, self._set_level),
            leveli=_setting(self, "leveli", -limits[1], limits[1]),  # kept: the current source is not simulated
            limiti=_setting(self, "limit", *limits),
            limitv=_setting(self, "limitv", 0.01, v_max),
            output=Attribute(lambda: float(self.output), self._set_output),
            compliance=Attribute(self.in_compliance),
            autorangev=_setting(self, "source_autorange", 0, 1),
            autorangei=_setting(self, "source_autorangei", 0, 1),
            rangev=_range_setting(self, "source_rangev", volts),
            rangei=_range_setting(self, "source_rangei", amps),
            delay=_delay_setting(self, "source_delay"))
        measure = Object(nplc=_setting(self, "nplc", 0.001, 25),
                         autorangei=_setting(self, "measure_autorange", 0, 2),
                         autorangev=_setting(self, "measure_autorangev", 0, 1),
                         rangev=_range_setting(self, "measure_rangev", volts),
                         rangei=_range_setting(self, "measure_rangei", amps),
                         delay=_delay_setting(self, "measure_delay"), i=self._measure_i,
                         v=self._measure_v, iv=self._measure_iv, r=self._measure_r,
                         p=self._measure_p)
        trigger = Object(
            count=_setting(self, "count", 1, 2 ** 31 - 1),
            source=Object(action=_setting(self, "source_action", 0, 1),
                          linearv=self._linearv, listv=self._listv),
            measure=Object(action=_setting(self, "measure_action", 0, 1),
                           i=self._trigger_measure_i),
            endsweep=Object(action=_setting(self, "endsweep", 0, 1)),
            initiate=self._initiate)
        return Object(source=source, measure=measure, trigger=trigger, nvbuffer1=self.buffers[0],
                      nvbuffer2=self.buffers[1], reset=self.reset,
                      sense=_setting(self, "sense", 0, 3), **CONSTANTS)

    # -- settings

    def _set_function(self, value: Any) -> None:
        if _checked(value, "func", 0, 1) != CONSTANTS["OUTPUT_DCVOLTS"]:
            raise TspError(-221, "Settings conflict; current source not simulated")

    def _set_level(self, value: Any) -> None:
        v_max = MODELS[self.instrument.model][1]
        self.level = self.applied = _checked(value, "levelv", -v_max, v_max)
        if self.output:
            self._step()

    def _set_output(self, value: Any) -> None:
        on = _checked(value, "output", 0, 1) != 0
        if on and not self.output:
            self.output, self.applied = True, self.level
            self._step()
        self.output = on

    # -- sourcing and measuring

    def _step(self) -> None:
        """A source step: hold the source delay."""
        if _delay(self.source_delay) > 0:
            self._point(_delay(self.source_delay))

    def _hold(self, v: float | None, duration: float) -> float:
        current = self.load.apply(v, duration)
        self.instrument.elapsed += duration
        return current

    def _limited(self, level: float) -> float:
        """`level`, or the voltage between 0 V and it at which the load draws the limit."""
        return compliance_voltage(self.load.current, level, self.limit)

    def in_compliance(self) -> bool:
        return self.output and self._limited(self.applied) != self.applied

    def _point(self, *durations: float) -> tuple[float, float]:
        """Hold the output for each duration (s) in turn; return (source value, current) at the
        end. The source value is the programmed level (0 V with the output off)."""
        if not self.output:
            if sum(durations) > 0:
                self._hold(None, sum(durations))
            return 0.0, 0.0
        level = v = self.applied
        current = None
        for duration in (d for d in durations if d > 0):
            v = self._limited(level)  # solved again per phase: the load may change while held
            current = self._hold(v, duration)
        if self.in_compliance():
            return level, math.copysign(self.limit, self.load.current(level))
        return level, current if current is not None and v == level else self.load.current(level)

    def _measure_i(self, buffer: Any = None) -> float:
        return self._measure("i", buffer)[0]

    def _measure_v(self, buffer: Any = None) -> float:
        return self._measure("v", buffer)[1]

    def _measure_iv(self, ibuffer: Any = None, vbuffer: Any = None) -> tuple[float, float]:
        """measure.iv([ibuffer[, vbuffer]]): the current, then the voltage."""
        current, voltage = self._measure("iv", ibuffer, vbuffer)
        return current, voltage

    def _measure_r(self, buffer: Any = None) -> float:
        current, voltage = self._measure("r", None)
        value = voltage / current if current else 9.91e37  # the instrument's NaN
        self._store(buffer, "r", voltage, value)
        return value

    def _measure_p(self, buffer: Any = None) -> float:
        current, voltage = self._measure("p", None)
        self._store(buffer, "p", voltage, voltage * current)
        return voltage * current

    def _measure(self, name: str, ibuffer: Any, vbuffer: Any = None) -> tuple[float, float]:
        """One measurement (the measure delay, then NPLC): (current, voltage) at its end; the
        current goes to `ibuffer` (for `iv`; for `v`, the voltage), the voltage to `vbuffer`."""
        for position, buffer in enumerate((ibuffer, vbuffer), 1):
            if buffer is not None and not isinstance(buffer, _Buffer):
                raise runtime_error(f"bad argument #{position} to `{name}' (reading buffer "
                                    f"expected, got {type_name(buffer)})")
        source, current = self._point(_delay(self.measure_delay), self.nplc / LINE_FREQUENCY)
        voltage = self._limited(self.applied) if self.output else 0.0
        self._store(ibuffer, name, source, voltage if name == "v" else current)
        self._store(vbuffer, name, source, voltage)
        return current, voltage

    @staticmethod
    def _store(buffer: _Buffer | None, name: str, source: float, value: float) -> None:
        if buffer is not None:
            buffer.begin()
            buffer.store(source, value)

    # -- trigger model

    def _levels(self, levels: list[Any], function: str) -> list[float]:
        v_max = MODELS[self.instrument.model][1]
        return [_checked(v, function, -v_max, v_max) for v in levels]

    def _linearv(self, start: Any = None, stop: Any = None, points: Any = None) -> None:
        start = number_argument(start, "linearv", 1)
        stop = number_argument(stop, "linearv", 2)
        n = int(_checked(number_argument(points, "linearv", 3), "linearv", 2, 2 ** 31 - 1))
        self._levels([start, stop], "linearv")  # the levels lie between: checked at the ends
        self.sweep = _LinearLevels(start, stop, n)  # not a list: n may be 2^31 - 1

    def _listv(self, levels: Any = None) -> None:
        if not isinstance(levels, list):
            raise runtime_error(f"bad argument #1 to `listv' (table expected, got "
                                f"{type_name(levels)})")
        if not levels:
            raise TspError(1102, "Parameter too small")
        self.sweep = self._levels(levels, "listv")

    def _trigger_measure_i(self, buffer: Any = None) -> None:
        if not isinstance(buffer, _Buffer):
            raise runtime_error(f"bad argument #1 to `i' (reading buffer expected, got "
                                f"{type_name(buffer)})")
        self.sweep_buffer = buffer

    def _initiate(self) -> None:
        levels = self.sweep if self.source_action else None
        buffer = self.sweep_buffer if self.measure_action else None
        if buffer is not None:
            buffer.begin()
        count = int(self.count)
        if not (self.output or buffer is not None or (levels and _delay(self.source_delay) > 0)):
            # no point holds the output or stores a reading: the count only picks the last level
            # (a count of 2^31 - 1 of such points would spin for half an hour)
            if levels:
                self.applied = levels[(count - 1) % len(levels)]
            count = 0
        for k in range(count):
            if levels:  # a list shorter than the count starts over (reference manual)
                self.applied = levels[k % len(levels)]
            measuring = buffer is not None
            point = self._point(_delay(self.source_delay) if levels else 0.0,
                                _delay(self.measure_delay) if measuring else 0.0,
                                self.nplc / LINE_FREQUENCY if measuring else 0.0)
            if buffer is not None:
                buffer.store(*point)
        if self.endsweep == CONSTANTS["SOURCE_IDLE"]:
            self.applied = self.level


class Instrument2600B:
    """A 2600B of `model` (a key of MODELS) whose channel X (``smuX``) drives `loads[X]`.

    `globals` are its TSP globals; what ``print``/``printbuffer`` print is appended to `out`, one
    string a reply line; `errors` is the queue ``errorqueue`` reads, into which whoever runs the
    chunks pushes each `TspError` (code, message, `elapsed`).
    """

    def __init__(self, model: str, loads: dict[str, SmuLoad]):
        self.model = model
        self.elapsed = 0.0
        self.errors = ErrorQueue()
        self.precision = 6
        self.out: list[str] = []
        self.channels = {name: _Channel(self, load) for name, load in loads.items()}
        self.globals: dict[str, Any] = {f"smu{name}": channel.object
                                        for name, channel in self.channels.items()}
        self.globals.update(
            print=self._print, printbuffer=self._printbuffer, reset=self.reset,
            waitcomplete=lambda: None,
            errorqueue=Object(clear=self.errors.clear, next=self._next_error,
                              count=Attribute(lambda: float(len(self.errors)))),
            format=Object(asciiprecision=Attribute(lambda: float(self.precision),
                                                   self._set_precision)))

    def reset(self) -> None:
        """reset(): every channel and the print format to their defaults."""
        for channel in self.channels.values():
            channel.reset()
        self.precision = 6

    def _format(self, value: Any) -> str:
        if is_number(value):
            return f"{value:.{self.precision - 1}e}"
        if isinstance(value, str):
            return value
        if value is None or isinstance(value, bool):
            return {None: "nil", True: "true", False: "false"}[value]
        return f"{type_name(value)}: 0x{id(value) & 0xFFFFFFFF:08x}"

    def _print(self, *values: Any) -> None:
        self.out.append("\t".join(map(self._format, values)))

    def _printbuffer(self, start: Any = None, end: Any = None, *tables: Any) -> None:
        first = number_argument(start, "printbuffer", 1)
        last = number_argument(end, "printbuffer", 2)
        columns = []
        for position, table in enumerate(tables or (None,), 3):
            table = table.readings if isinstance(table, _Buffer) else table
            if not isinstance(table, list):
                raise runtime_error(f"bad argument #{position} to `printbuffer' (table expected, "
                                    f"got {type_name(table)})")
            columns.append(table)
        n = min(map(len, columns))  # the bounds clamped before int(): they may be +-inf
        rows = range(int(min(max(first, 1), n + 1)) - 1, int(max(min(last, n), 0)))
        self.out.append(", ".join(self._format(column[k]) for k in rows for column in columns))

    def _next_error(self) -> tuple[float, str, float, float]:
        entry = self.errors.pop()
        if entry is None:
            return 0.0, "Queue Is Empty", 0.0, 0.0
        code, message, _ = entry
        return float(code), message, float(SEVERITY), 1.0

    def _set_precision(self, value: Any) -> None:
        self.precision = int(_checked(value, "asciiprecision", 1, 16))
