"""Keithley 2450 SourceMeter in its native SCPI command set (*LANG SCPI): source V, measure I.

Sweeps are hardware-timed: the instrument runs the whole sweep into its reading buffer and the
driver reads it back in one :TRAC:DATA? query, so a 200-point I-V costs four round trips.

The instrument keeps its settings and the last sweep's trigger model (with its source
configuration list) until they are changed, so the driver sends a setup or a sweep definition
only when it differs from the one it last sent: a repeated list sweep (forming, cell after cell)
is re-armed with :TRAC:CLE and :INIT alone. The driver assumes it is the instrument's only client;
any command it cannot classify as harmless (and *RST, a failed exchange) makes it send everything
again.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from .base import InstrumentError, SCPIInstrument, boolean, control, in_range, measurement, num, parse_bool
from .smu import sweep_levels

T = TypeVar("T")
V_MAX = 210.0
BUFFER = "defbuffer1"
BUFFER_SIZE = 100_000  # default capacity of defbuffer1
LIST_CHUNK = 100  # values per :SOUR:LIST:VOLT[:APP] command (reference manual)
LIST_MAX = 2500


def _on_off(flag: bool) -> str:
    return "ON" if flag else "OFF"


# Headers (of single commands) that change neither the source/measure setup nor the sweep's
# trigger model and configuration list; queries never do. The source level and output state are
# not part of a list sweep (each point recalls its own level).
_KEEP_ALL = frozenset({":SOUR:VOLT", ":OUTP", ":INIT", ":TRAC:CLE", "*OPC", "*WAI"})
_SWEEP_DEFINITION = (":SOUR:LIST:", ":SOUR:SWE:")  # replace the sweep, keep the setup


def _readings(reply: str) -> np.ndarray:
    return np.array(reply.split(","), dtype=float)


def _check_sweep_delay(delay: float) -> None:
    if not (delay == 0 or 50e-6 <= delay <= 10_000):
        raise ValueError(f"Keithley2450 sweep delay={delay:g} s must be 0 or in [50e-06, 10000] s")


class Keithley2450(SCPIInstrument):
    """Keithley 2450 SMU used as a voltage source measuring current.

    Call :meth:`check_identity` once after connecting and :meth:`configure_voltage_source` before
    measuring. Sweeps leave the output on at their last level, as the instrument does; call
    :meth:`source_off` for the safe state.
    """

    models = ("2450",)
    _setup: tuple | None = None  # configure_voltage_source arguments the instrument has now
    _armed: tuple | None = None  # the list sweep (levels, delay, fail_abort, setup) loaded now

    source_voltage = control(":SOUR:VOLT?", ":SOUR:VOLT %g", "Source level (V).",
                             validator=in_range(-V_MAX, V_MAX, " V"))
    current_limit = control(":SOUR:VOLT:ILIM?", ":SOUR:VOLT:ILIM %g",
                            "Current limit (compliance) of the voltage source (A).",
                            validator=in_range(1e-9, 1.05, " A"))
    output_enabled = control(":OUTP?", ":OUTP %d", "Output on (True) or off.", validator=boolean,
                             cast=parse_bool)
    nplc = control(":SENS:CURR:NPLC?", ":SENS:CURR:NPLC %g",
                   "Current integration time in power-line cycles.", validator=in_range(0.01, 10))
    source_delay = control(":SOUR:VOLT:DEL?", ":SOUR:VOLT:DEL %g",
                           "Wait between setting the source and measuring (s).",
                           validator=in_range(0, 10_000, " s"))
    limit_tripped = measurement(":SOUR:VOLT:ILIM:TRIP?",
                                "True if the source was clamped by the current limit.",
                                cast=parse_bool)

    def write(self, command: str) -> None:
        header = command.split(None, 1)[0].upper() if command.strip() else ""
        if ";" in command or not (header.endswith("?") or header in _KEEP_ALL):
            self._armed = None
            if ";" in command or not header.startswith(_SWEEP_DEFINITION):
                self._setup = None
        try:
            super().write(command)
        except BaseException:  # the instrument may have taken it or not: assume nothing
            self._setup = self._armed = None
            raise

    def ask_as(self, query: str, cast: Callable[[str], T], idempotent: bool = False) -> T:
        try:
            return super().ask_as(query, cast, idempotent)
        except BaseException:
            self._setup = self._armed = None
            raise

    def check_identity(self) -> str:
        """Check *IDN? is a 2450 and that it runs the SCPI command set (not TSP or SCPI2400)."""
        idn = super().check_identity()
        language = self.ask("*LANG?", idempotent=True)
        if language.upper() != "SCPI":
            raise InstrumentError(
                f"{self.name} at {self.transport.resource}: command set is {language}; select "
                "SCPI (*LANG SCPI or the front panel) and power-cycle the instrument")
        return idn

    def next_error(self) -> tuple[int, str]:
        """Pop one error: (code, message), dropping the 2450's severity and time stamp fields."""
        code, message = super().next_error()
        return code, message.split(";", 1)[0]

    def configure_voltage_source(self, current_limit: float, nplc: float = 1.0,
                                 source_delay: float = 0.0) -> None:
        """Source voltage and measure current, both autoranging; nothing is sent if an argument
        is out of range or if the instrument has this setup already (sent by this driver, nothing
        changed since); raises InstrumentError if the instrument rejects the setup."""
        self.check_settings(current_limit=current_limit, nplc=nplc, source_delay=source_delay)
        setup = (float(current_limit), float(nplc), float(source_delay))
        if setup == self._setup:
            return
        self.write(":SOUR:FUNC VOLT")
        self.write(":SOUR:VOLT:RANG:AUTO ON")
        self.write(':SENS:FUNC "CURR"')
        self.write(":SENS:CURR:RANG:AUTO ON")
        self.current_limit = current_limit
        self.nplc = nplc
        self.source_delay = source_delay
        self.check_errors()
        self._setup = setup

    def measure_current(self) -> float:
        """One measurement at the present source level (A); the output must be on to source."""
        return self.ask_as(":READ?", float)  # a new measurement: never asked twice

    def sweep_linear(self, start: float, stop: float, points: int, delay: float,
                     fail_abort: bool = False, dual: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Hardware-timed staircase from `start` to `stop` V (and back if `dual`).

        `delay` (s) is added before each measurement; with `fail_abort` the sweep stops at the
        first point in current limit (that point included). Returns (source V, current A) of the
        points taken. The transport timeout must exceed the sweep's duration.
        """
        for name, value in (("start", start), ("stop", stop)):
            type(self).source_voltage.validator(f"Keithley2450.sweep_linear {name}", value)
        most = BUFFER_SIZE // (2 if dual else 1)
        if not isinstance(points, (int, np.integer)) or not 2 <= points <= most:
            raise ValueError(f"Keithley2450.sweep_linear points={points!r} must be an integer in "
                             f"[2, {most}]")
        _check_sweep_delay(delay)
        self.write(f':TRAC:CLE "{BUFFER}"')
        self.write(f":SOUR:SWE:VOLT:LIN {num(start)}, {num(stop)}, {points}, {num(delay)}, 1, "
                   f'BEST, {_on_off(fail_abort)}, {_on_off(dual)}, "{BUFFER}"')
        self.check_errors()
        return self._run_sweep()

    def sweep_list(self, voltages: npt.ArrayLike, delay: float,
                   fail_abort: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Hardware-timed sweep through `voltages` (V, up to 2500) in order; see sweep_linear.

        The same sweep as the last one, with the setup unchanged, is only re-armed: the
        instrument still holds its trigger model and source configuration list."""
        levels = sweep_levels("Keithley2450.sweep_list", voltages, LIST_MAX, V_MAX)
        _check_sweep_delay(delay)
        sweep = (levels.tobytes(), float(delay), bool(fail_abort), self._setup)
        self.write(f':TRAC:CLE "{BUFFER}"')
        if sweep != self._armed or self._setup is None:
            for first in range(0, levels.size, LIST_CHUNK):
                header = ":SOUR:LIST:VOLT" if first == 0 else ":SOUR:LIST:VOLT:APP"
                self.write(header + " " + ", ".join(map(num, levels[first:first + LIST_CHUNK])))
            self.write(f':SOUR:SWE:VOLT:LIST 1, {num(delay)}, 1, {_on_off(fail_abort)}, "{BUFFER}"')
            self.check_errors()
            self._armed = sweep
        return self._run_sweep()

    def _run_sweep(self) -> tuple[np.ndarray, np.ndarray]:
        self.write(":INIT")
        self.ask("*OPC?", idempotent=True)
        taken = self.ask_as(f':TRAC:ACT? "{BUFFER}"', int, idempotent=True)
        if taken == 0:
            return np.empty(0), np.empty(0)
        data = self.ask_as(f':TRAC:DATA? 1, {taken}, "{BUFFER}", SOUR, READ', _readings, idempotent=True)
        if data.size != 2 * taken:
            raise InstrumentError(f"{self.name} at {self.transport.resource}: expected "
                                  f"{2 * taken} values from :TRAC:DATA?, got {data.size}")
        return data[0::2].copy(), data[1::2].copy()

    def source_off(self) -> None:
        """The safe state: source at 0 V, then output off (confirmed if the link had failed)."""
        self.source_voltage = 0
        self.output_enabled = False
        self.confirm()
