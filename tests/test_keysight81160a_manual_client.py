"""A client written from the 81150A/81160A manual, using only pyvisa, against the served twin."""
import pytest
from labctl.sim.keysight81160a import VirtualKeysight81160A

from fakes import RecordingLoad, visa_session


@pytest.fixture
def session():
    load = RecordingLoad()
    with visa_session(VirtualKeysight81160A(load)) as inst:
        yield inst, load


def test_identify_reset_and_fire_a_five_pulse_burst(session):
    inst, load = session
    assert inst.query("*IDN?").startswith("Agilent Technologies,81160A,")
    inst.write("*RST")
    inst.write("*CLS")
    for command in (":FUNC1 PULS", ":OUTP1:IMP:EXT 1000000", ":VOLT1:HIGH 1.2", ":VOLT1:LOW 0",
                    ":PULS:PER1 1E-6", ":PULS:WIDT1 100E-9", ":ARM:SOUR1 MAN", ":TRIG1:COUN 5",
                    ":OUTP1 ON"):
        inst.write(command)
    assert inst.query(":SYST:ERR?") == '0,"No error"'
    inst.write("*TRG")
    assert inst.query("*OPC?") == "1"
    pulses = [(v, d) for ch, v, d in load.holds if ch == 1 and d == pytest.approx(100e-9)]
    assert len(pulses) == 5 and len(load.holds) == 10
    assert all(v == pytest.approx(1.2) for v, _ in pulses)  # high Z: the level at the chip
    inst.write(":OUTP1 OFF")
    assert inst.query(":OUTP1?") == "0"


def test_provoke_and_drain_an_error(session):
    inst, _ = session
    inst.write(":VOLT1:HIGH 20")
    inst.write(":PULSe:WIDTh3 1E-6")
    assert inst.query(":SYST:ERR?") == '-222,"Data out of range"'
    assert inst.query(":SYSTem:ERRor?") == '-114,"Header suffix out of range"'
    assert inst.query(":SYST:ERR?") == '0,"No error"'
