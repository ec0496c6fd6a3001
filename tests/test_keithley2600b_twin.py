"""The Keithley2600B driver against the virtual 2600B, in-process, driving a resistor: what only the
2600B does, e.g. its models, the measure delay, TSP errors and print formats (the SMU spec,
test_smu_spec.py, has what every SMU twin does)."""
import numpy as np
import pytest
from labctl.instruments.base import InstrumentError
from labctl.sim.keithley2600b import VirtualKeithley2600B

from fakes import Resistor
from smu_spec import connect_2600b as connect


def test_the_initial_state_follows_the_model():
    smu_2612, _, _ = connect("2612B")
    assert smu_2612.current_limit == pytest.approx(0.1)
    assert smu_2612.ask("print(smua.measure.delay)") == "0.00000e+00"  # auto only on 2634B-2636B
    assert connect("2601B")[0].current_limit == 1.0


def test_sweep_delays_and_the_measure_delay_is_restored():
    smu, twin, load = connect()
    smu.configure_voltage_source(1e-3, nplc=0.01, source_delay=0.001)
    v, _ = smu.sweep_linear(0, 1, 3, delay=0.002)
    np.testing.assert_allclose(v, [0, 0.5, 1])
    # turning the output on is a source step too; then source delay, measure delay, integration
    assert load.applied[:4] == [(0.0, 0.001), (0.0, 0.001), (0.0, 0.002), (0.0, 0.01 / 60)]
    assert load.applied[-1] == (1.0, 0.01 / 60)
    assert twin.elapsed == pytest.approx(0.001 + 3 * (0.003 + 0.01 / 60))
    assert smu.ask("print(smua.measure.delay)") == "0.00000e+00"


def test_errors_carry_the_instruments_messages():
    smu, twin, _ = connect()
    smu.write(":SOUR:VOLT 1")
    smu.write("smua.source.levelv = 1 smua.source.limiti =")  # not run: syntax error
    smu.write("smua.source.levelv = 300")
    smu.write("smua.source.limiti = 0")
    smu.write("smuc.source.levelv = 1")
    smu.write("smua.source.levelvv = 1")
    smu.write("smua.measure.q()")  # no such function (measure.i, v, iv, r and p exist)
    assert twin.source_level == 0.0 and smu.ask("print(errorqueue.count)") == "7.00000e+00"
    assert [smu.next_error() for _ in range(8)] == [
        (-285, "TSP Syntax error at line 1: unexpected symbol near `:'"),
        (-285, "TSP Syntax error at line 1: unexpected symbol near `<eof>'"),
        (1101, "Parameter too big"),
        (1102, "Parameter too small"),
        (-286, "TSP Runtime error at line 1: attempt to index global `smuc' (a nil value)"),
        (-286, "TSP Runtime error at line 1: attempt to set unknown attribute `levelvv'"),
        (-286, "TSP Runtime error at line 1: attempt to call field `q' (a nil value)"),
        (0, "Queue Is Empty")]


def test_an_error_skips_the_rest_of_the_line():
    smu, twin, _ = connect()
    smu.write("smua.source.levelv = 1 smua.source.levelv = 500 smua.source.levelv = 2")
    assert twin.source_level == 1.0
    with pytest.raises(InstrumentError, match="smu at sim://smu: 1101: Parameter too big$"):
        smu.check_errors()


def test_error_queue_entries_and_clear():
    smu, _, _ = connect()
    smu.write("nope()")
    assert smu.ask("print(errorqueue.next())") == ("-2.86000e+02\tTSP Runtime error at line 1: "
                                                  "attempt to call global `nope' (a nil value)\t"
                                                  "2.00000e+01\t1.00000e+00")
    smu.write("nope()")
    smu.clear()
    assert smu.ask("print(errorqueue.count)") == "0.00000e+00"


def test_print_formats_like_the_instrument():
    smu, _, _ = connect()
    assert smu.ask("print(1, -2.5e-7, true, nil, 'text')") == \
        "1.00000e+00\t-2.50000e-07\ttrue\tnil\ttext"
    smu.write("format.asciiprecision = 10")
    assert smu.ask("print(2.54)") == "2.540000000e+00"
    smu.write("format.asciiprecision = 3")
    assert smu.ask("x = {3, 1.5} print(x[2]) print(x[3])") == "1.50e+00"
    assert smu.transport.read_line() == b"nil"  # each print() is one reply line
    smu.reset()
    assert smu.ask("print(2.54)") == "2.54000e+00"


def test_printbuffer_clamps_the_range():
    smu, _, _ = connect()
    smu.configure_voltage_source(1e-3, nplc=0.01)
    smu.sweep_list([0.1, 0.2, 0.3], delay=0)
    assert smu.ask("printbuffer(2, 99, smua.nvbuffer1)") == "2.00000e-05, 3.00000e-05"
    assert smu.ask("printbuffer(0, 1, smua.nvbuffer1.sourcevalues, {7, 8})") == \
        "1.00000e-01, 7.00000e+00"


def test_smub_is_an_open_circuit():
    smu, twin, load = connect(channel="b")
    smu.configure_voltage_source(1e-3, nplc=0.01)
    smu.source_voltage = 5.0
    smu.output_enabled = True
    assert smu.measure_current() == 0.0 and not smu.limit_tripped
    v, i = smu.sweep_linear(0, 1, 5, delay=0)
    np.testing.assert_allclose(i, 0.0)
    assert load.applied == [] and not twin.output_on  # smua untouched


def test_one_channel_models_have_no_smub():
    smu, _, _ = connect("2635B")
    smu.write("smub.source.levelv = 1")
    assert smu.next_error() == (-286, "TSP Runtime error at line 1: attempt to index global "
                                      "`smub' (a nil value)")
    with pytest.raises(ValueError, match="model '2450'"):
        VirtualKeithley2600B(Resistor(), model="2450")


def test_model_limits():
    smu, twin, _ = connect("2602B")
    smu.write("smua.source.levelv = 40.4 smua.source.levelv = 41")
    assert twin.source_level == 40.4 and smu.next_error() == (1101, "Parameter too big")


def test_partial_lines_are_buffered_and_common_commands_work():
    twin = VirtualKeithley2600B(Resistor())
    assert twin.handle(b"print(smua.sou") == b""
    assert twin.handle(b"rce.levelv)\r\n*idn?\n*OPC?\nprint") == (
        b"0.00000e+00\nKeithley Instruments Inc., Model 2636B, 4000001, 4.0.0\n1\n")
    twin.device_clear()
    assert twin.handle(b"(1)\n") == b""  # without the dropped "print", "(1)" is no statement
    assert twin.handle(b"print(errorqueue.next())\n").startswith(
        b"-2.85000e+02\tTSP Syntax error at line 1: `=' expected near `<eof>'")
