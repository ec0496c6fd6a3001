"""The Keysight33500B driver against the virtual 33500B/33600A in-process, with a recording load."""
import numpy as np
import pytest
from labctl.instruments.base import InstrumentError
from labctl.instruments.keysight33500b import Keysight33500B
from labctl.instruments.transport import InProcessTransport
from labctl.sim.keysight33500b import VirtualKeysight33500B

from fakes import RecordingLoad, burst


def bench(model: str = "33522B") -> tuple[Keysight33500B, VirtualKeysight33500B, RecordingLoad]:
    load = RecordingLoad()
    twin = VirtualKeysight33500B(load, model=model)
    generator = Keysight33500B(InProcessTransport(twin, "sim://pulse"), name="pulse")
    generator.check_identity()
    return generator, twin, load


def assert_holds(actual, expected):
    np.testing.assert_allclose(np.array(actual, dtype=float), np.array(expected, dtype=float),
                               rtol=1e-12, atol=0)


def test_identity_and_reset_state_follow_the_guide():
    g, twin, _ = bench("33611A")
    assert g.identity.startswith("Keysight Technologies,33611A,MY00000001,")
    assert list(twin.channels) == [1]
    g.reset()
    assert g.ask("FUNC?") == "SIN" and g.ask("OUTP?") == "0"
    assert g.ask("OUTP:LOAD?") == "+5.00000000000000E+01"
    assert float(g.ask("VOLT?")) == pytest.approx(0.1) and float(g.ask("VOLT:OFFS?")) == 0.0
    assert float(g.ask("FUNC:PULS:PER?")) == pytest.approx(1e-3)
    assert float(g.ask("FUNC:PULS:WIDT?")) == pytest.approx(100e-6)
    assert g.ask("BURS:STAT?") == "0" and g.ask("TRIG:SOUR?") == "IMM"
    assert g.ask("SYST:ERR?") == '+0,"No error"'


def test_a_burst_delivers_exactly_count_pulses_on_its_channel():
    g, twin, load = bench()
    g.configure_burst(1.5, 100e-9, 5, 1e-6)
    g.set_output(True)
    g.fire()
    assert load.holds == burst(1, 1.5, 0.0, 100e-9, 1e-6, 5)
    assert twin.channels[1].output and not twin.channels[2].output


def test_negative_amplitude_on_channel_2_pulses_down_from_its_base():
    g, _, load = bench()
    g.configure_burst(-1.3, 200e-9, 3, 1e-6, channel=2, base=0.2, edge=20e-9)
    g.set_output(True, channel=2)
    g.fire()
    assert_holds(load.holds, burst(2, -1.1, 0.2, 200e-9, 1e-6, 3))
    assert {c for c, _, _ in load.holds} == {2}


def test_output_off_delivers_nothing():
    g, _, load = bench()
    g.configure_burst(1.0, 100e-9, 10, 1e-6)
    g.fire()
    assert load.holds == []
    g.set_output(True)
    g.set_output(False)
    g.fire()
    assert load.holds == []


def test_both_armed_channels_fire_on_one_trigger():
    g, _, load = bench()
    g.configure_burst(1.0, 100e-9, 2, 1e-6, channel=1)
    g.configure_burst(-1.0, 300e-9, 1, 1e-6, channel=2)
    g.set_output(True, 1)
    g.set_output(True, 2)
    g.fire()
    assert load.holds == burst(1, 1.0, 0.0, 100e-9, 1e-6, 2) + burst(2, -1.0, 0.0, 300e-9, 1e-6, 1)


def test_a_50_ohm_load_setting_doubles_the_voltage_at_the_high_z_chip():
    g, twin, load = bench()
    for command in ("OUTP1:LOAD 50", "FUNC PULS", "VOLT:LOW 0", "VOLT:HIGH 1", "BURS:MODE TRIG",
                    "BURS:NCYC 2", "TRIG1:SOUR BUS", "BURS:STAT ON", "OUTP1 ON", "*TRG"):
        g.write(command)
    g.check_errors()
    period, width = 1e-3, 100e-6  # the *RST pulse timing
    assert load.holds == burst(1, 2.0, 0.0, width, period, 2)
    g.write("OUTP:LOAD INF")  # the output keeps its voltage; the programmed value doubles
    assert float(g.ask("VOLT:HIGH?")) == 2.0 and twin.channels[1].high == 2.0
    g.write("OUTP:LOAD 1000")
    assert float(g.ask("VOLT:HIGH?")) == pytest.approx(2.0 * 1000 / 1050)


def test_level_limits_depend_on_the_load_setting():
    g, twin, _ = bench()
    g.write("VOLT:HIGH 6")  # beyond 5 V into 50 ohm
    assert g.next_error() == (-222, "Data out of range")
    g.write("OUTP1:LOAD INF;VOLT:HIGH 6;VOLT:LOW -10.5")
    assert twin.channels[1].high == 6.0
    assert g.next_error() == (-222, "Data out of range")
    g.write("VOLT:LOW 6")  # not below the high level
    assert g.next_error() == (-221, "Settings conflict")
    g.write("VOLT 20;VOLT:OFFS 1")
    assert g.next_error() == (-221, "Settings conflict")


def test_pulse_timing_errors():
    g, twin, _ = bench()
    g.write("FUNC:PULS:PER 1e-6")
    assert g.next_error() == (-221, "Settings conflict")  # the 100 us *RST width does not fit
    g.write("FUNC:PULS:WIDT 500e-9;FUNC:PULS:PER 1e-6")
    g.write("FUNC:PULS:WIDT 990e-9")  # closer to the period than the minimum width
    g.write("FUNC:PULS:WIDT 10e-9")  # narrower than the 33522B's 16 ns
    g.write("FUNC:PULS:TRAN 5e-9")  # faster than its 8.4 ns edges
    g.write("FUNC:PULS:PER 20e-9")  # faster than 30 MHz
    with pytest.raises(InstrumentError, match=r"pulse at sim://pulse: (-222: Data out of range; )"
                                              r"{3}-222: Data out of range$"):
        g.check_errors()
    ch = twin.channels[1]
    assert (ch.period, ch.width, ch.lead) == (1e-6, 500e-9, 10e-9)


def test_the_33600a_twin_accepts_5_ns_pulses():
    g, twin, load = bench("33621A")
    g.configure_burst(0.5, 5e-9, 4, 10e-9)
    g.set_output(True)
    g.fire()
    assert_holds(load.holds, burst(1, 0.5, 0.0, 5e-9, 10e-9, 4))


def test_configure_burst_works_from_any_previous_state():
    g, twin, load = bench()
    for command in ("OUTP1:LOAD 50", "FUNC PULS", "VOLT:HIGH 5", "VOLT:LOW 4", "FUNC:PULS:PER 1",
                    "FUNC:PULS:WIDT 0.5", "FUNC:PULS:TRAN 1e-6", "OUTP1:POL INV"):
        g.write(command)
    g.check_errors()
    g.configure_burst(-10, 16e-9, 1, 1 / 30e6, base=10)
    g.set_output(True)
    g.fire()
    assert_holds(load.holds, burst(1, 0.0, 10.0, 16e-9, 1 / 30e6, 1))
    g.safe_state()
    g.configure_burst(1.0, 100e-9, 1, 1e-6)  # also from the safe state's DC function


def test_long_forms_optional_source_node_and_suffixes():
    g, twin, _ = bench()
    g.write("SOURce2:FUNCtion:PULSe:WIDTh 3e-7;:source2:function:pulse:period 2e-6")
    g.write("SOUR2:FREQ 250000;FUNCtion:PULSe:WIDTh 1e-7;OUTPut2:STATe ON")
    assert twin.channels[2].period == pytest.approx(4e-6) and twin.channels[2].width == 3e-7
    assert twin.channels[1].width == 1e-7 and twin.channels[2].output
    g.write("SOUR2:FUNC:PULS:TRAN:LEAD 2e-8;SOUR2:FUNC:PULS:TRAN:TRA 3e-8")
    assert (twin.channels[2].lead, twin.channels[2].trail) == (2e-8, 3e-8)
    g.write("TRIGger2:SOURce EXTernal;SOUR2:BURSt:MODE GATed;OUTP2:POL INVerted")
    assert g.ask("TRIG2:SOUR?;SOUR2:BURS:MODE?;OUTP2:POL?") == "EXT;GAT;INV"
    assert g.ask("SYST:ERR?") == '+0,"No error"'


def test_command_errors():
    g, _, _ = bench("33511B")
    g.write("SOUR2:FUNC PULS")  # no channel 2
    g.write("FUNC:PULS:NONSENSE 1")
    g.write("BURS:NCYC INF")
    g.write("*TRG")  # no channel listens to the bus
    assert [g.next_error()[0] for _ in range(5)] == [-114, -113, -221, -211, 0]


def test_safe_state_outputs_off_at_0_v():
    g, twin, load = bench()
    for channel in (1, 2):
        g.configure_burst(2.0, 100e-9, 1, 1e-6, channel=channel, base=1.0)
        g.set_output(True, channel)
    g.safe_state()
    g.check_errors()
    for channel in twin.channels.values():
        assert not channel.output and channel.function == "DC" and channel.levels == (0.0, 0.0)
    g.write("OUTP1 ON;*TRG")  # bursts are off: a trigger delivers nothing
    assert load.holds == []
