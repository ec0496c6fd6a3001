"""The Keysight81160A driver against the virtual 81160A/81150A, in-process, on a recording load."""
import pytest
from labctl.instruments.base import InstrumentError
from labctl.instruments.keysight81160a import Keysight81160A
from labctl.instruments.transport import InProcessTransport
from labctl.sim.keysight81160a import VirtualKeysight81160A

from fakes import RecordingLoad, burst


@pytest.fixture(params=["81160A", "81150A"])
def bench(request):
    load = RecordingLoad()
    twin = VirtualKeysight81160A(load, model=request.param)
    pg = Keysight81160A(InProcessTransport(twin, "sim://pulse"))
    assert request.param in pg.check_identity()
    return pg, twin, load


def assert_holds(actual, expected):
    assert [c for c, _, _ in actual] == [c for c, _, _ in expected]
    assert [v for _, v, _ in actual] == pytest.approx([v for _, v, _ in expected], abs=1e-12)
    assert [d for _, _, d in actual] == pytest.approx([d for _, _, d in expected], rel=1e-12)


def test_identity_and_reset_state(bench):
    pg, twin, _ = bench
    assert pg.identity == f"Agilent Technologies,{twin.model},DE00000001,2.0.0.0-2.6"
    pg.reset()
    assert twin.outputs == {1: False, 2: False}
    assert pg.ask(":ARM:SOUR1?") == "IMM" and pg.ask(":FUNC2?") == "SIN"
    assert pg.ask(":PULS:PER1?") == "+1.000000E-06" and pg.ask(":OUTP1:IMP:EXT?") == "+5.000000E+01"
    assert pg.ask(":TRIG2:COUN?") == "1" and pg.ask(":OUTP1:POL?") == "NORM"


def test_burst_delivers_count_pulses_on_its_channel(bench):
    pg, twin, load = bench
    pg.configure_burst(1.5, 100e-9, 5, 1e-6)
    assert twin.outputs == {1: False, 2: False}  # configure leaves the output off
    assert twin.levels[1] == pytest.approx((1.5, 0.0))
    pg.set_output(True)
    pg.fire()
    assert_holds(load.holds, burst(1, 1.5, 0.0, 100e-9, 1e-6, 5))


def test_channel_2_and_a_negative_pulse_on_a_base(bench):
    pg, twin, load = bench
    pg.configure_burst(-1.3, 200e-9, 3, 1e-6, channel=2, base=0.2, edge=10e-9)
    assert twin.levels[2] == pytest.approx((0.2, -1.1))
    assert pg.ask(":OUTP2:POL?") == "INV" and pg.ask(":PULS:TRAN2:TRA?") == "+1.000000E-08"
    pg.set_output(True, channel=2)
    pg.fire()
    assert_holds(load.holds, burst(2, -1.1, 0.2, 200e-9, 1e-6, 3))


@pytest.mark.parametrize("expected_load, at_chip", [("50", 2.0), ("1e3", 1.05), ("MAX", 1.0)])
def test_levels_programmed_for_a_lower_load_are_higher_at_the_high_z_chip(bench, expected_load,
                                                                          at_chip):
    pg, _, load = bench
    pg.configure_burst(1.0, 100e-9, 1, 1e-6)
    pg.write(f":OUTP1:IMP:EXT {expected_load}")  # the programmed 0..1 V are now meant for it
    pg.set_output(True)
    pg.fire()
    assert_holds(load.holds, burst(1, at_chip, 0.0, 100e-9, 1e-6, 1))


def test_output_off_delivers_nothing(bench):
    pg, _, load = bench
    pg.configure_burst(1.0, 100e-9, 10, 1e-6)
    pg.fire()
    assert load.holds == [] and pg.next_error() == (0, "No error")


def test_reconfiguring_from_any_timing_never_conflicts(bench):
    pg, _, load = bench
    pg.configure_burst(1.0, 10e-6, 2, 20e-6, edge=1e-6)
    pg.configure_burst(1.0, 100e-9, 2, 1e-6)  # everything shorter than before
    pg.configure_burst(1.0, 50e-6, 2, 1e-3, edge=5e-6)  # and longer again
    pg.set_output(True)
    pg.fire()
    assert_holds(load.holds, burst(1, 1.0, 0.0, 50e-6, 1e-3, 2))


def test_pulses_wider_than_the_period_are_refused(bench):
    pg, twin, _ = bench
    pg.configure_burst(1.0, 100e-9, 1, 1e-6)
    pg.write(":PULS:WIDT1 2e-6;:PULS:PER1 100e-9;:PULS:TRAN1 1e-6")
    assert [pg.next_error()[0] for _ in range(4)] == [-222, -222, -222, 0]
    state = twin.channels[1]
    assert (state.width, state.period) == (100e-9, 1e-6)


def test_levels_outside_the_window_for_the_expected_load(bench):
    pg, twin, _ = bench
    pg.reset()
    pg.write(":VOLT1:HIGH 6")  # beyond +5 V into the *RST 50 ohm load
    assert pg.next_error() == (-222, "Data out of range")
    pg.write(":OUTP1:IMP:EXT 1e6;:VOLT1:HIGH 6;:VOLT1:LOW 1")  # fine into high impedance
    assert pg.next_error() == (0, "No error") and twin.levels[1] == (6.0, 1.0)
    pg.write(":VOLT1:LOW -6")  # 12 Vpp: more than 10 V peak to peak at open circuit
    assert pg.next_error() == (-222, "Data out of range")
    pg.write(":OUTP1:IMP:EXT 50")  # the kept levels would not fit 50 ohm
    pg.write(":VOLT1:LOW 7")  # low above high
    assert [pg.next_error()[0] for _ in range(3)] == [-222, -222, 0]
    assert twin.channels[1].load == 1e6 and twin.levels[1] == (6.0, 1.0)


def test_instrument_errors_surface_and_drain(bench):
    pg, _, _ = bench
    pg.write(":ARM:SOUR1 BUS;:OUTP3 ON;:NOPE;:TRIG1:COUN 0;:FUNC1 PULS,1")
    with pytest.raises(InstrumentError, match="pulse at sim://pulse: -224: Illegal parameter "
                                              "value; -114: Header suffix out of range; -113: "
                                              "Undefined header; -222: Data out of range; -108: "
                                              "Parameter not allowed$"):
        pg.check_errors()
    assert pg.ask(":SYST:ERR?") == '0,"No error"'


def test_trigger_with_nothing_armed_is_ignored(bench):
    pg, _, load = bench
    pg.reset()
    pg.set_output(True)
    pg.fire()
    assert load.holds == [] and pg.next_error() == (-211, "Trigger ignored")


def test_functions_and_modes_that_are_not_simulated_say_so(bench):
    pg, _, load = bench
    pg.configure_burst(1.0, 100e-9, 1, 1e-6)
    pg.write(":OUTP1 ON;:ARM:SENS1 LEV;*TRG;:ARM:SENS1 EDGE;:FUNC1 SIN;*TRG")
    assert [pg.next_error()[1] for _ in range(2)] == [
        "Settings conflict; gated mode is not simulated",
        "Settings conflict; only the pulse function is simulated"]
    assert load.holds == []


def test_long_forms_keywords_and_delay(bench):
    pg, twin, load = bench
    pg.write(":SOURce:FUNCtion1:SHAPe PULSe;:OUTPut1:IMPedance:EXTernal MAXimum")
    pg.write(":SOURce:VOLTage1:LEVel:IMMediate:HIGH 0.8;:VOLTage1:LOW 0.1")
    pg.write(":SOURce:PULSe:PERiod1 2e-6;:PULSe:WIDTh1 500e-9;:PULSe:DELay1 1e-6")
    pg.write(":ARM:SOURce1 MANual;:TRIGger1:COUNt 2;:OUTPut1:STATe ON")
    assert twin.channels[1].load == 1e6
    pg.fire()
    base, pulse = 0.1, 0.8
    assert_holds(load.holds, [(1, base, 1e-6)] + burst(1, pulse, base, 500e-9, 2e-6, 2))
    assert pg.next_error() == (0, "No error")


def test_error_queue_holds_30_entries(bench):
    pg, _, _ = bench
    pg.write(";".join([":NOPE"] * 31))
    codes = [pg.next_error()[0] for _ in range(31)]
    assert codes == [-113] * 29 + [-350, 0]


def test_reset_keeps_the_error_queue(bench):
    pg, _, _ = bench
    pg.write(":NOPE")
    pg.reset()
    assert pg.next_error() == (-113, "Undefined header")


def test_safe_state_turns_outputs_off_at_zero_volts(bench):
    pg, twin, load = bench
    for channel in (1, 2):
        pg.configure_burst(2.0, 100e-9, 1, 1e-6, channel=channel, base=0.5)
        pg.set_output(True, channel=channel)
    pg.safe_state()
    assert twin.outputs == {1: False, 2: False}
    assert twin.levels == {1: (0.0, 0.0), 2: (0.0, 0.0)}
    assert pg.next_error() == (0, "No error")
    pg.fire()  # still armed, but the outputs are off
    assert load.holds == []
