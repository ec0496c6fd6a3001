"""Keithley2600B driver against a scripted transport: the exact TSP bytes of every command."""
import numpy as np
import pytest

from labctl.instruments.base import InstrumentError
from labctl.instruments.keithley2600b import Keithley2600B
from labctl.instruments.smu import SourceMeter

from fakes import ScriptedTransport

NO_ERROR = (b"print(errorqueue.next())\n",
            b"0.00000e+00\tQueue Is Empty\t0.00000e+00\t0.00000e+00\n")
IDN = b"Keithley Instruments Inc., Model 2636B, 4000001, 4.0.0\n"


def smu(*script: tuple[bytes, bytes],
        channel: str = "a") -> tuple[Keithley2600B, ScriptedTransport]:
    transport = ScriptedTransport(list(script))
    return Keithley2600B(transport, name="smu", channel=channel), transport


def identified(model: str = "2636B", *script, channel: str = "a"):
    idn = f"Keithley Instruments Inc., Model {model}, 4000001, 4.0.0\n".encode()
    k, t = smu((b"*IDN?\n", idn), *script, channel=channel)
    k.check_identity()
    return k, t


def test_has_everything_a_source_meter_needs():
    members = [n for n in vars(SourceMeter) if not n.startswith("_")]
    members += SourceMeter.__annotations__
    assert "sweep_list" in members and smu()[0].name == "smu"
    assert all(hasattr(Keithley2600B, n) for n in members if n != "name")


def test_check_identity_reads_the_model():
    k, t = smu((b"*IDN?\n", IDN))
    assert k.check_identity() == IDN.decode().strip()
    assert k.model == "2636B" and not t.script


@pytest.mark.parametrize("idn", [b"Keithley Instruments Inc., Model 2651A, 1, 1.0\n",
                                 b"KEITHLEY INSTRUMENTS,MODEL 2450,04000001,1.7.12b\n"])
def test_check_identity_refuses_other_models(idn):
    k, _ = smu((b"*IDN?\n", idn))
    with pytest.raises(InstrumentError, match=r"smu at script://smu: model '.*' is not one of "
                                              r"2601B, 2602B"):
        k.check_identity()


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


@pytest.mark.parametrize("prop, value, sent", [
    ("source_voltage", 1.5, b"smua.source.levelv = 1.5\n"),
    ("source_voltage", -202, b"smua.source.levelv = -202\n"),
    ("current_limit", 1e-4, b"smua.source.limiti = 0.0001\n"),
    ("current_limit", 100e-12, b"smua.source.limiti = 1e-10\n"),
    ("output_enabled", True, b"smua.source.output = smua.OUTPUT_ON\n"),
    ("output_enabled", False, b"smua.source.output = smua.OUTPUT_OFF\n"),
    ("nplc", 0.001, b"smua.measure.nplc = 0.001\n"),
    ("nplc", 25, b"smua.measure.nplc = 25\n"),
    ("source_delay", 0.002, b"smua.source.delay = 0.002\n"),
])
def test_setting_properties(prop, value, sent):
    k, t = identified("2636B", (sent, b""))
    setattr(k, prop, value)
    assert not t.script


@pytest.mark.parametrize("prop, query, reply, value", [
    ("source_voltage", b"print(smua.source.levelv)\n", b"1.50000e+00\n", 1.5),
    ("current_limit", b"print(smua.source.limiti)\n", b"1.00000e-04\n", 1e-4),
    ("output_enabled", b"print(smua.source.output)\n", b"1.00000e+00\n", True),
    ("nplc", b"print(smua.measure.nplc)\n", b"1.00000e+00\n", 1.0),
    ("source_delay", b"print(smua.source.delay)\n", b"0.00000e+00\n", 0.0),
    ("limit_tripped", b"print(smua.source.compliance)\n", b"true\n", True),
    ("limit_tripped", b"print(smua.source.compliance)\n", b"false\n", False),
])
def test_reading_properties(prop, query, reply, value):
    k, _ = smu((query, reply))
    assert getattr(k, prop) == value


@pytest.mark.parametrize("model, prop, value, error", [
    ("2636B", "source_voltage", 202.5, ValueError),
    ("2601B", "source_voltage", 41, ValueError),
    ("2636B", "current_limit", 1.6, ValueError),
    ("2636B", "current_limit", 50e-12, ValueError),
    ("2612B", "current_limit", 5e-9, ValueError),
    ("2636B", "nplc", 26, ValueError),
    ("2636B", "nplc", 0.0005, ValueError),
    ("2636B", "source_delay", -1, ValueError),
    ("2636B", "source_voltage", "1", TypeError),
    ("2636B", "output_enabled", "on", TypeError),
    ("2636B", "limit_tripped", True, AttributeError),
])
def test_validators_send_nothing(model, prop, value, error):
    k, _ = identified(model)  # any further write would fail the script
    with pytest.raises(error, match=f"Keithley2600B.{prop}"):
        setattr(k, prop, value)


def test_limits_follow_the_model():
    k, t = identified("2612B", (b"smua.source.limiti = 3\n", b""))
    k.current_limit = 3.0
    assert not t.script


def test_configure_voltage_source():
    k, t = smu((b"smua.source.func = smua.OUTPUT_DCVOLTS\n", b""),
               (b"smua.source.autorangev = smua.AUTORANGE_ON\n", b""),
               (b"smua.measure.autorangei = smua.AUTORANGE_ON\n", b""),
               (b"smua.source.limiti = 0.001\n", b""), (b"smua.measure.nplc = 0.1\n", b""),
               (b"smua.source.delay = 0\n", b""),
               (b"smua.measure.delay = smua.DELAY_OFF\n", b""), NO_ERROR)
    k.configure_voltage_source(1e-3, nplc=0.1)
    assert not t.script


def test_configure_checks_every_argument_before_sending():
    k, _ = smu()
    with pytest.raises(ValueError, match="Keithley2600B.source_delay"):
        k.configure_voltage_source(1e-3, source_delay=-0.1)


def test_measure_current():
    k, _ = smu((b"print(smua.measure.i())\n", b"1.23450e-05\n"))
    assert k.measure_current() == pytest.approx(1.2345e-5)


def buffer_setup(delay: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"smua.nvbuffer1.clear()\n", b""), (b"smua.nvbuffer1.appendmode = 1\n", b""),
            (b"smua.nvbuffer1.collectsourcevalues = 1\n", b""),
            (b"smua.measure.delay = " + delay + b"\n", b"")]


def trigger_sweep(source: bytes, points: int) -> list[tuple[bytes, bytes]]:
    return [(b"smua.trigger.source." + source + b"\n", b""),
            (b"smua.trigger.source.action = smua.ENABLE\n", b""),
            (b"smua.trigger.measure.i(smua.nvbuffer1)\n", b""),
            (b"smua.trigger.measure.action = smua.ENABLE\n", b""),
            (b"smua.trigger.endsweep.action = smua.SOURCE_IDLE\n", b""),
            (f"smua.trigger.count = {points}\n".encode(), b""), NO_ERROR,
            (b"smua.source.output = smua.OUTPUT_ON\n", b""),
            (b"smua.trigger.initiate()\n", b""), (b"waitcomplete()\n", b"")]


def read_back(v: np.ndarray, i: np.ndarray) -> list[tuple[bytes, bytes]]:
    data = ", ".join(f"{a:.5e}, {b:.5e}" for a, b in zip(v, i)).encode() + b"\n"
    return [(b"smua.measure.delay = smua.DELAY_OFF\n", b""),
            (b"printbuffer(1, smua.nvbuffer1.n, smua.nvbuffer1.sourcevalues, "
             b"smua.nvbuffer1.readings)\n", data)]


def test_sweep_linear_is_two_round_trips():
    v = np.linspace(-1, 1, 200)
    i = v / 1e4
    k, t = smu(*buffer_setup(b"0.001"), *trigger_sweep(b"linearv(-1, 1, 200)", 200),
               *read_back(v, i))
    v_out, i_out = k.sweep_linear(-1, 1, 200, delay=1e-3)
    assert not t.script and t.queries == 2
    np.testing.assert_allclose(v_out, v, rtol=1e-5)
    np.testing.assert_allclose(i_out, i, rtol=1e-5)


def test_sweep_list_sends_one_table():
    levels = np.array([0.0, 0.25, -0.5, 1.125])
    k, t = smu(*buffer_setup(b"0"), *trigger_sweep(b"listv({0, 0.25, -0.5, 1.125})", 4),
               *read_back(levels, levels / 1e4))
    v_out, i_out = k.sweep_list(levels, delay=0)
    assert not t.script and t.queries == 2
    np.testing.assert_allclose(v_out, levels)


def test_fail_abort_runs_a_tsp_loop_that_breaks_at_compliance():
    loop = (b"labctl_idle = smua.source.levelv for k = 1, 5 do smua.source.levelv = labctl_v[k] "
            b"smua.measure.i(smua.nvbuffer1) if smua.source.compliance then break end end "
            b"smua.source.levelv = labctl_idle\n")
    v, i = np.array([0.0, 0.5, 1.0]), np.array([0.0, 5e-5, 1e-4])
    k, t = smu(*buffer_setup(b"0.0005"), (b"labctl_v = {0, 0.5, 1, 1.5, 2}\n", b""), NO_ERROR,
               (b"smua.source.output = smua.OUTPUT_ON\n", b""), (loop, b""), *read_back(v, i))
    v_out, i_out = k.sweep_linear(0, 2, 5, delay=5e-4, fail_abort=True)
    assert len(v_out) == len(i_out) == 3 and not t.script and t.queries == 2


@pytest.mark.parametrize("args, message", [
    ((0, 300, 10, 0), "sweep_linear stop=300 V"),
    ((0, 1, 1, 0), "points=1"),
    ((0, 1, 2.5, 0), "points=2.5"),
    ((0, 1, 5001, 0), "points=5001"),
    ((0, 1, 10, -1e-3), "sweep delay=-0.001"),
])
def test_sweep_linear_validation_sends_nothing(args, message):
    k, _ = smu()
    with pytest.raises(ValueError, match=message):
        k.sweep_linear(*args)


@pytest.mark.parametrize("model, voltages, message", [
    ("2636B", [0, 1, 203], "voltage 203 V is outside \\[-202, 202\\] V"),
    ("2604B", [0, 41], "voltage 41 V is outside \\[-40.4, 40.4\\] V"),
    ("2636B", [0, float("nan")], "voltage nan V"),
    ("2636B", [], "1 to 5000 voltages, got 0"),
])
def test_sweep_list_validation_sends_nothing(model, voltages, message):
    k, _ = identified(model)
    with pytest.raises(ValueError, match=message):
        k.sweep_list(voltages, delay=0)


def test_check_errors_raises_with_the_instruments_messages():
    k, _ = smu((b"print(errorqueue.next())\n",
                b"-2.85000e+02\tTSP Syntax error at line 1: unexpected symbol near `:'\t"
                b"2.00000e+01\t1.00000e+00\n"),
               (b"print(errorqueue.next())\n", b"1.10100e+03\tParameter too big\t2.00000e+01\t"
                                               b"1.00000e+00\n"),
               NO_ERROR)
    with pytest.raises(InstrumentError, match=r"smu at script://smu: -285: TSP Syntax error at "
                                              r"line 1: unexpected symbol near `:'; 1101: "
                                              r"Parameter too big$"):
        k.check_errors()


def test_next_error_empty_queue():
    k, _ = smu(NO_ERROR)
    assert k.next_error() == (0, "Queue Is Empty")


def test_reset_and_clear():
    k, t = smu((b"reset()\n", b""), (b"errorqueue.clear()\n", b""))
    k.reset()
    k.clear()
    assert not t.script


def test_source_off_is_zero_volts_then_output_off():
    k, t = smu((b"smua.source.levelv = 0\n", b""), (b"smua.source.output = smua.OUTPUT_OFF\n", b""))
    k.source_off()
    assert not t.script
