"""The KeysightB2900 driver against the virtual B2900, in-process, driving a resistor."""
import numpy as np
import pytest

from labctl.instruments.base import InstrumentError
from labctl.instruments.keysight_b2900 import KeysightB2900
from labctl.instruments.transport import InProcessTransport
from labctl.sim.keysight_b2900 import VirtualKeysightB2900

from fakes import FormingCell, R, Resistor


def connect(model: str = "B2902A", channel: int = 1, load=None):
    load = load or Resistor()
    twin = VirtualKeysightB2900(load, model=model)
    smu = KeysightB2900(InProcessTransport(twin, "sim://smu"), name="smu", channel=channel)
    return smu, twin, load


@pytest.fixture
def bench():
    smu, twin, load = connect()
    smu.check_identity()
    return smu, twin, load


def test_identity_and_reset_state(bench):
    smu, twin, _ = bench
    assert smu.identity == "Keysight Technologies,B2902A,MY00000001,3.4.2011.5100"
    smu.source_voltage = 1.0
    smu.output_enabled = True
    smu.reset()
    assert (twin.output_on, twin.source_level) == (False, 0.0)
    assert smu.current_limit == pytest.approx(100e-6)
    assert smu.nplc == 1.0 and smu.source_delay == 0.0 and not smu.output_enabled
    assert smu.ask(':SENS1:FUNC?') == '"VOLT","CURR"'


def test_measure_holds_the_source_for_delay_and_integration_time(bench):
    smu, twin, load = bench
    smu.configure_voltage_source(1e-3, nplc=0.5, source_delay=0.01)
    smu.source_voltage = 1.0
    smu.output_enabled = True
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


def test_compliance_clamps_the_voltage_and_trips(bench):
    smu, twin, load = bench
    smu.configure_voltage_source(1e-5)
    smu.source_voltage = 2.0
    smu.output_enabled = True
    assert smu.measure_current() == pytest.approx(1e-5)
    assert smu.limit_tripped
    (v, _), = load.applied
    assert v == pytest.approx(0.1, rel=1e-9) and v / R <= 1e-5
    assert float(smu.ask(":FETC:VOLT? (@1)")) == pytest.approx(0.1)
    assert twin.source_level == 2.0 and smu.source_voltage == 2.0  # the programmed level is kept
    smu.source_voltage = -2.0
    assert smu.measure_current() == pytest.approx(-1e-5)
    smu.source_voltage = 0.05
    assert smu.measure_current() == pytest.approx(5e-6) and not smu.limit_tripped


def test_linear_sweep_returns_the_loads_iv(bench):
    smu, twin, load = bench
    smu.configure_voltage_source(1e-3, nplc=0.01)
    v, i = smu.sweep_linear(-1, 1, 201, delay=0)
    np.testing.assert_allclose(v, np.linspace(-1, 1, 201), atol=1e-12)
    np.testing.assert_allclose(i, v / R, rtol=1e-6)
    assert len(load.applied) == 201
    assert twin.output_on and twin.source_level == 1.0  # left on at the last level
    smu.source_off()
    assert (twin.output_on, twin.source_level) == (False, 0.0)
    assert smu.ask(":SOUR1:VOLT:MODE?") == "FIX"


def test_sweep_delay_is_held_before_each_measurement(bench):
    smu, twin, load = bench
    smu.configure_voltage_source(1e-3, nplc=0.01)
    smu.sweep_linear(0, 1, 3, delay=0.002)
    assert load.applied[:2] == [(0.0, 0.002), (0.0, 0.01 / 60)]
    times = smu.ask_values(":FETC:ARR:TIME? (@1)")
    np.testing.assert_allclose(np.diff(times), 0.002 + 0.01 / 60, rtol=1e-5)  # 7 digits
    assert smu.source_delay == 0.002


def test_list_sweep_longer_than_one_list_command(bench):
    smu, _, load = bench
    smu.configure_voltage_source(1e-3, nplc=0.01)
    levels = np.random.default_rng(0).uniform(-2, 2, 250).round(6)
    v, i = smu.sweep_list(levels, delay=0)
    np.testing.assert_allclose(v, levels)
    np.testing.assert_allclose(i, levels / R, rtol=1e-6)
    assert [a for a, _ in load.applied] == pytest.approx(list(levels))
    assert smu.ask(":SOUR1:LIST:VOLT:POIN?") == "250"


def test_fail_abort_turns_the_output_off_at_the_first_point_in_compliance(bench):
    smu, twin, load = bench
    smu.configure_voltage_source(1.05e-4, nplc=0.01)
    v, i = smu.sweep_linear(0, 2, 21, delay=0, fail_abort=True)
    assert len(v) == 12  # 0 .. 1.0 V within the limit, 1.1 V trips and is kept
    assert i[-1] == pytest.approx(1.05e-4) and v[-1] == pytest.approx(1.05)
    np.testing.assert_allclose(i[:-1], np.linspace(0, 1, 11) / R, rtol=1e-6)
    assert not twin.output_on  # output protection opened the output at point 12 ...
    assert all(v is None for v, _ in load.applied[12:])  # ... so the cell saw nothing afterwards
    status = smu.ask_values(":FETC:ARR:STAT? (@1)")
    assert len(status) == 21 and status[11] == 2 and not any(status[12:])
    assert smu.ask(":OUTP1:PROT?") == "0"  # the driver restored it


def test_without_fail_abort_the_sweep_completes_clamped(bench):
    smu, twin, _ = bench
    smu.configure_voltage_source(1.05e-4, nplc=0.01)
    v, i = smu.sweep_list([0.5, 3, 0.5], delay=0)
    np.testing.assert_allclose(i, [5e-5, 1.05e-4, 5e-5], rtol=1e-6)
    assert v[1] == pytest.approx(1.05) and twin.output_on
    assert smu.ask_values(":FETC:ARR:STAT? (@1)") == [0, 2, 0]


def test_a_load_that_switches_during_a_point_is_clamped_and_aborts():
    smu, twin, load = connect(load=FormingCell())
    smu.configure_voltage_source(1e-4, nplc=0.01)
    v, i = smu.sweep_list([1.0, 3.2, 3.2], delay=0, fail_abort=True)
    np.testing.assert_allclose(i, [1e-6, 1e-4], rtol=1e-6)
    assert v[0] == 1.0 and v[1] == pytest.approx(0.1)
    assert [a for a, _ in load.applied] == [1.0, 3.2, None]


def test_timer_trigger_spaces_points_by_the_period(bench):
    smu, twin, load = bench
    smu.configure_voltage_source(1e-3, nplc=0.01)
    smu.write(":SOUR1:VOLT 0.5;:OUTP1 ON;:TRIG1:SOUR TIM;:TRIG1:TIM 0.01;:TRIG1:COUN 4")
    smu.write(":INIT (@1)")
    times = smu.ask_values(":FETC:ARR:TIME? (@1)")
    np.testing.assert_allclose(np.diff(times), 0.01, rtol=1e-5)
    np.testing.assert_allclose(smu.ask_values(":FETC:ARR:CURR? (@1)"), 0.5 / R, rtol=1e-6)
    assert sum(d for _, d in load.applied) == pytest.approx(0.04)
    assert smu.next_error() == (0, "No error")


def test_error_queue_raises_and_drains(bench):
    smu, twin, _ = bench
    smu.write(":SOUR1:VOLT 300;:SENS1:CURR:PROT 5;:SOUR1:VOLT:POIN 2501")
    with pytest.raises(InstrumentError, match="-222: Data out of range; -222: Data out of range; "
                                              "-222: Data out of range$"):
        smu.check_errors()
    assert smu.next_error() == (0, "No error")
    assert twin.source_level == 0.0 and twin.channels[1].current_limit == pytest.approx(100e-6)
    smu.write(":SOUR1:VOLT:MODE SWE;:SOUR1:VOLT:POIN 5;:INIT (@1)")  # trigger count is still 1
    code, message = smu.next_error()
    assert code == -221 and message.startswith("Settings conflict")
    smu.write(":NOPE;:INIT (@3)")
    assert [smu.next_error()[0] for _ in range(3)] == [-113, -224, 0]
    assert smu.ask(":SYST:ERR?") == '+0,"No error"'


def test_channel_2_is_open_and_independent(bench):
    _, twin, load = bench
    ch2 = KeysightB2900(InProcessTransport(twin, "sim://smu"), name="smu2", channel=2)
    ch2.check_identity()
    ch2.configure_voltage_source(1e-3, nplc=0.01)
    ch2.source_voltage = 5.0
    ch2.output_enabled = True
    assert ch2.measure_current() == 0.0 and not ch2.limit_tripped
    assert not twin.output_on and twin.source_level == 0.0  # channel 1 untouched
    assert load.applied == [(None, 0.01 / 60)]  # channel 1 held its (off) output meanwhile
    v, i = ch2.sweep_linear(0, 1, 3, delay=0)
    np.testing.assert_allclose(v, [0, 0.5, 1])
    np.testing.assert_allclose(i, 0.0)
    both = ch2.ask_values(":FETC:ARR:CURR? (@1,2)")
    assert both[1::2] == [0.0, 0.0, 0.0] and both[0::2] == [9.91e37] * 3  # channel 1 has no data


def test_one_channel_model_has_no_channel_2():
    smu, twin, _ = connect(model="B2901A", channel=2)
    with pytest.raises(InstrumentError, match="B2901A has one channel"):
        smu.check_identity()
    smu.write(":SOUR2:VOLT 1;:MEAS:CURR? (@2)")
    assert [smu.next_error()[0] for _ in range(3)] == [-114, -224, 0]
