"""Keithley2450 driver against a scripted transport: what only the 2450 does (the SMU spec,
test_smu_spec.py, has the exact bytes of what every SMU driver does)."""
import numpy as np
import pytest
from labctl.instruments.base import InstrumentError
from labctl.instruments.keithley2450 import Keithley2450

from fakes import ScriptedTransport
from smu_spec import CLEAR_2450 as CLEAR
from smu_spec import IDN_2450 as IDN
from smu_spec import KEITHLEY2450, configure_2450
from smu_spec import sweep_tail_2450 as sweep_tail

smu = KEITHLEY2450.smu


def test_check_identity_refuses_tsp_command_set():
    k, _ = smu((b"*IDN?\n", IDN), (b"*LANG?\n", b"TSP\n"))
    with pytest.raises(InstrumentError, match="command set is TSP"):
        k.check_identity()


def list_sweep(levels, delay: str, fail_abort: str) -> list[tuple[bytes, bytes]]:
    return [(f":SOUR:LIST:VOLT {', '.join(f'{x:.10g}' for x in levels)}\n".encode(), b""),
            (f':SOUR:SWE:VOLT:LIST 1, {delay}, 1, {fail_abort}, "defbuffer1"\n'.encode(), b"")]


def test_an_unchanged_setup_and_sweep_are_not_sent_again():
    """The 2450 keeps its settings and the sweep's trigger model: the second identical sweep
    (e.g. the next cell's forming ramp, after a read and the safe state) is only re-armed."""
    levels = np.array([0.0, 0.5, 1.0])
    k, t = smu(*configure_2450("1"), CLEAR, *list_sweep(levels, "0", "ON"),
               *sweep_tail(3, levels, levels / 1e4),
               (b":SOUR:VOLT 0.2\n", b""), (b":READ?\n", b"+1.0E-06\n"),
               (b":SOUR:VOLT 0\n", b""), (b":OUTP 0\n", b""),
               CLEAR, *sweep_tail(3, levels, levels / 1e4)[1:])  # nothing configured: no error check
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
