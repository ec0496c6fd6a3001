"""Driver base: an instrument on a transport, with declarative, validated properties.

In the spirit of PyMeasure's property factories::

    class Keithley2450(SCPIInstrument):
        source_voltage = control(":SOUR:VOLT?", ":SOUR:VOLT %g", "Source level (V).",
                                 validator=in_range(-210, 210))
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .transport import InstrumentTimeout, Transport, TransportError, exchange, named

Validator = Callable[[str, Any], Any]
T = TypeVar("T")
RESYNC_LINES = 64  # at most this many stale lines are skipped while resynchronising on *IDN?


class InstrumentError(RuntimeError):
    """The instrument reported an error; the message is the instrument's own."""


class UnreadableReply(InstrumentError):
    """A reply that cannot be what the query asked for (garbage, not ASCII, not a number...);
    names the instrument, the query and the reply."""


def in_range(low: float, high: float, unit: str = "") -> Validator:
    """Accept a number within [low, high]; the error names the property and the limit."""

    def check(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"{name}={value:g}{unit} is outside [{low:g}, {high:g}]{unit}")
        return float(value)

    return check


def boolean(name: str, value: Any) -> int:
    """Accept True/False (or 0/1) and send it as 1/0."""
    if value not in (True, False):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return int(bool(value))


def parse_bool(reply: str) -> bool:
    return bool(int(float(reply)))


def num(value: float) -> str:
    """A number as the drivers send it: up to 10 significant digits (0.0001, 1e-09, 210)."""
    return f"{float(value):.10g}"


class control:
    """A read/write instrument setting: reads with `get_cmd`, writes `set_cmd % value`.

    The validator runs before anything is sent; its error names `Driver.property`.
    """

    def __init__(self, get_cmd: str, set_cmd: str, doc: str, validator: Validator | None = None,
                 cast: Callable[[str], Any] = float):
        self.get_cmd, self.set_cmd, self.validator, self.cast = get_cmd, set_cmd, validator, cast
        self.__doc__ = doc
        self.name = "value"

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = f"{owner.__name__}.{name}"

    def __get__(self, instrument: SCPIInstrument | None, owner: type | None = None) -> Any:
        if instrument is None:
            return self
        return instrument.ask_as(self.get_cmd, self.cast, idempotent=True)

    def validate(self, instrument: SCPIInstrument, value: Any) -> Any:
        """The value as it will be sent; raises (naming the property) if it is not acceptable."""
        return value if self.validator is None else self.validator(self.name, value)

    def __set__(self, instrument: SCPIInstrument, value: Any) -> None:
        instrument.write(self.set_cmd % self.validate(instrument, value))


class measurement:
    """A read-only instrument value."""

    def __init__(self, get_cmd: str, doc: str, cast: Callable[[str], Any] = float):
        self.get_cmd, self.cast = get_cmd, cast
        self.__doc__ = doc

    def __get__(self, instrument: SCPIInstrument | None, owner: type | None = None) -> Any:
        if instrument is None:
            return self
        return instrument.ask_as(self.get_cmd, self.cast, idempotent=True)


def _floats(reply: str) -> list[float]:
    return [float(x) for x in reply.split(",")] if reply else []


def _error_entry(reply: str) -> tuple[int, str]:
    code, _, message = reply.partition(",")
    return int(code), message.strip().strip('"')


class SCPIInstrument:
    """A message-based instrument: newline-terminated commands and replies.

    Every query goes through the retry policy (instruments/transport.py `exchange`): stale
    replies are flushed before it is sent; a query declared idempotent (a setting or a buffer
    read, `*IDN?`, `*OPC?`; never a new measurement, never an error-queue pop) whose reply is lost
    or unreadable is asked once more, followed by `*IDN?`, and the reply is the line before the
    identity (what came before it were stale replies). A command is never repeated.
    """

    #: the model field of *IDN? that the driver accepts (substring match, case-insensitive)
    models: tuple[str, ...] = ()
    _idn: str | None = None  # the identity read by `identity`: the resynchronisation marker

    def __init__(self, transport: Transport, name: str = "instrument"):
        self.transport = transport
        self.name = name

    @property
    def _where(self) -> str:
        return f"{self.name} at {self.transport.resource}"

    def write(self, command: str) -> None:
        try:
            self.transport.write(command.encode("ascii") + b"\n")
        except TransportError as exc:
            raise named(exc, f"{self._where}: {command!r}", self.transport.resource) from exc

    def ask(self, query: str, idempotent: bool = False) -> str:
        """The reply to `query`; `idempotent`: asking twice changes nothing, so a lost reply may
        be asked for again."""
        return self.ask_as(query, str, idempotent)

    def ask_as(self, query: str, cast: Callable[[str], T], idempotent: bool = False) -> T:
        """`cast(reply)`; a reply `cast` cannot take raises UnreadableReply (after one more try
        if the query is idempotent)."""
        transport = self.transport

        def attempt() -> T:
            transport.flush_input()  # a duplicate or a late reply must not answer this query
            self.write(query)
            return self._parse(query, self._read_line(query), cast)

        def retry() -> T:
            transport.flush_input()
            self.write(query)
            marker = self._idn
            if marker is None or query.strip().upper() == "*IDN?":
                return self._parse(query, self._read_line(query), cast)
            self.write("*IDN?")
            lines = []
            for _ in range(RESYNC_LINES):
                line = self._read_line(query, marker=True)
                if line == marker:
                    break
                lines.append(line)
            else:
                raise UnreadableReply(f"{self._where}: no identity among {RESYNC_LINES} lines after {query!r} "
                                      f"and *IDN? (last {lines[-1][:60]!r})")
            if not lines:
                raise InstrumentTimeout(f"{transport.resource}: no reply before the identity")
            return self._parse(query, lines[-1], cast)

        return exchange(transport, f"{self._where}: {query!r}", attempt, retry if idempotent else None,
                        (InstrumentTimeout, UnreadableReply))

    def _read_line(self, query: str, marker: bool = False) -> str:
        raw = self.transport.read_line(b"\n")
        try:
            return raw.decode("ascii").strip()
        except UnicodeDecodeError:
            if marker:  # a stale line of garbage before the identity: skipped like any stale line
                return raw.decode("latin-1").strip()
            raise UnreadableReply(f"{self._where}: unreadable reply {raw[:60]!r} to {query!r} "
                                  f"(not ASCII)") from None

    def _parse(self, query: str, reply: str, cast: Callable[[str], T]) -> T:
        try:
            return cast(reply)
        except (ValueError, TypeError, IndexError) as exc:
            raise UnreadableReply(f"{self._where}: unreadable reply {reply[:60]!r} to {query!r} ({exc})") from None

    def ask_values(self, query: str, idempotent: bool = False) -> list[float]:
        return self.ask_as(query, _floats, idempotent)

    def confirm(self, always: bool = False) -> None:
        """Ask *OPC? (one attempt within the retry grace) so that the commands just sent are
        known to have arrived; raises if unanswered. Unless `always`, only after a link failure
        (the link has not answered since): a link in good health then sends nothing."""
        if not always and self.transport.failed is None:
            return
        try:
            self.ask("*OPC?", idempotent=True)
        except TransportError as exc:
            detail = str(exc).removeprefix(f"{self._where}: ")
            error = type(exc)(f"{self._where}: the safe state went out unconfirmed: {detail}")
            error.named = True  # type: ignore[attr-defined]
            raise error from exc

    @property
    def identity(self) -> str:
        self._idn = self.ask("*IDN?", idempotent=True)
        return self._idn

    def check_identity(self) -> str:
        """Read *IDN? and fail clearly if the instrument is not a model this driver supports."""
        idn = self.identity
        fields = idn.split(",")
        model = fields[1].strip() if len(fields) > 1 else idn
        if self.models and not any(m.lower() in model.lower() for m in self.models):
            raise InstrumentError(
                f"{self.name} at {self.transport.resource}: model {model!r} is not one of "
                f"{', '.join(self.models)} (*IDN? said {idn!r})")
        return idn

    def check_settings(self, **settings: Any) -> None:
        """Validate values for the named settings without sending anything; the error names the
        property (`Driver.setting`)."""
        for name, value in settings.items():
            getattr(type(self), name).validate(self, value)

    def reset(self) -> None:
        self.write("*RST")

    def clear(self) -> None:
        self.write("*CLS")

    def next_error(self) -> tuple[int, str]:
        """Pop one entry of the error queue: (code, message); code 0 means empty."""
        return self.ask_as(":SYST:ERR?", _error_entry)  # pops the queue: never asked twice

    def check_errors(self) -> None:
        """Drain the error queue; raise InstrumentError with the instrument's own messages."""
        errors = []
        for _ in range(64):
            code, message = self.next_error()
            if code == 0:
                break
            errors.append(f"{code}: {message}")
        if errors:
            raise InstrumentError(f"{self.name} at {self.transport.resource}: " + "; ".join(errors))

    def close(self) -> None:
        self.transport.close()
