"""KeysightB2900 driver against a scripted transport: what only the B2900 does, its channels and
the status of each point (the SMU spec, test_smu_spec.py, has the exact bytes of what every SMU
driver does)."""
import pytest
from labctl.instruments.base import InstrumentError

from smu_spec import IDN_B2900 as IDN
from smu_spec import KEYSIGHT_B2900
from smu_spec import run_script_b2900 as run_script
from smu_spec import staircase_b2900 as staircase
from smu_spec import triples_b2900 as triples

smu = KEYSIGHT_B2900.smu


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


def test_without_fail_abort_points_in_compliance_are_kept():
    status = [0, 4, 0]
    b, t = smu(*staircase(b"0", b"1", 3),
               *run_script(3, b"0", False, triples([0, 0.4, 1], [0, 1e-4, 1e-4], status)))
    v_out, _ = b.sweep_linear(0, 1, 3, delay=0)
    assert len(v_out) == 3 and not t.script


def test_malformed_fetch_reply_is_an_error():
    b, _ = smu((b":SOUR1:VOLT:MODE LIST\n", b""), (b":SOUR1:LIST:VOLT 1\n", b""),
               *run_script(1, b"0", False, b"+1.0E+00,+1.0E-04\n"))
    with pytest.raises(InstrumentError, match=r"expected \(V, I, status\) triples from "
                                              r":FETC:ARR\?, got 2 values"):
        b.sweep_list([1], delay=0)
