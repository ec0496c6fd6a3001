"""KeysightB2900 driver against a scripted transport: the exact bytes of every command."""
from inspect import getattr_static

import numpy as np
import pytest

from labctl.instruments.base import InstrumentError
from labctl.instruments.keysight_b2900 import KeysightB2900
from labctl.instruments.smu import SourceMeter

from fakes import ScriptedTransport

NO_ERROR = (b":SYST:ERR?\n", b'+0,"No error"\n')
IDN = b"Keysight Technologies,B2902A,MY51140000,3.4.2011.5100\n"


def smu(*script: tuple[bytes, bytes], channel: int = 1) -> tuple[KeysightB2900, ScriptedTransport]:
    transport = ScriptedTransport(list(script))
    return KeysightB2900(transport, name="smu", channel=channel), transport


def test_has_every_source_meter_member():
    # getattr_static: isinstance() on the protocol would read the properties, i.e. send queries
    b, _ = smu()
    members = [n for n in vars(SourceMeter) if not n.startswith("_")] + list(
        SourceMeter.__annotations__)
    for member in members:
        getattr_static(b, member)


@pytest.mark.parametrize("idn", [IDN, b"Agilent Technologies,B2911A,MY1,2.0.1225.1125\n"])
def test_check_identity_accepts_keysight_and_agilent(idn):
    b, t = smu((b"*IDN?\n", idn))
    assert b.check_identity() == idn.decode().strip()
    assert not t.script


def test_check_identity_refuses_other_model():
    b, _ = smu((b"*IDN?\n", b"Keysight Technologies,B2961A,MY1,3.4\n"))
    with pytest.raises(InstrumentError, match=r"smu at script://smu: model 'B2961A' is not one of "
                                              r"B2901A, B2902A, B2911A, B2912A"):
        b.check_identity()


@pytest.mark.parametrize("model", [b"B2901A", b"B2911A"])
def test_channel_2_is_refused_on_a_one_channel_model(model):
    b, _ = smu((b"*IDN?\n", b"Keysight Technologies," + model + b",MY1,3.4\n"), channel=2)
    with pytest.raises(InstrumentError, match=f"{model.decode()} has one channel; channel 2 needs "
                                              "a B2902A or B2912A"):
        b.check_identity()


def test_channel_2_on_a_two_channel_model_addresses_channel_2():
    b, t = smu((b"*IDN?\n", IDN), (b":SOUR2:VOLT 1\n", b""), (b":MEAS:CURR? (@2)\n", b"+0.0E+00\n"),
               channel=2)
    b.check_identity()
    b.source_voltage = 1
    assert b.measure_current() == 0.0
    assert not t.script


@pytest.mark.parametrize("channel", [0, 3, True, 1.0, "1"])
def test_bad_channel_is_refused_before_anything_is_sent(channel):
    with pytest.raises(ValueError, match="channel"):
        smu(channel=channel)


@pytest.mark.parametrize("prop, value, sent", [
    ("source_voltage", 1.5, b":SOUR1:VOLT 1.5\n"),
    ("source_voltage", -210, b":SOUR1:VOLT -210\n"),
    ("current_limit", 1e-4, b":SENS1:CURR:PROT 0.0001\n"),
    ("current_limit", 1e-9, b":SENS1:CURR:PROT 1e-09\n"),
    ("current_limit", 3.03, b":SENS1:CURR:PROT 3.03\n"),
    ("output_enabled", True, b":OUTP1 1\n"),
    ("output_enabled", False, b":OUTP1 0\n"),
    ("nplc", 4.8e-4, b":SENS1:CURR:NPLC 0.00048\n"),
    ("nplc", 100, b":SENS1:CURR:NPLC 100\n"),
    ("source_delay", 0.002, b":TRIG1:ACQ:DEL 0.002\n"),
])
def test_setting_properties(prop, value, sent):
    b, t = smu((sent, b""))
    setattr(b, prop, value)
    assert not t.script


@pytest.mark.parametrize("prop, query, reply, value", [
    ("source_voltage", b":SOUR1:VOLT?\n", b"+1.500000E+00\n", 1.5),
    ("current_limit", b":SENS1:CURR:PROT?\n", b"+1.000000E-04\n", 1e-4),
    ("output_enabled", b":OUTP1?\n", b"1\n", True),
    ("nplc", b":SENS1:CURR:NPLC?\n", b"+1.000000E+00\n", 1.0),
    ("source_delay", b":TRIG1:ACQ:DEL?\n", b"+0.000000E+00\n", 0.0),
    ("limit_tripped", b":SENS1:CURR:PROT:TRIP?\n", b"0\n", False),
])
def test_reading_properties(prop, query, reply, value):
    b, _ = smu((query, reply))
    assert getattr(b, prop) == value


@pytest.mark.parametrize("prop, value, error", [
    ("source_voltage", 210.5, ValueError),
    ("current_limit", 0, ValueError),
    ("current_limit", 3.1, ValueError),
    ("nplc", 4e-4, ValueError),
    ("nplc", 120, ValueError),
    ("source_delay", -1, ValueError),
    ("source_delay", 101, ValueError),
    ("source_voltage", "1", TypeError),
    ("output_enabled", "on", TypeError),
])
def test_validators_send_nothing(prop, value, error):
    b, _ = smu()  # any write would fail the script
    with pytest.raises(error, match=f"KeysightB2900.{prop}"):
        setattr(b, prop, value)


CONFIGURE = [(b":SOUR1:FUNC:MODE VOLT\n", b""), (b":SOUR1:VOLT:MODE FIX\n", b""),
             (b":SOUR1:VOLT:RANG:AUTO ON\n", b""), (b':SENS1:FUNC "VOLT","CURR"\n', b""),
             (b":SENS1:CURR:RANG:AUTO ON\n", b""), (b":SENS1:CURR:PROT 0.001\n", b""),
             (b":SENS1:CURR:NPLC 0.1\n", b""), (b":TRIG1:ACQ:DEL 0.005\n", b""),
             (b":OUTP1:PROT OFF\n", b""), (b":OUTP1:ON:AUTO OFF\n", b""),
             (b":FORM:ELEM:SENS VOLT,CURR,STAT\n", b"")]


def test_configure_voltage_source():
    b, t = smu(*CONFIGURE, NO_ERROR)
    b.configure_voltage_source(1e-3, nplc=0.1, source_delay=0.005)
    assert not t.script


def test_configure_raises_the_instruments_message():
    b, _ = smu(*CONFIGURE, (b":SYST:ERR?\n", b'-222,"Data out of range"\n'), NO_ERROR)
    with pytest.raises(InstrumentError, match=r"smu at script://smu: -222: Data out of range$"):
        b.configure_voltage_source(1e-3, nplc=0.1, source_delay=0.005)


def test_configure_checks_every_argument_before_sending():
    b, _ = smu()
    with pytest.raises(ValueError, match="KeysightB2900.source_delay"):
        b.configure_voltage_source(1e-3, source_delay=-0.1)


def test_measure_current():
    b, _ = smu((b":MEAS:CURR? (@1)\n", b"+1.234500E-05\n"))
    assert b.measure_current() == pytest.approx(1.2345e-5)


def triples(v, i, status) -> bytes:
    return ",".join(f"{a:+.6E},{b:+.6E},{s:+.6E}" for a, b, s in zip(v, i, status)).encode() + b"\n"


def run_script(points: int, delay: bytes, fail_abort: bool, data: bytes) -> list:
    protection = b"ON" if fail_abort else b"OFF"
    script = [(b":TRIG1:SOUR AINT\n", b""), (f":TRIG1:COUN {points}\n".encode(), b""),
              (b":TRIG1:TRAN:DEL 0\n", b""), (b":TRIG1:ACQ:DEL " + delay + b"\n", b""),
              (b":OUTP1:PROT " + protection + b"\n", b""), NO_ERROR,
              (b":OUTP1 ON\n", b""), (b":INIT (@1)\n", b""), (b"*OPC?\n", b"1\n"), NO_ERROR,
              (b":FETC:ARR? (@1)\n", data)]
    return script + ([(b":OUTP1:PROT OFF\n", b"")] if fail_abort else [])


def test_sweep_linear_is_a_handful_of_round_trips():
    v = np.linspace(-1, 1, 200)
    i = v / 1e4
    b, t = smu((b":SOUR1:VOLT:MODE SWE\n", b""), (b":SOUR1:VOLT:STAR -1\n", b""),
               (b":SOUR1:VOLT:STOP 1\n", b""), (b":SOUR1:VOLT:POIN 200\n", b""),
               *run_script(200, b"0.001", False, triples(v, i, np.zeros(200))))
    v_out, i_out = b.sweep_linear(-1, 1, 200, delay=1e-3)
    assert not t.script and t.queries == 4
    np.testing.assert_allclose(v_out, v, rtol=1e-6)
    np.testing.assert_allclose(i_out, i, rtol=1e-6)


def test_fail_abort_keeps_the_points_up_to_the_first_in_compliance():
    v = [0.0, 0.5, 0.8, 0.0, 0.0]  # the output protection turned the output off after point 3
    i = [0.0, 5e-5, 1e-4, 0.0, 0.0]
    status = [0, 0, 2, 0, 0]
    b, t = smu((b":SOUR1:VOLT:MODE SWE\n", b""), (b":SOUR1:VOLT:STAR 0\n", b""),
               (b":SOUR1:VOLT:STOP 2\n", b""), (b":SOUR1:VOLT:POIN 5\n", b""),
               *run_script(5, b"0", True, triples(v, i, status)))
    v_out, i_out = b.sweep_linear(0, 2, 5, delay=0, fail_abort=True)
    np.testing.assert_allclose(v_out, v[:3])
    np.testing.assert_allclose(i_out, i[:3])
    assert not t.script


def test_without_fail_abort_points_in_compliance_are_kept():
    status = [0, 4, 0]
    b, t = smu((b":SOUR1:VOLT:MODE SWE\n", b""), (b":SOUR1:VOLT:STAR 0\n", b""),
               (b":SOUR1:VOLT:STOP 1\n", b""), (b":SOUR1:VOLT:POIN 3\n", b""),
               *run_script(3, b"0", False, triples([0, 0.4, 1], [0, 1e-4, 1e-4], status)))
    v_out, _ = b.sweep_linear(0, 1, 3, delay=0)
    assert len(v_out) == 3 and not t.script


@pytest.mark.parametrize("args, message", [
    ((0, 300, 10, 0), "sweep_linear stop=300 V"),
    ((0, 1, 0, 0), "points=0"),
    ((0, 1, 2501, 0), "points=2501"),
    ((0, 1, 2.5, 0), "points=2.5"),
    ((0, 1, 10, -1e-3), "sweep_linear delay=-0.001 s"),
    ((0, 1, 10, 200), "sweep_linear delay=200 s"),
])
def test_sweep_linear_validation_sends_nothing(args, message):
    b, _ = smu()
    with pytest.raises(ValueError, match=message):
        b.sweep_linear(*args)


def test_sweep_list_sends_values_in_groups_of_100():
    levels = np.round(np.linspace(0, 1.5, 150), 6)
    first = ",".join(f"{x:.10g}" for x in levels[:100])
    rest = ",".join(f"{x:.10g}" for x in levels[100:])
    b, t = smu((b":SOUR1:VOLT:MODE LIST\n", b""),
               (f":SOUR1:LIST:VOLT {first}\n".encode(), b""),
               (f":SOUR1:LIST:VOLT:APP {rest}\n".encode(), b""),
               *run_script(150, b"0.0005", True, triples(levels, levels / 1e4, np.zeros(150))))
    v_out, i_out = b.sweep_list(levels, delay=5e-4, fail_abort=True)
    assert not t.script and t.queries == 4
    np.testing.assert_allclose(i_out, levels / 1e4, rtol=1e-6)


@pytest.mark.parametrize("voltages, message", [
    ([0, 1, 211], "voltage 211 V is outside"),
    ([0, float("nan")], "voltage nan V"),
    ([], "1 to 2500 voltages, got 0"),
    (np.zeros(2501), "got 2501"),
])
def test_sweep_list_validation_sends_nothing(voltages, message):
    b, _ = smu()
    with pytest.raises(ValueError, match=message):
        b.sweep_list(voltages, delay=0)


def test_sweep_configuration_error_raises_before_the_output_is_turned_on():
    b, t = smu((b":SOUR1:VOLT:MODE LIST\n", b""), (b":SOUR1:LIST:VOLT 0,1\n", b""),
               *run_script(2, b"0", False, b"")[:5],
               (b":SYST:ERR?\n", b'-221,"Settings conflict"\n'),
               (b":SYST:ERR?\n", b'-113,"Undefined header"\n'), NO_ERROR)
    with pytest.raises(InstrumentError, match=r"-221: Settings conflict; -113: Undefined header$"):
        b.sweep_list([0, 1], delay=0)
    assert not t.script  # no :OUTP1 ON, no :INIT


def test_malformed_fetch_reply_is_an_error():
    b, _ = smu((b":SOUR1:VOLT:MODE LIST\n", b""), (b":SOUR1:LIST:VOLT 1\n", b""),
               *run_script(1, b"0", False, b"+1.0E+00,+1.0E-04\n"))
    with pytest.raises(InstrumentError, match=r"expected \(V, I, status\) triples from "
                                              r":FETC:ARR\?, got 2 values"):
        b.sweep_list([1], delay=0)


def test_next_error_empty_queue():
    b, _ = smu(NO_ERROR)
    assert b.next_error() == (0, "No error")


def test_source_off_zeroes_the_level_before_leaving_sweep_mode_then_turns_the_output_off():
    b, t = smu((b":SOUR1:VOLT 0\n", b""), (b":SOUR1:VOLT:MODE FIX\n", b""), (b":OUTP1 0\n", b""))
    b.source_off()
    assert not t.script
