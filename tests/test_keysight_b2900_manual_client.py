"""A plain pyvisa client using only the B2900 SCPI Command Reference's commands against the twin
served on loopback: no labctl driver, so the twin is checked against the manual, not the driver."""
import pytest
from labctl.sim.keysight_b2900 import VirtualKeysightB2900

from fakes import R, Resistor, visa_session


@pytest.fixture
def b2900():
    twin = VirtualKeysightB2900(Resistor(), model="B2902A", serial="MY51140000")
    with visa_session(twin) as inst:
        yield inst, twin


def test_identify_reset_source_measure_sweep_and_errors(b2900):
    inst, twin = b2900
    maker, model, serial, firmware = inst.query("*IDN?").split(",")
    assert (maker, model, serial) == ("Keysight Technologies", "B2902A", "MY51140000")
    assert firmware

    inst.write("*RST")
    inst.write(":SOUR:FUNC:MODE VOLT")
    inst.write(":SOUR:VOLT 0.1")
    inst.write(":SENS:CURR:PROT 100E-6")
    inst.write(":OUTP ON")
    assert float(inst.query(":MEAS:CURR? (@1)")) == pytest.approx(0.1 / R)
    assert inst.query(":SENS:CURR:PROT:TRIP?") == "0"
    assert inst.query(":SOUR:VOLT?") == "+1.000000E-01"

    inst.write(":SOUR:VOLT:MODE SWE")
    inst.write(":SOUR:VOLT:STAR 0")
    inst.write(":SOUR:VOLT:STOP 0.5")
    inst.write(":SOUR:VOLT:POIN 11")
    inst.write(':SENS:FUNC "CURR"')
    inst.write(":SENS:CURR:NPLC 0.1")
    inst.write(":TRIG:SOUR AINT")
    inst.write(":TRIG:COUN 11")
    inst.write(":INIT (@1)")
    assert inst.query("*OPC?") == "1"
    currents = [float(x) for x in inst.query(":FETC:ARR:CURR? (@1)").split(",")]
    voltages = [float(x) for x in inst.query(":FETC:ARR:VOLT? (@1)").split(",")]
    assert currents == pytest.approx([0.05 * k / R for k in range(11)], rel=1e-6)
    assert voltages == pytest.approx([0.05 * k for k in range(11)], abs=1e-9)

    inst.write(":FORM:ELEM:SENS VOLT,CURR")
    pairs = [float(x) for x in inst.query(":FETC:ARR? (@1)").split(",")]
    assert pairs[0::2] == voltages and pairs[1::2] == currents

    inst.write(":OUTP OFF")
    assert inst.query(":OUTP?") == "0"  # a query: the twin has handled the command before it
    assert not twin.output_on

    inst.write(":SOUR:VOLTAGE:NONSENSE 1")
    inst.write(":SOUR:VOLT 250")
    assert inst.query(":SYST:ERR?") == '-113,"Undefined header"'
    assert inst.query(":SYST:ERR?") == '-222,"Data out of range"'
    assert inst.query(":SYST:ERR?") == '+0,"No error"'
