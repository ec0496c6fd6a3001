"""Keysight (Agilent) B2900A series SMUs in SCPI: one channel sources voltage and measures current.

Models: B2901A and B2911A (one channel), B2902A and B2912A (channels 1 and 2). Commands are
written as the SCPI Command Reference prints them, with ``[c]`` for the channel suffix; the driver
puts its channel there (``:SOUR[c]:VOLT`` becomes ``:SOUR2:VOLT`` on channel 2).

Sweeps are hardware-timed by the channel's trigger system (``:TRIG[c]:SOUR AINT``, one trigger per
point) and read back with one ``:FETC:ARR?``, so a 200-point I-V costs four round trips.

The B2900 has no "stop the sweep at compliance" setting. What it has is output protection
(``:OUTP[c]:PROT ON``): the instrument itself sets the output to 0 V and opens the output switch the
moment the channel reaches compliance. ``fail_abort`` uses it, so the device under test sees no
voltage after the first point in compliance; the trigger system may go on counting points with the
output off, and the driver drops those, keeping the points up to and including the first one whose
status word reports compliance.
"""
from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .base import InstrumentError, SCPIInstrument, boolean, control, in_range, measurement, num, parse_bool
from .smu import sweep_levels
from .transport import Transport

V_MAX = 210.0
# Compliance: at least 1 % of the lowest (100 nA) range, or 1 nA on the B2911A/B2912A's 10 nA
# range; at most the DC maximum for |V| <= 6 V (above that 1.515 A to 21 V, 0.105 A to 210 V).
I_LIMIT_MIN = 1e-9
I_LIMIT_MAX = 3.03
SWEEP_MAX = 2500  # sweep points and list length
LIST_CHUNK = 100  # values per :LIST:VOLT[:APP] message, to keep each program message short
TWO_CHANNEL_MODELS = ("B2902A", "B2912A")
COMPLIANCE_BITS = 0b110  # status word bits 1 and 2: the channel was in compliance
VALUES_PER_POINT = 3  # :FORM:ELEM:SENS VOLT,CURR,STAT


class KeysightB2900(SCPIInstrument):
    """One channel of a B2900A SMU used as a voltage source measuring current.

    Call :meth:`check_identity` once after connecting (it also checks the channel exists on the
    model) and :meth:`configure_voltage_source` before measuring. Sweeps leave the output on at
    their last level unless output protection turned it off; call :meth:`source_off` for the safe
    state.
    """

    models = ("B2901A", "B2902A", "B2911A", "B2912A")

    source_voltage = control(":SOUR[c]:VOLT?", ":SOUR[c]:VOLT %g", "Source level (V).",
                             validator=in_range(-V_MAX, V_MAX, " V"))
    current_limit = control(":SENS[c]:CURR:PROT?", ":SENS[c]:CURR:PROT %g",
                            "Current compliance of the voltage source (A).",
                            validator=in_range(I_LIMIT_MIN, I_LIMIT_MAX, " A"))
    output_enabled = control(":OUTP[c]?", ":OUTP[c] %d", "Output on (True) or off.",
                             validator=boolean, cast=parse_bool)
    nplc = control(":SENS[c]:CURR:NPLC?", ":SENS[c]:CURR:NPLC %g",
                   "Integration time in power-line cycles (valid at 50 Hz and 60 Hz).",
                   validator=in_range(4.8e-4, 100))
    source_delay = control(":TRIG[c]:ACQ:DEL?", ":TRIG[c]:ACQ:DEL %g",
                           "Acquire trigger delay: wait from setting the source to measuring (s).",
                           validator=in_range(0, 100, " s"))
    limit_tripped = measurement(":SENS[c]:CURR:PROT:TRIP?",
                                "True if the channel was in compliance at the last measurement.",
                                cast=parse_bool)

    def __init__(self, transport: Transport, name: str = "smu", channel: int = 1):
        if type(channel) is not int or channel not in (1, 2):
            raise ValueError(f"KeysightB2900 channel={channel!r} must be 1 or 2")
        super().__init__(transport, name)
        self.channel = channel

    def write(self, command: str) -> None:
        """Send one command; ``[c]`` in it becomes this driver's channel number."""
        super().write(command.replace("[c]", str(self.channel)))

    def check_identity(self) -> str:
        """Check *IDN? names a supported model that has this driver's channel."""
        idn = super().check_identity()
        model = idn.split(",")[1].strip().upper()
        if self.channel == 2 and not model.startswith(TWO_CHANNEL_MODELS):
            raise InstrumentError(
                f"{self.name} at {self.transport.resource}: {model} has one channel; channel 2 "
                f"needs a {' or '.join(TWO_CHANNEL_MODELS)}")
        return idn

    def configure_voltage_source(self, current_limit: float, nplc: float = 1.0,
                                 source_delay: float = 0.0) -> None:
        """Source voltage (fixed level) and measure voltage and current, autoranging; output
        protection off and the output switched only by this driver. Nothing is sent if an argument
        is out of range; raises InstrumentError if the instrument rejects the setup."""
        self.check_settings(current_limit=current_limit, nplc=nplc, source_delay=source_delay)
        self.write(":SOUR[c]:FUNC:MODE VOLT")
        self.write(":SOUR[c]:VOLT:MODE FIX")
        self.write(":SOUR[c]:VOLT:RANG:AUTO ON")
        self.write(':SENS[c]:FUNC "VOLT","CURR"')
        self.write(":SENS[c]:CURR:RANG:AUTO ON")
        self.current_limit = current_limit
        self.nplc = nplc
        self.source_delay = source_delay
        self.write(":OUTP[c]:PROT OFF")
        self.write(":OUTP[c]:ON:AUTO OFF")
        self.write(":FORM:ELEM:SENS VOLT,CURR,STAT")
        self.check_errors()

    def measure_current(self) -> float:
        """One spot measurement at the present source level (A); the output must be on."""
        return self.ask_as(":MEAS:CURR? (@[c])", float)  # a new measurement: never asked twice

    def sweep_linear(self, start: float, stop: float, points: int, delay: float,
                     fail_abort: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Hardware-timed staircase of `points` levels from `start` to `stop` V.

        `delay` (s) is the acquire trigger delay, from each step to its measurement; it stays set
        afterwards as `source_delay`. With `fail_abort` output protection turns the output off at
        the first point in compliance and only the points up to it are returned. Returns (measured
        V, current A) per point. The transport timeout must exceed the sweep's duration.
        """
        for name, value in (("start", start), ("stop", stop)):
            type(self).source_voltage.validator(f"KeysightB2900.sweep_linear {name}", value)
        if isinstance(points, bool) or not isinstance(points, (int, np.integer)) \
                or not 1 <= points <= SWEEP_MAX:
            raise ValueError(f"KeysightB2900.sweep_linear points={points!r} must be an integer in "
                             f"[1, {SWEEP_MAX}]")
        type(self).source_delay.validator("KeysightB2900.sweep_linear delay", delay)
        self.write(":SOUR[c]:VOLT:MODE SWE")
        self.write(f":SOUR[c]:VOLT:STAR {num(start)}")
        self.write(f":SOUR[c]:VOLT:STOP {num(stop)}")
        self.write(f":SOUR[c]:VOLT:POIN {points}")
        return self._run(int(points), delay, fail_abort)

    def sweep_list(self, voltages: npt.ArrayLike, delay: float,
                   fail_abort: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Hardware-timed sweep through `voltages` (V, 1 to 2500) in order; see sweep_linear."""
        levels = sweep_levels("KeysightB2900.sweep_list", voltages, SWEEP_MAX, V_MAX)
        type(self).source_delay.validator("KeysightB2900.sweep_list delay", delay)
        self.write(":SOUR[c]:VOLT:MODE LIST")
        for first in range(0, levels.size, LIST_CHUNK):
            header = ":SOUR[c]:LIST:VOLT" if first == 0 else ":SOUR[c]:LIST:VOLT:APP"
            self.write(header + " " + ",".join(map(num, levels[first:first + LIST_CHUNK])))
        return self._run(levels.size, delay, fail_abort)

    def _run(self, points: int, delay: float, fail_abort: bool) -> tuple[np.ndarray, np.ndarray]:
        """Trigger `points` source-measure steps, wait for them, fetch (V, I, status) of each."""
        self.write(":TRIG[c]:SOUR AINT")
        self.write(f":TRIG[c]:COUN {points}")
        self.write(":TRIG[c]:TRAN:DEL 0")
        self.write(f":TRIG[c]:ACQ:DEL {num(delay)}")
        self.write(f":OUTP[c]:PROT {'ON' if fail_abort else 'OFF'}")
        self.check_errors()
        self.write(":OUTP[c] ON")
        self.write(":INIT (@[c])")
        self.ask("*OPC?", idempotent=True)
        self.check_errors()
        data = np.array(self.ask_values(":FETC:ARR? (@[c])", idempotent=True))
        if fail_abort:
            self.write(":OUTP[c]:PROT OFF")
        if data.size == 0 or data.size % VALUES_PER_POINT:
            raise InstrumentError(f"{self.name} at {self.transport.resource}: expected (V, I, "
                                  f"status) triples from :FETC:ARR?, got {data.size} values")
        v, i, status = data.reshape(-1, VALUES_PER_POINT).T
        if fail_abort:
            (hits,) = np.nonzero(status.astype(np.int64) & COMPLIANCE_BITS)
            if hits.size:
                v, i = v[:hits[0] + 1], i[:hits[0] + 1]
        return v.copy(), i.copy()

    def source_off(self) -> None:
        """The safe state: source at 0 V, then output off.

        The fixed level is zeroed before leaving sweep or list mode, so the output never steps to a
        stale fixed level on the way down.
        """
        self.source_voltage = 0
        self.write(":SOUR[c]:VOLT:MODE FIX")
        self.output_enabled = False
        self.confirm()
