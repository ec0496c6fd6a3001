"""Client sessions replayed against each twin at the byte level: what a script written from the
instrument's manual, or a third-party driver (QCoDeS, PyMeasure: the sessions are the bytes their
sources send, read from the files cited; neither package is a dependency), sends and what the
real instrument answers. Each step is (line sent, reply line or None for no reply).

The supported subset behind these sessions is written down per instrument in
docs/instruments/*.md ("Supported subset")."""
from __future__ import annotations

import numpy as np
import pytest
from labctl.sim.keithley2450 import VirtualKeithley2450
from labctl.sim.keithley2600b import VirtualKeithley2600B
from labctl.sim.keysight33500b import VirtualKeysight33500B
from labctl.sim.keysight81160a import VirtualKeysight81160A
from labctl.sim.keysight_b2900 import VirtualKeysightB2900

from fakes import RecordingLoad, Resistor

Session = list[tuple[str, "str | None"]]
NO_ERROR_2450 = '0,"No error;0;0 0"'


def replay(twin, session: Session) -> None:
    """Send each line; the twin must answer exactly the reply (nothing where it is None)."""
    for line, reply in session:
        expected = b"" if reply is None else reply.encode() + b"\n"
        assert twin.handle(line.encode() + b"\n") == expected, line


def _2450() -> VirtualKeithley2450:
    return VirtualKeithley2450(Resistor(1e4))


# -- Keithley 2450

# QCoDeS src/qcodes/instrument_drivers/Keithley/Keithley_2450.py: the constructor (*LANG?, then
# connect_message's *IDN?) and snapshot(update=True), which reads every parameter of each
# submodule: source current and voltage, sense current, resistance and voltage, defbuffer1, and
# the instrument's own. Its function names are lower-case long forms (":SOURce:current:...").
QCODES_SNAPSHOT: Session = [
    ("*LANG?", "SCPI"),
    ("*IDN?", "KEITHLEY INSTRUMENTS,MODEL 2450,04000001,1.7.12b"),
    (":SOUR:current:RANGe?", "+1.000000E-08"),
    (":SOURce:current:RANGe:AUTO?", "1"),
    ("SOUR:current:VLIM?", "+2.100000E+01"),
    (":SOUR:current:VLIM:TRIPped?", "0"),
    (":SOURce:current:DELay?", "+0.000000E+00"),
    (":SOURce:current:DELay:AUTO?", "1"),
    (":SOURce:current:READ:BACK?", "1"),
    (":SOUR:voltage:RANGe?", "+2.000000E-02"),
    (":SOURce:voltage:RANGe:AUTO?", "1"),
    ("SOUR:voltage:ILIM?", "+1.050000E-04"),
    (":SOUR:voltage:ILIM:TRIPped?", "0"),
    (":SOURce:voltage:DELay?", "+0.000000E+00"),
    (":SOURce:voltage:DELay:AUTO?", "1"),
    (":SOURce:voltage:READ:BACK?", "1"),
    *[step for function, range_ in (("current", "+1.000000E-04"), ("resistance", "+2.000000E+05"),
                                    ("voltage", "+2.000000E-02"))
      for step in ((f":SENSe:{function}:RSENse?", "0"), (f":SENSe:{function}:RANGe?", range_),
                   (f":SENSe:{function}:RANGe:AUTO?", "1"),
                   (f":SENSe:{function}:NPLCycles?", "+1.000000E+00"),
                   (f":SENSe:{function}:AZERo?", "1"), (":SENSe:COUNt?", "1"))],
    (":TRACe:POINts? 'defbuffer1'", "100000"),
    (":TRACe:ACTual? 'defbuffer1'", "0"),
    (":SOUR:FUNC?", "VOLT"),
    (":SENS:FUNC?", '"CURR:DC"'),
    ("ROUTe:TERMinals?", "FRON"),
    (":OUTP?", "0"),
    (":SYSTem:LFRequency?", "+6.000000E+01"),
    (":SYST:ERR?", NO_ERROR_2450),
]


def test_2450_qcodes_snapshot_answers_every_parameter():
    replay(_2450(), QCODES_SNAPSHOT)


def test_2450_qcodes_user_delay_before_user_number_is_the_instruments_undefined_header():
    """user_delay reads ':DELay:USER{user_number}?' and user_number starts as None: the header
    ':DELay:USERNone?' is undefined on the instrument too (-113, no reply)."""
    replay(_2450(), [(":SOURce:voltage:DELay:USERNone?", None),
                     (":SYST:ERR?", '-113,"Undefined header;1;1970/01/01 00:00:00.000"'),
                     (":SOURce:voltage:DELay:USER1?", "+0.000000E+00")])


def test_2450_qcodes_measure_and_sweep_with_buffer_names():
    """Keithley2450Sense._measure (':MEASure? '<buffer>''), _measure_sweep via sweep_start
    (':SOURce:SWEep:<function>:LINear ...', ':INITiate', '*WAI') and Keithley2450Buffer.get_data,
    get_last_reading and clear_buffer."""
    replay(_2450(), [
        (":OUTP 1", None), ("SOUR:voltage 0.5", None),
        (":MEASure? 'defbuffer1'", "+5.000000E-05"),
        (":FETCh? 'defbuffer1', READing,SOURce", "+5.000000E-05,+5.000000E-01"),
        (":SOURce:SWEep:voltage:LINear 0,1,3,0,1,AUTO,ON,OFF,'defbuffer1'", None),
        (":INITiate", None), ("*WAI", None),
        (":TRACe:ACTual? 'defbuffer1'", "4"),
        (":TRACe:DATA? 2, 4, 'defbuffer1'", "+0.000000E+00,+5.000000E-05,+1.000000E-04"),
        (":TRACe:DATA? 2, 4, 'defbuffer1', SOURce,READing",
         "+0.000000E+00,+0.000000E+00,+5.000000E-01,+5.000000E-05,+1.000000E+00,+1.000000E-04"),
        (":TRACe:CLEar 'defbuffer1'", None),
        (":TRACe:ACTual? 'defbuffer1'", "0"),
        (":SYST:ERR?", NO_ERROR_2450),
    ])


def test_2450_measure_query_forms_from_the_manual():
    """:MEASure[:<function>]? ["<bufferName>"[, <bufferElements>]] (reference manual, SCPI command
    reference), :FETCh?, [:SENSe]:COUNt and a buffer made with :TRACe:MAKE."""
    replay(_2450(), [
        (":OUTPut:STATe ON", None), (":SOURce1:VOLTage:LEVel:IMMediate:AMPLitude 0.5", None),
        (':MEAS:CURR? "defbuffer1"', "+5.000000E-05"),
        (':MEAS? "defbuffer1", READ, SOUR', "+5.000000E-05,+5.000000E-01"),
        (':MEAS:VOLT?', "+5.000000E-01"),  # selects voltage, which stays selected
        (":SENS:FUNC?", '"VOLT:DC"'),
        (':MEASure:CURRent:DC? "defbuffer2", SOURce, READing', "+5.000000E-01,+5.000000E-05"),
        (':TRAC:MAKE "mybuf", 100', None), (":SENS:COUN 3", None),
        (':MEAS:CURR? "mybuf", READ', "+5.000000E-05"),
        (':TRAC:ACT? "mybuf"', "3"), (':TRAC:ACT:STAR? "mybuf"', "1"),
        (':TRAC:ACT:END? "mybuf"', "3"), (':TRAC:POIN? "mybuf"', "100"),
        (':TRAC:DEL "mybuf"', None), (':TRAC:ACT? "mybuf"', None),
        (":SYST:ERR?", '-224,"Illegal parameter value; reading buffer not found;1;1970/01/01 00:00:00.116"'),
        (":SYST:ERR?", NO_ERROR_2450),
    ])


def test_2450_numeric_queries_take_minimum_maximum_default():
    replay(_2450(), [
        (":SENS:CURR:NPLC? MAX", "+1.000000E+01"), (":SENS:CURR:NPLC? DEF", "+1.000000E+00"),
        (":SENSe:CURRent:DC:NPLCycles? MINimum", "+1.000000E-02"),
        (":SOURCE:VOLTAGE:ILIMIT:LEVEL? MAX", "+1.050000E+00"),
        (":SOUR:CURR:VLIM? DEF", "+2.100000E+01"),
        (":SOUR:VOLT:ILIM MIN", None), (":SOUR:VOLT:ILIM?", "+1.000000E-09"),
        (":SENS:COUN? MAX", "300000"),
        (":SOUR:VOLT:DEL:USER2 0.5", None), (":SOUR:VOLT:DEL:USER2?", "+5.000000E-01"),
        (":SOUR:VOLT:DEL:USER2? MAX", "+1.000000E+04"),
        (":SENS:CURR:RANG 2e-6", None),  # the smallest range that holds it; autorange ends
        (":SENS:CURR:RANG?;:SENS:CURR:RANG:AUTO?", "+1.000000E-05;0"),
        (":SENS:CURR:RANG? MAX", "+1.000000E+00"),
        (":SOUR:VOLT:DEL 0.01", None), (":SOUR:VOLT:DEL:AUTO?", "0"),  # a delay ends auto delay
        (":SENS:CURR:NPLC? 3", None), (":SOUR:VOLT:DEL:USER6?", None),
        (":SYST:ERR?", '-224,"Illegal parameter value;1;1970/01/01 00:00:00.000"'),
        (":SYST:EVEN:NEXT?", '-114,"Header suffix out of range;1;1970/01/01 00:00:00.000"'),
        (":SYST:ERR?", NO_ERROR_2450),
    ])


def test_2450_error_queue_entries_are_timestamped_event_log_entries():
    """:SYSTem:ERRor? and :SYSTem:EVENtlog:NEXT? return code,"message;severity;date time" (the
    manual's example: -109,"Missing parameter;1;2015/05/06 12:55:33.648"); the twin's clock
    starts at 1970/01/01 00:00:00 and advances with each reading."""
    twin = _2450()
    replay(twin, [
        (":SENS:CURR:NPLC 1", None), (":READ?", "+0.000000E+00"),  # 1/60 s of integration
        (":SOUR:VOLT:ILIM", None), (":NOPE", None), (":SYST:EVEN:COUN?", "2"),
        (":SYST:ERR?", '-109,"Missing parameter;1;1970/01/01 00:00:00.016"'),
        (":SYST:EVEN:NEXT?", '-113,"Undefined header;1;1970/01/01 00:00:00.016"'),
        (":SYST:ERR?", NO_ERROR_2450),
        (":NOPE", None), (":SYST:CLE", None), (":SYST:ERR:COUN?", "0"),
    ])


# PyMeasure pymeasure/instruments/keithley/keithley2450.py (0.16): reset(), apply_voltage(),
# measure_current(), source_voltage, enable_source(), current, then shutdown(): source_mode,
# ramp_to_voltage(0.0) (the level, then 30 steps of np.linspace to 0 V as ':SOUR:VOLT:LEV %g'),
# stop_buffer() (':ABOR', KeithleyBufferBase in keithley/buffer.py), disable_source().
def test_2450_pymeasure_session_and_shutdown_leave_no_error():
    twin = _2450()
    steps = np.linspace(0.5, 0.0, 30)
    replay(twin, [
        ("*IDN?", "KEITHLEY INSTRUMENTS,MODEL 2450,04000001,1.7.12b"),
        ("*RST;:stat:pres;:*CLS;", None),
        (":SOUR:FUNC VOLT", None), (":SOUR:VOLT:RANG:AUTO 1", None), (":SOUR:VOLT:ILIM 0.001", None),
        ("SYST:ERR?", NO_ERROR_2450),
        (":SENS:FUNC 'CURR';:SENS:CURR:NPLC 0.100000;", None), (":SENS:CURR:RANG:AUTO 1;", None),
        ("SYST:ERR?", NO_ERROR_2450),
        (":SOUR:VOLT:LEV 0.5", None), ("OUTPUT ON", None),
        (":READ?", "+5.000000E-05"),
        (":SENS:CURR:RANG:AUTO 0;:SENS:CURR:RANG 0.001", None), (":SENS:CURR:RANG?", "+1.000000E-03"),
        (":SENS:RES:RSENSE?", "0"), (":TRAC:POIN?", "100000"),
        (":SENS:CURR:AVER:TCON?", "REP"), (":SENS:CURR:AVER:COUNT?", "10"), (":SENS:CURR:AVER?", "0"),
        (":SOUR:VOLT:DEL:AUTO?", "1"), (":OUTP:VOLT:SMOD?", "NORM"),
        # shutdown()
        (":SOUR:FUNC?", "VOLT"), (":SOUR:VOLT?", "+5.000000E-01"),
        *[(f":SOUR:VOLT:LEV {v:g}", None) for v in steps],
        (":ABOR", None), ("OUTPUT OFF", None),
        ("SYST:ERR?", NO_ERROR_2450),
    ])
    assert not twin.output_on and twin.source_level == 0.0


def test_2450_newer_pymeasure_members():
    """Members of the newer pymeasure/instruments/keithley/keithley2450.py (the repository's, after
    0.16): current_autozero, current_autorange, sense_count, source_voltage_readback,
    display_light_state, error_count, sweep_voltage_linear, start_buffer (':INIT'),
    get_trace_actual_end and get_trace_data."""
    replay(_2450(), [
        (":SENS:CURR:AZER?", "1"), (":SENS:CURR:AZER 0", None), (":SENS:CURR:AZER?", "0"),
        (":SENS:CURR:RANG:AUTO?", "1"), (":SENS:COUNT 2", None), (":SENS:COUNT?", "2"),
        (":SOUR:VOLT:READ:BACK?", "1"), (":DISP:LIGH:STAT ON50", None), (":DISP:LIGH:STAT?", "ON50"),
        (":SYST:ERR:COUN?", "0"), (":SENS:COUNT 1", None),
        (':SOUR:SWE:VOLT:LIN 0, 0.5, 3, 0.0001, 1, BEST, ON, OFF, "defbuffer1"', None),
        (":INIT", None), (':TRACe:ACTual:END? "defbuffer1"', "3"), (":FORM:DATA ASCII", None),
        (':TRAce:DATA? 1, 3, "defbuffer1", RELative, SOURce, READing',
         "+0.000000E+00,+0.000000E+00,+0.000000E+00,+1.676667E-02,+2.500000E-01,+2.500000E-05,"
         "+3.353333E-02,+5.000000E-01,+5.000000E-05"),  # 100 us delay + 1/60 s per point
        (":SYST:ERR?", NO_ERROR_2450),
    ])


def test_2450_unsimulated_but_documented_settings_say_so():
    """Documented values the twin does not simulate give -221 with the reason, never silence."""
    replay(_2450(), [
        (":SOUR:FUNC CURR", None), (":SENS:FUNC 'RES'", None), (":FORM:DATA REAL", None),
        (':READ? "defbuffer1", TST', None),
        (":SYST:ERR?", '-221,"Settings conflict; current source not simulated;1;1970/01/01 00:00:00.000"'),
        (":SYST:ERR?", '-221,"Settings conflict; resistance measurement not simulated;1;1970/01/01 00:00:00.000"'),
        (":SYST:ERR?", '-221,"Settings conflict; binary data formats not simulated;1;1970/01/01 00:00:00.000"'),
        (":SYST:ERR?", '-221,"Settings conflict; buffer element not simulated;1;1970/01/01 00:00:00.000"'),
        (":FORM:DATA ASCII", None), (":FORM?", "ASC"),
        (":SYST:ERR?", NO_ERROR_2450),
    ])


# -- Keysight 81160A


def _81160a() -> tuple[VirtualKeysight81160A, RecordingLoad]:
    load = RecordingLoad()
    return VirtualKeysight81160A(load), load


def test_81160a_pymeasure_output_trigger_opc_output_off_leaves_no_error():
    """PyMeasure pymeasure/instruments/keysight/keysight81160A.py (Keysight81160AChannel: shape,
    pulse_period, pulse_width, voltage_high/low, trigger_mode, trigger_count) and, inherited from
    agilent/agilent33500.py, the channel's output ('OUTP{ch} %d'), trigger() ('*TRG;*WAI') and
    wait_for_trigger() ('*OPC?')."""
    twin, load = _81160a()
    replay(twin, [
        ("*IDN?", "Agilent Technologies,81160A,DE00000001,2.0.0.0-2.6"), ("*RST", None), ("*CLS", None),
        (":FUNC1 PULS", None), ("SYST:ERR?", '0,"No error"'), (":FUNC1?", "PULS"),
        (":OUTP1:IMP:EXT MAX", None),
        (":PULS:PER1 1.000000e-06", None), (":PULS:PER1?", "+1.000000E-06"),
        (":PULS:WIDT1 1.000000e-07", None), (":PULS:WIDT1?", "+1.000000E-07"),
        (":VOLT1:HIGH 1.000000", None), (":VOLT1:LOW 0.000000", None),
        (":VOLT1:HIGH?", "+1.000000E+00"),
        (":ARM:SOUR1 MAN", None), (":ARM:SOUR1?", "MAN"),
        (":TRIG1:COUN 3", None), (":TRIG1:COUN?", "3"),
        ("OUTP1 1", None), ("*TRG;*WAI", None), ("*OPC?", "1"), ("OUTP1 0", None),
        ("SYST:ERR?", '0,"No error"'),
    ])
    assert [(v, d) for _, v, d in load.holds] == [(1.0, 1e-7), (0.0, 9e-7)] * 3


def test_81160a_query_forms_from_the_users_guide():
    """`{<value>|MINimum|MAXimum}` in commands and queries, channel suffixes [1|2], short and
    long forms, :PULSe:FREQuency and [:SOURce]:FREQuency coupled to the period."""
    twin, _ = _81160a()
    replay(twin, [
        (":PULS:PER1? MIN", "+3.030000E-09"), (":PULSe:PERiod2? MAXimum", "+1.000000E+06"),
        (":PULS:WIDT1? MIN", "+1.500000E-09"), (":PULS:TRAN1? MIN", "+1.000000E-09"),
        (":SOURce:PULSe:TRANsition2:TRAiling? MAX", "+1.000000E+03"),
        (":TRIG1:COUN? MAX", "2147483647"), (":OUTP2:IMP:EXT? MIN", "+3.000000E-01"),
        (":FREQ1?", "+1.000000E+06"), (":PULS:FREQ1 2E6", None), (":PULS:PER1?", "+5.000000E-07"),
        (":SOURce:FREQuency1:CW? MIN", "+1.000000E-06"), (":FREQ2 MIN", None),
        (":PULS:PER2?", "+1.000000E+06"),
        (":VOLT1? MAX", "+5.000000E+00"),  # 10 V open circuit: 5 Vpp into the *RST 50 ohm load
        (":FREQ3?", None), (":PULS:WIDT1? 5", None), (":APPL1:PULS 1000, 1, 0", None),
        ("SYST:ERR?", '-114,"Header suffix out of range"'),
        ("SYST:ERR?", '-224,"Illegal parameter value"'),
        ("SYST:ERR?", '-113,"Undefined header"'),
        ("SYST:ERR?", '0,"No error"'),
    ])


def test_81160a_duty_cycle_and_hold():
    """:PULSe:DCYCle[1|2] and :PULSe:HOLD[1|2] WIDTh|DCYCle, also as the Remote Programming
    Reference's [:SOURce]:FUNCtion[1|2]:PULSe:DCYCle / :HOLD (PyMeasure's pulse_dutycycle and
    pulse_hold use the first): holding the duty cycle, a new period scales the width."""
    twin, _ = _81160a()
    replay(twin, [
        (":PULS:DCYC1?", "+1.000000E+01"),  # 100 ns of the 1 us *RST period
        (":PULS:DCYC1 25.000000", None), (":PULS:WIDT1?", "+2.500000E-07"),
        (":PULS:HOLD1?", "WIDT"), (":PULS:HOLD1 DCYC", None), (":FUNC1:PULS:HOLD?", "DCYC"),
        (":PULS:PER1 2e-6", None), (":PULS:WIDT1?", "+5.000000E-07"),
        (":SOURce:FUNCtion1:PULSe:DCYCle?", "+2.500000E+01"),
        (":PULS:DCYC1 0", None),  # below the minimum width
        (":PULS:HOLD1 TDEL", None), (":PULS:HOLD1?", "DCYC"),
        ("SYST:ERR?", '-222,"Data out of range"'),
        ("SYST:ERR?", '-221,"Settings conflict; holding the trailing delay is not simulated"'),
        ("SYST:ERR?", '0,"No error"'),
    ])


# -- Keysight B2900


def test_b2900_session_from_the_scpi_reference():
    """Channel suffixes and channel lists, optional nodes, long forms and the error queue
    (B2900 SCPI Command Reference)."""
    twin = VirtualKeysightB2900(Resistor(), model="B2902A")
    replay(twin, [
        ("*RST", None), (":SOUR1:FUNC:MODE VOLT", None), (":SOURce2:FUNCtion:MODE?", "VOLT"),
        (":SOUR:VOLT 0.1", None), (":SENS:CURR:PROT 1e-3", None),
        (":SENSe1:CURRent:DC:PROTection:LEVel?", "+1.000000E-03"),
        (":OUTP1 ON", None),
        (":MEAS:CURR? (@1)", "+1.000000E-05"),
        (":MEAS:CURR? (@1,2)", "+1.000000E-05,+0.000000E+00"),
        (":SENS2:CURR:NPLC?", "+1.000000E+00"),
        (":SENS3:CURR:NPLC?", None), (":SOUR:VOLT 250", None),
        (":SYST:ERR?", '-114,"Header suffix out of range"'),
        (":SYST:ERR?", '-222,"Data out of range"'),
        (":SYST:ERR?", '+0,"No error"'),
    ])


def test_b2900_numeric_settings_take_minimum_maximum_default():
    """`{<value>|MINimum|MAXimum|DEFault}` and `? [MINimum|MAXimum|DEFault]` (B2900 SCPI Command
    Reference) for the source level, sweep start/stop/points, compliance and the trigger
    settings; DEFault is the *RST value."""
    twin = VirtualKeysightB2900(Resistor(), model="B2902A")
    replay(twin, [
        (":SOUR:VOLT? MAX", "+2.100000E+02"), (":SOUR2:VOLT MIN", None), (":SOUR2:VOLT?", "-2.100000E+02"),
        (":SOURce1:VOLTage:LEVel:IMMediate:AMPLitude? DEF", "+0.000000E+00"),
        (":SENS:CURR:PROT? MIN", "+1.000000E-09"), (":SENS2:CURR:PROT MAX", None),
        (":SENS2:CURR:PROT?", "+3.030000E+00"), (":SENS:CURR:PROT? DEF", "+1.000000E-04"),
        (":SOUR:VOLT:POIN? MAX", "2500"), (":SOUR:VOLT:STAR? MIN", "-2.100000E+02"),
        (":TRIG:COUN? MAX", "100000"), (":TRIG:ACQ:DEL? MAX", "+1.000000E+02"),
        (":TRIG2:TIM? DEF", "+1.000000E-03"), (":TRIG:COUN MAX", None), (":TRIG:TRAN:COUN?", "100000"),
        (":SOUR:VOLT? UP", None),
        (":SYST:ERR?", '-224,"Illegal parameter value"'), (":SYST:ERR?", '+0,"No error"'),
    ])
    assert twin.channels[2].level == -210.0


# -- Keysight 33500B


def test_33500b_pymeasure_burst_session():
    """PyMeasure pymeasure/instruments/agilent/agilent33500.py (Agilent33500Channel: shape,
    output_load, voltage_high/low, pulse_width, pulse_transition, burst_mode/ncycles/state,
    output; Agilent33500: trigger_source, trigger(), wait_for_trigger())."""
    load = RecordingLoad()
    twin = VirtualKeysight33500B(load, model="33522B")
    replay(twin, [
        ("SOUR1:FUNC PULS", None), ("SOUR1:FUNC?", "PULS"),
        ("OUTP1:LOAD INF", None), ("OUTP1:LOAD?", "+9.90000000000000E+37"),
        ("SOUR1:VOLT:HIGH 1.000000", None), ("SOUR1:VOLT:LOW 0.000000", None),
        ("SOUR1:FUNC:PULS:WIDT 1.000000e-07", None),
        ("SOUR1:FUNC:PULS:TRAN:BOTH 1.000000e-08", None),
        ("SOUR1:FUNC:PULS:TRAN?", "+1.00000000000000E-08"),
        ("SOUR1:BURS:MODE TRIG", None), ("SOUR1:BURS:NCYC 3", None), ("SOUR1:BURS:STAT 1", None),
        ("TRIG:SOUR BUS", None), ("TRIG1:SOUR?", "BUS"),
        ("OUTP1 1", None), ("*TRG;*WAI", None), ("*OPC?", "1"), ("OUTP1 0", None),
        ("SYST:ERR?", '+0,"No error"'),
    ])
    assert [v for _, v, _ in load.holds] == [1.0, 0.0] * 3


def test_33500b_queries_take_minimum_maximum():
    """`? [{MINimum|MAXimum}]` (33500B Operating and Service Guide) on period, frequency, levels
    (programmed for the expected load), width, edges and burst count."""
    twin = VirtualKeysight33500B(RecordingLoad(), model="33522B")
    replay(twin, [
        ("SOUR1:FUNC:PULS:PER? MIN", "+3.33333333333333E-08"),
        ("SOURce2:FUNCtion:PULSe:PERiod? MAXimum", "+1.00000000000000E+06"),
        ("SOUR1:VOLT? MAX", "+1.00000000000000E+01"),  # 20 V open circuit into the 50 ohm load
        ("OUTP1:LOAD INF", None), ("SOUR1:VOLT? MAX", "+2.00000000000000E+01"),
        ("SOUR1:VOLT:HIGH? MIN", "-1.00000000000000E+01"), ("SOUR1:FREQ? MAX", "+3.00000000000000E+07"),
        ("FUNC:PULS:WIDT? MIN", "+1.60000000000000E-08"), ("FUNC:PULS:TRAN:LEAD? MIN", "+8.40000000000000E-09"),
        ("BURS:NCYC? MAX", "+1.00000000000000E+08"), ("BURS:NCYC MIN", None), ("BURS:NCYC?", "+1.00000000000000E+00"),
        ("SOUR1:VOLT? ZERO", None), ("BURS:NCYC INF", None),
        ("SYST:ERR?", '-224,"Illegal parameter value"'),
        ("SYST:ERR?", '-221,"Settings conflict; infinite bursts are not simulated"'),
        ("SYST:ERR?", '+0,"No error"'),
    ])


# -- Keithley 2600B (TSP)


def test_2600b_tsp_session_from_the_reference_manual():
    """TSP chunks from the 2600B Reference Manual: smua settings, measure, compliance and the
    error queue read with print(errorqueue.next()) (code, message, severity, node)."""
    twin = VirtualKeithley2600B(Resistor(), model="2636B")
    replay(twin, [
        ("*IDN?", "Keithley Instruments Inc., Model 2636B, 4000001, 4.0.0"),
        ("reset()", None), ("errorqueue.clear()", None),
        ("smua.source.func = smua.OUTPUT_DCVOLTS", None), ("smua.source.levelv = 0.1", None),
        ("smua.source.limiti = 1e-3", None), ("smua.measure.nplc = 0.01", None),
        ("smua.source.output = smua.OUTPUT_ON", None),
        ("print(smua.measure.i())", "1.00000e-05"),
        ("print(smua.source.limiti)", "1.00000e-03"),
        ("print(smub.source.output)", "0.00000e+00"),
        ("print(smua.source.compliance)", "false"),
        ("smua.source.levelv = 1000", None),
        ("print(errorqueue.count)", "1.00000e+00"),
        ("print(errorqueue.next())", "1.10100e+03\tParameter too big\t2.00000e+01\t1.00000e+00"),
        ("smua.source.output = smua.OUTPUT_OFF", None), ("*OPC?", "1"),
    ])
    assert not twin.output_on


# PyMeasure pymeasure/instruments/keithley/keithley2600.py (0.16), Channel 'a': apply_voltage(),
# measure_current(), source_voltage, source_output, current, voltage, resistance, the range and
# sense properties, then shutdown() (ramp_to_voltage: the level, then np.linspace to 0 V as
# 'smua.source.levelv=%f', output off); check_errors reads print(errorqueue.next()).
def test_2600b_pymeasure_session_and_shutdown_leave_no_error():
    twin = VirtualKeithley2600B(Resistor(1e4), model="2636B")
    empty = "0.00000e+00\tQueue Is Empty\t0.00000e+00\t0.00000e+00"
    replay(twin, [
        ("smua.source.func=1", None), ("print(smua.source.func)", "1.00000e+00"),
        ("smua.source.autorangev=1", None), ("smua.source.limiti=0.001000", None),
        ("print(errorqueue.next())", empty),
        ("smua.measure.i()", None), ("smua.measure.nplc=0.100000", None),
        ("smua.measure.autorangei=1", None), ("print(errorqueue.next())", empty),
        ("smua.source.levelv=0.500000", None), ("smua.source.output=1", None),
        ("print(smua.measure.i())", "5.00000e-05"), ("print(smua.measure.v())", "5.00000e-01"),
        ("print(smua.measure.r())", "1.00000e+04"), ("print(smua.measure.iv())", "5.00000e-05\t5.00000e-01"),
        ("print(smua.sense)", "0.00000e+00"), ("print(smua.source.limitv)", "2.00000e+01"),
        ("smua.measure.v()", None), ("smua.measure.autorangev=1", None),
        ("smua.measure.rangev=2.000000", None), ("print(smua.measure.rangev)", "2.00000e+00"),
        ("smua.measure.rangei=0.000150", None), ("print(smua.measure.rangei)", "1.00000e-03"),
        ("print(errorqueue.next())", empty),
        # shutdown()
        ("print(smua.source.func)", "1.00000e+00"), ("print(smua.source.levelv)", "5.00000e-01"),
        *[(f"smua.source.levelv={v:f}", None) for v in np.linspace(0.5, 0.0, 30)],
        ("smua.source.output=0", None), ("print(errorqueue.next())", empty),
    ])
    assert not twin.output_on and twin.source_level == 0.0


@pytest.mark.parametrize("twin", [_2450(), _81160a()[0], VirtualKeysightB2900(Resistor()),
                                  VirtualKeysight33500B(RecordingLoad())],
                         ids=["2450", "81160A", "B2900", "33500B"])
def test_an_undefined_query_is_an_error_never_silence(twin):
    """A header no manual documents gets -113 in the queue (and, as on the instrument, no reply)."""
    assert twin.handle(b":NOT:A:HEADER?\n") == b""
    assert twin.handle(b":SYST:ERR?\n").startswith(b"-113,")
