"""What the SMU spec (test_smu_spec.py) needs to know about each SMU, and the per-instrument
vocabulary the instrument-specific test modules share with it.

The spec runs one test body against every SourceMeter driver (on a ScriptedTransport: the exact
bytes) and against every driver connected to its twin (in-process, driving a fake load). What
differs between the instruments is data here: a `ScriptedSmu` per driver (its bytes and cases),
a `TwinSmu` per twin (where the twins legitimately behave differently). Nothing here asserts;
the checks are in the test modules.

Importable as ``from smu_spec import ...`` because pyproject.toml puts tests/ on sys.path.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from labctl.instruments.keithley2450 import Keithley2450
from labctl.instruments.keithley2600b import Keithley2600B
from labctl.instruments.keysight_b2900 import KeysightB2900
from labctl.instruments.transport import InProcessTransport
from labctl.sim.keithley2450 import VirtualKeithley2450
from labctl.sim.keithley2600b import VirtualKeithley2600B
from labctl.sim.keysight_b2900 import VirtualKeysightB2900

from fakes import Resistor, ScriptedTransport

Exchange = tuple[bytes, bytes]  # (message the driver must send, the instrument's reply)


@dataclass(frozen=True)
class ScriptedSmu:
    """One SMU driver against a ScriptedTransport, and its cases for each spec test.

    A case's `model` of None means the driver is used as constructed (no *IDN? yet); a model
    name means check_identity read that model first (see `driver`).
    """

    cls: type
    idn: bytes  # *IDN? reply of the default model
    no_error: Exchange  # the error query and the empty queue's reply
    empty_queue: tuple[int, str]  # what next_error() makes of that reply
    round_trips: int  # queries one sweep (linear, list, fail-abort) makes
    readback_rtol: float  # the precision of the sweep read-back format
    accepted: tuple[tuple[bytes, dict[str, Any]], ...]  # (idn, attributes check_identity sets)
    refused: tuple[tuple[bytes, str], ...]  # (idn, message)
    settings: tuple[tuple[str | None, str, Any, bytes], ...]  # (model, prop, value, sent)
    readings: tuple[tuple[str, bytes, bytes, Any], ...]  # (prop, query, reply, value)
    invalid_settings: tuple[tuple[str | None, str, Any, type], ...]  # (model, prop, value, error)
    configure: tuple[dict, list[Exchange]]  # (options beside the 1 mA limit, exchanges)
    invalid_configure: tuple[dict, str]  # (options beside the 1 mA limit, message)
    measure: Exchange  # a reading of 12.345 uA
    linear_sweep: Callable[[np.ndarray, np.ndarray], list[Exchange]]  # (V, I) of -1..1 V, 200, 1 ms
    fail_abort: tuple[dict, list[Exchange], list, list]  # (options, exchanges, V, I) of 0..2 V, 5
    invalid_linear: tuple[tuple[tuple, str], ...]  # (sweep_linear args, message)
    list_sweep: tuple[np.ndarray, dict, list[Exchange]]  # (levels, options, exchanges)
    invalid_list: tuple[tuple[str | None, Any, str], ...]  # (model, voltages, message)
    # (what, action(driver) that raises, exchanges, the message)
    errors: tuple[tuple[str, Callable, list[Exchange], str], ...]
    source_off: list[Exchange]
    identify: tuple[Exchange, ...] = ()  # what check_identity asks after *IDN?
    idn_of: Callable[[str], bytes] | None = None  # *IDN? reply of another model

    @property
    def name(self) -> str:
        return self.cls.__name__

    def smu(self, *script: Exchange, **options) -> tuple[Any, ScriptedTransport]:
        """The driver (named "smu", built with `options`) on a transport expecting `script`."""
        transport = ScriptedTransport(list(script))
        return self.cls(transport, name="smu", **options), transport

    def identified(self, model: str | None, *script: Exchange, **options):
        """The driver after check_identity read `model` (the default model for None)."""
        idn = self.idn if model is None else self.idn_of(model)
        driver, transport = self.smu((b"*IDN?\n", idn), *self.identify, *script, **options)
        driver.check_identity()
        return driver, transport

    def driver(self, model: str | None, *script: Exchange):
        """As constructed for model None, else identified as `model`; then `script`."""
        return self.smu(*script) if model is None else self.identified(model, *script)


@dataclass(frozen=True)
class ScpiErrorQueue:
    """A SCPI twin's error queue: a line making three -222 errors, one making a -221."""

    out_of_range: str
    conflict: str
    empty_reply: str  # the raw :SYST:ERR? reply of the empty queue
    twin_limit: Callable[[Any], float]  # the twin's (channel's) current limit


@dataclass(frozen=True)
class TwinSmu:
    """One SMU driver connected to its twin, and where that twin differs from the others."""

    name: str
    connect: Callable[..., tuple[Any, Any, Any]]  # (load=None) -> (smu, twin, load), identified
    identity: str
    reset_limit: float  # A, the current limit after *RST / reset()
    reset_answers: tuple[tuple[str, str], ...]  # (query, reply) after reset
    rtol: float  # the precision of the sweep's current read-back
    source_rtol: float = 1e-7  # the same for the sweep's source values
    reports_programmed_source: bool = False  # a sweep returns the programmed, not the clamped V
    returns_to_idle: bool = False  # after a sweep the source is back at its (0 V) idle level
    sweep_delay_is_source_delay: bool = False  # the sweep's delay stays the source delay
    abort_opens_output: bool = False  # fail_abort opens the output, the points run on open
    tripped_after_abort: bool = False  # limit_tripped reads True after a fail_abort sweep
    measured_source: Callable[[Any], float] | None = None  # V of the last reading
    point_times: Callable[[Any, int], list[float]] | None = None  # times of a sweep's points
    sweep_off_answers: tuple[tuple[str, str], ...] = ()  # after a sweep and source_off()
    list_answers: tuple[tuple[str, str], ...] = ()  # after the 250-point list sweep
    abort_answers: tuple[tuple[str, str], ...] = ()  # after the fail_abort sweep
    errors: ScpiErrorQueue | None = None


# --- what the two SCPI drivers share: +-210 V, 1 to 2500 list levels, the types ----------------

SCPI_INVALID_SETTINGS = (  # (model, prop, value, error): KEITHLEY2450 and KEYSIGHT_B2900
    (None, "source_voltage", 210.5, ValueError),
    (None, "current_limit", 0, ValueError),
    (None, "source_delay", -1, ValueError),
    (None, "source_voltage", "1", TypeError),
    (None, "output_enabled", "on", TypeError))
SCPI_INVALID_LIST = (  # (model, voltages, message)
    (None, [0, 1, 211], "voltage 211 V is outside"),
    (None, [0, float("nan")], "voltage nan V"),
    (None, [], "1 to 2500 voltages, got 0"),
    (None, np.zeros(2501), "got 2501"))


# --- Keithley 2450 (SCPI) ---------------------------------------------------------------------

NO_ERROR_2450 = (b":SYST:ERR?\n", b'0,"No error;0;0 0"\n')
IDN_2450 = b"KEITHLEY INSTRUMENTS,MODEL 2450,04000001,1.7.12b\n"


def configure_2450(nplc: str) -> list[Exchange]:
    """configure_voltage_source(1e-3, nplc) as sent to a 2450 that was not set up yet."""
    return [(b":SOUR:FUNC VOLT\n", b""), (b":SOUR:VOLT:RANG:AUTO ON\n", b""),
            (b':SENS:FUNC "CURR"\n', b""), (b":SENS:CURR:RANG:AUTO ON\n", b""),
            (b":SOUR:VOLT:ILIM 0.001\n", b""), (f":SENS:CURR:NPLC {nplc}\n".encode(), b""),
            (b":SOUR:VOLT:DEL 0\n", b""), NO_ERROR_2450]


def sweep_tail_2450(points: int, v: np.ndarray, i: np.ndarray) -> list[Exchange]:
    """A defined 2450 sweep from the error check to the read-back of (v, i)."""
    data = ",".join(f"{a:+.6E},{b:+.6E}" for a, b in zip(v, i)).encode() + b"\n"
    return [NO_ERROR_2450, (b":INIT\n", b""), (b"*OPC?\n", b"1\n"),
            (b':TRAC:ACT? "defbuffer1"\n', f"{points}\n".encode()),
            (f':TRAC:DATA? 1, {points}, "defbuffer1", SOUR, READ\n'.encode(), data)]


CLEAR_2450 = (b':TRAC:CLE "defbuffer1"\n', b"")
_LEVELS_150 = np.round(np.linspace(0, 1.5, 150), 6)
_ABORTED = np.array([0.0, 0.5, 1.0]), np.array([0.0, 5e-5, 1e-4])


def _list_2450(levels: np.ndarray) -> list[Exchange]:
    first = ", ".join(f"{x:.10g}" for x in levels[:100])
    rest = ", ".join(f"{x:.10g}" for x in levels[100:])
    return [CLEAR_2450, (f":SOUR:LIST:VOLT {first}\n".encode(), b""),
            (f":SOUR:LIST:VOLT:APP {rest}\n".encode(), b""),
            (b':SOUR:SWE:VOLT:LIST 1, 0.0005, 1, ON, "defbuffer1"\n', b""),
            *sweep_tail_2450(len(levels), levels, levels / 1e4)]


KEITHLEY2450 = ScriptedSmu(
    cls=Keithley2450, idn=IDN_2450, no_error=NO_ERROR_2450, empty_queue=(0, "No error"),
    round_trips=4, readback_rtol=1e-6,
    identify=((b"*LANG?\n", b"SCPI\n"),),
    accepted=((IDN_2450, {}),),
    refused=((b"KEITHLEY INSTRUMENTS,MODEL 2460,1,1.7\n",
              r"smu at script://smu: model 'MODEL 2460' is not one of 2450"),),
    settings=(
        (None, "source_voltage", 1.5, b":SOUR:VOLT 1.5\n"),
        (None, "source_voltage", -210, b":SOUR:VOLT -210\n"),
        (None, "current_limit", 1e-4, b":SOUR:VOLT:ILIM 0.0001\n"),
        (None, "current_limit", 1e-9, b":SOUR:VOLT:ILIM 1e-09\n"),
        (None, "output_enabled", True, b":OUTP 1\n"),
        (None, "output_enabled", False, b":OUTP 0\n"),
        (None, "nplc", 0.01, b":SENS:CURR:NPLC 0.01\n"),
        (None, "source_delay", 0.002, b":SOUR:VOLT:DEL 0.002\n")),
    readings=(
        ("source_voltage", b":SOUR:VOLT?\n", b"+1.500000E+00\n", 1.5),
        ("current_limit", b":SOUR:VOLT:ILIM?\n", b"+1.050000E-04\n", 1.05e-4),
        ("output_enabled", b":OUTP?\n", b"1\n", True),
        ("nplc", b":SENS:CURR:NPLC?\n", b"+1.000000E+00\n", 1.0),
        ("source_delay", b":SOUR:VOLT:DEL?\n", b"+0.000000E+00\n", 0.0),
        ("limit_tripped", b":SOUR:VOLT:ILIM:TRIP?\n", b"0\n", False)),
    invalid_settings=SCPI_INVALID_SETTINGS + (
        (None, "current_limit", 1.1, ValueError),
        (None, "nplc", 11, ValueError)),
    configure=(dict(nplc=0.1), configure_2450("0.1")),
    invalid_configure=(dict(nplc=20), "Keithley2450.nplc"),
    measure=(b":READ?\n", b"+1.234500E-05\n"),
    linear_sweep=lambda v, i: [
        CLEAR_2450,
        (b':SOUR:SWE:VOLT:LIN -1, 1, 200, 0.001, 1, BEST, OFF, OFF, "defbuffer1"\n', b""),
        *sweep_tail_2450(200, v, i)],
    fail_abort=(dict(delay=0, dual=True),
                [CLEAR_2450,
                 (b':SOUR:SWE:VOLT:LIN 0, 2, 5, 0, 1, BEST, ON, ON, "defbuffer1"\n', b""),
                 *sweep_tail_2450(3, *_ABORTED)],
                *_ABORTED),
    invalid_linear=(
        ((0, 300, 10, 0), "sweep_linear stop=300 V"),
        ((0, 1, 1, 0), "points=1"),
        ((0, 1, 2.5, 0), "points=2.5"),
        ((0, 1, 10, 1e-5), "delay=1e-05")),
    list_sweep=(_LEVELS_150, dict(delay=5e-4, fail_abort=True), _list_2450(_LEVELS_150)),
    invalid_list=SCPI_INVALID_LIST,
    errors=(
        ("sweep_configuration",
         lambda k: k.sweep_linear(0, 1, 10, delay=0),
         [CLEAR_2450,
          (b':SOUR:SWE:VOLT:LIN 0, 1, 10, 0, 1, BEST, OFF, OFF, "defbuffer1"\n', b""),
          (b":SYST:ERR?\n", b'-222,"Data out of range;1;2024/01/01 00:00:00.000"\n'),
          (b":SYST:ERR?\n", b'-113,"Undefined header;1;2024/01/01 00:00:00.000"\n'),
          NO_ERROR_2450],
         r"smu at script://smu: -222: Data out of range; -113: Undefined header$"),),
    source_off=[(b":SOUR:VOLT 0\n", b""), (b":OUTP 0\n", b"")],
)


# --- Keysight B2900 (SCPI, channel 1) ---------------------------------------------------------

NO_ERROR_B2900 = (b":SYST:ERR?\n", b'+0,"No error"\n')
IDN_B2900 = b"Keysight Technologies,B2902A,MY51140000,3.4.2011.5100\n"
CONFIGURE_B2900 = [  # configure_voltage_source(1e-3, nplc=0.1, source_delay=0.005) before its check
    (b":SOUR1:FUNC:MODE VOLT\n", b""), (b":SOUR1:VOLT:MODE FIX\n", b""),
    (b":SOUR1:VOLT:RANG:AUTO ON\n", b""), (b':SENS1:FUNC "VOLT","CURR"\n', b""),
    (b":SENS1:CURR:RANG:AUTO ON\n", b""), (b":SENS1:CURR:PROT 0.001\n", b""),
    (b":SENS1:CURR:NPLC 0.1\n", b""), (b":TRIG1:ACQ:DEL 0.005\n", b""),
    (b":OUTP1:PROT OFF\n", b""), (b":OUTP1:ON:AUTO OFF\n", b""),
    (b":FORM:ELEM:SENS VOLT,CURR,STAT\n", b"")]


def triples_b2900(v, i, status) -> bytes:
    """The :FETC:ARR? reply: (V, I, status) per point."""
    return ",".join(f"{a:+.6E},{b:+.6E},{s:+.6E}" for a, b, s in zip(v, i, status)).encode() + b"\n"


def run_script_b2900(points: int, delay: bytes, fail_abort: bool, data: bytes) -> list[Exchange]:
    """A defined B2900 sweep from the trigger setup to the fetch of `data`."""
    protection = b"ON" if fail_abort else b"OFF"
    script = [(b":TRIG1:SOUR AINT\n", b""), (f":TRIG1:COUN {points}\n".encode(), b""),
              (b":TRIG1:TRAN:DEL 0\n", b""), (b":TRIG1:ACQ:DEL " + delay + b"\n", b""),
              (b":OUTP1:PROT " + protection + b"\n", b""), NO_ERROR_B2900,
              (b":OUTP1 ON\n", b""), (b":INIT (@1)\n", b""), (b"*OPC?\n", b"1\n"), NO_ERROR_B2900,
              (b":FETC:ARR? (@1)\n", data)]
    return script + ([(b":OUTP1:PROT OFF\n", b"")] if fail_abort else [])


def staircase_b2900(start: bytes, stop: bytes, points: int) -> list[Exchange]:
    """The B2900's linear sweep setup, before run_script_b2900."""
    return [(b":SOUR1:VOLT:MODE SWE\n", b""), (b":SOUR1:VOLT:STAR " + start + b"\n", b""),
            (b":SOUR1:VOLT:STOP " + stop + b"\n", b""),
            (f":SOUR1:VOLT:POIN {points}\n".encode(), b"")]


def _list_b2900(levels: np.ndarray) -> list[Exchange]:
    first = ",".join(f"{x:.10g}" for x in levels[:100])
    rest = ",".join(f"{x:.10g}" for x in levels[100:])
    return [(b":SOUR1:VOLT:MODE LIST\n", b""), (f":SOUR1:LIST:VOLT {first}\n".encode(), b""),
            (f":SOUR1:LIST:VOLT:APP {rest}\n".encode(), b""),
            *run_script_b2900(len(levels), b"0.0005", True,
                              triples_b2900(levels, levels / 1e4, np.zeros(len(levels))))]


# the output protection turned the output off after point 3 (status 2: in compliance)
_PROTECTED = [0.0, 0.5, 0.8, 0.0, 0.0], [0.0, 5e-5, 1e-4, 0.0, 0.0], [0, 0, 2, 0, 0]

KEYSIGHT_B2900 = ScriptedSmu(
    cls=KeysightB2900, idn=IDN_B2900, no_error=NO_ERROR_B2900, empty_queue=(0, "No error"),
    round_trips=4, readback_rtol=1e-6,
    accepted=((IDN_B2900, {}), (b"Agilent Technologies,B2911A,MY1,2.0.1225.1125\n", {})),
    refused=((b"Keysight Technologies,B2961A,MY1,3.4\n",
              r"smu at script://smu: model 'B2961A' is not one of "
              r"B2901A, B2902A, B2911A, B2912A"),),
    settings=(
        (None, "source_voltage", 1.5, b":SOUR1:VOLT 1.5\n"),
        (None, "source_voltage", -210, b":SOUR1:VOLT -210\n"),
        (None, "current_limit", 1e-4, b":SENS1:CURR:PROT 0.0001\n"),
        (None, "current_limit", 1e-9, b":SENS1:CURR:PROT 1e-09\n"),
        (None, "current_limit", 3.03, b":SENS1:CURR:PROT 3.03\n"),
        (None, "output_enabled", True, b":OUTP1 1\n"),
        (None, "output_enabled", False, b":OUTP1 0\n"),
        (None, "nplc", 4.8e-4, b":SENS1:CURR:NPLC 0.00048\n"),
        (None, "nplc", 100, b":SENS1:CURR:NPLC 100\n"),
        (None, "source_delay", 0.002, b":TRIG1:ACQ:DEL 0.002\n")),
    readings=(
        ("source_voltage", b":SOUR1:VOLT?\n", b"+1.500000E+00\n", 1.5),
        ("current_limit", b":SENS1:CURR:PROT?\n", b"+1.000000E-04\n", 1e-4),
        ("output_enabled", b":OUTP1?\n", b"1\n", True),
        ("nplc", b":SENS1:CURR:NPLC?\n", b"+1.000000E+00\n", 1.0),
        ("source_delay", b":TRIG1:ACQ:DEL?\n", b"+0.000000E+00\n", 0.0),
        ("limit_tripped", b":SENS1:CURR:PROT:TRIP?\n", b"0\n", False)),
    invalid_settings=SCPI_INVALID_SETTINGS + (
        (None, "current_limit", 3.1, ValueError),
        (None, "nplc", 4e-4, ValueError),
        (None, "nplc", 120, ValueError),
        (None, "source_delay", 101, ValueError)),
    configure=(dict(nplc=0.1, source_delay=0.005), CONFIGURE_B2900 + [NO_ERROR_B2900]),
    invalid_configure=(dict(source_delay=-0.1), "KeysightB2900.source_delay"),
    measure=(b":MEAS:CURR? (@1)\n", b"+1.234500E-05\n"),
    linear_sweep=lambda v, i: [
        *staircase_b2900(b"-1", b"1", 200),
        *run_script_b2900(200, b"0.001", False, triples_b2900(v, i, np.zeros(200)))],
    fail_abort=(dict(delay=0),
                [*staircase_b2900(b"0", b"2", 5),
                 *run_script_b2900(5, b"0", True, triples_b2900(*_PROTECTED))],
                _PROTECTED[0][:3], _PROTECTED[1][:3]),
    invalid_linear=(
        ((0, 300, 10, 0), "sweep_linear stop=300 V"),
        ((0, 1, 0, 0), "points=0"),
        ((0, 1, 2501, 0), "points=2501"),
        ((0, 1, 2.5, 0), "points=2.5"),
        ((0, 1, 10, -1e-3), "sweep_linear delay=-0.001 s"),
        ((0, 1, 10, 200), "sweep_linear delay=200 s")),
    list_sweep=(_LEVELS_150, dict(delay=5e-4, fail_abort=True), _list_b2900(_LEVELS_150)),
    invalid_list=SCPI_INVALID_LIST,
    errors=(
        ("configuration",
         lambda b: b.configure_voltage_source(1e-3, nplc=0.1, source_delay=0.005),
         [*CONFIGURE_B2900, (b":SYST:ERR?\n", b'-222,"Data out of range"\n'), NO_ERROR_B2900],
         r"smu at script://smu: -222: Data out of range$"),
        # raised before the output is turned on: the script has no :OUTP1 ON, no :INIT
        ("sweep_configuration_before_the_output_is_turned_on",
         lambda b: b.sweep_list([0, 1], delay=0),
         [(b":SOUR1:VOLT:MODE LIST\n", b""), (b":SOUR1:LIST:VOLT 0,1\n", b""),
          *run_script_b2900(2, b"0", False, b"")[:5],
          (b":SYST:ERR?\n", b'-221,"Settings conflict"\n'),
          (b":SYST:ERR?\n", b'-113,"Undefined header"\n'), NO_ERROR_B2900],
         r"-221: Settings conflict; -113: Undefined header$")),
    source_off=[(b":SOUR1:VOLT 0\n", b""), (b":SOUR1:VOLT:MODE FIX\n", b""), (b":OUTP1 0\n", b"")],
)


# --- Keithley 2600B (TSP, smua) ---------------------------------------------------------------

NO_ERROR_2600B = (b"print(errorqueue.next())\n",
                  b"0.00000e+00\tQueue Is Empty\t0.00000e+00\t0.00000e+00\n")


def idn_2600b(model: str) -> bytes:
    return f"Keithley Instruments Inc., Model {model}, 4000001, 4.0.0\n".encode()


def buffer_setup_2600b(delay: bytes) -> list[Exchange]:
    return [(b"smua.nvbuffer1.clear()\n", b""), (b"smua.nvbuffer1.appendmode = 1\n", b""),
            (b"smua.nvbuffer1.collectsourcevalues = 1\n", b""),
            (b"smua.measure.delay = " + delay + b"\n", b"")]


def trigger_sweep_2600b(source: bytes, points: int) -> list[Exchange]:
    return [(b"smua.trigger.source." + source + b"\n", b""),
            (b"smua.trigger.source.action = smua.ENABLE\n", b""),
            (b"smua.trigger.measure.i(smua.nvbuffer1)\n", b""),
            (b"smua.trigger.measure.action = smua.ENABLE\n", b""),
            (b"smua.trigger.endsweep.action = smua.SOURCE_IDLE\n", b""),
            (f"smua.trigger.count = {points}\n".encode(), b""), NO_ERROR_2600B,
            (b"smua.source.output = smua.OUTPUT_ON\n", b""),
            (b"smua.trigger.initiate()\n", b""), (b"waitcomplete()\n", b"")]


def read_back_2600b(v, i) -> list[Exchange]:
    data = ", ".join(f"{a:.5e}, {b:.5e}" for a, b in zip(v, i)).encode() + b"\n"
    return [(b"smua.measure.delay = smua.DELAY_OFF\n", b""),
            (b"printbuffer(1, smua.nvbuffer1.n, smua.nvbuffer1.sourcevalues, "
             b"smua.nvbuffer1.readings)\n", data)]


# with fail_abort the 2600B runs a TSP loop that breaks at compliance, not the trigger model
_LOOP_2600B = (b"labctl_idle = smua.source.levelv for k = 1, 5 do smua.source.levelv = labctl_v[k] "
               b"smua.measure.i(smua.nvbuffer1) if smua.source.compliance then break end end "
               b"smua.source.levelv = labctl_idle\n")
_LEVELS_4 = np.array([0.0, 0.25, -0.5, 1.125])

KEITHLEY2600B = ScriptedSmu(
    cls=Keithley2600B, idn=idn_2600b("2636B"), no_error=NO_ERROR_2600B,
    empty_queue=(0, "Queue Is Empty"), round_trips=2, readback_rtol=1e-5, idn_of=idn_2600b,
    accepted=((idn_2600b("2636B"), {"model": "2636B"}),),
    refused=tuple((idn, r"smu at script://smu: model '.*' is not one of 2601B, 2602B")
                  for idn in (b"Keithley Instruments Inc., Model 2651A, 1, 1.0\n", IDN_2450)),
    settings=(
        ("2636B", "source_voltage", 1.5, b"smua.source.levelv = 1.5\n"),
        ("2636B", "source_voltage", -202, b"smua.source.levelv = -202\n"),
        ("2636B", "current_limit", 1e-4, b"smua.source.limiti = 0.0001\n"),
        ("2636B", "current_limit", 100e-12, b"smua.source.limiti = 1e-10\n"),
        ("2636B", "output_enabled", True, b"smua.source.output = smua.OUTPUT_ON\n"),
        ("2636B", "output_enabled", False, b"smua.source.output = smua.OUTPUT_OFF\n"),
        ("2636B", "nplc", 0.001, b"smua.measure.nplc = 0.001\n"),
        ("2636B", "nplc", 25, b"smua.measure.nplc = 25\n"),
        ("2636B", "source_delay", 0.002, b"smua.source.delay = 0.002\n"),
        ("2612B", "current_limit", 3.0, b"smua.source.limiti = 3\n")),  # limits follow the model
    readings=(
        ("source_voltage", b"print(smua.source.levelv)\n", b"1.50000e+00\n", 1.5),
        ("current_limit", b"print(smua.source.limiti)\n", b"1.00000e-04\n", 1e-4),
        ("output_enabled", b"print(smua.source.output)\n", b"1.00000e+00\n", True),
        ("nplc", b"print(smua.measure.nplc)\n", b"1.00000e+00\n", 1.0),
        ("source_delay", b"print(smua.source.delay)\n", b"0.00000e+00\n", 0.0),
        ("limit_tripped", b"print(smua.source.compliance)\n", b"true\n", True),
        ("limit_tripped", b"print(smua.source.compliance)\n", b"false\n", False)),
    invalid_settings=(
        ("2636B", "source_voltage", 202.5, ValueError),
        ("2601B", "source_voltage", 41, ValueError),
        ("2636B", "current_limit", 1.6, ValueError),
        ("2636B", "current_limit", 50e-12, ValueError),
        ("2612B", "current_limit", 5e-9, ValueError),
        ("2636B", "nplc", 26, ValueError),
        ("2636B", "nplc", 0.0005, ValueError),
        ("2636B", "source_delay", -1, ValueError),
        ("2636B", "source_voltage", "1", TypeError),
        ("2636B", "output_enabled", "on", TypeError),
        ("2636B", "limit_tripped", True, AttributeError)),
    configure=(dict(nplc=0.1),
               [(b"smua.source.func = smua.OUTPUT_DCVOLTS\n", b""),
                (b"smua.source.autorangev = smua.AUTORANGE_ON\n", b""),
                (b"smua.measure.autorangei = smua.AUTORANGE_ON\n", b""),
                (b"smua.source.limiti = 0.001\n", b""), (b"smua.measure.nplc = 0.1\n", b""),
                (b"smua.source.delay = 0\n", b""),
                (b"smua.measure.delay = smua.DELAY_OFF\n", b""), NO_ERROR_2600B]),
    invalid_configure=(dict(source_delay=-0.1), "Keithley2600B.source_delay"),
    measure=(b"print(smua.measure.i())\n", b"1.23450e-05\n"),
    linear_sweep=lambda v, i: [*buffer_setup_2600b(b"0.001"),
                               *trigger_sweep_2600b(b"linearv(-1, 1, 200)", 200),
                               *read_back_2600b(v, i)],
    fail_abort=(dict(delay=5e-4),
                [*buffer_setup_2600b(b"0.0005"), (b"labctl_v = {0, 0.5, 1, 1.5, 2}\n", b""),
                 NO_ERROR_2600B, (b"smua.source.output = smua.OUTPUT_ON\n", b""),
                 (_LOOP_2600B, b""), *read_back_2600b(*_ABORTED)],
                *_ABORTED),
    invalid_linear=(
        ((0, 300, 10, 0), "sweep_linear stop=300 V"),
        ((0, 1, 1, 0), "points=1"),
        ((0, 1, 2.5, 0), "points=2.5"),
        ((0, 1, 5001, 0), "points=5001"),
        ((0, 1, 10, -1e-3), "sweep delay=-0.001")),
    list_sweep=(_LEVELS_4, dict(delay=0),  # one table, however long
                [*buffer_setup_2600b(b"0"),
                 *trigger_sweep_2600b(b"listv({0, 0.25, -0.5, 1.125})", 4),
                 *read_back_2600b(_LEVELS_4, _LEVELS_4 / 1e4)]),
    invalid_list=(
        ("2636B", [0, 1, 203], "voltage 203 V is outside \\[-202, 202\\] V"),
        ("2604B", [0, 41], "voltage 41 V is outside \\[-40.4, 40.4\\] V"),
        ("2636B", [0, float("nan")], "voltage nan V"),
        ("2636B", [], "1 to 5000 voltages, got 0")),
    errors=(
        ("check_errors",
         lambda k: k.check_errors(),
         [(b"print(errorqueue.next())\n",
           b"-2.85000e+02\tTSP Syntax error at line 1: unexpected symbol near `:'\t"
           b"2.00000e+01\t1.00000e+00\n"),
          (b"print(errorqueue.next())\n",
           b"1.10100e+03\tParameter too big\t2.00000e+01\t1.00000e+00\n"),
          NO_ERROR_2600B],
         r"smu at script://smu: -285: TSP Syntax error at line 1: unexpected symbol near `:'; "
         r"1101: Parameter too big$"),),
    source_off=[(b"smua.source.levelv = 0\n", b""),
                (b"smua.source.output = smua.OUTPUT_OFF\n", b"")],
)

SCRIPTED = (KEITHLEY2450, KEYSIGHT_B2900, KEITHLEY2600B)


# --- the twins --------------------------------------------------------------------------------

def connect_2450(load=None):
    """A Keithley2450 on a VirtualKeithley2450 driving `load` (a Resistor), identified."""
    load = load or Resistor()
    twin = VirtualKeithley2450(load)
    smu = Keithley2450(InProcessTransport(twin, "sim://smu"), name="smu")
    smu.check_identity()
    return smu, twin, load


def connect_b2900(model: str = "B2902A", channel: int = 1, load=None, identify: bool = True):
    """A KeysightB2900 on `channel` of a VirtualKeysightB2900 `model` driving `load`."""
    load = load or Resistor()
    twin = VirtualKeysightB2900(load, model=model)
    smu = KeysightB2900(InProcessTransport(twin, "sim://smu"), name="smu", channel=channel)
    if identify:
        smu.check_identity()
    return smu, twin, load


def connect_2600b(model: str = "2636B", channel: str = "a", load=None):
    """A Keithley2600B on `channel` of a VirtualKeithley2600B `model` (smua drives `load`)."""
    load = load or Resistor()
    twin = VirtualKeithley2600B(load, model=model)
    smu = Keithley2600B(InProcessTransport(twin, "sim://smu"), name="smu", channel=channel)
    smu.check_identity()
    return smu, twin, load


def _last_source_2450(smu) -> float:
    source, = smu.ask_values(':TRAC:DATA? 1, 1, "defbuffer1", SOUR')
    return source


TWIN_2450 = TwinSmu(
    name="Keithley2450", connect=connect_2450,
    identity="KEITHLEY INSTRUMENTS,MODEL 2450,04000001,1.7.12b",
    reset_limit=105e-6, reset_answers=(("*LANG?", "SCPI"),), rtol=1e-6,
    tripped_after_abort=True,
    measured_source=_last_source_2450,
    point_times=lambda smu, n: smu.ask_values(f':TRAC:DATA? 1, {n}, "defbuffer1", REL'),
    errors=ScpiErrorQueue(out_of_range=":SOUR:VOLT 300;:SOUR:VOLT:ILIM 2;"
                                       ":SOUR:SWE:VOLT:LIN 0, 1, 1",
                          conflict=":INIT", empty_reply='0,"No error;0;0 0"',
                          twin_limit=lambda twin: twin.current_limit),
)

TWIN_B2900 = TwinSmu(
    name="KeysightB2900", connect=lambda load=None: connect_b2900(load=load),
    identity="Keysight Technologies,B2902A,MY00000001,3.4.2011.5100",
    reset_limit=100e-6, reset_answers=((":SENS1:FUNC?", '"VOLT","CURR"'),), rtol=1e-6,
    sweep_delay_is_source_delay=True,  # the sweep's delay is the acquire trigger delay
    abort_opens_output=True,  # output protection
    measured_source=lambda smu: float(smu.ask(":FETC:VOLT? (@1)")),
    point_times=lambda smu, n: smu.ask_values(":FETC:ARR:TIME? (@1)"),
    sweep_off_answers=((":SOUR1:VOLT:MODE?", "FIX"),),
    list_answers=((":SOUR1:LIST:VOLT:POIN?", "250"),),
    abort_answers=((":OUTP1:PROT?", "0"),),  # the driver restored it
    errors=ScpiErrorQueue(out_of_range=":SOUR1:VOLT 300;:SENS1:CURR:PROT 5;:SOUR1:VOLT:POIN 2501",
                          # the trigger count is still 1
                          conflict=":SOUR1:VOLT:MODE SWE;:SOUR1:VOLT:POIN 5;:INIT (@1)",
                          empty_reply='+0,"No error"',
                          twin_limit=lambda twin: twin.channels[1].current_limit),
)

TWIN_2600B = TwinSmu(
    name="Keithley2600B", connect=lambda load=None: connect_2600b(load=load),
    identity="Keithley Instruments Inc., Model 2636B, 4000001, 4.0.0",
    reset_limit=0.1,
    reset_answers=(("print(smua.measure.delay)", "-1.00000e+00"),),  # auto on the 2634B-2636B
    rtol=1e-5, source_rtol=1e-5,
    reports_programmed_source=True,  # the buffer's source values are the programmed levels
    returns_to_idle=True,  # the trigger model's SOURCE_IDLE, the fail_abort loop's labctl_idle
    abort_answers=(("print(labctl_v[21], labctl_idle)", "2.00000e+00\t0.00000e+00"),),
)

TWINS = (TWIN_2450, TWIN_B2900, TWIN_2600B)
