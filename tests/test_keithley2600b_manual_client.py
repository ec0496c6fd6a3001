"""A client written from the 2600B Reference Manual alone (pyvisa, raw TSP, no labctl driver)
against the virtual 2600B served on loopback: the twin must understand what the manual shows."""
import pytest
from labctl.sim.keithley2600b import VirtualKeithley2600B

from fakes import Resistor, visa_session


@pytest.fixture
def inst():
    twin = VirtualKeithley2600B(Resistor(1e3), model="2636B", serial="1234567")
    with visa_session(twin) as resource:
        yield resource


def numbers(reply: str) -> list[float]:
    return [float(x) for x in reply.split(",")]


def test_identify_reset_source_and_measure(inst):
    assert inst.query("*IDN?") == "Keithley Instruments Inc., Model 2636B, 1234567, 4.0.0"
    inst.write("reset()")
    inst.write("smua.source.func = smua.OUTPUT_DCVOLTS")
    inst.write("smua.source.levelv = 0.1")
    inst.write("smua.source.limiti = 100e-6")
    inst.write("smua.measure.autorangei = smua.AUTORANGE_ON")
    inst.write("smua.measure.nplc = 0.01")
    inst.write("smua.source.output = smua.OUTPUT_ON")
    assert float(inst.query("print(smua.measure.i())")) == pytest.approx(1e-4)
    assert inst.query("print(smua.source.compliance)") == "false"
    inst.write("smua.source.levelv = 0.5")  # 500 uA into 1 kOhm: clamped at 100 uA
    assert float(inst.query("print(smua.measure.i())")) == pytest.approx(1e-4)
    assert inst.query("print(smua.source.compliance)") == "true"
    inst.write("smua.source.levelv = 0")
    inst.write("smua.source.output = smua.OUTPUT_OFF")
    assert inst.query("print(smua.source.output)") == "0.00000e+00"


def test_linear_sweep_and_printbuffer(inst):
    inst.write("reset()")
    inst.write("smua.source.limiti = 10e-3")
    inst.write("smua.measure.nplc = 0.01")
    inst.write("smua.nvbuffer1.clear()")
    inst.write("smua.nvbuffer1.collectsourcevalues = 1")
    inst.write("smua.trigger.source.linearv(0, 1, 11)")
    inst.write("smua.trigger.source.action = smua.ENABLE")
    inst.write("smua.trigger.measure.i(smua.nvbuffer1)")
    inst.write("smua.trigger.measure.action = smua.ENABLE")
    inst.write("smua.trigger.endsweep.action = smua.SOURCE_IDLE")
    inst.write("smua.trigger.count = 11")
    inst.write("smua.source.output = smua.OUTPUT_ON")
    inst.write("smua.trigger.initiate()")
    inst.write("waitcomplete()")
    assert inst.query("print(smua.nvbuffer1.n)") == "1.10000e+01"
    reply = inst.query("printbuffer(1, smua.nvbuffer1.n, smua.nvbuffer1.sourcevalues, "
                       "smua.nvbuffer1.readings)")
    assert reply.startswith("0.00000e+00, 0.00000e+00, 1.00000e-01, 1.00000e-04, ")
    values = numbers(reply)
    assert values[-2:] == pytest.approx([1.0, 1e-3])
    assert numbers(inst.query("printbuffer(1, 3, smua.nvbuffer1.readings)")) == \
        pytest.approx([0.0, 1e-4, 2e-4])
    inst.write("smua.source.output = smua.OUTPUT_OFF")


def test_provoke_errors_and_drain_the_queue(inst):
    inst.write("errorqueue.clear()")
    inst.write(":SOUR:VOLT 1")  # SCPI sent to a TSP instrument
    inst.write("smua.source.limiti = 0")
    assert inst.query("print(errorqueue.count)") == "2.00000e+00"
    code, message, severity, node = inst.query("print(errorqueue.next())").split("\t")
    assert (float(code), message) == (-285, "TSP Syntax error at line 1: unexpected symbol near "
                                             "`:'")
    assert float(severity) == 20 and float(node) == 1
    code, message, _, _ = inst.query("print(errorqueue.next())").split("\t")
    assert (float(code), message) == (1102, "Parameter too small")
    code, message, _, _ = inst.query("print(errorqueue.next())").split("\t")
    assert (float(code), message) == (0, "Queue Is Empty")
