"""The Lua subset of TSP: tokenizer, recursive-descent parser and evaluator, no instrument in it.

A chunk (one line sent to the instrument) is parsed whole first; a syntax error raises `TspError`
-285 and nothing runs. Then it runs statement by statement; a runtime error raises -286 (and so
may an instrument object, with its own code), which ends the chunk.

Understood: statements separated by whitespace or ``;``; assignments; calls; ``for k = a, b[, c]
do ... end``; ``if ... then ... [else ...] end``; ``break``; numbers, strings,
``true``/``false``/``nil``, table constructors (Python lists), unary minus, ``not``, fields,
indexing, a call's several results (a returned tuple). No arithmetic or string operators. The host
gives its objects as `Object`s (members, `Attribute`s) in the globals and its functions as Python
callables.
"""
from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any, NamedTuple


class TspError(Exception):
    """An error the instrument queues; it ends the chunk being run."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def _syntax(message: str) -> TspError:
    return TspError(-285, f"TSP Syntax error at line 1: {message}")


def runtime_error(message: str) -> TspError:
    return TspError(-286, f"TSP Runtime error at line 1: {message}")


class _Break(Exception):
    pass


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def type_name(value: Any) -> str:
    """Lua's type() of a value."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "boolean"
    if is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    return "function" if callable(value) else "table"


def _describe(node: tuple, value: Any) -> str:
    """How Lua names a bad value in an error: "global `x' (a nil value)" or "a nil value"."""
    if node[0] in ("global", "field"):
        return f"{node[0]} `{node[-1]}' (a {type_name(value)} value)"
    return f"a {type_name(value)} value"


def number_argument(value: Any, function: str, position: int = 1) -> float:
    """Argument `position` of `function` as a number, or Lua's "bad argument" error."""
    if not is_number(value):
        raise runtime_error(f"bad argument #{position} to `{function}' (number expected, got "
                            f"{type_name(value)})")
    return float(value)


def _truthy(value: Any) -> bool:
    return value is not None and value is not False


# -- parsing

_TOKEN = re.compile(r"(?P<skip>\s+|--[^\n]*)|(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
                    r"|(?P<name>[A-Za-z_]\w*)|(?P<string>\"[^\"\n]*\"|'[^'\n]*')"
                    r"|(?P<symbol>==|~=|<=|>=|\.\.|.)", re.DOTALL)
KEYWORDS = frozenset("and break do else elseif end false for function if in local nil not or "
                     "repeat return then true until while".split())
LITERALS = {"true": True, "false": False, "nil": None}
SYNTAX_LEVELS = 200  # nested blocks, expressions and suffixes a chunk may hold (Lua's LUAI_MAXCCALLS)
# `for' iterations one chunk may run: the instrument runs an endless loop until aborted, which the twin
# (holding its server's lock) cannot be; 200x the driver's longest loop (5000 points)
LOOP_ITERATIONS = 1_000_000


class _Parser:
    """One chunk to a list of statements; nodes are tuples ``(kind, ...)``."""

    def __init__(self, text: str):
        self.tokens: list[tuple[str, str]] = []
        for m in _TOKEN.finditer(text):
            kind = m.lastgroup
            if kind is None:  # unreachable: every alternative of _TOKEN is a named group
                raise AssertionError(f"unnamed token {m.group()!r}")
            if kind != "skip":
                self.tokens.append(("keyword" if kind == "name" and m.group() in KEYWORDS else kind, m.group()))
        self.tokens.append(("eof", "<eof>"))
        self.pos = 0
        self.loops = 0
        self.levels = 0

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

    def nested(self, parse: Callable[[], Any]) -> Any:
        """parse() one syntax level deeper; past SYNTAX_LEVELS a syntax error, as Lua gives (the
        recursive descent would reach Python's recursion limit)."""
        self.levels += 1
        try:
            if self.levels > SYNTAX_LEVELS:
                raise self.error("chunk has too many syntax levels")
            return parse()
        finally:
            self.levels -= 1

    def block(self) -> list[tuple]:
        return self.nested(self._block)

    def _block(self) -> list[tuple]:
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
        return self.nested(self._expression)

    def _expression(self) -> tuple:
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
        levels = self.levels  # a suffix chain parses in a loop but evaluates recursively: a level each
        while True:
            if self.peek() in (("symbol", "."), ("symbol", "["), ("symbol", "(")):
                self.levels += 1
                if self.levels > SYNTAX_LEVELS:
                    raise self.error("chunk has too many syntax levels")
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
                self.levels = levels
                return node


def _arity(function: Callable) -> tuple[int, int | None]:
    """(required, most) positional arguments of a host function; most is None for *args or when
    the signature is unknown."""
    try:
        return _cached_arity(function)
    except TypeError:  # unhashable (a method of an unhashable object): not cached
        return _cached_arity.__wrapped__(function)


@lru_cache(maxsize=1024)
def _cached_arity(function: Callable) -> tuple[int, int | None]:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return 0, None
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in parameters):
        return 0, None
    return sum(p.default is p.empty for p in positional), len(positional)


# -- host objects

class Attribute(NamedTuple):
    get: Callable[[], Any]
    set: Callable[[Any], None] | None = None


class Object:
    """A host object (smua, smua.source, errorqueue, ...): constants, functions, child objects and
    attributes; assigning anything but a writable attribute is a runtime error."""

    def __init__(self, **members: Any):
        self.members = members

    def get(self, key: Any) -> Any:
        member = self.members.get(key)
        return member.get() if isinstance(member, Attribute) else member

    def set(self, key: Any, value: Any) -> None:
        member = self.members.get(key)
        if not isinstance(member, Attribute) or member.set is None:
            kind = "read-only" if isinstance(member, Attribute) else "unknown"
            raise runtime_error(f"attempt to set {kind} attribute `{key}'")
        member.set(value)


# -- evaluation

class Interpreter:
    """Runs chunks against `globals` (name -> value; assignments to globals land there)."""

    def __init__(self, globals: dict[str, Any]):
        self.globals = globals
        self.locals: dict[str, float] = {}
        self.iterations = 0  # `for' iterations of the chunk running

    def run(self, text: str) -> None:
        """Parse the chunk `text` whole, then run it; raises `TspError`."""
        self.iterations = 0
        self._exec(_Parser(text).chunk())

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
            if not is_number(value):
                raise runtime_error(f"`for' {what} must be a number")
        k, stop, step = values[:3]
        if step == 0:
            raise runtime_error("`for' step is zero")
        saved = self.locals.get(name)
        try:
            while k <= stop if step > 0 else k >= stop:
                self.iterations += 1
                if self.iterations > LOOP_ITERATIONS:
                    raise runtime_error(f"more than {LOOP_ITERATIONS} loop iterations in one chunk "
                                        "(the simulator's limit)")
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
        if not is_number(value):
            raise runtime_error(f"attempt to perform arithmetic on {_describe(node[1], value)}")
        return -value

    def _index(self, node: tuple, key: Any) -> Any:
        table = self._eval(node)
        if isinstance(table, Object):
            return table.get(key)
        if isinstance(table, list):
            valid = is_number(key) and float(key).is_integer() and 1 <= key <= len(table)
            return table[int(key) - 1] if valid else None
        raise runtime_error(f"attempt to index {_describe(node, table)}")

    def _call(self, node: tuple) -> list[Any]:
        """All values the call returns."""
        function = self._eval(node[1])
        if not callable(function):
            raise runtime_error(f"attempt to call {_describe(node[1], function)}")
        args = self._args(node[2])
        fewest, most = _arity(function)
        if most is not None:  # Lua drops extra arguments and passes nil for missing ones
            args = args[:most] + [None] * (fewest - len(args))
        result = function(*args)
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
            raise runtime_error("assignment into a table is not simulated")
        if not isinstance(table, Object):
            raise runtime_error(f"attempt to index {_describe(target[1], table)}")
        table.set(target[2] if target[0] == "field" else self._eval(target[2]), value)
