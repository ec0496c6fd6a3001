"""The Keithley2450 driver against the virtual 2450, in-process, driving a resistor: what only the
2450 does, e.g. dual sweeps, its buffer and re-armed sweeps (the SMU spec, test_smu_spec.py, has
what every SMU twin does)."""
import numpy as np
import pytest
from labctl.instruments.keithley2450 import Keithley2450
from labctl.instruments.transport import InProcessTransport
from labctl.sim.keithley2450 import VirtualKeithley2450

from fakes import Resistor
from smu_spec import connect_2450


def test_dual_sweep_goes_there_and_back_with_the_delay():
    smu, twin, load = connect_2450()
    smu.configure_voltage_source(1e-3, nplc=0.01)
    v, _ = smu.sweep_linear(0, 1, 3, delay=0.002, dual=True)
    np.testing.assert_allclose(v, [0, 0.5, 1, 1, 0.5, 0])
    assert load.applied[:2] == [(0.0, 0.002), (0.0, 0.01 / 60)]
    rel = smu.ask_values(':TRAC:DATA? 1, 6, "defbuffer1", REL')
    np.testing.assert_allclose(np.diff(rel), 0.002 + 0.01 / 60, rtol=1e-5)  # 7 digits


def test_error_entries_carry_severity_and_time():
    smu, twin, _ = connect_2450()
    smu.configure_voltage_source(1e-3, nplc=1)
    smu.measure_current()
    smu.write(":NOPE")
    assert smu.ask(":SYST:ERR?") == '-113,"Undefined header;1;1970/01/01 00:00:00.016"'


def test_trace_data_range_is_checked():
    smu, _, _ = connect_2450()
    smu.configure_voltage_source(1e-3)
    smu.measure_current()
    assert smu.ask(':TRAC:ACT? "defbuffer1"') == "1"
    smu.write(':TRAC:DATA? 1, 2, "defbuffer1", READ')
    smu.write(':TRAC:CLE "defbuffer9"')
    assert [smu.next_error()[0] for _ in range(3)] == [-222, -224, 0]


def test_init_runs_the_sweep_again_with_the_source_settings_it_was_defined_with():
    """The sweep command stores the source settings of that moment in its configuration list
    (manual: the trigger model and list stay until replaced); each :INIT runs it again and
    recalls them, so a limit changed afterwards does not apply until the sweep is defined again."""
    smu, twin, load = connect_2450()
    smu.configure_voltage_source(1.05e-4, nplc=0.01)
    first = smu.sweep_list([0.5, 1.5], delay=0)
    smu.source_off()
    smu.current_limit = 1e-3  # a bare setting: the driver sends the sweep again
    smu.source_voltage = 0.3
    smu.write(':TRAC:CLE "defbuffer1"')
    smu.write(":INIT")  # the trigger model as defined, with its 105 uA limit
    assert smu.ask("*OPC?") == "1" and smu.ask(':TRAC:ACT? "defbuffer1"') == "2"
    v, i = np.array(smu.ask_values(':TRAC:DATA? 1, 2, "defbuffer1", SOUR, READ')).reshape(2, 2).T
    np.testing.assert_allclose(i, first[1], rtol=1e-6)
    np.testing.assert_allclose(i, [5e-5, 1.05e-4], rtol=1e-6)
    assert smu.current_limit == pytest.approx(1.05e-4)  # recalled from the list
    smu.configure_voltage_source(1e-3, nplc=0.01)
    v, i = smu.sweep_list([0.5, 1.5], delay=0)  # the driver defines it again: the new limit
    np.testing.assert_allclose(i, [5e-5, 1.5e-4], rtol=1e-6)


def test_a_rearmed_list_sweep_reads_what_a_fresh_one_reads():
    runs = []
    for rearm in (True, False):
        load = Resistor()
        smu = Keithley2450(InProcessTransport(VirtualKeithley2450(load)), name="smu")
        sent = []
        write = smu.transport.write
        smu.transport.write = lambda data, sent=sent, write=write: sent.append(data) or write(data)
        for k in range(3):
            if not rearm:
                smu._armed = None  # as a driver that does not keep track
            smu.configure_voltage_source(1e-3, nplc=0.01)
            runs.append(smu.sweep_list(np.linspace(0, 1, 150) * (1 + k), delay=0)[1]
                        if not rearm or k == 0 else smu.sweep_list(np.linspace(0, 1, 150), delay=0)[1])
            smu.source_off()
        if rearm:
            assert sum(d.startswith(b":SOUR:LIST:VOLT ") for d in sent) == 1
    np.testing.assert_allclose(runs[1], runs[0], rtol=1e-6)
    np.testing.assert_allclose(runs[2], runs[0], rtol=1e-6)
    np.testing.assert_allclose(runs[3], runs[0], rtol=1e-6)
    np.testing.assert_allclose(runs[4], 2 * runs[0], rtol=1e-6)


@pytest.mark.parametrize("case", ["pristine", "formed", "sl_on_hi", "floating_sl", "two_rows"])
def test_the_labs_frozen_current_equals_its_current(tmp_path, case):
    """SimLab.current_function (what the twin's compliance solves use) computes what
    SimLab.current computes, for a pristine or formed cell, the SMU on the SL, a floating
    other line (no current) and two open gates on one column."""
    from labctl.instruments.fpga import LineMode

    from labctl.station import Station

    with Station.open("sim:4x4", sim_state=tmp_path / "c.npz", seed=3) as station:
        lab, xbar, chip = station.lab, station.crossbar, station.config.chip
        if case != "pristine":
            xbar.sweep(1, 2, np.arange(2.9, 4.0, 0.05), 100e-6, 1.2, stop_at_limit=True)
        bl, sl = {"sl_on_hi": (LineMode.GROUND, LineMode.SMU),
                  "floating_sl": (LineMode.SMU, LineMode.FLOAT)}.get(case, (LineMode.SMU, LineMode.GROUND))
        xbar.connect_cell(1, 2, 1.2, bl=bl, sl=sl)
        if case == "two_rows":
            station.board.set_dac({chip.wl_channels[3]: 1.0})
            station.board.route({chip.wl_channels[3]: LineMode.DAC})
        frozen = lab.current_function()
        for v in (-1.5, -0.2, 0.0, 0.2, 0.7, 1.9, 3.0):
            assert frozen(v) == pytest.approx(lab.current(v), rel=1e-13, abs=0.0)
        assert (frozen(0.5) == 0.0) == (case == "floating_sl")
