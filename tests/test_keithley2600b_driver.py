"""Keithley2600B driver against a scripted transport: what only the 2600B does, its channels and
the TSP of reset and clear (the SMU spec, test_smu_spec.py, has the exact TSP bytes of what every
SMU driver does)."""
import pytest
from labctl.instruments.base import InstrumentError

from smu_spec import KEITHLEY2600B

smu, identified = KEITHLEY2600B.smu, KEITHLEY2600B.identified


def test_channel_b_needs_a_two_channel_model():
    with pytest.raises(InstrumentError, match="Model 2635B has one channel \\(smua\\); there is "
                                              "no smub"):
        identified("2635B", channel="b")
    k, t = identified("2612B", (b"smub.source.levelv = 150\n", b""), channel="b")
    k.source_voltage = 150
    assert not t.script


def test_channel_must_be_a_or_b():
    with pytest.raises(ValueError, match="channel='c' must be 'a' or 'b'"):
        smu(channel="c")


def test_reset_and_clear():
    k, t = smu((b"reset()\n", b""), (b"errorqueue.clear()\n", b""))
    k.reset()
    k.clear()
    assert not t.script
