"""Keithley 2600B System SourceMeter SMUs in TSP (the Lua-based Test Script Processor), one channel
(smua or smub) used as a voltage source measuring current.

TSP has no query commands: the driver sends Lua statements, one per line, and reads the lines that
``print(...)`` writes. Sweeps run in the instrument's trigger model into ``smuX.nvbuffer1`` and
come back in one ``printbuffer`` reply, so a 200-point I-V costs two round trips. The 2600B trigger
model cannot end a sweep at compliance, so a ``fail_abort`` sweep runs as a one-line TSP loop on
the instrument that measures point by point and breaks after the first point in compliance.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from .base import InstrumentError, SCPIInstrument, Validator, boolean, in_range, num, parse_bool
from .smu import sweep_levels
from .transport import Transport

# model: (channels, largest |source level| (V), current limit range (A)), per the 2600B Reference
# Manual: source ranges go to 101 % of 40 V or 200 V
MODELS: dict[str, tuple[int, float, float, float]] = {
    "2601B": (1, 40.4, 10e-9, 3.0), "2602B": (2, 40.4, 10e-9, 3.0), "2604B": (2, 40.4, 10e-9, 3.0),
    "2611B": (1, 202.0, 10e-9, 3.0), "2612B": (2, 202.0, 10e-9, 3.0),
    "2614B": (2, 202.0, 10e-9, 3.0), "2634B": (2, 202.0, 100e-12, 1.5),
    "2635B": (1, 202.0, 100e-12, 1.5), "2636B": (2, 202.0, 100e-12, 1.5),
}
ANY_MODEL = (2, 202.0, 100e-12, 3.0)  # the widest limits, until check_identity reads the model
POINTS_MAX = 5000  # the driver's cap; a list travels on one TSP line, about 10 bytes a point
BUFFER = "nvbuffer1"


def _table(values: np.ndarray) -> str:
    return "{" + ", ".join(map(num, values)) + "}"


def _lua_bool(reply: str) -> bool:
    return reply == "true"


check_sweep_delay = in_range(0, 10_000, " s")


def _error_entry(reply: str) -> tuple[int, str]:
    fields = reply.split("\t")
    return int(float(fields[0])), fields[1] if len(fields) > 1 else ""


def _buffer_values(reply: str) -> np.ndarray:
    return np.array(reply.split(","), dtype=float) if reply else np.empty(0)


class tsp_attribute:
    """An attribute of the driver's channel, e.g. ``source.levelv``: read with
    ``print(smua.source.levelv)``, written as ``smua.source.levelv = 0.1``.

    `check(driver)` gives the validator for the driver's model; it runs before anything is sent.
    With `constants` = (off, on) the value is a bool written as a channel constant
    (``smua.OUTPUT_ON``). Without `check` the attribute is read-only.
    """

    def __init__(self, path: str, doc: str,
                 check: Callable[[Keithley2600B], Validator] | None = None,
                 cast: Callable[[str], Any] = float, constants: tuple[str, str] | None = None):
        self.path, self.check, self.cast, self.constants = path, check, cast, constants
        self.__doc__ = doc
        self.name = path

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = f"{owner.__name__}.{name}"

    def validate(self, instrument: Keithley2600B, value: Any) -> Any:
        """The value as it will be sent; raises (naming the property) if it is not acceptable."""
        if self.check is None:
            raise AttributeError(f"{self.name} is read-only")
        return self.check(instrument)(self.name, value)

    def __get__(self, instrument: Keithley2600B | None, owner: type | None = None) -> Any:
        if instrument is None:
            return self
        return instrument.ask_as(f"print({instrument.smu}.{self.path})", self.cast, idempotent=True)

    def __set__(self, instrument: Keithley2600B, value: Any) -> None:
        value = self.validate(instrument, value)
        text = f"{instrument.smu}.{self.constants[value]}" if self.constants else num(value)
        instrument.write(f"{instrument.smu}.{self.path} = {text}")


class Keithley2600B(SCPIInstrument):
    """One channel of a Keithley 2600B SMU, TSP command set.

    Call :meth:`check_identity` once after connecting (it reads the model, whose ranges the
    validators then use) and :meth:`configure_voltage_source` before measuring. Sweeps turn the
    output on and leave it on at the programmed level (``source_voltage``); call
    :meth:`source_off` for the safe state.
    """

    models = tuple(MODELS)

    source_voltage = tsp_attribute("source.levelv", "Source level (V).",
                                   lambda smu: in_range(-smu.v_max, smu.v_max, " V"))
    current_limit = tsp_attribute("source.limiti",
                                  "Current limit (compliance) of the voltage source (A).",
                                  lambda smu: in_range(*smu.limit_range, " A"))
    output_enabled = tsp_attribute("source.output", "Output on (True) or off.",
                                   lambda smu: boolean, parse_bool, ("OUTPUT_OFF", "OUTPUT_ON"))
    nplc = tsp_attribute("measure.nplc", "Current integration time in power-line cycles.",
                         lambda smu: in_range(0.001, 25))
    source_delay = tsp_attribute("source.delay", "Settling time after each source step (s).",
                                 lambda smu: in_range(0, 10_000, " s"))
    limit_tripped = tsp_attribute("source.compliance",
                                  "True if the source is clamped by the current limit.",
                                  cast=_lua_bool)

    def __init__(self, transport: Transport, name: str = "smu", channel: str = "a"):
        if channel not in ("a", "b"):
            raise ValueError(f"Keithley2600B channel={channel!r} must be 'a' or 'b'")
        super().__init__(transport, name)
        self.channel = channel
        self.smu = f"smu{channel}"
        self.model: str | None = None

    @property
    def v_max(self) -> float:
        return MODELS.get(self.model or "", ANY_MODEL)[1]

    @property
    def limit_range(self) -> tuple[float, float]:
        _, _, low, high = MODELS.get(self.model or "", ANY_MODEL)
        return low, high

    def check_identity(self) -> str:
        """Read *IDN?; refuse other models, and smub on a one-channel model."""
        idn = super().check_identity()
        fields = idn.split(",")
        model_field = (fields[1] if len(fields) > 1 else idn).upper()
        self.model = next(m for m in MODELS if m in model_field)
        if self.channel == "b" and MODELS[self.model][0] == 1:
            raise InstrumentError(f"{self.name} at {self.transport.resource}: Model {self.model} "
                                  "has one channel (smua); there is no smub")
        return idn

    def reset(self) -> None:
        self.write("reset()")

    def clear(self) -> None:
        self.write("errorqueue.clear()")

    def next_error(self) -> tuple[int, str]:
        """Pop one error: (code, message), dropping severity and node; code 0 means empty."""
        return self.ask_as("print(errorqueue.next())", _error_entry)  # pops the queue: never asked twice

    def configure_voltage_source(self, current_limit: float, nplc: float = 1.0,
                                 source_delay: float = 0.0) -> None:
        """Source voltage and measure current, both autoranging, measure delay off; nothing is
        sent if an argument is out of range; raises InstrumentError if the instrument objects."""
        self.check_settings(current_limit=current_limit, nplc=nplc, source_delay=source_delay)
        smu = self.smu
        self.write(f"{smu}.source.func = {smu}.OUTPUT_DCVOLTS")
        self.write(f"{smu}.source.autorangev = {smu}.AUTORANGE_ON")
        self.write(f"{smu}.measure.autorangei = {smu}.AUTORANGE_ON")
        self.current_limit = current_limit
        self.nplc = nplc
        self.source_delay = source_delay
        self.write(f"{smu}.measure.delay = {smu}.DELAY_OFF")  # the 2634B-2636B reset to auto
        self.check_errors()

    def measure_current(self) -> float:
        """One measurement at the present source level (A); the output must be on to source."""
        return self.ask_as(f"print({self.smu}.measure.i())", float)  # a new measurement: never asked twice

    def sweep_linear(self, start: float, stop: float, points: int, delay: float,
                     fail_abort: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Staircase from `start` to `stop` V in `points` steps, hardware-timed.

        `delay` (s) is added before each measurement; with `fail_abort` the sweep stops after
        the first point in current limit. Returns (source V, current A) of the points taken; in
        compliance the source value is the programmed level. The transport timeout must exceed
        the sweep's duration.
        """
        for name, value in (("start", start), ("stop", stop)):
            in_range(-self.v_max, self.v_max, " V")(f"Keithley2600B.sweep_linear {name}", value)
        if not isinstance(points, (int, np.integer)) or not 2 <= points <= POINTS_MAX:
            raise ValueError(f"Keithley2600B.sweep_linear points={points!r} must be an integer in "
                             f"[2, {POINTS_MAX}]")
        check_sweep_delay("Keithley2600B sweep delay", delay)
        if fail_abort:
            return self._sweep_loop(np.linspace(start, stop, points), delay)
        return self._sweep(f"linearv({num(start)}, {num(stop)}, {points})", points, delay)

    def sweep_list(self, voltages: npt.ArrayLike, delay: float,
                   fail_abort: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Sweep through `voltages` (V, up to POINTS_MAX) in order; see sweep_linear."""
        levels = sweep_levels("Keithley2600B.sweep_list", voltages, POINTS_MAX, self.v_max)
        check_sweep_delay("Keithley2600B sweep delay", delay)
        if fail_abort:
            return self._sweep_loop(levels, delay)
        return self._sweep(f"listv({_table(levels)})", levels.size, delay)

    def _prepare_buffer(self, delay: float) -> str:
        buffer = f"{self.smu}.{BUFFER}"
        self.write(f"{buffer}.clear()")
        self.write(f"{buffer}.appendmode = 1")
        self.write(f"{buffer}.collectsourcevalues = 1")  # settable only while the buffer is empty
        self.write(f"{self.smu}.measure.delay = {num(delay)}")
        return buffer

    def _sweep(self, source_function: str, points: int, delay: float
               ) -> tuple[np.ndarray, np.ndarray]:
        smu, buffer = self.smu, self._prepare_buffer(delay)
        self.write(f"{smu}.trigger.source.{source_function}")
        self.write(f"{smu}.trigger.source.action = {smu}.ENABLE")
        self.write(f"{smu}.trigger.measure.i({buffer})")
        self.write(f"{smu}.trigger.measure.action = {smu}.ENABLE")
        self.write(f"{smu}.trigger.endsweep.action = {smu}.SOURCE_IDLE")
        self.write(f"{smu}.trigger.count = {points}")
        self.check_errors()
        self.write(f"{smu}.source.output = {smu}.OUTPUT_ON")
        self.write(f"{smu}.trigger.initiate()")
        self.write("waitcomplete()")
        return self._read_buffer()

    def _sweep_loop(self, levels: np.ndarray, delay: float) -> tuple[np.ndarray, np.ndarray]:
        smu, buffer = self.smu, self._prepare_buffer(delay)
        self.write(f"labctl_v = {_table(levels)}")
        self.check_errors()
        self.write(f"{smu}.source.output = {smu}.OUTPUT_ON")
        self.write(f"labctl_idle = {smu}.source.levelv for k = 1, {levels.size} do "
                   f"{smu}.source.levelv = labctl_v[k] {smu}.measure.i({buffer}) "
                   f"if {smu}.source.compliance then break end end "
                   f"{smu}.source.levelv = labctl_idle")
        return self._read_buffer()

    def _read_buffer(self) -> tuple[np.ndarray, np.ndarray]:
        """Restore the measure delay, then read (source values, readings) in one reply."""
        buffer = f"{self.smu}.{BUFFER}"
        self.write(f"{self.smu}.measure.delay = {self.smu}.DELAY_OFF")
        data = self.ask_as(f"printbuffer(1, {buffer}.n, {buffer}.sourcevalues, {buffer}.readings)",
                           _buffer_values, idempotent=True)
        if data.size == 0 or data.size % 2:
            raise InstrumentError(f"{self.name} at {self.transport.resource}: printbuffer gave "
                                  f"{data.size} values, expected (source, reading) pairs")
        return data[0::2].copy(), data[1::2].copy()

    def source_off(self) -> None:
        """The safe state: source at 0 V, then output off."""
        self.source_voltage = 0
        self.output_enabled = False
        self.confirm()
