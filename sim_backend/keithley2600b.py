"""Virtual Keithley 2600B System SourceMeter speaking TSP, its smua driving a load.

Every received line is one TSP chunk, as on the instrument: it is parsed whole first (a syntax
error queues -285 and runs nothing), then run statement by statement; a runtime error (-286) or an
instrument error (e.g. 1101 "Parameter too big") is queued and skips the rest of the chunk. Only
``print``/``printbuffer`` and ``*IDN?`` (with ``*OPC?``) reply.

The Lua subset is a tokenizer and a small recursive-descent parser: statements separated by
whitespace or ``;``; assignments; calls; ``for k = a, b[, c] do ... end``; ``if ... then ...
[else ...] end``; ``break``; numbers, strings, ``true``/``false``/``nil``, table constructors,
unary minus, ``not``, fields, indexing. The objects are those of docs/instruments/keithley2600b.md.

smua drives `load`; smub (two-channel models) is an open circuit. Time (`elapsed`, s) passes only
while a channel holds its output: the source delay after a source step, then the measure delay and
the integration time (NPLC at 60 Hz) of a measurement. Simplifications: voltage source only, auto
delays count as 0 s, a sweep runs to completion when initiated, no arithmetic or string operators.
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable, NamedTuple

from .loads import SmuLoad, compliance_voltage
from .scpi import ErrorQueue

LINE_FREQUENCY = 60.0
FIRMWARE = "4.0.0"
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
                 ENABLE=1.0, SOURCE_IDLE=0.0, SOURCE_HOLD=1.0, DELAY_OFF=0.0, DELAY_AUTO=DELAY_AUTO)


class TspError(Exception):
    """An error the instrument queues; it ends the chunk being run."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def _syntax(message: str) -> TspError:
    return TspError(-285, f"TSP Syntax error at line 1: {message}")


def _runtime(message: str) -> TspError:
    return TspError(-286, f"TSP Runtime error at line 1: {message}")


class _Break(Exception):
    pass


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _type(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "boolean"
    if _is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    return "function" if callable(value) else "table"


def _describe(node: tuple, value: Any) -> str:
    """How Lua names a bad value in an error: "global `x' (a nil value)" or "a nil value"."""
    if node[0] in ("global", "field"):
        return f"{node[0]} `{node[-1]}' (a {_type(value)} value)"
    return f"a {_type(value)} value"


def _number(value: Any, function: str, position: int = 1) -> float:
    if not _is_number(value):
        raise _runtime(f"bad argument #{position} to `{function}' (number expected, got "
                       f"{_type(value)})")
    return float(value)


def _checked(value: Any, name: str, low: float, high: float) -> float:
    value = _number(value, name)
    if value > high:
        raise TspError(1101, "Parameter too big")
    if value < low:
        raise TspError(1102, "Parameter too small")
    return value


# -- parsing

_TOKEN = re.compile(r"(?P<skip>\s+|--[^\n]*)|(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
                    r"|(?P<name>[A-Za-z_]\w*)|(?P<string>\"[^\"\n]*\"|'[^'\n]*')"
                    r"|(?P<symbol>==|~=|<=|>=|\.\.|.)", re.DOTALL)
KEYWORDS = frozenset("and break do else elseif end false for function if in local nil not or "
                     "repeat return then true until while".split())
LITERALS = {"true": True, "false": False, "nil": None}


class _Parser:
    """One chunk to a list of statements; nodes are tuples ``(kind, ...)``."""

    def __init__(self, text: str):
        self.tokens = [("keyword" if m.lastgroup == "name" and m.group() in KEYWORDS
                        else m.lastgroup, m.group())
                       for m in _TOKEN.finditer(text) if m.lastgroup != "skip"]
        self.tokens.append(("eof", "<eof>"))
        self.pos = 0
        self.loops = 0

    def chunk(self) -> list[tuple]:
        body = self.block()
        if self.peek()[0] != "eof":
            raise self.error("`<eof>' expected")
        return body

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos]

    def accept(self, text: str) -> bool:
        kind, value = self.peek()
        if value == text and kind in ("symbol", "keyword"):
            self.pos += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            raise self.error(f"`{text}' expected")

    def name(self) -> str:
        kind, value = self.peek()
        if kind != "name":
            raise self.error("<name> expected")
        self.pos += 1
        return value

    def error(self, what: str) -> TspError:
        return _syntax(f"{what} near `{self.peek()[1]}'")

    def block(self) -> list[tuple]:
        body = []
        while not (self.peek()[0] == "eof" or self.peek() in (("keyword", "end"),
                                                              ("keyword", "else"))):
            if not self.accept(";"):
                body.append(self.statement())
        return body

    def statement(self) -> tuple:
        if self.accept("for"):
            name = self.name()
            self.expect("=")
            bounds = [self.expression()]
            self.expect(",")
            bounds.append(self.expression())
            if self.accept(","):
                bounds.append(self.expression())
            self.expect("do")
            self.loops += 1
            body = self.block()
            self.loops -= 1
            self.expect("end")
            return ("for", name, bounds, body)
        if self.accept("if"):
            condition = self.expression()
            self.expect("then")
            body = self.block()
            orelse = self.block() if self.accept("else") else []
            self.expect("end")
            return ("if", condition, body, orelse)
        if self.accept("break"):
            if not self.loops:
                raise self.error("no loop to break")
            return ("break",)
        target = self.suffixed()
        if self.accept("="):
            if target[0] not in ("global", "field", "index"):
                raise self.error("syntax error")
            return ("set", target, self.expression())
        if target[0] != "call":
            raise self.error("`=' expected")
        return ("do", target)

    def expression(self) -> tuple:
        kind, value = self.peek()
        if (kind, value) in (("symbol", "-"), ("keyword", "not")):
            self.pos += 1
            return ("neg" if value == "-" else "not", self.expression())
        if kind in ("number", "string") or value in LITERALS and kind == "keyword":
            self.pos += 1
            constant = float(value) if kind == "number" else value[1:-1] if kind == "string" \
                else LITERALS[value]
            return ("const", constant)
        if self.accept("{"):
            items = []
            while not self.accept("}"):
                items.append(self.expression())
                if not (self.accept(",") or self.accept(";")):
                    self.expect("}")
                    break
            return ("table", items)
        return self.suffixed()

    def suffixed(self) -> tuple:
        if self.peek()[0] == "name":
            node: tuple = ("global", self.name())
        elif self.accept("("):
            node = ("paren", self.expression())
            self.expect(")")
        else:
            raise self.error("unexpected symbol")
        while True:
            if self.accept("."):
                node = ("field", node, self.name())
            elif self.accept("["):
                node = ("index", node, self.expression())
                self.expect("]")
            elif self.accept("("):
                args = []
                if not self.accept(")"):
                    args.append(self.expression())
                    while self.accept(","):
                        args.append(self.expression())
                    self.expect(")")
                node = ("call", node, args)
            else:
                return node


# -- instrument objects

class _Attribute(NamedTuple):
    get: Callable[[], Any]
    set: Callable[[Any], None] | None = None


class _Object:
    """A TSP object (smua, smua.source, errorqueue, ...): constants, functions, child objects and
    attributes; assigning anything but a writable attribute is a runtime error."""

    def __init__(self, **members: Any):
        self.members = members

    def get(self, key: Any) -> Any:
        member = self.members.get(key)
        return member.get() if isinstance(member, _Attribute) else member

    def set(self, key: Any, value: Any) -> None:
        member = self.members.get(key)
        if not isinstance(member, _Attribute) or member.set is None:
            kind = "read-only" if isinstance(member, _Attribute) else "unknown"
            raise _runtime(f"attempt to set {kind} attribute `{key}'")
        member.set(value)


def _setting(owner: Any, attribute: str, low: float, high: float) -> _Attribute:
    """A numeric attribute stored as `owner.<attribute>`, checked against [low, high]."""
    def store(value: Any) -> None:
        setattr(owner, attribute, _checked(value, attribute, low, high))

    return _Attribute(lambda: getattr(owner, attribute), store)


def _delay_setting(owner: Any, attribute: str) -> _Attribute:
    def store(value: Any) -> None:
        if _number(value, attribute) != DELAY_AUTO:
            _checked(value, attribute, 0.0, math.inf)
        setattr(owner, attribute, float(value))

    return _Attribute(lambda: getattr(owner, attribute), store)


class _Buffer(_Object):
    """A dedicated reading buffer (smuX.nvbufferY): readings and the source values they were
    taken at; ``buffer[k]`` is reading k."""

    def __init__(self) -> None:
        self.readings: list[float] = []
        self.sources: list[float] = []
        self.appendmode = self.collectsourcevalues = 0.0
        super().__init__(
            clear=self.clear, n=_Attribute(lambda: float(len(self.readings))),
            readings=_Attribute(lambda: list(self.readings)),
            sourcevalues=_Attribute(lambda: list(self.sources) if self.collectsourcevalues
                                    else None),
            appendmode=_setting(self, "appendmode", 0, 1),
            collectsourcevalues=_setting(self, "collectsourcevalues", 0, 1))

    def get(self, key: Any) -> Any:
        if _is_number(key):
            return self.readings[int(key) - 1] if key == int(key) and \
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


class _OpenCircuit:
    """What smub drives: nothing, 0 A at any voltage."""

    def apply(self, v: float | None, duration: float) -> float:
        return 0.0

    def current(self, v: float) -> float:
        return 0.0


class _Channel:
    """One SMU channel (smua or smub): settings, two reading buffers and the trigger model."""

    def __init__(self, twin: "VirtualKeithley2600B", load: SmuLoad):
        self.twin, self.load = twin, load
        self.buffers = (_Buffer(), _Buffer())
        self.reset()
        self.object = self._object()

    def reset(self) -> None:
        _, _, _, limit, measure_delay = MODELS[self.twin.model]
        self.level = self.applied = 0.0  # programmed level, and the level at the terminals
        self.output = False
        self.limit, self.nplc = limit, 1.0
        self.source_autorange = self.measure_autorange = 1.0
        self.source_delay, self.measure_delay = 0.0, measure_delay
        self.count, self.source_action, self.measure_action, self.endsweep = 1.0, 0.0, 0.0, 0.0
        self.sweep: list[float] | None = None
        self.sweep_buffer: _Buffer | None = None

    def _object(self) -> _Object:
        _, v_max, limits, _, _ = MODELS[self.twin.model]
        source = _Object(
            func=_Attribute(lambda: 1.0, self._set_function),
            levelv=_Attribute(lambda: self.level, self._set_level),
            limiti=_setting(self, "limit", *limits),
            output=_Attribute(lambda: float(self.output), self._set_output),
            compliance=_Attribute(self.in_compliance),
            autorangev=_setting(self, "source_autorange", 0, 1),
            delay=_delay_setting(self, "source_delay"))
        measure = _Object(nplc=_setting(self, "nplc", 0.001, 25),
                          autorangei=_setting(self, "measure_autorange", 0, 2),
                          delay=_delay_setting(self, "measure_delay"), i=self._measure_i)
        trigger = _Object(
            count=_setting(self, "count", 1, 2 ** 31 - 1),
            source=_Object(action=_setting(self, "source_action", 0, 1),
                           linearv=self._linearv, listv=self._listv),
            measure=_Object(action=_setting(self, "measure_action", 0, 1),
                            i=self._trigger_measure_i),
            endsweep=_Object(action=_setting(self, "endsweep", 0, 1)),
            initiate=self._initiate)
        return _Object(source=source, measure=measure, trigger=trigger, nvbuffer1=self.buffers[0],
                       nvbuffer2=self.buffers[1], reset=self.reset, **CONSTANTS)

    # -- settings

    def _set_function(self, value: Any) -> None:
        if _checked(value, "func", 0, 1) != CONSTANTS["OUTPUT_DCVOLTS"]:
            raise TspError(-221, "Settings conflict; current source not simulated")

    def _set_level(self, value: Any) -> None:
        v_max = MODELS[self.twin.model][1]
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
        self.twin.elapsed += duration
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
        if buffer is not None and not isinstance(buffer, _Buffer):
            raise _runtime(f"bad argument #1 to `i' (reading buffer expected, got {_type(buffer)})")
        source, current = self._point(_delay(self.measure_delay), self.nplc / LINE_FREQUENCY)
        if buffer is not None:
            buffer.begin()
            buffer.store(source, current)
        return current

    # -- trigger model

    def _levels(self, levels: list[Any], function: str) -> list[float]:
        v_max = MODELS[self.twin.model][1]
        return [_checked(v, function, -v_max, v_max) for v in levels]

    def _linearv(self, start: Any = None, stop: Any = None, points: Any = None) -> None:
        start, stop = _number(start, "linearv", 1), _number(stop, "linearv", 2)
        n = int(_checked(_number(points, "linearv", 3), "linearv", 2, 2 ** 31 - 1))
        self.sweep = self._levels([start + (stop - start) * k / (n - 1) for k in range(n - 1)]
                                  + [stop], "linearv")

    def _listv(self, levels: Any = None) -> None:
        if not isinstance(levels, list):
            raise _runtime(f"bad argument #1 to `listv' (table expected, got {_type(levels)})")
        if not levels:
            raise TspError(1102, "Parameter too small")
        self.sweep = self._levels(levels, "listv")

    def _trigger_measure_i(self, buffer: Any = None) -> None:
        if not isinstance(buffer, _Buffer):
            raise _runtime(f"bad argument #1 to `i' (reading buffer expected, got {_type(buffer)})")
        self.sweep_buffer = buffer

    def _initiate(self) -> None:
        levels = self.sweep if self.source_action else None
        buffer = self.sweep_buffer if self.measure_action else None
        if buffer is not None:
            buffer.begin()
        for k in range(int(self.count)):
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


def _delay(value: float) -> float:
    return 0.0 if value == DELAY_AUTO else value


def _truthy(value: Any) -> bool:
    return value is not None and value is not False


class VirtualKeithley2600B:
    """A 2600B whose smua drives `load`; its time (`elapsed`, s) passes only through the loads.

    `output_on` and `source_level` (smua's programmed level, V) are plain attributes so tests and
    the bench can check the safe state (0 V, output off).
    """

    def __init__(self, load: SmuLoad, model: str = "2636B", serial: str = "4000001"):
        if model not in MODELS:
            raise ValueError(f"model {model!r} is not one of {', '.join(MODELS)}")
        self.model = model
        self.idn = f"Keithley Instruments Inc., Model {model}, {serial}, {FIRMWARE}"
        self.elapsed = 0.0
        self.errors = ErrorQueue()
        self.precision = 6
        self.channels = {"a": _Channel(self, load)}
        if MODELS[model][0] == 2:
            self.channels["b"] = _Channel(self, _OpenCircuit())
        self.globals: dict[str, Any] = {f"smu{name}": channel.object
                                        for name, channel in self.channels.items()}
        self.globals.update(
            print=self._print, printbuffer=self._printbuffer, reset=self.reset,
            waitcomplete=lambda: None,
            errorqueue=_Object(clear=self.errors.clear, next=self._next_error,
                               count=_Attribute(lambda: float(len(self.errors)))),
            format=_Object(asciiprecision=_Attribute(lambda: float(self.precision),
                                                     self._set_precision)))
        self.locals: dict[str, float] = {}
        self._common = {"*IDN?": lambda: self._out.append(self.idn), "*RST": self.reset,
                        "*OPC?": lambda: self._out.append("1"), "*WAI": lambda: None}
        self._rx = bytearray()
        self._out: list[str] = []

    @property
    def output_on(self) -> bool:
        return self.channels["a"].output

    @output_on.setter
    def output_on(self, value: bool) -> None:
        self.channels["a"].output = value

    @property
    def source_level(self) -> float:
        return self.channels["a"].level

    @source_level.setter
    def source_level(self, value: float) -> None:
        self.channels["a"].level = self.channels["a"].applied = value

    def handle(self, data: bytes) -> bytes:
        """Feed received bytes; run every line they complete and return what it printed."""
        self._rx += data
        while (end := self._rx.find(b"\n")) >= 0:
            line = self._rx[:end].decode("latin-1").strip()
            del self._rx[: end + 1]
            self._run(line)
        out, self._out = self._out, []
        return "".join(line + "\n" for line in out).encode("latin-1")

    def device_clear(self) -> None:
        """Drop a partly received line (a client disconnected, or a VISA clear)."""
        self._rx.clear()

    def reset(self) -> None:
        """reset(): both channels and the print format to their defaults."""
        for channel in self.channels.values():
            channel.reset()
        self.precision = 6

    def _run(self, line: str) -> None:
        try:
            if line.upper() in self._common:
                self._common[line.upper()]()
            else:
                self._exec(_Parser(line).chunk())
        except TspError as exc:
            self.errors.push(exc.code, exc.message, self.elapsed)

    # -- evaluation

    def _exec(self, body: list[tuple]) -> None:
        for statement in body:
            kind = statement[0]
            if kind == "set":
                self._assign(statement[1], self._eval(statement[2]))
            elif kind == "do":
                self._call(statement[1])
            elif kind == "if":
                self._exec(statement[2] if _truthy(self._eval(statement[1])) else statement[3])
            elif kind == "for":
                self._for(*statement[1:])
            else:
                raise _Break

    def _for(self, name: str, bounds: list[tuple], body: list[tuple]) -> None:
        values = [self._eval(bound) for bound in bounds] + [1.0]
        for value, what in zip(values, ("initial value", "limit", "step")):
            if not _is_number(value):
                raise _runtime(f"`for' {what} must be a number")
        k, stop, step = values[:3]
        if step == 0:
            raise _runtime("`for' step is zero")
        saved = self.locals.get(name)
        try:
            while k <= stop if step > 0 else k >= stop:
                self.locals[name] = k
                self._exec(body)
                k += step
        except _Break:
            pass
        finally:
            if saved is None:
                self.locals.pop(name, None)
            else:
                self.locals[name] = saved

    def _eval(self, node: tuple) -> Any:
        kind = node[0]
        if kind == "const":
            return node[1]
        if kind == "global":
            return self.locals[node[1]] if node[1] in self.locals else self.globals.get(node[1])
        if kind in ("field", "index"):
            key = node[2] if kind == "field" else self._eval(node[2])
            return self._index(node[1], key)
        if kind == "call":
            return next(iter(self._call(node)), None)
        if kind == "paren":
            return self._eval(node[1])
        if kind == "table":
            return self._args(node[1])
        value = self._eval(node[1])
        if kind == "not":
            return not _truthy(value)
        if not _is_number(value):
            raise _runtime(f"attempt to perform arithmetic on {_describe(node[1], value)}")
        return -value

    def _index(self, node: tuple, key: Any) -> Any:
        table = self._eval(node)
        if isinstance(table, _Object):
            return table.get(key)
        if isinstance(table, list):
            valid = _is_number(key) and key == int(key) and 1 <= key <= len(table)
            return table[int(key) - 1] if valid else None
        raise _runtime(f"attempt to index {_describe(node, table)}")

    def _call(self, node: tuple) -> list[Any]:
        """All values the call returns."""
        function = self._eval(node[1])
        if not callable(function):
            raise _runtime(f"attempt to call {_describe(node[1], function)}")
        result = function(*self._args(node[2]))
        return [] if result is None else list(result) if isinstance(result, tuple) else [result]

    def _args(self, nodes: list[tuple]) -> list[Any]:
        """Values of an argument list or table constructor; a call at the end gives all it
        returns, as in Lua."""
        values = [self._eval(node) for node in nodes[:-1]]
        if nodes:
            last = nodes[-1]
            values += self._call(last) if last[0] == "call" else [self._eval(last)]
        return values

    def _assign(self, target: tuple, value: Any) -> None:
        if target[0] == "global":
            (self.locals if target[1] in self.locals else self.globals)[target[1]] = value
            return
        table = self._eval(target[1])
        if isinstance(table, list):
            raise _runtime("assignment into a table is not simulated")
        if not isinstance(table, _Object):
            raise _runtime(f"attempt to index {_describe(target[1], table)}")
        table.set(target[2] if target[0] == "field" else self._eval(target[2]), value)

    # -- global functions

    def _format(self, value: Any) -> str:
        if _is_number(value):
            return f"{value:.{self.precision - 1}e}"
        if isinstance(value, str):
            return value
        if value is None or isinstance(value, bool):
            return {None: "nil", True: "true", False: "false"}[value]
        return f"{_type(value)}: 0x{id(value) & 0xFFFFFFFF:08x}"

    def _print(self, *values: Any) -> None:
        self._out.append("\t".join(map(self._format, values)))

    def _printbuffer(self, start: Any = None, end: Any = None, *tables: Any) -> None:
        first, last = _number(start, "printbuffer", 1), _number(end, "printbuffer", 2)
        columns = []
        for position, table in enumerate(tables or (None,), 3):
            table = table.readings if isinstance(table, _Buffer) else table
            if not isinstance(table, list):
                raise _runtime(f"bad argument #{position} to `printbuffer' (table expected, got "
                               f"{_type(table)})")
            columns.append(table)
        rows = range(max(int(first), 1) - 1, min(int(last), *map(len, columns)))
        self._out.append(", ".join(self._format(column[k]) for k in rows for column in columns))

    def _next_error(self) -> tuple[float, str, float, float]:
        entry = self.errors.pop()
        if entry is None:
            return 0.0, "Queue Is Empty", 0.0, 0.0
        code, message, _ = entry
        return float(code), message, float(SEVERITY), 1.0

    def _set_precision(self, value: Any) -> None:
        self.precision = int(_checked(value, "asciiprecision", 1, 16))
