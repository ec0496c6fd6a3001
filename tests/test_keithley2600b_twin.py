"""The Keithley2600B driver against the virtual 2600B, in-process, driving a resistor."""
import numpy as np
import pytest

from labctl.instruments.base import InstrumentError
from labctl.instruments.keithley2600b import Keithley2600B
from labctl.instruments.transport import InProcessTransport
from labctl.sim.keithley2600b import VirtualKeithley2600B

from fakes import FormingCell, R, Resistor


def connect(model="2636B", channel="a", load=None):
    load = load or Resistor()
    twin = VirtualKeithley2600B(load, model=model)
    smu = Keithley2600B(InProcessTransport(twin, "sim://smu"), name="smu", channel=channel)
    smu.check_identity()
    return smu, twin, load


@pytest.fixture
def bench():
    return connect()


def test_reset_state_is_safe_and_matches_the_manual(bench):
    smu, twin, _ = bench
    smu.reset()
    assert (twin.output_on, twin.source_level) == (False, 0.0)
    assert smu.current_limit == pytest.approx(0.1) and smu.nplc == 1.0
    assert smu.source_delay == 0.0 and not smu.output_enabled and not smu.limit_tripped
    assert smu.ask("print(smua.measure.delay)") == "-1.00000e+00"  # auto on the 2634B-2636B
    smu_2612, _, _ = connect("2612B")
    assert smu_2612.current_limit == pytest.approx(0.1)
    assert smu_2612.ask("print(smua.measure.delay)") == "0.00000e+00"
    assert connect("2601B")[0].current_limit == 1.0


def test_measure_holds_source_delay_then_integration_time(bench):
    smu, twin, load = bench
    smu.configure_voltage_source(1e-3, nplc=0.5, source_delay=0.01)
    smu.source_voltage = 1.0
    assert load.applied == []  # output off: nothing happens yet
    smu.output_enabled = True  # a source step: the source delay
    assert smu.measure_current() == pytest.approx(1e-4)
    assert load.applied == [(1.0, 0.01), (1.0, 0.5 / 60)]
    assert twin.elapsed == pytest.approx(0.01 + 0.5 / 60)
    assert not smu.limit_tripped


def test_output_off_reads_open_circuit(bench):
    smu, _, load = bench
    smu.configure_voltage_source(1e-3)
    smu.source_voltage = 1.0
    assert smu.measure_current() == 0.0
    assert load.applied == [(None, 1 / 60)]


def test_compliance_clamps_the_voltage_and_sets_the_flag(bench):
    smu, twin, load = bench
    smu.configure_voltage_source(1e-5)
    smu.source_voltage = 2.0
    smu.output_enabled = True
    assert smu.measure_current() == pytest.approx(1e-5)
    assert smu.limit_tripped
    (v, _), = load.applied
    assert v == pytest.approx(0.1, rel=1e-9) and v / R <= 1e-5
    assert twin.source_level == 2.0  # the programmed level is kept
    smu.source_voltage = -2.0
    assert smu.measure_current() == pytest.approx(-1e-5)
    smu.source_voltage = 0.05
    assert smu.measure_current() == pytest.approx(5e-6) and not smu.limit_tripped


def test_linear_sweep_returns_the_loads_iv(bench):
    smu, twin, load = bench
    smu.configure_voltage_source(1e-3, nplc=0.01)
    v, i = smu.sweep_linear(-1, 1, 201, delay=0)
    np.testing.assert_allclose(v, np.linspace(-1, 1, 201), atol=1e-12)
    np.testing.assert_allclose(i, v / R, rtol=1e-5)
    assert len(load.applied) == 201
    assert twin.output_on and twin.source_level == 0.0  # on, back at the programmed (idle) level
    smu.source_off()
    assert (twin.output_on, twin.source_level) == (False, 0.0)


def test_sweep_delays_and_the_measure_delay_is_restored(bench):
    smu, twin, load = bench
    smu.configure_voltage_source(1e-3, nplc=0.01, source_delay=0.001)
    v, _ = smu.sweep_linear(0, 1, 3, delay=0.002)
    np.testing.assert_allclose(v, [0, 0.5, 1])
    # turning the output on is a source step too; then source delay, measure delay, integration
    assert load.applied[:4] == [(0.0, 0.001), (0.0, 0.001), (0.0, 0.002), (0.0, 0.01 / 60)]
    assert load.applied[-1] == (1.0, 0.01 / 60)
    assert twin.elapsed == pytest.approx(0.001 + 3 * (0.003 + 0.01 / 60))
    assert smu.ask("print(smua.measure.delay)") == "0.00000e+00"


def test_list_sweep(bench):
    smu, _, load = bench
    smu.configure_voltage_source(1e-3, nplc=0.01)
    levels = np.random.default_rng(0).uniform(-2, 2, 250).round(6)
    v, i = smu.sweep_list(levels, delay=0)
    np.testing.assert_allclose(v, levels, rtol=1e-5)
    np.testing.assert_allclose(i, levels / R, rtol=1e-5)
    assert [a for a, _ in load.applied] == pytest.approx(list(levels))


def test_fail_abort_stops_after_the_first_point_in_compliance(bench):
    smu, twin, _ = bench
    smu.configure_voltage_source(1.05e-4, nplc=0.01)
    v, i = smu.sweep_linear(0, 2, 21, delay=0, fail_abort=True)
    assert len(v) == 12  # 0 .. 1.0 V within the limit, 1.1 V in compliance and kept
    assert i[-1] == pytest.approx(1.05e-4) and v[-1] == pytest.approx(1.1)
    np.testing.assert_allclose(i[:-1], np.linspace(0, 1, 11) / R, rtol=1e-5)
    assert twin.output_on and twin.source_level == 0.0 and not smu.limit_tripped
    assert smu.ask("print(labctl_v[21], labctl_idle)") == "2.00000e+00\t0.00000e+00"


def test_without_fail_abort_the_sweep_completes_clamped(bench):
    smu, _, load = bench
    smu.configure_voltage_source(1.05e-4, nplc=0.01)
    v, i = smu.sweep_list([0.5, 3, 0.5], delay=0)
    np.testing.assert_allclose(i, [5e-5, 1.05e-4, 5e-5], rtol=1e-6)
    np.testing.assert_allclose(v, [0.5, 3, 0.5])  # source values are the programmed levels
    assert load.applied[1][0] == pytest.approx(1.05)


def test_a_load_that_switches_during_a_point_is_clamped_and_aborts():
    smu, _, load = connect(load=FormingCell())
    smu.configure_voltage_source(1e-4, nplc=0.01)
    v, i = smu.sweep_list([1.0, 3.2, 3.2], delay=0, fail_abort=True)
    np.testing.assert_allclose(i, [1e-6, 1e-4], rtol=1e-6)
    np.testing.assert_allclose(v, [1.0, 3.2])
    assert len(load.applied) == 2


def test_errors_carry_the_instruments_messages(bench):
    smu, twin, _ = bench
    smu.write(":SOUR:VOLT 1")
    smu.write("smua.source.levelv = 1 smua.source.limiti =")  # not run: syntax error
    smu.write("smua.source.levelv = 300")
    smu.write("smua.source.limiti = 0")
    smu.write("smuc.source.levelv = 1")
    smu.write("smua.source.levelvv = 1")
    smu.write("smua.measure.v()")
    assert twin.source_level == 0.0 and smu.ask("print(errorqueue.count)") == "7.00000e+00"
    assert [smu.next_error() for _ in range(8)] == [
        (-285, "TSP Syntax error at line 1: unexpected symbol near `:'"),
        (-285, "TSP Syntax error at line 1: unexpected symbol near `<eof>'"),
        (1101, "Parameter too big"),
        (1102, "Parameter too small"),
        (-286, "TSP Runtime error at line 1: attempt to index global `smuc' (a nil value)"),
        (-286, "TSP Runtime error at line 1: attempt to set unknown attribute `levelvv'"),
        (-286, "TSP Runtime error at line 1: attempt to call field `v' (a nil value)"),
        (0, "Queue Is Empty")]


def test_an_error_skips_the_rest_of_the_line(bench):
    smu, twin, _ = bench
    smu.write("smua.source.levelv = 1 smua.source.levelv = 500 smua.source.levelv = 2")
    assert twin.source_level == 1.0
    with pytest.raises(InstrumentError, match="smu at sim://smu: 1101: Parameter too big$"):
        smu.check_errors()


def test_error_queue_entries_and_clear(bench):
    smu, _, _ = bench
    smu.write("nope()")
    assert smu.ask("print(errorqueue.next())") == ("-2.86000e+02\tTSP Runtime error at line 1: "
                                                  "attempt to call global `nope' (a nil value)\t"
                                                  "2.00000e+01\t1.00000e+00")
    smu.write("nope()")
    smu.clear()
    assert smu.ask("print(errorqueue.count)") == "0.00000e+00"


def test_print_formats_like_the_instrument(bench):
    smu, _, _ = bench
    assert smu.ask("print(1, -2.5e-7, true, nil, 'text')") == \
        "1.00000e+00\t-2.50000e-07\ttrue\tnil\ttext"
    smu.write("format.asciiprecision = 10")
    assert smu.ask("print(2.54)") == "2.540000000e+00"
    smu.write("format.asciiprecision = 3")
    assert smu.ask("x = {3, 1.5} print(x[2]) print(x[3])") == "1.50e+00"
    assert smu.transport.read_line() == b"nil"  # each print() is one reply line
    smu.reset()
    assert smu.ask("print(2.54)") == "2.54000e+00"


def test_printbuffer_clamps_the_range(bench):
    smu, _, _ = bench
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


def test_model_limits(bench):
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
