"""Keithley2450 driver against a scripted transport: the exact bytes of every command."""
import numpy as np
import pytest

from labctl.instruments.base import InstrumentError
from labctl.instruments.keithley2450 import Keithley2450

from fakes import ScriptedTransport

NO_ERROR = (b":SYST:ERR?\n", b'0,"No error;0;0 0"\n')
IDN = b"KEITHLEY INSTRUMENTS,MODEL 2450,04000001,1.7.12b\n"


def smu(*script: tuple[bytes, bytes]) -> tuple[Keithley2450, ScriptedTransport]:
    transport = ScriptedTransport(list(script))
    return Keithley2450(transport, name="smu"), transport


def test_check_identity_asks_idn_and_language():
    k, t = smu((b"*IDN?\n", IDN), (b"*LANG?\n", b"SCPI\n"))
    assert k.check_identity() == IDN.decode().strip()
    assert not t.script


def test_check_identity_refuses_other_model():
    k, _ = smu((b"*IDN?\n", b"KEITHLEY INSTRUMENTS,MODEL 2460,1,1.7\n"))
    with pytest.raises(InstrumentError, match=r"smu at script://smu: model 'MODEL 2460' is not one "
                                              r"of 2450"):
        k.check_identity()


def test_check_identity_refuses_tsp_command_set():
    k, _ = smu((b"*IDN?\n", IDN), (b"*LANG?\n", b"TSP\n"))
    with pytest.raises(InstrumentError, match="command set is TSP"):
        k.check_identity()


@pytest.mark.parametrize("prop, value, sent", [
    ("source_voltage", 1.5, b":SOUR:VOLT 1.5\n"),
    ("source_voltage", -210, b":SOUR:VOLT -210\n"),
    ("current_limit", 1e-4, b":SOUR:VOLT:ILIM 0.0001\n"),
    ("current_limit", 1e-9, b":SOUR:VOLT:ILIM 1e-09\n"),
    ("output_enabled", True, b":OUTP 1\n"),
    ("output_enabled", False, b":OUTP 0\n"),
    ("nplc", 0.01, b":SENS:CURR:NPLC 0.01\n"),
    ("source_delay", 0.002, b":SOUR:VOLT:DEL 0.002\n"),
])
def test_setting_properties(prop, value, sent):
    k, t = smu((sent, b""))
    setattr(k, prop, value)
    assert not t.script


@pytest.mark.parametrize("prop, query, reply, value", [
    ("source_voltage", b":SOUR:VOLT?\n", b"+1.500000E+00\n", 1.5),
    ("current_limit", b":SOUR:VOLT:ILIM?\n", b"+1.050000E-04\n", 1.05e-4),
    ("output_enabled", b":OUTP?\n", b"1\n", True),
    ("nplc", b":SENS:CURR:NPLC?\n", b"+1.000000E+00\n", 1.0),
    ("source_delay", b":SOUR:VOLT:DEL?\n", b"+0.000000E+00\n", 0.0),
    ("limit_tripped", b":SOUR:VOLT:ILIM:TRIP?\n", b"0\n", False),
])
def test_reading_properties(prop, query, reply, value):
    k, _ = smu((query, reply))
    assert getattr(k, prop) == value


@pytest.mark.parametrize("prop, value, error", [
    ("source_voltage", 210.5, ValueError),
    ("current_limit", 0, ValueError),
    ("current_limit", 1.1, ValueError),
    ("nplc", 11, ValueError),
    ("source_delay", -1, ValueError),
    ("source_voltage", "1", TypeError),
    ("output_enabled", "on", TypeError),
])
def test_validators_send_nothing(prop, value, error):
    k, _ = smu()  # any write would fail the script
    with pytest.raises(error, match=f"Keithley2450.{prop}"):
        setattr(k, prop, value)


def test_configure_voltage_source():
    k, t = smu((b":SOUR:FUNC VOLT\n", b""), (b":SOUR:VOLT:RANG:AUTO ON\n", b""),
               (b':SENS:FUNC "CURR"\n', b""), (b":SENS:CURR:RANG:AUTO ON\n", b""),
               (b":SOUR:VOLT:ILIM 0.001\n", b""), (b":SENS:CURR:NPLC 0.1\n", b""),
               (b":SOUR:VOLT:DEL 0\n", b""), NO_ERROR)
    k.configure_voltage_source(1e-3, nplc=0.1)
    assert not t.script


def test_configure_checks_every_argument_before_sending():
    k, _ = smu()
    with pytest.raises(ValueError, match="Keithley2450.nplc"):
        k.configure_voltage_source(1e-3, nplc=20)


def test_measure_current():
    k, _ = smu((b":READ?\n", b"+1.234500E-05\n"))
    assert k.measure_current() == pytest.approx(1.2345e-5)


def sweep_tail(points: int, v: np.ndarray, i: np.ndarray) -> list[tuple[bytes, bytes]]:
    data = ",".join(f"{a:+.6E},{b:+.6E}" for a, b in zip(v, i)).encode() + b"\n"
    return [NO_ERROR, (b":INIT\n", b""), (b"*OPC?\n", b"1\n"),
            (b':TRAC:ACT? "defbuffer1"\n', f"{points}\n".encode()),
            (f':TRAC:DATA? 1, {points}, "defbuffer1", SOUR, READ\n'.encode(), data)]


def test_sweep_linear_is_a_handful_of_round_trips():
    v = np.linspace(-1, 1, 200)
    i = v / 1e4
    k, t = smu((b':TRAC:CLE "defbuffer1"\n', b""),
               (b':SOUR:SWE:VOLT:LIN -1, 1, 200, 0.001, 1, BEST, OFF, OFF, "defbuffer1"\n', b""),
               *sweep_tail(200, v, i))
    v_out, i_out = k.sweep_linear(-1, 1, 200, delay=1e-3)
    assert not t.script and t.queries == 4
    np.testing.assert_allclose(v_out, v, rtol=1e-6)
    np.testing.assert_allclose(i_out, i, rtol=1e-6)


def test_sweep_linear_fail_abort_returns_the_points_taken():
    v, i = np.array([0.0, 0.5, 1.0]), np.array([0.0, 5e-5, 1e-4])
    k, t = smu((b':TRAC:CLE "defbuffer1"\n', b""),
               (b':SOUR:SWE:VOLT:LIN 0, 2, 5, 0, 1, BEST, ON, ON, "defbuffer1"\n', b""),
               *sweep_tail(3, v, i))
    v_out, i_out = k.sweep_linear(0, 2, 5, delay=0, fail_abort=True, dual=True)
    assert len(v_out) == len(i_out) == 3 and not t.script


@pytest.mark.parametrize("args, message", [
    ((0, 300, 10, 0), "sweep_linear stop=300 V"),
    ((0, 1, 1, 0), "points=1"),
    ((0, 1, 2.5, 0), "points=2.5"),
    ((0, 1, 10, 1e-5), "delay=1e-05"),
])
def test_sweep_linear_validation_sends_nothing(args, message):
    k, _ = smu()
    with pytest.raises(ValueError, match=message):
        k.sweep_linear(*args)


def test_sweep_list_sends_values_in_groups_of_100():
    levels = np.round(np.linspace(0, 1.5, 150), 6)
    first = ", ".join(f"{x:.10g}" for x in levels[:100])
    rest = ", ".join(f"{x:.10g}" for x in levels[100:])
    k, t = smu((b':TRAC:CLE "defbuffer1"\n', b""),
               (f":SOUR:LIST:VOLT {first}\n".encode(), b""),
               (f":SOUR:LIST:VOLT:APP {rest}\n".encode(), b""),
               (b':SOUR:SWE:VOLT:LIST 1, 0.0005, 1, ON, "defbuffer1"\n', b""),
               *sweep_tail(150, levels, levels / 1e4))
    v_out, i_out = k.sweep_list(levels, delay=5e-4, fail_abort=True)
    assert not t.script and t.queries == 4
    np.testing.assert_allclose(i_out, levels / 1e4, rtol=1e-6)


@pytest.mark.parametrize("voltages, message", [
    ([0, 1, 211], "voltage 211 V is outside"),
    ([0, float("nan")], "voltage nan V"),
    ([], "1 to 2500 voltages, got 0"),
    (np.zeros(2501), "got 2501"),
])
def test_sweep_list_validation_sends_nothing(voltages, message):
    k, _ = smu()
    with pytest.raises(ValueError, match=message):
        k.sweep_list(voltages, delay=0)


def test_configuration_error_raises_with_the_instruments_message():
    k, _ = smu((b':TRAC:CLE "defbuffer1"\n', b""),
               (b':SOUR:SWE:VOLT:LIN 0, 1, 10, 0, 1, BEST, OFF, OFF, "defbuffer1"\n', b""),
               (b":SYST:ERR?\n", b'-222,"Data out of range;1;2024/01/01 00:00:00.000"\n'),
               (b":SYST:ERR?\n", b'-113,"Undefined header;1;2024/01/01 00:00:00.000"\n'),
               NO_ERROR)
    with pytest.raises(InstrumentError,
                       match=r"smu at script://smu: -222: Data out of range; -113: Undefined header$"):
        k.sweep_linear(0, 1, 10, delay=0)


def test_next_error_empty_queue():
    k, _ = smu(NO_ERROR)
    assert k.next_error() == (0, "No error")


def test_source_off_is_zero_volts_then_output_off():
    k, t = smu((b":SOUR:VOLT 0\n", b""), (b":OUTP 0\n", b""))
    k.source_off()
    assert not t.script


CONFIGURE_1MA = [(b":SOUR:FUNC VOLT\n", b""), (b":SOUR:VOLT:RANG:AUTO ON\n", b""),
                 (b':SENS:FUNC "CURR"\n', b""), (b":SENS:CURR:RANG:AUTO ON\n", b""),
                 (b":SOUR:VOLT:ILIM 0.001\n", b""), (b":SENS:CURR:NPLC 1\n", b""),
                 (b":SOUR:VOLT:DEL 0\n", b""), NO_ERROR]


def list_sweep(levels, delay: str, fail_abort: str) -> list[tuple[bytes, bytes]]:
    return [(f":SOUR:LIST:VOLT {', '.join(f'{x:.10g}' for x in levels)}\n".encode(), b""),
            (f':SOUR:SWE:VOLT:LIST 1, {delay}, 1, {fail_abort}, "defbuffer1"\n'.encode(), b"")]


def test_an_unchanged_setup_and_sweep_are_not_sent_again():
    """The 2450 keeps its settings and the sweep's trigger model: the second identical sweep
    (e.g. the next cell's forming ramp, after a read and the safe state) is only re-armed."""
    levels = np.array([0.0, 0.5, 1.0])
    clear = (b':TRAC:CLE "defbuffer1"\n', b"")
    k, t = smu(*CONFIGURE_1MA, clear, *list_sweep(levels, "0", "ON"), *sweep_tail(3, levels, levels / 1e4),
               (b":SOUR:VOLT 0.2\n", b""), (b":READ?\n", b"+1.0E-06\n"),
               (b":SOUR:VOLT 0\n", b""), (b":OUTP 0\n", b""),
               clear, *sweep_tail(3, levels, levels / 1e4)[1:])  # nothing configured: no error check
    k.configure_voltage_source(1e-3)
    k.sweep_list(levels, delay=0, fail_abort=True)
    k.source_voltage = 0.2
    k.measure_current()
    k.source_off()
    k.configure_voltage_source(1e-3)
    v_out, i_out = k.sweep_list(levels, delay=0, fail_abort=True)
    assert not t.script
    np.testing.assert_allclose(v_out, levels)


class Answering(ScriptedTransport):
    """Records every message and answers the queries a sweep asks (no scripted order)."""

    REPLIES = {b"*OPC?": b"1\n", b':TRAC:ACT? "defbuffer1"': b"0\n",
               b":SYST:ERR?": b'0,"No error;0;0 0"\n'}

    def __init__(self):
        super().__init__([])

    def handle(self, data: bytes) -> bytes:
        self.sent.append(data)
        query = data.strip()
        return self.REPLIES.get(query, b"0\n" if query.split()[0].endswith(b"?") else b"")


@pytest.mark.parametrize("change, configured", [
    ("levels", False), ("delay", False), ("fail_abort", False), ("limit", True),
    ("ilim_property", True), ("nplc_property", True), ("reset", True), ("compound_line", True),
    ("raw_source_function", True), ("sweep_linear", False),
])
def test_a_changed_setup_or_sweep_is_sent_again(change, configured):
    """Anything that may have changed the setup or replaced the trigger model makes the driver
    send them again; the source level, the output and queries do not."""
    t = Answering()
    k = Keithley2450(t, name="smu")
    sweep = {"voltages": [0.0, 0.5, 1.0], "delay": 0.0, "fail_abort": True}
    limit = 1e-3
    k.configure_voltage_source(limit)
    k.sweep_list(**sweep)
    k.source_voltage, k.output_enabled = 0.2, True  # harmless in between: a read
    k.measure_current()
    k.source_off()
    t.sent.clear()
    if change == "levels":
        sweep["voltages"] = [0.0, 0.5, 1.5]
    elif change in sweep:
        sweep[change] = {"delay": 1e-3, "fail_abort": False}[change]
    elif change == "limit":
        limit = 2e-3
    else:
        {"ilim_property": lambda: setattr(k, "current_limit", 2e-3),
         "nplc_property": lambda: setattr(k, "nplc", 0.1), "reset": k.reset,
         "compound_line": lambda: k.write(":SOUR:VOLT 1;:SOUR:VOLT:DEL 0.1"),
         "raw_source_function": lambda: k.write(":SOUR:FUNC CURR"),
         "sweep_linear": lambda: k.sweep_linear(0, 1, 3, delay=0)}[change]()
    t.sent.clear()
    k.configure_voltage_source(limit)
    k.sweep_list(**sweep)
    sent = b"".join(t.sent)
    assert (b":SOUR:VOLT:ILIM" in sent) == configured
    assert b":SOUR:LIST:VOLT" in sent and b":SOUR:SWE:VOLT:LIST" in sent


def test_an_unchanged_sweep_after_harmless_commands_is_only_rearmed():
    t = Answering()
    k = Keithley2450(t, name="smu")
    for _ in range(2):
        k.configure_voltage_source(1e-3)
        k.sweep_list([0.0, 0.5, 1.0], delay=0, fail_abort=True)
        k.source_voltage, k.output_enabled = 0.2, True
        k.measure_current()
        _ = k.current_limit, k.limit_tripped  # queries change nothing
        k.source_off()
        if len(t.sent) > 20:
            t.sent.clear()
    assert t.sent == [b':TRAC:CLE "defbuffer1"\n', b":INIT\n", b"*OPC?\n", b':TRAC:ACT? "defbuffer1"\n',
                      b":SOUR:VOLT 0.2\n", b":OUTP 1\n", b":READ?\n", b":SOUR:VOLT:ILIM?\n",
                      b":SOUR:VOLT:ILIM:TRIP?\n", b":SOUR:VOLT 0\n", b":OUTP 0\n"]


def test_a_failed_exchange_forgets_the_setup():
    t = Answering()
    k = Keithley2450(t, name="smu")
    k.configure_voltage_source(1e-3)
    k.sweep_list([0.0, 1.0], delay=0)
    t.handle = lambda data: (_ for _ in ()).throw(TimeoutError("no reply"))
    with pytest.raises(TimeoutError):
        k.measure_current()
    assert k._setup is None and k._armed is None
