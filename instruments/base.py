"""Driver base: an instrument on a transport, with declarative, validated properties.

In the spirit of PyMeasure's property factories::

    class Keithley2450(SCPIInstrument):
        source_voltage = control(":SOUR:VOLT?", ":SOUR:VOLT %g", "Source level (V).",
                                 validator=in_range(-210, 210))
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .transport import Transport

Validator = Callable[[str, Any], Any]


class InstrumentError(RuntimeError):
    """The instrument reported an error; the message is the instrument's own."""


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
        return self.cast(instrument.ask(self.get_cmd))

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
        return self.cast(instrument.ask(self.get_cmd))


class SCPIInstrument:
    """A message-based instrument: newline-terminated commands and replies."""

    #: the model field of *IDN? that the driver accepts (substring match, case-insensitive)
    models: tuple[str, ...] = ()

    def __init__(self, transport: Transport, name: str = "instrument"):
        self.transport = transport
        self.name = name

    def write(self, command: str) -> None:
        self.transport.write(command.encode("ascii") + b"\n")

    def ask(self, query: str) -> str:
        self.write(query)
        return self.transport.read_line(b"\n").decode("ascii").strip()

    def ask_values(self, query: str) -> list[float]:
        reply = self.ask(query)
        return [float(x) for x in reply.split(",")] if reply else []

    @property
    def identity(self) -> str:
        return self.ask("*IDN?")

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
        code, _, message = self.ask(":SYST:ERR?").partition(",")
        return int(code), message.strip().strip('"')

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
