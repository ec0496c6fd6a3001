"""Typed protocol parameters: one declaration feeds validation, the CLI, the GUI form and HDF5."""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from typing import Any

_FLOAT_MAX = sys.float_info.max
_KINDS = {"float": float, "int": int, "bool": bool, "str": str, "floats": list}


class ParameterError(ValueError):
    """A parameter is unknown, of the wrong type or outside its limits; the message names it."""


@dataclass(frozen=True)
class Parameter:
    """One protocol parameter.

    kind is "float", "int", "bool", "str" or "floats" (a list of numbers). `soa` names a
    SafeOperatingArea limit that bounds |value| on the station in use (checked by the engine).
    """

    name: str
    kind: str
    default: Any
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    soa: str | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise TypeError(f"parameter {self.name}: unknown kind {self.kind!r}")

    def validate(self, value: Any) -> Any:
        """Return the value coerced to the parameter's kind, or raise ParameterError."""
        if self.kind == "floats":
            if not isinstance(value, (list, tuple)) or not value:
                raise ParameterError(f"{self.name} must be a non-empty list of numbers, got {value!r}")
            return [self._number(v, float) for v in value]
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ParameterError(f"{self.name} must be true or false, got {value!r}")
            return value
        if self.kind == "str":
            if self.choices and value not in self.choices:
                raise ParameterError(f"{self.name}={value!r} is not one of {', '.join(self.choices)}")
            return str(value)
        return self._number(value, _KINDS[self.kind])

    def _number(self, value: Any, cast: type) -> float | int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParameterError(f"{self.name} must be a number, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):  # NaN passes every limit, inf a missing one
            raise ParameterError(f"{self.name} must be a finite number, got {value!r}")
        if cast is float and not abs(value) <= _FLOAT_MAX:  # float(10**400): OverflowError
            raise ParameterError(f"{self.name} must lie within +-{_FLOAT_MAX:g}, got an integer of "
                                 f"{int(value).bit_length()} bits")
        if cast is int and value != int(value):
            raise ParameterError(f"{self.name} must be an integer, got {value!r}")
        value = cast(value)
        unit = f" {self.unit}" if self.unit else ""
        shown = f"{value:g}" if isinstance(value, float) else str(value)  # :g of an int of 400 digits: OverflowError
        if self.minimum is not None and value < self.minimum:
            raise ParameterError(f"{self.name}={shown}{unit} is below its minimum {self.minimum:g}{unit}")
        if self.maximum is not None and value > self.maximum:
            raise ParameterError(f"{self.name}={shown}{unit} is above its maximum {self.maximum:g}{unit}")
        return value

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (for `labctl protocols --json` and generated forms)."""
        return {"name": self.name, "type": self.kind, "unit": self.unit, "default": self.default,
                "min": self.minimum, "max": self.maximum, "choices": list(self.choices or []) or None,
                "soa": self.soa, "doc": self.doc}


def resolve(parameters: tuple[Parameter, ...], values: dict[str, Any], where: str) -> dict[str, Any]:
    """Fill defaults and validate `values` against the declarations of `where` (a protocol)."""
    known = {p.name: p for p in parameters}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ParameterError(f"{where} has no parameter {unknown[0]!r} "
                             f"(parameters: {', '.join(known) or 'none'})")
    return {name: p.validate(values.get(name, p.default)) for name, p in known.items()}


def parse_cli_value(text: str) -> Any:
    """A --set value: JSON when it parses as JSON (numbers, booleans, lists), else the string."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError; > 4300 digits; too deeply nested
        return text


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """Parameter values from `--set NAME=VALUE` options (`labctl run`, `labctl gui`)."""
    values = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise ParameterError(f"--set expects NAME=VALUE, got {pair!r}")
        values[name] = parse_cli_value(text)
    return values
