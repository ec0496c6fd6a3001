"""The SMU spec: what every SourceMeter driver does, run against each of them.

Part one drives each driver on a ScriptedTransport (the exact bytes of every command, per
instrument in smu_spec.py); part two connects each driver to its twin, driving a fake load. What is
particular to one instrument is tested in its own module (test_<instrument>_driver.py, _twin.py).
"""
from inspect import getattr_static

import numpy as np
import pytest
from labctl.instruments.base import InstrumentError
from labctl.instruments.smu import SourceMeter

from fakes import FormingCell, R
from smu_spec import SCRIPTED, TWINS


def _label(value) -> str:
    if isinstance(value, bytes):
        value = value.decode(errors="replace").strip()
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 24 else text[:21] + "..."


def cases(attribute: str, instruments=SCRIPTED):
    """(instrument, *case) for every case `attribute` lists on every instrument."""
    return [pytest.param(instrument, *case, id="-".join([instrument.name, str(n)] + [
        _label(v) for v in case if isinstance(v, (str, int, float, bytes))][:3]))
        for instrument in instruments for n, case in enumerate(getattr(instrument, attribute))]


def answers(smu, pairs) -> list[tuple[str, str]]:
    """(query, what the instrument replies) for the queries of (query, reply) `pairs`."""
    return [(query, smu.ask(query)) for query, _ in pairs]


each_driver = pytest.mark.parametrize("d", SCRIPTED, ids=lambda d: d.name)
each_twin = pytest.mark.parametrize("spec", TWINS, ids=lambda spec: spec.name)


# --- the drivers, byte for byte ---------------------------------------------------------------

@each_driver
def test_has_every_source_meter_member(d):
    # getattr_static: isinstance() on the protocol would read the properties, i.e. send queries
    k, _ = d.smu()  # any write would fail the script
    members = [n for n in vars(SourceMeter) if not n.startswith("_")] + list(
        SourceMeter.__annotations__)
    assert "sweep_list" in members and k.name == "smu"
    for member in members:
        getattr_static(k, member)


@pytest.mark.parametrize("d, idn, attributes", cases("accepted"))
def test_check_identity_accepts_the_supported_models(d, idn, attributes):
    k, t = d.smu((b"*IDN?\n", idn), *d.identify)
    assert k.check_identity() == idn.decode().strip()
    assert {name: getattr(k, name) for name in attributes} == attributes
    assert not t.script


@pytest.mark.parametrize("d, idn, message", cases("refused"))
def test_check_identity_refuses_other_models(d, idn, message):
    k, _ = d.smu((b"*IDN?\n", idn))
    with pytest.raises(InstrumentError, match=message):
        k.check_identity()


@pytest.mark.parametrize("d, model, prop, value, sent", cases("settings"))
def test_setting_properties(d, model, prop, value, sent):
    k, t = d.driver(model, (sent, b""))
    setattr(k, prop, value)
    assert not t.script


@pytest.mark.parametrize("d, prop, query, reply, value", cases("readings"))
def test_reading_properties(d, prop, query, reply, value):
    k, _ = d.smu((query, reply))
    assert getattr(k, prop) == value


@pytest.mark.parametrize("d, model, prop, value, error", cases("invalid_settings"))
def test_validators_send_nothing(d, model, prop, value, error):
    k, _ = d.driver(model)  # any (further) write would fail the script
    with pytest.raises(error, match=f"{d.name}.{prop}"):
        setattr(k, prop, value)


@each_driver
def test_configure_voltage_source(d):
    options, script = d.configure
    k, t = d.smu(*script)
    k.configure_voltage_source(1e-3, **options)
    assert not t.script


@each_driver
def test_configure_checks_every_argument_before_sending(d):
    options, message = d.invalid_configure
    k, _ = d.smu()
    with pytest.raises(ValueError, match=message):
        k.configure_voltage_source(1e-3, **options)


@each_driver
def test_measure_current(d):
    k, _ = d.smu(d.measure)
    assert k.measure_current() == pytest.approx(1.2345e-5)


@each_driver
def test_sweep_linear_is_a_handful_of_round_trips(d):
    v = np.linspace(-1, 1, 200)
    i = v / 1e4
    k, t = d.smu(*d.linear_sweep(v, i))
    v_out, i_out = k.sweep_linear(-1, 1, 200, delay=1e-3)
    assert not t.script and t.queries == d.round_trips
    np.testing.assert_allclose(v_out, v, rtol=d.readback_rtol)
    np.testing.assert_allclose(i_out, i, rtol=d.readback_rtol)


@each_driver
def test_sweep_linear_fail_abort_returns_the_points_taken(d):
    """0 to 2 V in 5 points; the third is in compliance: three points come back."""
    options, script, v, i = d.fail_abort
    k, t = d.smu(*script)
    v_out, i_out = k.sweep_linear(0, 2, 5, fail_abort=True, **options)
    assert len(v_out) == len(i_out) == 3
    np.testing.assert_allclose(v_out, v)
    np.testing.assert_allclose(i_out, i)
    assert not t.script and t.queries == d.round_trips


@pytest.mark.parametrize("d, args, message", cases("invalid_linear"))
def test_sweep_linear_validation_sends_nothing(d, args, message):
    k, _ = d.smu()
    with pytest.raises(ValueError, match=message):
        k.sweep_linear(*args)


@each_driver
def test_sweep_list_sends_the_levels(d):
    """The SCPI drivers send 150 levels in groups of 100; the 2600B sends one table."""
    levels, options, script = d.list_sweep
    k, t = d.smu(*script)
    v_out, i_out = k.sweep_list(levels, **options)
    assert not t.script and t.queries == d.round_trips
    np.testing.assert_allclose(v_out, levels)
    np.testing.assert_allclose(i_out, levels / 1e4, rtol=d.readback_rtol)


@pytest.mark.parametrize("d, model, voltages, message", cases("invalid_list"))
def test_sweep_list_validation_sends_nothing(d, model, voltages, message):
    k, _ = d.driver(model)
    with pytest.raises(ValueError, match=message):
        k.sweep_list(voltages, delay=0)


@pytest.mark.parametrize("d, what, action, script, message", cases("errors"))
def test_errors_raise_with_the_instruments_messages(d, what, action, script, message):
    k, t = d.smu(*script)
    with pytest.raises(InstrumentError, match=message):
        action(k)
    assert not t.script  # the queue was drained, and nothing was sent after the error


@each_driver
def test_next_error_empty_queue(d):
    k, _ = d.smu(d.no_error)
    assert k.next_error() == d.empty_queue


@each_driver
def test_source_off_is_zero_volts_then_output_off(d):
    k, t = d.smu(*d.source_off)
    k.source_off()
    assert not t.script


# --- the drivers on their twins, driving a resistor (R) ---------------------------------------

@each_twin
def test_identity_and_reset_state_are_safe_and_match_the_manual(spec):
    smu, twin, _ = spec.connect()
    assert smu.identity == spec.identity
    smu.source_voltage = 1.0
    smu.output_enabled = True
    smu.reset()
    assert (twin.output_on, twin.source_level) == (False, 0.0)
    assert smu.current_limit == pytest.approx(spec.reset_limit)
    assert smu.nplc == 1.0 and smu.source_delay == 0.0 and not smu.output_enabled
    assert not smu.limit_tripped
    assert answers(smu, spec.reset_answers) == list(spec.reset_answers)


@each_twin
def test_measure_holds_the_source_for_delay_and_integration_time(spec):
    smu, twin, load = spec.connect()
    smu.configure_voltage_source(1e-3, nplc=0.5, source_delay=0.01)
    smu.source_voltage = 1.0
    assert load.applied == []  # output off: nothing happens yet
    smu.output_enabled = True
    assert smu.measure_current() == pytest.approx(1e-4)
    assert load.applied == [(1.0, 0.01), (1.0, 0.5 / 60)]
    assert twin.elapsed == pytest.approx(0.01 + 0.5 / 60)
    assert not smu.limit_tripped


@each_twin
def test_output_off_reads_open_circuit(spec):
    smu, _, load = spec.connect()
    smu.configure_voltage_source(1e-3)
    smu.source_voltage = 1.0
    assert smu.measure_current() == 0.0
    assert load.applied == [(None, 1 / 60)]


@each_twin
def test_compliance_clamps_the_voltage_and_trips(spec):
    smu, twin, load = spec.connect()
    smu.configure_voltage_source(1e-5)
    smu.source_voltage = 2.0
    smu.output_enabled = True
    assert smu.measure_current() == pytest.approx(1e-5)
    assert smu.limit_tripped
    (v, _), = load.applied
    assert v == pytest.approx(0.1, rel=1e-9) and v / R <= 1e-5
    if spec.measured_source:  # the 2600B twin keeps no source value of a single reading
        assert spec.measured_source(smu) == pytest.approx(0.1)
    assert twin.source_level == 2.0 and smu.source_voltage == 2.0  # the programmed level is kept
    smu.source_voltage = -2.0
    assert smu.measure_current() == pytest.approx(-1e-5)
    smu.source_voltage = 0.05
    assert smu.measure_current() == pytest.approx(5e-6) and not smu.limit_tripped


@each_twin
def test_linear_sweep_returns_the_loads_iv(spec):
    smu, twin, load = spec.connect()
    smu.configure_voltage_source(1e-3, nplc=0.01)
    v, i = smu.sweep_linear(-1, 1, 201, delay=0)
    np.testing.assert_allclose(v, np.linspace(-1, 1, 201), atol=1e-12)
    np.testing.assert_allclose(i, v / R, rtol=spec.rtol)
    assert len(load.applied) == 201
    # left on: at the last level, or back at the programmed (idle) level
    assert twin.output_on and twin.source_level == (0.0 if spec.returns_to_idle else 1.0)
    smu.source_off()
    assert (twin.output_on, twin.source_level) == (False, 0.0)
    assert answers(smu, spec.sweep_off_answers) == list(spec.sweep_off_answers)


@each_twin
def test_sweep_delay_is_held_before_each_measurement(spec):
    smu, twin, load = spec.connect()
    smu.configure_voltage_source(1e-3, nplc=0.01)
    v, _ = smu.sweep_linear(0, 1, 3, delay=0.002)
    np.testing.assert_allclose(v, [0, 0.5, 1])
    assert load.applied[:2] == [(0.0, 0.002), (0.0, 0.01 / 60)]
    assert twin.elapsed == pytest.approx(3 * (0.002 + 0.01 / 60))
    if spec.point_times:  # the 2600B twin keeps no timestamps
        times = spec.point_times(smu, 3)
        np.testing.assert_allclose(np.diff(times), 0.002 + 0.01 / 60, rtol=1e-5)  # 7 digits
    assert smu.source_delay == (0.002 if spec.sweep_delay_is_source_delay else 0.0)


@each_twin
def test_list_sweep_longer_than_one_list_command(spec):
    smu, _, load = spec.connect()
    smu.configure_voltage_source(1e-3, nplc=0.01)
    levels = np.random.default_rng(0).uniform(-2, 2, 250).round(6)
    v, i = smu.sweep_list(levels, delay=0)
    np.testing.assert_allclose(v, levels, rtol=spec.source_rtol)
    np.testing.assert_allclose(i, levels / R, rtol=spec.rtol)
    assert [a for a, _ in load.applied] == pytest.approx(list(levels))
    assert answers(smu, spec.list_answers) == list(spec.list_answers)


@each_twin
def test_fail_abort_stops_at_the_first_point_in_compliance(spec):
    smu, twin, load = spec.connect()
    smu.configure_voltage_source(1.05e-4, nplc=0.01)
    v, i = smu.sweep_linear(0, 2, 21, delay=0, fail_abort=True)
    assert len(v) == 12  # 0 .. 1.0 V within the limit, 1.1 V trips and is kept
    assert i[-1] == pytest.approx(1.05e-4)
    assert v[-1] == pytest.approx(1.1 if spec.reports_programmed_source else 1.05)
    np.testing.assert_allclose(i[:-1], np.linspace(0, 1, 11) / R, rtol=spec.rtol)
    # the sweep ends there, or (output protection) the output opens and the cell sees nothing
    assert twin.output_on != spec.abort_opens_output
    assert [a for a, _ in load.applied[12:]] == [None] * (9 if spec.abort_opens_output else 0)
    assert smu.limit_tripped == spec.tripped_after_abort
    if spec.returns_to_idle:
        assert twin.source_level == 0.0
    assert answers(smu, spec.abort_answers) == list(spec.abort_answers)


@each_twin
def test_without_fail_abort_the_sweep_completes_clamped(spec):
    smu, twin, load = spec.connect()
    smu.configure_voltage_source(1.05e-4, nplc=0.01)
    v, i = smu.sweep_list([0.5, 3, 0.5], delay=0)
    np.testing.assert_allclose(i, [5e-5, 1.05e-4, 5e-5], rtol=1e-6)
    np.testing.assert_allclose(v, [0.5, 3 if spec.reports_programmed_source else 1.05, 0.5])
    assert load.applied[1][0] == pytest.approx(1.05) and twin.output_on


@each_twin
def test_a_load_that_switches_during_a_point_is_clamped_and_aborts(spec):
    smu, _, load = spec.connect(load=FormingCell())
    smu.configure_voltage_source(1e-4, nplc=0.01)
    v, i = smu.sweep_list([1.0, 3.2, 3.2], delay=0, fail_abort=True)
    np.testing.assert_allclose(i, [1e-6, 1e-4], rtol=1e-6)
    assert len(v) == 2 and v[0] == 1.0
    assert v[1] == pytest.approx(3.2 if spec.reports_programmed_source else 0.1, rel=1e-7)
    assert [a for a, _ in load.applied] == [1.0, 3.2] + [None] * spec.abort_opens_output


@pytest.mark.parametrize("spec", [spec for spec in TWINS if spec.errors], ids=lambda s: s.name)
def test_scpi_error_queue_raises_and_drains(spec):
    smu, twin, _ = spec.connect()
    smu.write(spec.errors.out_of_range)
    with pytest.raises(InstrumentError, match="-222: Data out of range; -222: Data out of range; "
                                              "-222: Data out of range$"):
        smu.check_errors()
    assert smu.next_error() == (0, "No error")
    assert twin.source_level == 0.0
    assert spec.errors.twin_limit(twin) == pytest.approx(spec.reset_limit)
    smu.write(spec.errors.conflict)
    code, message = smu.next_error()
    assert code == -221 and message.startswith("Settings conflict")
    assert smu.ask(":SYST:ERR?") == spec.errors.empty_reply
