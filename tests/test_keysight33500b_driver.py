"""Keysight33500B driver against a scripted transport: the exact bytes of every command."""
import pytest
from labctl.instruments.base import InstrumentError
from labctl.instruments.keysight33500b import Keysight33500B
from labctl.instruments.pulse import PulseGenerator

from fakes import ScriptedTransport

IDN_33522B = b"Agilent Technologies,33522B,MY00000000,3.05-1.19-2.00-52-00\n"
IDN_33511B = b"Keysight Technologies,33511B,MY00000001,5.00-1.19-2.00-58-00\n"
IDN_33622A = b"Keysight Technologies,33622A,MY00000002,A.02.02-3.15-03-64-02\n"
NO_ERROR = (b":SYST:ERR?\n", b'+0,"No error"\n')


def generator(*script, idn: bytes = IDN_33522B) -> tuple[Keysight33500B, ScriptedTransport]:
    """A driver that has read *IDN? (`idn`) and expects `script` next."""
    transport = ScriptedTransport([(b"*IDN?\n", idn), *script], resource="script://pulse")
    driver = Keysight33500B(transport)
    driver.check_identity()
    return driver, transport


def writes(*commands: str) -> list[tuple[bytes, bytes]]:
    return [(c.encode() + b"\n", b"") for c in commands]


def burst_script(n: int, polarity: str, high: str, low: str, period: str, width: str, edge: str,
                 count: int) -> list[tuple[bytes, bytes]]:
    s = f"SOUR{n}:"
    return writes(f"OUTP{n} OFF", f"OUTP{n}:LOAD INF", s + "FUNC PULS", f"OUTP{n}:POL {polarity}",
                  s + "VOLT:LOW MIN", s + f"VOLT:HIGH {high}", s + f"VOLT:LOW {low}",
                  s + "FUNC:PULS:TRAN MIN", s + "FUNC:PULS:WIDT MIN", s + f"FUNC:PULS:PER {period}",
                  s + f"FUNC:PULS:WIDT {width}", s + f"FUNC:PULS:TRAN {edge}",
                  s + "BURS:MODE TRIG", s + f"BURS:NCYC {count}", f"TRIG{n}:SOUR BUS",
                  s + "BURS:STAT ON") + [NO_ERROR]


def test_satisfies_the_pulse_generator_protocol():
    assert isinstance(Keysight33500B(ScriptedTransport([])), PulseGenerator)


@pytest.mark.parametrize("idn, model", [(IDN_33522B, "33522B"), (IDN_33511B, "33511B"),
                                        (IDN_33622A, "33622A")])
def test_check_identity_accepts_both_series_and_vendor_names(idn, model):
    g, t = generator(idn=idn)
    assert g.model == model and not t.script


@pytest.mark.parametrize("idn", [b"Agilent Technologies,33250A,0,1.0\n",
                                 b"Agilent Technologies,81160A,DE00000000,1.0\n"])
def test_check_identity_refuses_other_models(idn):
    t = ScriptedTransport([(b"*IDN?\n", idn)], resource="script://pulse")
    with pytest.raises(InstrumentError, match=r"pulse at script://pulse: model '8?\d+A' is not one "
                                              r"of 33509B, 33510B"):
        Keysight33500B(t).check_identity()


def test_configure_burst_sends_a_bus_triggered_pulse_burst_into_high_z():
    g, t = generator(*burst_script(1, "NORM", "1.5", "0", "1e-06", "1e-07", "8.4e-09", 5))
    g.configure_burst(1.5, 100e-9, 5, 1e-6)
    assert not t.script


def test_negative_amplitude_inverts_the_pulse_around_its_base_on_channel_2():
    g, t = generator(*burst_script(2, "INV", "0.2", "-1.1", "2e-06", "5e-07", "2e-08", 100))
    g.configure_burst(-1.3, 500e-9, 100, 2e-6, channel=2, base=0.2, edge=20e-9)
    assert not t.script


def test_the_33600a_takes_its_faster_pulses():
    g, t = generator(*burst_script(1, "NORM", "1", "0", "1e-08", "5e-09", "2.9e-09", 1),
                     idn=IDN_33622A)
    g.configure_burst(1.0, 5e-9, 1, 10e-9)
    assert not t.script


def test_model_is_asked_when_check_identity_was_not_called():
    t = ScriptedTransport([(b"*IDN?\n", IDN_33522B),
                           *burst_script(1, "NORM", "1", "0", "1e-06", "1e-07", "8.4e-09", 1)])
    Keysight33500B(t).configure_burst(1.0, 100e-9, 1, 1e-6)
    assert not t.script


@pytest.mark.parametrize("args, kwargs, message", [
    ((0.001, 1e-7, 1, 1e-6), {}, "amplitude=0.001 V: |amplitude| must be at least 0.002 V"),
    ((25, 1e-7, 1, 1e-6), {}, r"amplitude=25 V is outside \[-20, 20\] V"),
    ((3, 1e-7, 1, 1e-6), {"base": 8}, r"base \+ amplitude=11 V is outside \[-10, 10\] V"),
    ((-3, 1e-7, 1, 1e-6), {"base": -11}, r"base=-11 V is outside"),
    ((1, 1e-7, 1, 30e-9), {}, r"period=3e-08 s is outside \[3.33333e-08, 1e\+06\] s"),
    ((1, 10e-9, 1, 1e-6), {}, r"width=1e-08 s is outside \[1.6e-08, 9.84e-07\] s"),
    ((1, 990e-9, 1, 1e-6), {}, r"width=9.9e-07 s is outside \[1.6e-08, 9.84e-07\] s"),
    ((1, 1e-7, 1, 1e-6), {"edge": 5e-9}, r"edge=5e-09 s is outside \[8.4e-09, 6.25e-08\] s"),
    ((1, 20e-9, 1, 1e-6), {"edge": 20e-9}, r"edge=2e-08 s is outside \[8.4e-09, 1.25e-08\] s"),
    ((1, 1e-7, 0, 1e-6), {}, r"count=0 must be an integer in \[1, 100000000\]"),
    ((1, 1e-7, 100_000_001, 1e-6), {}, "count=100000001"),
    ((1, 1e-7, 2.5, 1e-6), {}, "count=2.5"),
    ((1, 1e-7, True, 1e-6), {}, "count=True"),
    ((1, 1e-7, 1, 1e-6), {"channel": 3}, "channel=3: the 33522B has channels 1 and 2"),
    (("1", 1e-7, 1, 1e-6), {}, "amplitude must be a number"),
])
def test_out_of_range_sends_nothing(args, kwargs, message):
    g, _ = generator()  # any write would fail the script
    with pytest.raises((ValueError, TypeError), match=message):
        g.configure_burst(*args, **kwargs)


def test_channel_2_is_refused_on_a_one_channel_model():
    g, _ = generator(idn=IDN_33511B)
    with pytest.raises(ValueError, match="channel=2: the 33511B has channel 1 only"):
        g.configure_burst(1.0, 100e-9, 1, 1e-6, channel=2)
    with pytest.raises(ValueError, match="channel=2"):
        g.set_output(True, channel=2)


def test_the_33600a_limits_are_its_own():
    g, _ = generator(idn=IDN_33622A)
    with pytest.raises(ValueError, match=r"width=4e-09 s is outside \[5e-09, "):
        g.configure_burst(1.0, 4e-9, 1, 1e-6)


def test_instrument_errors_raise_with_its_messages():
    script = burst_script(1, "NORM", "1", "0", "1e-06", "1e-07", "8.4e-09", 1)[:-1]
    g, _ = generator(*script, (b":SYST:ERR?\n", b'-221,"Settings conflict"\n'),
                     (b":SYST:ERR?\n", b'-222,"Data out of range"\n'), NO_ERROR)
    with pytest.raises(InstrumentError, match=r"pulse at script://pulse: -221: Settings conflict; "
                                              r"-222: Data out of range$"):
        g.configure_burst(1.0, 100e-9, 1, 1e-6)


def test_next_error_empty_queue():
    g, _ = generator(NO_ERROR)
    assert g.next_error() == (0, "No error")


@pytest.mark.parametrize("on, channel, sent", [(True, 1, b"OUTP1 ON\n"),
                                              (False, 2, b"OUTP2 OFF\n")])
def test_set_output(on, channel, sent):
    g, t = generator((sent, b""))
    g.set_output(on, channel)
    assert not t.script


def test_set_output_takes_only_booleans():
    g, _ = generator()
    with pytest.raises(TypeError, match="set_output on must be True or False"):
        g.set_output("on")


def test_fire_triggers_and_waits_for_completion():
    g, t = generator((b"*TRG\n", b""), (b"*OPC?\n", b"1\n"))
    g.fire()
    assert not t.script and t.queries == 2  # *IDN? and *OPC?


@pytest.mark.parametrize("idn, channels", [(IDN_33522B, (1, 2)), (IDN_33511B, (1,))])
def test_safe_state_turns_every_output_off_then_sets_0_v(idn, channels):
    script = writes(*(f"OUTP{n} OFF" for n in channels))
    for n in channels:
        script += writes(f"SOUR{n}:BURS:STAT OFF", f"SOUR{n}:FUNC DC", f"SOUR{n}:VOLT:OFFS 0")
    g, t = generator(*script, idn=idn)
    g.safe_state()
    assert not t.script


@pytest.mark.parametrize("idn, replies, on", [(IDN_33522B, (b"1", b"0"), [1]), (IDN_33522B, (b"0", b"1"), [2]),
                                              (IDN_33511B, (b"0",), [])])
def test_outputs_on_asks_each_channel_of_the_model(idn, replies, on):
    g, t = generator(*[(f"OUTP{n}?\n".encode(), r + b"\n") for n, r in enumerate(replies, 1)], idn=idn)
    assert g.outputs_on() == on
    assert not t.script
