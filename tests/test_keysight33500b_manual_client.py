"""A hand-written client that knows only pyvisa and the 33500B guide's SCPI, against the twin on
loopback TCP: what a user's own script would send to the real instrument."""
import pytest
from labctl.sim.keysight33500b import VirtualKeysight33500B

from fakes import RecordingLoad, visa_session


@pytest.fixture
def served():
    load = RecordingLoad()
    with visa_session(VirtualKeysight33500B(load, model="33522B")) as inst:
        yield inst, load


def test_identify_reset_and_fire_a_5_pulse_burst(served):
    inst, load = served
    vendor, model, _, _ = inst.query("*IDN?").split(",")
    assert (vendor, model) == ("Keysight Technologies", "33522B")
    inst.write("*RST")
    inst.write("*CLS")
    for command in ("OUTPUT1:LOAD INF", "SOURCE1:FUNCTION PULSE", "SOURCE1:VOLTAGE:HIGH 1.2",
                    "SOURCE1:VOLTAGE:LOW 0", "SOURCE1:FUNCTION:PULSE:WIDTH 100E-9",
                    "SOURCE1:FUNCTION:PULSE:PERIOD 1E-6", "SOURCE1:BURST:MODE TRIGGERED",
                    "SOURCE1:BURST:NCYCLES 5", "TRIGGER1:SOURCE BUS", "SOURCE1:BURST:STATE ON",
                    "OUTPUT1 ON"):
        inst.write(command)
    assert inst.query("SYST:ERR?") == '+0,"No error"'
    inst.write("*TRG")
    assert inst.query("*OPC?") == "1"
    pulses = [hold for hold in load.holds if hold[1] == 1.2]
    assert len(pulses) == 5 and len(load.holds) == 10
    assert all(ch == 1 and duration == pytest.approx(100e-9) for ch, _, duration in pulses)
    inst.write("OUTP1 OFF")
    assert inst.query("OUTP1?") == "0"


def test_provoke_and_drain_an_error(served):
    inst, _ = served
    inst.write("FUNC:PULS:WIDT 2")  # wider than the 1 ms *RST period
    inst.write("SOUR3:FUNC PULS")  # there is no channel 3
    assert inst.query("SYST:ERR?") == '-222,"Data out of range"'
    assert inst.query("SYST:ERR?") == '-114,"Header suffix out of range"'
    assert inst.query("SYST:ERR?") == '+0,"No error"'
