"""Keysight81160A driver against a scripted transport: the exact bytes of every command."""
import numpy as np
import pytest
from labctl.instruments.base import InstrumentError
from labctl.instruments.keysight81160a import Keysight81160A
from labctl.instruments.pulse import PulseGenerator

from fakes import ScriptedTransport

NO_ERROR = (b":SYST:ERR?\n", b'0,"No error"\n')
IDN_81160A = b"Agilent Technologies,81160A,MY51400292,1.0.3.0-2.6\n"
IDN_81150A = b"Keysight Technologies,81150A,MY53000001,3.0.0.0-4.6\n"


def generator(*script: tuple[bytes, bytes]) -> tuple[Keysight81160A, ScriptedTransport]:
    transport = ScriptedTransport(list(script))
    return Keysight81160A(transport), transport


def identified(idn: bytes, *script: tuple[bytes, bytes]
               ) -> tuple[Keysight81160A, ScriptedTransport]:
    pg, t = generator((b"*IDN?\n", idn), *script)
    pg.check_identity()
    return pg, t


def burst_script(ch: int, polarity: bytes, amplitude: bytes, offset: bytes, period: bytes,
                 width: bytes, edge: bytes, count: bytes) -> list[tuple[bytes, bytes]]:
    c = str(ch).encode()
    sent = [b":OUTP%s OFF" % c, b":ARM:SOUR%s MAN" % c, b":ARM:SENS%s EDGE" % c,
            b":FUNC%s PULS" % c, b":OUTP%s:IMP:EXT 1000000" % c, b":OUTP%s:POL %s" % (c, polarity),
            b":VOLT%s:OFFS 0" % c, b":VOLT%s %s" % (c, amplitude), b":VOLT%s:OFFS %s" % (c, offset),
            b":PULS:TRAN%s MIN" % c, b":PULS:TRAN%s:TRA MIN" % c, b":PULS:WIDT%s MIN" % c,
            b":PULS:PER%s %s" % (c, period), b":PULS:WIDT%s %s" % (c, width),
            b":PULS:TRAN%s %s" % (c, edge), b":PULS:TRAN%s:TRA %s" % (c, edge),
            b":PULS:DEL%s 0" % c, b":TRIG%s:COUN %s" % (c, count)]
    return [(line + b"\n", b"") for line in sent] + [NO_ERROR]


def test_satisfies_the_pulse_generator_protocol():
    pg, _ = generator()
    assert isinstance(pg, PulseGenerator) and pg.name == "pulse"


@pytest.mark.parametrize("idn", [IDN_81160A, IDN_81150A])
def test_check_identity_accepts_both_models(idn):
    pg, t = identified(idn)
    assert not t.script


def test_check_identity_refuses_other_model():
    pg, _ = generator((b"*IDN?\n", b"Agilent Technologies,33522B,MY1,5.00\n"))
    with pytest.raises(InstrumentError, match=r"pulse at script://smu: model '33522B' is not one "
                                              r"of 81160A, 81150A"):
        pg.check_identity()


def test_configure_burst_positive_pulse():
    pg, t = identified(IDN_81160A, *burst_script(1, b"NORM", b"1.5", b"0.75", b"2e-07", b"1e-07",
                                                 b"MIN", b"5"))
    pg.configure_burst(1.5, 100e-9, 5, 200e-9)
    assert not t.script


def test_configure_burst_negative_pulse_on_channel_2_with_edges():
    # base 0.2 V, pulse to -1.1 V: high 0.2, low -1.1, output inverted (rests at the high level)
    pg, t = identified(IDN_81160A, *burst_script(2, b"INV", b"1.3", b"-0.45", b"1e-06", b"1e-07",
                                                 b"5e-09", b"100"))
    pg.configure_burst(-1.3, 100e-9, np.int64(100), 1e-6, channel=2, base=0.2, edge=5e-9)
    assert not t.script


def test_configuration_error_raises_with_the_instruments_message():
    script = burst_script(1, b"NORM", b"1", b"0.5", b"1e-06", b"1e-07", b"MIN", b"1")[:-1]
    pg, _ = identified(IDN_81160A, *script, (b":SYST:ERR?\n", b'-222,"Data out of range"\n'),
                       NO_ERROR)
    with pytest.raises(InstrumentError, match=r"pulse at script://smu: -222: Data out of range$"):
        pg.configure_burst(1.0, 100e-9, 1, 1e-6)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(amplitude=0.0), ValueError, r"\|amplitude\|=0 V is outside \[0.1, 10\] V"),
    (dict(amplitude=0.05), ValueError, r"\|amplitude\|=0.05 V"),
    (dict(amplitude=10.5), ValueError, r"\|amplitude\|=10.5 V"),
    (dict(amplitude=2.0, base=9.0), ValueError, r"base \+ amplitude=11 V is outside \[-10, 10\] V"),
    (dict(amplitude=-2.0, base=-9.0), ValueError, r"base \+ amplitude=-11 V is outside"),
    (dict(amplitude="1"), TypeError, "amplitude must be a number"),
    (dict(width=1e-9), ValueError, r"width=1e-09 s is outside \[1.5e-09, 1e\+06\] s"),
    (dict(period=2e-9), ValueError, r"period=2e-09 s is outside \[3.03e-09, 1e\+06\] s"),
    (dict(period=2e6), ValueError, "period=2e\\+06 s is outside"),
    (dict(width=1e-6, period=1e-6), ValueError,
     r"width=1e-06 s \+ 1.6 x edge=1e-09 s exceeds period=1e-06 s"),
    (dict(width=100e-9, period=200e-9, edge=70e-9), ValueError,
     r"width=1e-07 s \+ 1.6 x edge=7e-08 s exceeds"),
    (dict(edge=0.5e-9), ValueError, r"edge=5e-10 s is outside \[1e-09, 1000\] s"),
    (dict(count=0), ValueError, r"count=0 must be an integer in \[1, 2147483647\]"),
    (dict(count=2.5), ValueError, "count=2.5"),
    (dict(count=True), ValueError, "count=True"),
    (dict(channel=3), ValueError, "channel=3 is not one of 1, 2"),
    (dict(channel=True), ValueError, "channel=True"),
])
def test_configure_burst_validation_sends_nothing(kwargs, error, message):
    pg, _ = identified(IDN_81160A)  # any further write would fail the script
    args = dict(amplitude=1.0, width=100e-9, count=1, period=1e-6) | kwargs
    with pytest.raises(error, match="Keysight81160A.configure_burst " + message):
        pg.configure_burst(**args)


def test_limits_follow_the_model():
    fast = dict(amplitude=1.0, width=2e-9, count=1, period=10e-9)
    pg, _ = identified(IDN_81150A)
    with pytest.raises(ValueError, match=r"width=2e-09 s is outside \[4.1e-09"):
        pg.configure_burst(**fast)
    pg, _ = generator()  # before *IDN? the stricter 81150A limits apply
    with pytest.raises(ValueError, match=r"width=2e-09 s is outside \[4.1e-09"):
        pg.configure_burst(**fast)
    pg, t = identified(IDN_81160A, *burst_script(1, b"NORM", b"1", b"0.5", b"1e-08", b"2e-09",
                                                 b"MIN", b"1"))
    pg.configure_burst(**fast)
    assert not t.script


@pytest.mark.parametrize("on, channel, sent", [
    (True, 1, b":OUTP1 ON\n"), (False, 1, b":OUTP1 OFF\n"), (True, 2, b":OUTP2 ON\n")])
def test_set_output(on, channel, sent):
    pg, t = generator((sent, b""))
    pg.set_output(on, channel=channel)
    assert not t.script


@pytest.mark.parametrize("on, channel, error", [
    ("on", 1, TypeError), (1.5, 1, TypeError), (True, 0, ValueError), (True, "1", ValueError)])
def test_set_output_validation_sends_nothing(on, channel, error):
    pg, _ = generator()
    with pytest.raises(error, match="Keysight81160A.set_output"):
        pg.set_output(on, channel=channel)


def test_fire_triggers_then_waits_for_completion():
    pg, t = generator((b"*TRG\n", b""), (b"*OPC?\n", b"1\n"))
    pg.fire()
    assert not t.script


def test_safe_state_is_outputs_off_then_zero_volts():
    pg, t = generator(*[(line + b"\n", b"") for line in (
        b":OUTP1 OFF", b":OUTP2 OFF", b":FUNC1 DC", b":VOLT1:OFFS 0", b":FUNC2 DC",
        b":VOLT2:OFFS 0")])
    pg.safe_state()
    assert not t.script


@pytest.mark.parametrize("states, on", [((b"0", b"0"), []), ((b"1", b"0"), [1]), ((b"0", b"1"), [2])])
def test_outputs_on_asks_each_channel(states, on):
    pg, t = generator((b":OUTP1?\n", states[0] + b"\n"), (b":OUTP2?\n", states[1] + b"\n"))
    assert pg.outputs_on() == on
    assert not t.script
