"""Property-based fuzzing of every parser of labctl: what tests/faults/test_fuzz_*.py check with a
few examples per `make test`, and bench/fuzz.py with >= 10 000 inputs per parser.

Each parser has a *target* here: a hypothesis strategy of inputs and a `check(input)` that feeds one
input and checks the properties, returning how it ended ("accepted", "error": a clean,
documented error, "busy": see below) or raising `Violation` (a property broken: the parser
crashed, the twin stopped answering, an output turned on, an error named no field, ...) or `Hang`
(the per-input wall bound passed).

The properties:

- twins (SCPI: 2450, B2900, 81160A, 33500B; TSP: 2600B): `handle()` never raises; every command
  (SCPI: every `;` piece of a line; TSP: every line) is either executed or leaves the
  instrument's own error in its error queue; the queue then drains in the instrument's format
  (`:SYST:ERR?` / `errorqueue.next()`) down to "no error", and `*IDN?` still answers exactly the
  identity; no output is on unless the input held a valid output-on command (checked on the twin's
  state attributes, against an oracle of our own, not the twin's parser); replies end in a newline
  and the twin's virtual time stays finite;
- labctl parsers (station and chip-map TOML, device TOML, `--set` values, chip-state files):
  either a result that is valid (types, finite numbers, limits) or the documented error type
  whose message names the file and the field that was changed;
- none takes longer than WALL_BOUND_S (a SIGALRM raises `Hang` in the parser).

"busy": a valid command may start a measurement or burst of any length (a 2450 sweep of 10^6
points, 2^31 - 1 pulses): the real instrument then works for hours too. The fuzzing loads count
their calls and stop such work after BUSY_LOAD_CALLS per input (raising `Busy` through the twin);
a hang is the wall bound passing *without* the load being driven: the parser or the evaluator
spinning.
"""
from __future__ import annotations

import json
import math
import os
import re
import signal
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from labctl.sim import scpi
from labctl.sim.keithley2450 import VirtualKeithley2450
from labctl.sim.keithley2600b import VirtualKeithley2600B
from labctl.sim.keysight33500b import VirtualKeysight33500B
from labctl.sim.keysight81160a import VirtualKeysight81160A
from labctl.sim.keysight_b2900 import VirtualKeysightB2900
from labctl.sim.lab import SimLab
from labctl.sim.physics import DEFAULT_DEVICE_FILE, ArrayPhysics, DeviceParams

from labctl.params import Parameter, ParameterError, parse_cli_value, parse_settings, resolve
from labctl.registry import PROTOCOLS
from labctl.station import DRIVERS, StationConfig, StationError, load_station, parse_station

WALL_BOUND_S = 3.0  # per input; the slowest valid input of the fuzz takes ~0.1 s
BUSY_LOAD_CALLS = 20_000  # load calls one input may make before the fuzzing loads stop it
REPO = Path(__file__).resolve().parents[2]

# `make test`: a few deterministic examples per parser (the whole fuzz set in a few seconds);
# LABCTL_FUZZ_EXAMPLES=N runs N per test (random unless derandomized) for a deeper local look.
_EXAMPLES = int(os.environ.get("LABCTL_FUZZ_EXAMPLES", "0"))
settings.register_profile(
    "labctl-fuzz-ci", max_examples=120, derandomize=True, database=None, deadline=1000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True)
settings.register_profile(
    "labctl-fuzz-deep", max_examples=max(_EXAMPLES, 1), derandomize=False, database=None, deadline=2000,
    suppress_health_check=list(HealthCheck), print_blob=True)
FUZZ = settings(settings.get_profile("labctl-fuzz-deep" if _EXAMPLES else "labctl-fuzz-ci"))


class Violation(AssertionError):
    """A property broken by one input."""


class Hang(Exception):
    """The per-input wall bound passed."""


class Busy(Exception):
    """A fuzzing load was driven more than BUSY_LOAD_CALLS times by one input (valid long work)."""


@contextmanager
def wall_bound(seconds: float = WALL_BOUND_S) -> Iterator[None]:
    """Raise Hang in the code under test once `seconds` of wall time pass (main thread only; elsewhere
    a no-op: hypothesis' deadline still reports the slow input afterwards)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise Hang(f"still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def crash(what: str, exc: BaseException) -> Violation:
    return Violation(f"{what}: uncaught {type(exc).__name__}: {str(exc)[:300]}")


# -- loads the twins drive ------------------------------------------------------------------------

class _Budget:
    calls = 0

    def spend(self) -> None:
        self.calls += 1
        if self.calls > BUSY_LOAD_CALLS:
            raise Busy(f"{self.calls} load calls")


class OhmicLoad(_Budget):
    """A 10 kOhm SmuLoad."""

    def apply(self, v: float | None, duration: float) -> float:
        self.spend()
        return 0.0 if v is None else v / 1e4

    def current(self, v: float) -> float:
        self.spend()
        return v / 1e4


class PulseSink(_Budget):
    """A PulseLoad that only counts."""

    def hold(self, channel: int, v: float | None, duration: float) -> None:
        self.spend()


# -- text helpers -----------------------------------------------------------------------------------

LATIN1 = st.characters(codec="latin-1")
SPECIAL = list(";,:?*#\"'()@[]{}=. \t\r\x00\x0b\xa0\xff-+eE01925") + ["\n"]
SPECIAL_CHARS = st.sampled_from(SPECIAL)


@st.composite
def mutated(draw, text: str, alphabet=None) -> str:
    """`text` with 1..4 character-level mutations (delete, insert, replace, duplicate a slice,
    truncate, swap case)."""
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "insert", "replace", "duplicate", "truncate", "case", "digits"]))
        i = draw(st.integers(0, len(text)))
        char = draw(alphabet if alphabet is not None else st.one_of(SPECIAL_CHARS, LATIN1))
        if op == "delete":
            text = text[:i] + text[i + 1:]
        elif op == "insert":
            text = text[:i] + char + text[i:]
        elif op == "replace":
            text = text[:i] + char + text[i + 1:]
        elif op == "duplicate":
            j = draw(st.integers(i, min(len(text), i + 40)))
            text = text[:j] + text[i:j] * draw(st.integers(1, 5)) + text[j:]
        elif op == "truncate":
            text = text[:i]
        elif op == "case":
            text = "".join(c.swapcase() if c.isascii() else c for c in text)
        else:  # a run of digits: long suffixes and numbers
            text = text[:i] + "9" * draw(st.sampled_from([1, 12, 400, 5000])) + text[i:]
    return text


def long_repeat(unit: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(unit, st.integers(500, 60_000)).map(lambda t: (t[0] or "A") * (t[1] // max(len(t[0]), 1)))


# -- SCPI twins -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Registered:
    pattern: str
    nargs: tuple[int, int]
    suffix_max: int


SCPI_TWINS: dict[str, Callable[[], scpi.ScpiTwin]] = {
    "keithley2450": lambda: VirtualKeithley2450(OhmicLoad()),
    "keysight_b2900": lambda: VirtualKeysightB2900(OhmicLoad(), model="B2902A"),
    "keysight81160a": lambda: VirtualKeysight81160A(PulseSink()),
    "keysight33500b": lambda: VirtualKeysight33500B(PulseSink(), model="33522B"),
}


def registered_commands(name: str) -> list[Registered]:
    """The twin's command tree as registered (the manual-style patterns), read by spying on
    ScpiTwin.register while one is built."""
    found: list[Registered] = []
    real = scpi.ScpiTwin.register

    def spy(self, pattern, handler, nargs=0, suffix_max=1):
        counts = (nargs, nargs) if isinstance(nargs, int) else tuple(nargs)
        found.append(Registered(pattern, counts, suffix_max))
        return real(self, pattern, handler, nargs, suffix_max)

    with mock.patch.object(scpi.ScpiTwin, "register", spy):
        SCPI_TWINS[name]()
    return found


def _pattern_tree(body: str) -> list:
    """A header pattern as nested lists: keywords (str) and optional groups (list)."""
    stack: list[list] = [[]]
    for token in scpi._TOKEN.findall(body):
        if token == "[":
            stack.append([])
        elif token == "]":
            group = stack.pop()
            stack[-1].append(group)
        else:
            stack[-1].append(token)
    return stack[0]


@st.composite
def header_for(draw, command: Registered) -> str:
    """A header the pattern matches (long or short forms, any case, optional parts in or out,
    suffixes in range), sometimes with a suffix out of range."""
    query = command.pattern.endswith("?")
    body = command.pattern[:-1] if query else command.pattern

    def render(tree: list) -> str:
        out = []
        for item in tree:
            if isinstance(item, list):
                if draw(st.booleans()):
                    out.append(render(item))
                continue
            colon = ":" if item.startswith(":") else ""
            name = item.lstrip(":")
            suffix = name.endswith("#")
            name = name.rstrip("#")
            word = draw(st.sampled_from([name.upper(), scpi.short_form(name)]))
            word = draw(st.sampled_from([word, word.lower(), word.capitalize()]))
            if suffix:
                word += draw(st.one_of(
                    st.just(""), st.integers(1, command.suffix_max).map(str),
                    st.sampled_from(["0", str(command.suffix_max + 1), "01", "99999999999999999999", "9" * 5000])))
            out.append(colon + word)
        return "".join(out)

    text = render(_pattern_tree(body))
    if text.startswith(":") and draw(st.booleans()):
        text = text[1:]
    return text + ("?" if query else "")


NUMBER_WORDS = ["MIN", "MAX", "MINimum", "max", "DEF", "INF", "INFinity", "-INF", "NAN", "9.9E37", "9.91E37",
                "1e308", "1E400", "-1E400", "1e-308", "4.9e-324", "-0", "+.5", "5.", ".", "1e", "0x10", "1_000",
                "2147483647", "2147483648", "268435455", "1000000", "100000000", "-1", "0", "1", "1.5"]
ON_OFF = ["ON", "OFF", "on", "1", "0", "TRUE", "2", "+1", "1.0"]


def scpi_vocabulary(commands: list[Registered]) -> list[str]:
    words = set()
    for c in commands:
        for token in scpi._TOKEN.findall(c.pattern):
            name = token.lstrip(":*").rstrip("#")
            if name not in ("[", "]"):
                words.update((name.upper(), scpi.short_form(name)))
    return sorted(words | {"ON", "OFF", "AUTO", "BEST", "FIXed", "LIST", "SWEep", "BUS", "TIM", "AINT", "MAN",
                           "IMM", "EXT", "PULS", "DC", "SIN", "NORM", "INV", "TRIG", "GAT", "ASCii", "REAL",
                           "READing", "SOURce", "RELative", "CURR", "VOLT"})


def scpi_argument(vocabulary: list[str]) -> st.SearchStrategy[str]:
    numbers = st.one_of(
        st.integers(-(2 ** 40), 2 ** 40).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(lambda x: f"{x:.6E}" if math.isfinite(x) else str(x)),
        st.floats(-1e3, 1e3).map(repr),
        st.sampled_from(NUMBER_WORDS))
    quoted = st.one_of(st.sampled_from(['"defbuffer1"', '"defbuffer2"', '"CURR"', '"VOLT:DC"', '""', "'x'",
                                        '"unterminated', "'"]),
                       st.text(LATIN1, max_size=12).map(lambda s: '"' + s.replace('"', "") + '"'))
    channel_lists = st.sampled_from(["(@1)", "(@2)", "(@1,2)", "(@1:2)", "(@2:1)", "(@0)", "(@3)", "(@1", "(@)",
                                     "(@99999999999999999999)", "(@1,2,3)"])
    return st.one_of(numbers, st.sampled_from(ON_OFF), st.sampled_from(vocabulary), quoted, channel_lists,
                     st.text(LATIN1, max_size=10))


@st.composite
def scpi_command(draw, commands: list[Registered], vocabulary: list[str]) -> str:
    """A registered command with a plausible number of arguments (sometimes one too few or many)."""
    command = draw(st.sampled_from(commands))
    header = draw(header_for(command))
    lo, hi = command.nargs
    n = draw(st.integers(max(0, lo - 1), min(hi + 1, lo + 4)))
    args = draw(st.lists(scpi_argument(vocabulary), min_size=n, max_size=n))
    if n and draw(st.integers(0, 20)) == 0 and hi > 50:  # a long list within or past the limit
        args = args[:1] * draw(st.sampled_from([hi, hi + 1, 3 * hi]))
    return header + (draw(st.sampled_from([" ", "  ", "\t"])) + ",".join(args) if args else "")


@st.composite
def scpi_line(draw, commands: list[Registered], vocabulary: list[str]) -> bytes:
    pieces = []
    for _ in range(draw(st.integers(1, 3))):
        text = draw(scpi_command(commands, vocabulary))
        if draw(st.integers(0, 2)) == 0:
            text = draw(mutated(text))
        pieces.append(text)
    text = ";".join(pieces)
    end = draw(st.sampled_from(["\n", "\n", "\n", "\r\n", "", "\n\n"]))
    return (text + end).encode("latin-1")


BOUNDARY_NUMBERS = ["0", "-1", "1", "2", "1e400", "-1e400", "1e-400", "2147483647", "2147483648", "268435455",
                    "1000000", "100000000", "100000", "1e5", "1e300", "9" * 400, "MAX", "MIN", "nan", "-0"]
_NUMBER = re.compile(r"(?<![\w.])[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![\w.])")
DOC_OF_TWIN = {"keithley2450": "keithley2450", "keysight_b2900": "keysight_b2900", "keysight81160a": "keysight81160a",
               "keysight33500b": "keysight33500b", "keithley2600b": "keithley2600b"}


def documented_commands(name: str) -> list[str]:
    """The commands docs/instruments/<twin>.md shows the driver sending, placeholders filled with 1."""
    text = (REPO / "docs" / "instruments" / f"{DOC_OF_TWIN[name]}.md").read_text()
    spans = re.findall(r"`([^`\n]+)`", text)
    if name == "keithley2600b":
        keep = [s for s in spans if re.match(r"(smu[ab]|errorqueue|print|format|reset|waitcomplete)\b", s)]
    else:
        keep = [s for s in spans if re.match(r"[:*]|[A-Z]{3,}[a-z]?[:\s?]", s)]
    out = []
    for span in keep:
        span = re.sub(r"<[^>]*>", "1", span).replace("...", "1").replace("OUTPn", "OUTP1").replace("SOURn", "SOUR1")
        span = re.sub(r"\b(\w+)\|\w+\b", r"\1", span)
        out.append(span)
    return sorted(set(out))


@st.composite
def with_boundary_numbers(draw, text: str) -> str:
    """`text` with each of its numbers replaced, at even odds, by a boundary value."""
    return _NUMBER.sub(lambda m: draw(st.sampled_from(BOUNDARY_NUMBERS)) if draw(st.booleans()) else m.group(), text)


def corpus_session(corpus: list[str], joiner: str) -> st.SearchStrategy[list[bytes]]:
    """Sessions of documented commands in any order, numbers pushed to boundaries, some mutated."""
    line = st.sampled_from(corpus).flatmap(with_boundary_numbers).flatmap(
        lambda text: st.one_of(st.just(text), st.just(text), mutated(text)))
    return st.one_of(
        st.lists(line, min_size=1, max_size=8).map(lambda lines: [(t + "\n").encode("latin-1") for t in lines]),
        st.lists(line, min_size=2, max_size=8).map(lambda lines: [(joiner.join(lines) + "\n").encode("latin-1")]))


def scpi_inputs(name: str) -> st.SearchStrategy[list[bytes]]:
    """Sessions of byte chunks for one twin: mutated valid commands from its command tree with random
    arguments, the documented commands with boundary numbers, random bytes, long lines, binary junk,
    unterminated input."""
    commands = registered_commands(name)
    vocabulary = scpi_vocabulary(commands)
    line = scpi_line(commands, vocabulary)
    long_line = st.one_of(
        long_repeat(st.sampled_from(["A", ";", ",", ":", "*", '"', "9", " ", "OUTP ON;", ":SOUR:VOLT 1;"])),
        st.tuples(scpi_command(commands, vocabulary), st.integers(1000, 50_000)).map(
            lambda t: t[0] + " " + ",".join(["1"] * t[1]))).map(lambda s: (s + "\n").encode("latin-1"))
    return st.one_of(
        st.lists(line, min_size=1, max_size=5),
        corpus_session(documented_commands(name), ";"),
        st.lists(st.binary(max_size=300), min_size=1, max_size=3),
        st.lists(st.one_of(line, long_line), min_size=1, max_size=2))


# An oracle of our own for "a valid output-on command": :OUTPut[n][:STATe] ON|1 (and :INITiate on the
# SMUs, whose sweep / trigger model turns the output on). Not the twin's matcher.
_OUTPUT_ON = re.compile(r":?OUTP(?:UT)?\d*(?::STAT(?:E)?)?\s+(?:ON|1)", re.IGNORECASE)
_INITIATE = re.compile(r":?INIT(?:IATE)?(?::IMM(?:EDIATE)?)?(?::ALL)?(?:\s.*)?", re.IGNORECASE | re.DOTALL)
_ERROR_REPLY = re.compile(r'([+-]?\d+),"[^"\n]*"')


def _complete_lines(buffered: bytes, chunk: bytes) -> list[str]:
    data = buffered + chunk
    return [line.decode("latin-1").rstrip("\r") for line in data.split(b"\n")[:-1]]


def _pieces(line: str) -> int | None:
    """Non-empty commands of a line; None when its quotes are unbalanced (one error for the line)."""
    try:
        return sum(1 for p in scpi.split_quoted(line, ";") if p)
    except scpi.ScpiError:
        return None


class ScpiTarget:
    """One SCPI twin under fuzz, rebuilt for every input."""

    def __init__(self, name: str):
        self.name = name
        self.starts_output = _OUTPUT_ON.pattern + ("|" + _INITIATE.pattern if name in (
            "keithley2450", "keysight_b2900") else "")
        self._on = re.compile(self.starts_output, re.IGNORECASE | re.DOTALL)

    def strategy(self) -> st.SearchStrategy[list[bytes]]:
        return scpi_inputs(self.name)

    def _outputs(self, twin) -> dict[str, bool]:
        if isinstance(twin, VirtualKeysightB2900):
            return {f"channel {n}": c.output_on for n, c in twin.channels.items()}
        if isinstance(twin, VirtualKeysight81160A):
            return {f"channel {n}": on for n, on in twin.outputs.items()}
        if isinstance(twin, VirtualKeysight33500B):
            return {f"channel {n}": c.output for n, c in twin.channels.items()}
        return {"output": twin.output_on}

    def check(self, chunks: list[bytes]) -> str:
        twin = SCPI_TWINS[self.name]()
        counts = {"executed": 0, "pushed": 0}
        codes: list[int] = []

        def counted(handler):
            def run(call):
                reply = handler(call)
                counts["executed"] += 1
                return reply
            return run

        for entry in twin._entries:
            entry.handler = counted(entry.handler)
        real_push = twin.push_error

        def push(code, message=None):
            counts["pushed"] += 1
            codes.append(code)
            real_push(code, message)

        twin.push_error = push  # type: ignore[method-assign]
        output_allowed = False
        for chunk in chunks:
            lines = _complete_lines(bytes(twin._rx), chunk)
            before = dict(counts)
            twin.load.calls = 0
            try:
                with wall_bound():
                    reply = twin.handle(chunk)
            except Busy:
                return "busy"
            except Hang:
                raise
            except Exception as exc:
                raise crash(f"{self.name}.handle({chunk[:120]!r})", exc) from exc
            if not isinstance(reply, bytes) or (reply and not reply.endswith(b"\n")):
                raise Violation(f"{self.name}: reply {reply[:120]!r} is not newline-terminated")
            expected = 0
            for line in lines:
                n = _pieces(line)
                expected += 1 if n is None else n
            done = counts["executed"] - before["executed"] + counts["pushed"] - before["pushed"]
            if done < expected:
                raise Violation(f"{self.name}: {expected} commands in {chunk[:120]!r}, only {done} executed or "
                                "reported in the error queue")
            output_allowed = output_allowed or any(self._on.fullmatch(piece.strip()) for line in lines
                                                   for piece in line.split(";"))
            if not output_allowed:
                on = [k for k, v in self._outputs(twin).items() if v]
                if on:
                    raise Violation(f"{self.name}: {', '.join(on)} on after {chunk[:200]!r}, which holds no valid "
                                    "output-on command")
        if not math.isfinite(getattr(twin, "elapsed", 0.0)):
            raise Violation(f"{self.name}: virtual time {twin.elapsed} after {chunks!r:.300}")
        self._still_answers(twin)
        bad = [c for c in codes if not -499 <= c <= -100]
        if bad:
            raise Violation(f"{self.name}: queued error codes {bad} are not SCPI error numbers")
        return "error" if counts["pushed"] else "accepted"

    def _still_answers(self, twin) -> None:
        twin.device_clear()
        twin.load.calls = 0
        try:
            with wall_bound():
                idn = twin.handle(b"*IDN?\n")
                if idn != (twin.idn + "\n").encode("latin-1"):
                    raise Violation(f"{self.name}: *IDN? answered {idn[:200]!r} after the input")
                for _ in range(twin.errors.capacity + 2):
                    reply = twin.handle(b":SYST:ERR?\n").decode("latin-1")
                    match = _ERROR_REPLY.fullmatch(reply.rstrip("\n"))
                    if not match or not reply.endswith("\n") or reply.count("\n") != 1:
                        raise Violation(f"{self.name}: :SYST:ERR? answered {reply!r}")
                    if int(match.group(1)) == 0:
                        break
                else:
                    raise Violation(f"{self.name}: the error queue does not drain")
                count = twin.handle(b":SYST:ERR:COUN?\n")
        except (Violation, Hang):
            raise
        except Exception as exc:
            raise crash(f"{self.name}: a query after the input", exc) from exc
        if count != b"0\n":
            raise Violation(f"{self.name}: :SYST:ERR:COUN? answered {count!r} after draining the queue")


# -- the TSP twin -----------------------------------------------------------------------------------

TSP_CORPUS = [
    "smua.source.func = smua.OUTPUT_DCVOLTS", "smua.source.autorangev = smua.AUTORANGE_ON",
    "smua.measure.autorangei = smua.AUTORANGE_ON", "smua.source.limiti = 1e-3", "smua.measure.nplc = 1",
    "smua.source.delay = 0", "smua.measure.delay = smua.DELAY_OFF", "smua.source.levelv = 0.5",
    "print(smua.source.levelv)", "print(smua.measure.i())", "smua.measure.i(smua.nvbuffer1)",
    "smua.nvbuffer1.clear()", "smua.nvbuffer1.appendmode = 1", "smua.nvbuffer1.collectsourcevalues = 1",
    "smua.trigger.source.linearv(0, 1, 11)", "smua.trigger.source.listv({0, 0.1, 0.2})",
    "smua.trigger.source.action = smua.ENABLE", "smua.trigger.measure.i(smua.nvbuffer1)",
    "smua.trigger.measure.action = smua.ENABLE", "smua.trigger.endsweep.action = smua.SOURCE_IDLE",
    "smua.trigger.count = 11", "smua.trigger.initiate()", "waitcomplete()",
    "printbuffer(1, smua.nvbuffer1.n, smua.nvbuffer1.sourcevalues, smua.nvbuffer1.readings)",
    "print(errorqueue.next())", "errorqueue.clear()", "print(errorqueue.count)", "format.asciiprecision = 7",
    "reset()", "smua.reset()", "smub.source.levelv = 1", "print(smub.measure.i())",
    "print(smua.source.compliance)", "print(smua.nvbuffer1[1])", "print(smua.nvbuffer1.n)",
    "labctl_v = {0.1, 0.2, 0.3}", "labctl_idle = smua.source.levelv for k = 1, 3 do smua.source.levelv = "
    "labctl_v[k] smua.measure.i(smua.nvbuffer1) if smua.source.compliance then break end end "
    "smua.source.levelv = labctl_idle",
    "if smua.source.output == 1 then print(1) else print(0) end", "x = -1 print(x, 'a', nil, true)",
    "*IDN?", "*RST", "*OPC?", "*WAI", "smua.source.output = smua.OUTPUT_OFF",
]
TSP_OUTPUT_ON = ["smua.source.output = smua.OUTPUT_ON", "smua.source.output = 1", "smub.source.output = 1"]
TSP_TOKENS = [
    "smua", "smub", "smuc", ".", "source", "measure", "trigger", "nvbuffer1", "nvbuffer2", "levelv", "limiti",
    "output", "nplc", "delay", "count", "initiate", "linearv", "listv", "i", "n", "readings", "sourcevalues",
    "print", "printbuffer", "errorqueue", "next", "format", "asciiprecision", "reset", "(", ")", "{", "}",
    "[", "]", ",", ";", "=", "==", "~=", "-", "not", "for", "k", "do", "end", "if", "then", "else", "break",
    "true", "false", "nil", "local", "function", "return", "while", "0", "1", "-1", "0.5", "1e400", "1e-400",
    "2147483647", "2147483648", "1e9", "1e300", "5000", "'s'", '"str"', "'", '"', "--", "..", "#", "%", "*IDN?",
    "OUTPUT_ON", "OUTPUT_OFF", "ENABLE", "DELAY_AUTO", "\x00", "\xff", "\t",
]


@st.composite
def tsp_line(draw) -> str:
    kind = draw(st.integers(0, 5))
    if kind <= 1:
        text = " ".join(draw(st.lists(st.sampled_from(TSP_CORPUS + TSP_OUTPUT_ON), min_size=1, max_size=3)))
        return draw(mutated(text)) if kind == 1 else text
    if kind == 2:  # token-level mutation of a corpus script
        tokens = re.findall(r"\w+|\S", draw(st.sampled_from(TSP_CORPUS)))
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(tokens)))
            op = draw(st.sampled_from(["insert", "replace", "delete"]))
            token = draw(st.sampled_from(TSP_TOKENS))
            if op == "insert":
                tokens.insert(i, token)
            elif op == "replace" and i < len(tokens):
                tokens[i] = token
            elif i < len(tokens):
                del tokens[i]
        return " ".join(tokens)
    if kind == 3:  # random Lua-ish text
        return " ".join(draw(st.lists(st.sampled_from(TSP_TOKENS), max_size=30)))
    if kind == 4:  # deep nesting and long lines
        unit = draw(st.sampled_from(["(", "{", "-", "not ", "print(", "x[", "smua.", "a.b", "1,", "for k=1,2 do "]))
        return unit * draw(st.integers(50, 20_000))
    return draw(st.text(LATIN1, max_size=80))


def tsp_inputs() -> st.SearchStrategy[list[bytes]]:
    terminated = tsp_line().map(lambda s: (s + "\n").encode("latin-1"))
    return st.one_of(
        st.lists(terminated, min_size=1, max_size=5),
        corpus_session(sorted(set(TSP_CORPUS + TSP_OUTPUT_ON + documented_commands("keithley2600b"))), " "),
        st.lists(st.one_of(terminated, tsp_line().map(lambda s: s.encode("latin-1")), st.binary(max_size=200)),
                 min_size=1, max_size=3))


# code, message (which may quote a token holding a tab, as Lua's does), severity, node
_TSP_ERROR = re.compile(r"(-?\d+(?:\.\d+)?(?:e[+-]\d+)?)\t[^\n]*\t[-+.e\d]+\t[-+.e\d]+")


class TspTarget:
    """The 2600B twin under fuzz (a two-channel 2636B), rebuilt for every input."""

    name = "keithley2600b"

    def strategy(self) -> st.SearchStrategy[list[bytes]]:
        return tsp_inputs()

    def check(self, chunks: list[bytes]) -> str:
        load = OhmicLoad()
        twin = VirtualKeithley2600B(load, model="2636B")
        counts = {"executed": 0, "pushed": 0}
        allowed = {"on": False}
        real_run, errors = twin.interpreter.run, twin.instrument.errors
        real_push = errors.push

        def run(text):
            real_run(text)
            counts["executed"] += 1

        def push(code, message, t=0.0):
            counts["pushed"] += 1
            real_push(code, message, t)

        twin.interpreter.run = run  # type: ignore[method-assign]
        errors.push = push  # type: ignore[method-assign]
        for channel in twin.instrument.channels.values():  # the oracle: a valid value set on `output`
            source = channel.object.get("source")
            attribute = source.members["output"]

            def set_output(value, real=attribute.set):
                if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1:
                    allowed["on"] = True
                real(value)

            source.members["output"] = attribute._replace(set=set_output)
        common = {"*IDN?", "*RST", "*OPC?", "*WAI"}
        for chunk in chunks:
            lines = [line.decode("latin-1").strip() for line in (bytes(twin._rx) + chunk).split(b"\n")[:-1]]
            before = dict(counts)
            load.calls = 0
            try:
                with wall_bound():
                    reply = twin.handle(chunk)
            except Busy:
                return "busy"
            except Hang:
                raise
            except Exception as exc:
                raise crash(f"2600B.handle({chunk[:120]!r})", exc) from exc
            if reply and not reply.endswith(b"\n"):
                raise Violation(f"2600B: reply {reply[:120]!r} is not newline-terminated")
            done = counts["executed"] - before["executed"] + counts["pushed"] - before["pushed"]
            done += sum(1 for line in lines if line.upper() in common)
            if done < len(lines):
                raise Violation(f"2600B: {len(lines)} chunks in {chunk[:120]!r}, only {done} run or reported")
            if not allowed["on"]:
                on = [name for name, c in twin.instrument.channels.items() if c.output]
                if on:
                    raise Violation(f"2600B: smu{on[0]} output on after {chunk[:200]!r}, which sets no valid "
                                    "output value")
        if not math.isfinite(twin.elapsed):
            raise Violation(f"2600B: virtual time {twin.elapsed} after {chunks!r:.300}")
        twin.device_clear()
        load.calls = 0
        try:
            with wall_bound():
                idn = twin.handle(b"*IDN?\n")
                if idn != (twin.idn + "\n").encode("latin-1"):
                    raise Violation(f"2600B: *IDN? answered {idn[:200]!r} after the input")
                for _ in range(twin.instrument.errors.capacity + 2):
                    reply = twin.handle(b"print(errorqueue.next())\n").decode("latin-1")
                    match = _TSP_ERROR.fullmatch(reply.rstrip("\n"))
                    if not match or reply.count("\n") != 1:
                        raise Violation(f"2600B: errorqueue.next() printed {reply!r}")
                    if float(match.group(1)) == 0:
                        break
                else:
                    raise Violation("2600B: the error queue does not drain")
                count = twin.handle(b"print(errorqueue.count)\n")
        except (Violation, Hang):
            raise
        except Exception as exc:
            raise crash("2600B: a query after the input", exc) from exc
        if float(count) != 0:
            raise Violation(f"2600B: errorqueue.count is {count!r} after draining the queue")
        return "error" if counts["pushed"] else "accepted"


# -- TOML documents ---------------------------------------------------------------------------------

def toml_value(value: Any) -> str:
    """One TOML value, inline (what tomllib reads back as `value`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")  # TOML forbids a raw DEL
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def toml_dumps(doc: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(key)} = {toml_value(value)}\n" for key, value in doc.items())


TOML_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
TOML_SCALARS = st.one_of(
    st.integers(-(2 ** 63), 2 ** 63 - 1), st.sampled_from([0, 1, -1, 2, 3, 4, 8, 10 ** 9, 10 ** 400, -(10 ** 400)]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1.5, 1e-300, 1e300]),
    TOML_TEXT, st.sampled_from(["", "sim://smu", "sim://nope", "keithley2450", "fpga_board", "4"]), st.booleans(),
    st.datetimes(timezones=st.just(UTC)), st.dates())
TOML_VALUES: st.SearchStrategy[Any] = st.deferred(lambda: st.one_of(
    TOML_SCALARS, st.lists(TOML_VALUES, max_size=4),
    st.dictionaries(st.sampled_from(["a", "rows", "name", "value", "x"]), TOML_VALUES, max_size=3)))


def key_paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a nested dict (lists are leaves)."""
    paths = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            paths.append(prefix + (key,))
            paths += key_paths(value, prefix + (key,))
    return paths


def _copy(doc: Any) -> Any:
    return {k: _copy(v) for k, v in doc.items()} if isinstance(doc, dict) else list(doc) if isinstance(doc, list) \
        else doc


@st.composite
def mutated_doc(draw, base: dict[str, Any], extra_keys: list[str]) -> tuple[dict[str, Any], list[tuple]]:
    """(`base` with 1..3 key-level mutations, the paths touched): a value replaced by any TOML value, a
    key deleted, an unknown key added, a list element changed."""
    doc, touched = _copy(base), []
    for _ in range(draw(st.integers(1, 3))):
        paths = key_paths(doc)
        op = draw(st.sampled_from(["replace", "replace", "delete", "add", "element"]))
        if not paths:
            op = "add"
        path = draw(st.sampled_from(paths)) if paths else ()
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if op == "replace":  # the keys the old value held are fields a message may name
            touched += [path + sub for sub in key_paths(parent[path[-1]])]
            parent[path[-1]] = draw(TOML_VALUES)
        elif op == "delete":  # the keys it held are fields a message may name
            touched += [path + sub for sub in key_paths(parent.pop(path[-1]))]
        elif op == "element" and isinstance(parent[path[-1]], list) and parent[path[-1]]:
            items = parent[path[-1]]
            items[draw(st.integers(0, len(items) - 1))] = draw(TOML_SCALARS)
        else:
            target = parent if not isinstance(parent.get(path[-1]) if path else None, dict) else parent[path[-1]]
            key = draw(st.sampled_from(extra_keys))
            target[key] = draw(TOML_VALUES)
            path = path[:-1] + (key,) if target is parent else path + (key,)
        touched.append(path)
    return doc, touched


def names_a_field(message: str, touched: list[tuple]) -> bool:
    """The message names the key a mutation touched, or one of its sections."""
    return any(str(name) in message for path in touched for name in path)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check_station_config(config: StationConfig) -> None:
    """What an accepted station must be: every field of the type and range the station code uses."""
    problems = []
    if not isinstance(config.name, str):
        problems.append(f"name {config.name!r}")
    for role, inst in config.instruments.items():
        if inst.driver not in DRIVERS or not isinstance(inst.resource, str) or not inst.resource:
            problems.append(f"instrument {role}: driver {inst.driver!r}, resource {inst.resource!r}")
        for key, value in inst.options.items():
            if key == "channel":
                ok = isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
            else:
                ok = _is_number(value) and math.isfinite(value) and value > 0
            if not ok:
                problems.append(f"instrument {role}: {key} = {value!r}")
    chip = config.chip
    if not isinstance(chip.name, str):
        problems.append(f"chip name {chip.name!r}")
    if not (type(chip.rows) is int and type(chip.cols) is int and chip.rows >= 1 and chip.cols >= 1):
        problems.append(f"chip {chip.rows!r} x {chip.cols!r}")
    for key in ("wl_channels", "bl_channels", "sl_channels"):
        if not all(type(c) is int and c >= 0 for c in getattr(chip, key)):
            problems.append(f"{key} {getattr(chip, key)!r}")
    for key, value in config.soa.as_dict().items():
        if not (_is_number(value) and math.isfinite(value) and value > 0):
            problems.append(f"safe_operating_area {key} = {value!r}")
    if not isinstance(config.device_file, str) or not isinstance(config.sim_control, str):
        problems.append(f"simulator device {config.device_file!r}, control {config.sim_control!r}")
    if problems:
        raise Violation(f"station {config.source}: accepted with bad values: {'; '.join(problems)}")


STATION_FILES = {"sim": resources.files("labctl").joinpath("stations/sim.toml").read_text(),
                 "bench-example": (REPO / "stations" / "bench-example.toml").read_text()}
STATION_DOCS = {name: tomllib.loads(text) for name, text in STATION_FILES.items()}
STATION_EXTRA_KEYS = ["rows", "driver", "timeout", "name", "unknown", "chanel", "max_v_b", "pulse", "scope",
                      "device", "control", "baudrate", "channel", "simulator"]


class StationDocTarget:
    """parse_station on mutated station documents (the [chip] map included)."""

    name = "station_doc"

    def strategy(self):
        return st.sampled_from(sorted(STATION_DOCS)).flatmap(
            lambda name: mutated_doc(STATION_DOCS[name], STATION_EXTRA_KEYS))

    def check(self, case: tuple[dict[str, Any], list[tuple]]) -> str:
        doc, touched = case
        where = "fuzzed.toml"
        try:
            with wall_bound():
                config = parse_station(doc, where)
        except StationError as exc:
            message = str(exc)
            if where not in message or not names_a_field(message, touched):
                raise Violation(f"StationError {message!r} names no field of {touched}") from exc
            return "error"
        except Hang:
            raise
        except Exception as exc:
            raise crash(f"parse_station (changed {touched})", exc) from exc
        check_station_config(config)
        return "accepted"


_WORKDIR = Path(tempfile.mkdtemp(prefix="labctl-fuzz-"))
_SERIAL = [0]


def scratch_file(data: bytes, suffix: str) -> Path:
    """A file of the fuzz's own temporary folder holding `data` (one name per input)."""
    _SERIAL[0] += 1
    path = _WORKDIR / f"input-{_SERIAL[0] % 64}{suffix}"
    path.write_bytes(data)
    return path


@st.composite
def mutated_text(draw, texts: dict[str, str]) -> bytes:
    text = texts[draw(st.sampled_from(sorted(texts)))]
    kind = draw(st.integers(0, 4))
    if kind == 0:  # line-level: delete, duplicate or swap lines
        lines = text.splitlines(keepends=True)
        for _ in range(draw(st.integers(1, 3))):
            i = draw(st.integers(0, len(lines) - 1))
            op = draw(st.sampled_from(["delete", "duplicate", "move"]))
            if op == "delete":
                del lines[i]
            elif op == "duplicate":
                lines.insert(i, lines[i])
            else:
                lines.insert(draw(st.integers(0, len(lines) - 1)), lines.pop(i))
            if not lines:
                break
        return "".join(lines).encode()
    if kind == 1:  # truncated
        data = text.encode()
        return data[:draw(st.integers(0, len(data)))]
    if kind == 2:  # random bytes and binary junk
        return draw(st.binary(max_size=400))
    if kind == 3:  # a long line
        return text.encode() + draw(long_repeat(st.sampled_from(["[", "a", "=", '"', "1", "{x=", "["]))).encode()
    return draw(mutated(text, st.one_of(SPECIAL_CHARS, st.sampled_from(list("[]={}\"'#.\n_")), LATIN1))).encode(
        "utf-8", "surrogateescape")


class StationFileTarget:
    """load_station on mutated, truncated and random station files."""

    name = "station_file"

    def strategy(self):
        return mutated_text(STATION_FILES)

    def check(self, data: bytes) -> str:
        path = scratch_file(data, ".toml")
        try:
            with wall_bound():
                config = load_station(str(path))
        except StationError as exc:
            if str(path) not in str(exc):
                raise Violation(f"StationError {str(exc)!r} does not name the file {path}") from exc
            return "error"
        except Hang:
            raise
        except Exception as exc:
            raise crash(f"load_station({data[:200]!r})", exc) from exc
        check_station_config(config)
        return "accepted"


DEVICE_TEXT = Path(DEFAULT_DEVICE_FILE).read_text()
DEVICE_DOC = tomllib.loads(DEVICE_TEXT)
DEVICE_EXTRA_KEYS = ["value", "unit", "source", "g_mim", "extra", "window", "v_th"]


class DeviceFileTarget:
    """DeviceParams.load on mutated device files: key-level (values, entries, sections) and text-level."""

    name = "device_file"

    def strategy(self):
        return st.one_of(
            mutated_doc(DEVICE_DOC, DEVICE_EXTRA_KEYS).map(lambda case: (toml_dumps(case[0]).encode(), case[1])),
            mutated_text({"device": DEVICE_TEXT}).map(lambda data: (data, None)))

    def check(self, case: tuple[bytes, list[tuple] | None]) -> str:
        data, touched = case
        path = scratch_file(data, ".toml")
        try:
            with wall_bound():
                params = DeviceParams.load(path)
        except ValueError as exc:  # documented: open_sim_lab turns it into a StationError
            message = str(exc)
            if str(path) not in message:
                raise Violation(f"{type(exc).__name__} {message[:300]!r} does not name the file") from exc
            if touched is not None and not names_a_field(message, touched):
                raise Violation(f"{type(exc).__name__} {message[:300]!r} names no field of {touched}") from exc
            return "error"
        except Hang:
            raise
        except Exception as exc:
            raise crash(f"DeviceParams.load (changed {touched or data[:200]!r})", exc) from exc
        bad = {f.name: getattr(params, f.name) for f in fields(params)
               if not (type(getattr(params, f.name)) is float and math.isfinite(getattr(params, f.name)))}
        if bad:
            raise Violation(f"DeviceParams accepted non-finite or non-float values {bad}")
        return "accepted"


# -- --set values -----------------------------------------------------------------------------------

JSONISH = st.one_of(
    st.sampled_from(["1", "-1", "0", "1.5", "1e400", "-1e400", "NaN", "Infinity", "-Infinity", "true", "false", "null",
                     "[]", "[1, 2]", "[1, \"a\"]", "[NaN]", "[1e400]", '"forming"', '"x"', "{}", '{"a": 1}', "1e-400",
                     "9" * 400, "9" * 5000, "[" * 50_000, "{\"a\":" * 20_000, "0x10", "1_0", "+1", ".5", "5.", "2e308"]),
    st.integers(-(10 ** 30), 10 ** 30).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(LATIN1, max_size=20), st.lists(st.floats(-1e3, 1e3), max_size=5).map(json.dumps))
KINDS = ["float", "int", "bool", "str", "floats"]


@st.composite
def declared_parameter(draw) -> Parameter:
    kind = draw(st.sampled_from(KINDS))
    bound = st.one_of(st.none(), st.floats(-1e6, 1e6))
    low, high = draw(bound), draw(bound)
    if low is not None and high is not None and low > high:
        low, high = high, low
    choices = draw(st.one_of(st.none(), st.just(("forming", "x", "1")))) if kind == "str" else None
    return Parameter(draw(st.sampled_from(["v_set", "cycles", "width", "name"])), kind, None, unit="V",
                     minimum=low, maximum=high, choices=choices)


def check_validated(parameter: Parameter, value: Any) -> None:
    """An accepted value has the parameter's kind, is finite and lies within its limits."""
    def number_ok(x: Any, integer: bool) -> bool:
        if not _is_number(x) or (integer and type(x) is not int) or (not integer and type(x) is not float):
            return False
        return (integer or math.isfinite(x)) and (parameter.minimum is None or x >= parameter.minimum) and (
            parameter.maximum is None or x <= parameter.maximum)

    kind = parameter.kind
    ok = {"float": lambda: number_ok(value, False), "int": lambda: number_ok(value, True),
          "bool": lambda: type(value) is bool, "str": lambda: isinstance(value, str) and (
              not parameter.choices or value in parameter.choices),
          "floats": lambda: isinstance(value, list) and bool(value) and all(number_ok(v, False) for v in value)}[kind]()
    if not ok:
        raise Violation(f"{parameter.name} ({kind}, {parameter.minimum}..{parameter.maximum}) accepted {value!r}")


class SettingsTarget:
    """`--set NAME=VALUE`: parse_settings, then Parameter.validate on declared parameters (random ones
    and every registered protocol's) through resolve()."""

    name = "set_values"

    def strategy(self):
        protocol = st.sampled_from(sorted(PROTOCOLS))
        return st.one_of(
            st.tuples(st.just("declared"), declared_parameter(), JSONISH),
            st.tuples(st.just("protocol"), protocol, st.lists(st.tuples(
                st.one_of(st.sampled_from(["v_set", "cycles", "width", "rows", "cols", "v_gate", "points", "x", ""]),
                          st.text(LATIN1, max_size=8)),
                st.sampled_from(["=", "", "=="]), JSONISH).map(lambda t: t[0] + t[1] + t[2]), max_size=3)))

    def check(self, case) -> str:
        try:
            with wall_bound():
                if case[0] == "declared":
                    _, parameter, text = case
                    value = parse_cli_value(text)
                    try:
                        checked = parameter.validate(value)
                    except ParameterError as exc:
                        if parameter.name not in str(exc):
                            raise Violation(f"ParameterError {str(exc)[:200]!r} does not name {parameter.name}") \
                                from exc
                        return "error"
                    check_validated(parameter, checked)
                    return "accepted"
                _, name, pairs = case
                protocol = PROTOCOLS[name]
                try:
                    values = parse_settings(pairs)
                    resolved = resolve(protocol.parameters, values, name)
                except ParameterError as exc:
                    message = str(exc)
                    names = [text for pair in pairs for text in (pair.partition("=")[0], repr(pair.partition("=")[0]), repr(pair))]
                    if not any(text in message for text in names if text):
                        raise Violation(f"ParameterError {message[:200]!r} names none of {pairs}") from exc
                    return "error"
                for parameter in protocol.parameters:
                    if parameter.name in values:
                        check_validated(parameter, resolved[parameter.name])
                return "accepted"
        except (Violation, Hang):
            raise
        except Exception as exc:
            raise crash(f"--set {case[1:]!r}", exc) from exc


# -- chip-state files -------------------------------------------------------------------------------

def _state_bytes(rows: int, cols: int, seed: int) -> bytes:
    chip = ArrayPhysics(rows, cols, seed=seed)
    chip.clock.advance(12.5)
    path = scratch_file(b"", ".npz")
    with open(path, "wb") as f:  # what SimLab.save writes
        np.savez(f, **chip.state())
    return path.read_bytes()


STATE_FILES = {(1, 1): _state_bytes(1, 1, 0), (2, 3): _state_bytes(2, 3, 7)}
STATE_DICTS = {shape: dict(np.load(scratch_file(data, ".npz"))) for shape, data in STATE_FILES.items()}
STATE_ARRAYS = st.one_of(
    st.tuples(st.sampled_from([(2, 3), (3, 2), (1, 1), (), (6,), (2, 3, 1), (0, 3)]),
              st.sampled_from(["float64", "float32", "int64", "bool", "U3", "complex128"]),
              st.sampled_from([0.0, 1.0, np.nan, np.inf, -np.inf, -1.0])).map(
        lambda t: np.full(t[0], t[2] if t[1] not in ("bool", "U3", "int64") else 1, dtype=t[1])),
    st.just(np.array("junk")), st.just(np.array(json.dumps({"rows": 2}))))


@st.composite
def mutated_state(draw) -> tuple[bytes, str | None]:
    """(an .npz file's bytes, the key a structural mutation touched): byte flips, truncation, random
    bytes; or arrays replaced, deleted, added, and the meta JSON changed."""
    shape = draw(st.sampled_from(sorted(STATE_FILES)))
    kind = draw(st.integers(0, 3))
    if kind == 0:
        data = bytearray(STATE_FILES[shape])
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        return bytes(data), None
    if kind == 1:
        data = STATE_FILES[shape]
        return data[:draw(st.integers(0, len(data) - 1))], None
    if kind == 2:
        return draw(st.one_of(st.binary(max_size=300), st.just(b"PK\x03\x04" + b"\x00" * 100))), None
    state = dict(STATE_DICTS[shape])
    key = draw(st.sampled_from(sorted(state) + ["extra"]))
    op = draw(st.sampled_from(["replace", "delete", "meta"]))
    if op == "meta" or key == "meta":
        key = "meta"
        meta = json.loads(str(state["meta"]))
        field = draw(st.sampled_from(["rows", "cols", "seed", "now", "rng", "rng.state", "all"]))
        junk = draw(st.one_of(TOML_SCALARS.filter(lambda v: not isinstance(v, (datetime, date))),
                              st.just({}), st.just([]), st.just(None), st.just({"bit_generator": "PCG64"})))
        if field == "all":
            text = draw(st.one_of(st.text(LATIN1, max_size=30), st.just("[]"), st.just("null")))
        else:
            if field == "rng.state":
                meta["rng"]["state"] = junk
            elif draw(st.booleans()):
                meta[field] = junk
            else:
                del meta[field]
            text = json.dumps(meta)
        state["meta"] = np.array(text)
    elif op == "delete" and key in state:
        del state[key]
    else:
        state[key] = draw(STATE_ARRAYS)
    path = scratch_file(b"", ".npz")
    with open(path, "wb") as f:
        np.savez(f, **state)
    return path.read_bytes(), key


class StateFileTarget:
    """SimLab.load_physics on random, truncated and mutated chip-state files."""

    name = "sim_state"

    def strategy(self):
        return mutated_state()

    def check(self, case: tuple[bytes, str | None]) -> str:
        data, key = case
        path = scratch_file(data, ".npz")
        try:
            with wall_bound():
                chip = SimLab.load_physics(path)
                message = None
        except ValueError as exc:
            message = str(exc)
        except Hang:
            raise
        except Exception as exc:
            raise crash(f"load_physics (changed {key or 'bytes'})", exc) from exc
        if message is not None:
            # a changed meta (rows, cols) may show as the first array whose shape no longer fits
            names = [key] + (list(ArrayPhysics.STATE_KEYS) if key == "meta" else [])
            if str(path) not in message or (key is not None and not any(n in message for n in names)):
                raise Violation(f"ValueError {message[:300]!r} names not the file and {key!r}")
            return "error"
        problems = []
        for name in ArrayPhysics.STATE_KEYS:
            value = getattr(chip, "_" + name)
            kind = "b" if name in ("formed", "stuck") else "f"
            if value.shape != chip.shape or value.dtype.kind != kind:
                problems.append(f"{name} {value.dtype}{value.shape}")
            elif kind == "f" and (np.isnan(value).any() or (name != "v_form" and np.isinf(value).any())):
                problems.append(f"{name} holds NaN or inf")
        if not (math.isfinite(chip.clock.now) and chip.rows >= 1 and chip.cols >= 1):
            problems.append(f"clock {chip.clock.now!r}, {chip.rows} x {chip.cols}")
        if problems:
            raise Violation(f"load_physics accepted a bad state ({key or 'bytes'} changed): {'; '.join(problems)}")
        try:
            with wall_bound():
                g = chip.conductance()
                chip.state()
        except Hang:
            raise
        except Exception as exc:
            raise crash(f"the chip loaded from a state with {key or 'bytes'} changed", exc) from exc
        if not np.isfinite(g).all():
            raise Violation(f"the chip loaded ({key or 'bytes'} changed) reads non-finite conductances")
        return "accepted"


# -- every target -----------------------------------------------------------------------------------

def targets() -> dict[str, Any]:
    found: dict[str, Any] = {f"scpi:{name}": ScpiTarget(name) for name in SCPI_TWINS}
    found["tsp:keithley2600b"] = TspTarget()
    for target in (StationDocTarget(), StationFileTarget(), DeviceFileTarget(), SettingsTarget(), StateFileTarget()):
        found[target.name] = target
    return found


def run_one(target: Any, case: Any) -> tuple[str, str | None]:
    """(outcome, detail) of one input: accepted / error / busy, crash (a Violation) or hang."""
    try:
        return target.check(case), None
    except Hang as exc:
        return "hang", str(exc)
    except Violation as exc:
        return "crash", str(exc)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    return fn(), time.perf_counter() - start
