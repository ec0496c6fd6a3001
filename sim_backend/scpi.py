"""SCPI parsing for the virtual instruments: header matching, dispatch and the error queue.

Headers are registered the way manuals print them::

    twin.register(":SOURce#:VOLTage[:LEVel][:IMMediate][:AMPLitude]", set_level, nargs=1)
    twin.register("[:SENSe#]:CURRent[:DC]:NPLCycles?", get_nplc)

Upper-case letters are the short form, the whole word the long form (either is accepted, in any
case), ``[...]`` is optional, ``#`` an optional numeric suffix (1 when omitted) and a trailing ``?``
makes the pattern a query. A message line may hold several commands separated by ``;``; every
piece is treated as rooted (what the Keithley 2450 accepts in practice). Replies to the queries of
one line are joined by ``;`` and terminated by ``\\n``; commands never reply.
"""
from __future__ import annotations

import math
import re
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

ERRORS = {
    -100: "Command error",
    -104: "Data type error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -113: "Undefined header",
    -114: "Header suffix out of range",
    -151: "Invalid string data",
    -221: "Settings conflict",
    -222: "Data out of range",
    -223: "Too much data",
    -224: "Illegal parameter value",
    -350: "Queue overflow",
    -363: "Input buffer overrun",
}
# Standard event status register bits (IEEE 488.2) per error class (code // 100), and *OPC's.
OPERATION_COMPLETE = 1
EVENT_BITS = {-1: 32, -2: 16, -3: 8, -4: 4}  # command, execution, device-dependent, query error
ERROR_AVAILABLE, EVENT_SUMMARY, SERVICE_REQUEST = 4, 32, 64  # status byte bits
MAX_INPUT = 1 << 20  # bytes of one unterminated message a twin buffers (a 2500-point list is ~40 kB)


class ScpiError(Exception):
    """A command the instrument rejects; it ends up in the error queue, never on the wire."""

    def __init__(self, code: int, message: str | None = None):
        self.code = code
        self.message = message or ERRORS.get(code, ERRORS[-100])
        super().__init__(f"{code},{self.message}")


@dataclass
class Call:
    """One parsed command: its parameters (quotes kept) and header suffixes (1 where omitted)."""

    params: list[str]
    suffixes: tuple[int, ...]


Handler = Callable[[Call], "str | None"]
T = TypeVar("T")  # a setting's value: what its parser returns and its formatter takes
S = TypeVar("S")  # what holds a setting: a twin, a channel's or a function's settings

_TOKEN = re.compile(r"\[|\]|:?\*?[A-Za-z][A-Za-z0-9]*#?")
_HEADER = re.compile(r"(\S+)\s*(.*)", re.DOTALL)


@cache
def compile_header(pattern: str) -> re.Pattern:
    """Regex for a header pattern; it matches a header normalised to a leading ':'."""
    query = pattern.endswith("?")
    body = pattern[:-1] if query else pattern
    parts, pos = [], 0
    for token in _TOKEN.finditer(body):
        if token.start() != pos:
            raise ValueError(f"bad SCPI header pattern {pattern!r}")
        text = token.group()
        if text == "[":
            parts.append("(?:")
        elif text == "]":
            parts.append(")?")
        else:
            name = text.lstrip(":")
            suffix = name.endswith("#")
            name = name.rstrip("#")
            forms = {name.upper(), short_form(name)}
            parts.append(":(?:" + "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
                         + ")" + (r"(\d+)?" if suffix else ""))
        pos = token.end()
    if pos != len(body):
        raise ValueError(f"bad SCPI header pattern {pattern!r}")
    return re.compile("".join(parts) + (r"\?" if query else ""), re.IGNORECASE)


def short_form(keyword: str) -> str:
    """The short form of a manual-style keyword, as queries reply it (`PULSe` -> `PULS`,
    `EXT3` -> `EXT3`)."""
    return "".join(c for c in keyword if not c.islower())


def split_quoted(text: str, separator: str) -> list[str]:
    """Split on `separator` outside single or double quotes; pieces are stripped."""
    if '"' not in text and "'" not in text:  # the usual case (number lists): no quote to skip
        return [piece.strip() for piece in text.split(separator)]
    pieces, start, quote = [], 0, ""
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == separator:
            pieces.append(text[start:i].strip())
            start = i + 1
    if quote:
        raise ScpiError(-151)
    pieces.append(text[start:].strip())
    return pieces


# Parameter conversions: each raises the ScpiError the instrument would queue.

_NRF = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def to_float(param: str, low: float = -math.inf, high: float = math.inf) -> float:
    if not _NRF.fullmatch(param):
        raise ScpiError(-104)
    value = float(param)
    if not (math.isfinite(value) and low <= value <= high):
        raise ScpiError(-222)
    return value


def float_in(low: float, high: float) -> Callable[[str], float]:
    """A parser for a number within [low, high]."""
    return lambda param: to_float(param, low, high)


def to_int(param: str, low: float, high: float) -> int:
    value = to_float(param)
    if value != int(value):
        raise ScpiError(-104)
    if not low <= value <= high:
        raise ScpiError(-222)
    return int(value)


def to_number(param: str, low: float, high: float, integer: bool = False,
              default: float | None = None) -> float:
    """A number within [low, high] (-222 outside), or MINimum / MAXimum for the bounds (and
    DEFault for `default`, where the instrument has it); with `integer` the number must be whole."""
    bound = to_bound(param, low, high, default)
    if bound is not None:
        return bound
    return to_int(param, low, high) if integer else to_float(param, low, high)


def query_number(params: list[str], value: float, low: float, high: float,
                 default: float | None = None) -> float:
    """What a numeric setting's query replies: the setting, or with a MINimum / MAXimum (/ DEFault)
    argument the bound (the *RST value) it names; any other argument is -224."""
    if not params:
        return value
    bound = to_bound(params[0], low, high, default)
    if bound is None:
        raise ScpiError(-224)
    return bound


def to_bound(param: str, low: float, high: float, default: float | None = None) -> float | None:
    """`low` for MINimum, `high` for MAXimum, `default` for DEFault (where given); else None."""
    word = param.upper()
    if word in ("MIN", "MINIMUM"):
        return low
    if word in ("MAX", "MAXIMUM"):
        return high
    if default is not None and word in ("DEF", "DEFAULT"):
        return default
    return None


def to_index(digits: str) -> int:
    """A header suffix or channel number from its digits; more than 18 (int() refuses over 4300) are
    beyond any instrument's range: sys.maxsize."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else sys.maxsize


def to_bool(param: str) -> bool:
    value = param.upper()
    if value in ("ON", "1"):
        return True
    if value in ("OFF", "0"):
        return False
    raise ScpiError(-104)


def to_keyword(param: str, *names: str) -> str:
    """Match `param` against manual-style keywords (`FIXed`, `CURRent[:DC]`); return the name."""
    for name in names:
        if compile_header(name).fullmatch(":" + param):
            return name
    raise ScpiError(-224)


def unquote(param: str) -> str:
    if len(param) >= 2 and param[0] == param[-1] and param[0] in "'\"":
        return param[1:-1]
    return param


def format_number(value: float) -> str:
    """The Keithley/Keysight ASCII number format, e.g. +1.000000E-01."""
    return f"{value:+.6E}"


def _integer(value: float) -> str:
    return str(int(value))


def format_bool(value: bool) -> str:
    """A boolean setting as queries reply it: 1 or 0."""
    return str(int(value))


class ErrorQueue:
    """First in, first out; when full, the last entry becomes -350 Queue overflow."""

    def __init__(self, capacity: int = 32):
        self.capacity = capacity
        self._entries: deque[tuple[int, str, float]] = deque()

    def push(self, code: int, message: str, t: float = 0.0) -> None:
        if len(self._entries) >= self.capacity:
            self._entries[-1] = (-350, ERRORS[-350], t)
        else:
            self._entries.append((code, message, t))

    def pop(self) -> tuple[int, str, float] | None:
        return self._entries.popleft() if self._entries else None

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


@dataclass
class _Entry:
    regex: re.Pattern
    query: bool
    handler: Handler
    nargs: tuple[int, int]
    suffix_max: int


class ScpiTwin:
    """Base of the virtual SCPI instruments: bytes in, reply bytes out.

    Subclasses register their headers, override :meth:`reset` (the *RST state) and, for their own
    error text, :meth:`format_error` and :meth:`now`.
    """

    def __init__(self, idn: str, error_capacity: int = 32):
        self.idn = idn
        self.errors = ErrorQueue(error_capacity)
        self.event_status = self.event_enable = self.service_enable = 0
        self._entries: list[_Entry] = []
        self._lookup_cache: dict[str, tuple[_Entry, tuple[int, ...]]] = {}
        self._rx = bytearray()
        self.register("*IDN?", lambda call: self.idn)
        self.register("*RST", lambda call: self.reset())
        self.register("*CLS", lambda call: self.clear_status())
        self.register("*OPC", lambda call: self._set_event(OPERATION_COMPLETE))  # at once: nothing pends
        self.register("*ESR?", lambda call: str(self._read_event_status()))
        self.register_number("*ESE", "event_enable", 0, 255, fmt=_integer, integer=True)
        self.register_number("*SRE", "service_enable", 0, 255, fmt=_integer, integer=True)
        self.register("*STB?", lambda call: str(self.status_byte()))
        self.register("*OPC?", lambda call: "1")  # commands finish before the next is parsed
        self.register("*WAI", lambda call: None)
        self.register(":STATus:PRESet", lambda call: None)
        self.register(":SYSTem:ERRor[:NEXT]?", lambda call: self._next_error())
        self.register(":SYSTem:ERRor:COUNt?", lambda call: str(len(self.errors)))

    def register(self, pattern: str, handler: Handler, nargs: int | tuple[int, int] = 0,
                 suffix_max: int = 1) -> None:
        """Route `pattern` to `handler(call)`; a query handler returns the reply text.

        `nargs` is the number of parameters, or (fewest, most); `suffix_max` the largest
        numeric suffix accepted (e.g. 2 for a two-channel instrument).
        """
        counts = (nargs, nargs) if isinstance(nargs, int) else nargs
        self._entries.append(_Entry(compile_header(pattern), pattern.endswith("?"), handler, counts,
                                    suffix_max))
        self._lookup_cache.clear()

    def register_setting(self, pattern: str, attribute: str, parse: Callable[[str], T],
                         fmt: Callable[[T], str] = str, owner: Callable[[Call], object] | None = None,
                         suffix_max: int = 1) -> None:
        """A command that sets `<attribute>` of this twin (or of the object `owner(call)` returns:
        a channel's or a function's settings) from one parameter, and its query."""
        target = owner or (lambda call: self)
        self.register(pattern, lambda call: setattr(target(call), attribute, parse(call.params[0])),
                      nargs=1, suffix_max=suffix_max)
        self.register(pattern + "?", lambda call: fmt(getattr(target(call), attribute)),
                      suffix_max=suffix_max)

    def register_number(self, pattern: str, attribute: str, low: float, high: float,
                        default: float | None = None, fmt: Callable[[float], str] = format_number,
                        integer: bool = False, owner: Callable[[Call], object] | None = None,
                        after: Callable[[Any], None] | None = None, suffix_max: int = 1) -> None:
        """A numeric setting within [low, high], stored as register_setting does: the command takes
        a number or MINimum / MAXimum (/ DEFault: `default`), the query optionally the same words;
        `after(target)` runs after each set (a coupled setting)."""
        def put(target: Any, value: float) -> None:
            setattr(target, attribute, value)
            if after:
                after(target)
        self.register_bounded(pattern, owner or (lambda call: self), put,
                              lambda target: getattr(target, attribute), lambda target: (low, high),
                              default, fmt, integer, suffix_max)

    def register_bounded(self, pattern: str, owner: Callable[[Call], S], put: Callable[[S, float], None],
                         get: Callable[[S], float], bounds: Callable[[S], tuple[float, float]],
                         default: float | None = None, fmt: Callable[[float], str] = format_number,
                         integer: bool = False, suffix_max: int = 1) -> None:
        """A number whose range `bounds(owner(call))` may depend on other settings: the command
        parses `{<value>|MINimum|MAXimum[|DEFault]}` within it and calls put(target, value) (which
        checks any coupling), the query answers fmt(get(target)) or the bound it names."""
        def command(call: Call) -> None:
            target = owner(call)
            put(target, to_number(call.params[0], *bounds(target), integer, default))

        def query(call: Call) -> str:
            target = owner(call)
            return fmt(query_number(call.params, get(target), *bounds(target), default))
        self.register(pattern, command, nargs=1, suffix_max=suffix_max)
        self.register(pattern + "?", query, nargs=(0, 1), suffix_max=suffix_max)

    def handle(self, data: bytes) -> bytes:
        """Feed received bytes; return the replies to every line they completed."""
        self._rx += data
        out = []
        while (end := self._rx.find(b"\n")) >= 0:
            line = self._rx[:end].decode("latin-1").rstrip("\r")
            del self._rx[: end + 1]
            replies = self._execute(line)
            if replies:
                out.append(";".join(replies) + "\n")
        if len(self._rx) > MAX_INPUT:  # no terminator in sight: drop it, as a full input buffer does
            self._rx.clear()
            self.push_error(-363)
        return "".join(out).encode("latin-1")

    def device_clear(self) -> None:
        """Drop a partly received line (a client disconnected, or a VISA clear)."""
        self._rx.clear()

    def reset(self) -> None:
        """Return to the *RST state; subclasses define it."""

    def push_error(self, code: int, message: str | None = None) -> None:
        self.errors.push(code, message or ERRORS.get(code, ERRORS[-100]), self.now())
        self._set_event(EVENT_BITS.get(-(-code // 100), 0))  # -113 -> class -1

    # IEEE 488.2 status: the standard event status register (*ESR?, masked by *ESE) and the
    # status byte (*STB?: bit 2 an error in the queue, bit 5 an enabled event, bit 6 a summary of
    # the bits *SRE enables). Cleared by *CLS; the enable masks stay.

    def clear_status(self) -> None:
        self.errors.clear()
        self.event_status = 0

    def status_byte(self) -> int:
        stb = (ERROR_AVAILABLE if len(self.errors) else 0) | \
            (EVENT_SUMMARY if self.event_status & self.event_enable else 0)
        return stb | (SERVICE_REQUEST if stb & self.service_enable else 0)

    def _set_event(self, bit: int) -> None:
        self.event_status |= bit

    def _read_event_status(self) -> int:
        value, self.event_status = self.event_status, 0
        return value

    def now(self) -> float:
        """Instrument time stamped on errors (s)."""
        return 0.0

    def format_error(self, code: int, message: str, t: float) -> str:
        """The :SYST:ERR? reply for an entry queued at instrument time `t`; code 0: queue empty."""
        return f'{code},"{message}"'

    def _next_error(self) -> str:
        entry = self.errors.pop()
        return self.format_error(*(entry or (0, "No error", self.now())))

    def _execute(self, line: str) -> list[str]:
        try:
            pieces = split_quoted(line, ";")
        except ScpiError as exc:
            self.push_error(exc.code, exc.message)
            return []
        replies = []
        for piece in pieces:
            if not piece:
                continue
            try:
                reply = self._dispatch(piece)
            except ScpiError as exc:
                self.push_error(exc.code, exc.message)
                continue
            if reply is not None:
                replies.append(reply)
        return replies

    def _dispatch(self, piece: str) -> str | None:
        match = _HEADER.match(piece)
        if match is None:  # unreachable: _execute passes stripped, non-empty pieces
            raise ScpiError(-113)
        header, rest = match.groups()
        found = self._lookup(header)
        if found is None:
            raise ScpiError(-113)
        entry, suffixes = found
        if any(s < 1 or s > entry.suffix_max for s in suffixes):
            raise ScpiError(-114)
        params = split_quoted(rest, ",") if rest else []
        if any(p == "" for p in params) or len(params) < entry.nargs[0]:
            raise ScpiError(-109)
        if len(params) > entry.nargs[1]:
            raise ScpiError(-108)
        reply = entry.handler(Call(params, suffixes))
        return reply if entry.query else None

    def _lookup(self, header: str) -> tuple[_Entry, tuple[int, ...]] | None:
        key = ":" + header.upper().removeprefix(":")
        if key in self._lookup_cache:
            return self._lookup_cache[key]
        query = key.endswith("?")
        for entry in self._entries:
            match = entry.regex.fullmatch(key) if entry.query == query else None
            if match:
                if len(self._lookup_cache) >= 4096:  # bound it against endless suffix variants
                    self._lookup_cache.clear()
                found = self._lookup_cache[key] = (entry, tuple(to_index(s) if s else 1 for s in match.groups()))
                return found
        return None
