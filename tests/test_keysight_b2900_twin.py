"""The KeysightB2900 driver against the virtual B2900, in-process, driving a resistor: what only the
B2900 does, e.g. the status of each point, its timer trigger and channel 2 (the SMU spec,
test_smu_spec.py, has what every SMU twin does)."""
import numpy as np
import pytest
from labctl.instruments.base import InstrumentError
from labctl.instruments.keysight_b2900 import KeysightB2900
from labctl.instruments.transport import InProcessTransport

from fakes import R
from smu_spec import connect_b2900 as connect


def test_status_marks_the_point_that_opened_the_output():
    smu, _, _ = connect()
    smu.configure_voltage_source(1.05e-4, nplc=0.01)
    smu.sweep_linear(0, 2, 21, delay=0, fail_abort=True)
    status = smu.ask_values(":FETC:ARR:STAT? (@1)")
    assert len(status) == 21 and status[11] == 2 and not any(status[12:])


def test_without_fail_abort_the_status_marks_the_clamped_point():
    smu, _, _ = connect()
    smu.configure_voltage_source(1.05e-4, nplc=0.01)
    smu.sweep_list([0.5, 3, 0.5], delay=0)
    assert smu.ask_values(":FETC:ARR:STAT? (@1)") == [0, 2, 0]


def test_timer_trigger_spaces_points_by_the_period():
    smu, twin, load = connect()
    smu.configure_voltage_source(1e-3, nplc=0.01)
    smu.write(":SOUR1:VOLT 0.5;:OUTP1 ON;:TRIG1:SOUR TIM;:TRIG1:TIM 0.01;:TRIG1:COUN 4")
    smu.write(":INIT (@1)")
    times = smu.ask_values(":FETC:ARR:TIME? (@1)")
    np.testing.assert_allclose(np.diff(times), 0.01, rtol=1e-5)
    np.testing.assert_allclose(smu.ask_values(":FETC:ARR:CURR? (@1)"), 0.5 / R, rtol=1e-6)
    assert sum(d for _, d in load.applied) == pytest.approx(0.04)
    assert smu.next_error() == (0, "No error")


def test_undefined_headers_and_channels_are_queued():
    smu, _, _ = connect()
    smu.write(":NOPE;:INIT (@3)")
    assert [smu.next_error()[0] for _ in range(3)] == [-113, -224, 0]


def test_channel_2_is_open_and_independent():
    _, twin, load = connect()
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
    smu, twin, _ = connect(model="B2901A", channel=2, identify=False)
    with pytest.raises(InstrumentError, match="B2901A has one channel"):
        smu.check_identity()
    smu.write(":SOUR2:VOLT 1;:MEAS:CURR? (@2)")
    assert [smu.next_error()[0] for _ in range(3)] == [-114, -224, 0]
