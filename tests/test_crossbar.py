"""Crossbar operations reach exactly the cells they name, with exactly the requested bias."""
import numpy as np
import pytest
from labctl.sim.physics import ArrayPhysics

from labctl.engine import run_protocol
from labctl.safety import SafetyError
from labctl.station import Station


@pytest.fixture
def formed(sim_station, tmp_path):
    assert run_protocol(sim_station, "forming", {"v_start": 2.9}, out=tmp_path / "d.h5").status == "completed"
    return sim_station


@pytest.mark.parametrize("amplitude", [1.35, -1.5])
def test_pulses_reach_exactly_the_selected_cell(formed, amplitude):
    physics = formed.lab.physics
    formed.lab.board.link_baud = None  # the reference replays the pulses, not the UART's byte time
    reference = ArrayPhysics.from_state(physics.state())
    g_before = physics.g.copy()
    row, col, width, count, period = 1, 3, 100e-9, 5, 1e-6
    formed.crossbar.pulse(row, col, amplitude, width, count, v_gate=1.2, period=period)

    gate = np.zeros(4)
    gate[row] = np.float32(1.2)  # the board's gate DAC takes f4 volts
    pulse_line = np.zeros(8)
    for _ in range(count):
        pulse_line[col] = abs(amplitude)
        high = (pulse_line, np.zeros(8)) if amplitude > 0 else (np.zeros(8), pulse_line)
        reference.apply(gate, *high, width)
        pulse_line[col] = 0.0
        reference.apply(gate, np.zeros(8), np.zeros(8), period - width)
    np.testing.assert_allclose(physics.g, reference.g, rtol=1e-12)
    assert physics.clock.now == pytest.approx(reference.clock.now)
    step = physics.g[row, col] - g_before[row, col]
    assert np.sign(step) == np.sign(amplitude) and abs(step) > 1e-7  # SET up, RESET down, visibly


def test_pulse_changes_only_the_selected_cell(formed):
    g0 = formed.lab.physics.g.copy()
    formed.crossbar.pulse(2, 6, 1.35, 100e-9, 3)
    changed = np.argwhere(formed.lab.physics.g != g0)
    assert changed.tolist() == [[2, 6]]
    assert formed.lab.physics.g[2, 6] > g0[2, 6]


def test_pulse_requests_beyond_the_soa_apply_nothing(formed):
    g0, t0 = formed.lab.physics.g.copy(), formed.lab.physics.clock.now
    for kwargs, limit in (({"amplitude": 4.5}, "max_v_bl"), ({"amplitude": -4.5}, "max_v_sl"),
                          ({"amplitude": 1.0, "width": 1.0}, "max_pulse_width"),
                          ({"amplitude": 1.0, "count": 10**7}, "max_pulses")):
        with pytest.raises(SafetyError, match=limit):
            formed.crossbar.pulse(0, 0, **({"width": 1e-7} | kwargs))
    assert np.array_equal(formed.lab.physics.g, g0) and formed.lab.physics.clock.now == t0


def test_a_forming_ramp_reads_the_same_in_one_physics_call_as_point_by_point(tmp_path):
    """The 2450 twin resolves the quiet points of a sweep (nothing forms or switches, within
    compliance) in bulk; a pristine cell reads without noise, so both paths give the same readings
    up to the forming event, and the same event."""
    ramp, runs = np.arange(0.0, 4.0, 0.01), []
    for bulk in (True, False):
        with Station.open("sim", sim_state=tmp_path / f"{bulk}.npz", seed=5) as station:
            lab, applied = station.lab, []
            if not bulk:
                lab.quiet_ramp = lambda levels, duration, limit: ()
            apply = lab.physics.apply
            lab.physics.apply = lambda *a, applied=applied, apply=apply: applied.append(a) or apply(*a)
            v, i = station.crossbar.sweep(1, 2, ramp, 100e-6, 1.2, stop_at_limit=True)
            runs.append((v, i, lab.physics.formed.copy(), len(applied), lab.physics.clock.now))
    (v, i, formed, n_bulk, t_bulk), (v_exact, i_exact, formed_exact, n_exact, t_exact) = runs
    assert formed[1, 2] and np.array_equal(formed, formed_exact)
    assert len(v) == len(v_exact) < len(ramp)  # both stop at the forming event
    np.testing.assert_allclose(i, i_exact, rtol=1e-9, atol=1e-15)
    np.testing.assert_array_equal(v[:-1], v_exact[:-1])
    # in compliance the voltage follows the formed cell, whose switching noise draws differ
    assert v[-1] == pytest.approx(v_exact[-1], rel=1e-3)
    assert t_bulk == pytest.approx(t_exact, rel=1e-9)
    assert n_bulk < n_exact / 10  # only the active points took apply()


def test_a_cell_block_routes_once_and_ends_in_the_safe_state(sim_station):
    """A ramp and its verify read on one routing read what separate sweep and read_cell read
    (the same physics), with one routing; the SMU is at 0 V, output off, when the block ends,
    also on error; a request beyond the SOA sends nothing."""
    xbar, lab = sim_station.crossbar, sim_station.lab
    frames = []
    handle = lab.board.handle
    lab.board.handle = lambda data: frames.append(data) or handle(data)
    ramp = np.arange(2.9, 4.0, 0.05)
    with xbar.cell(1, 2, 1.2) as cell:
        v, i = cell.sweep(ramp, 100e-6, stop_at_limit=True)
        g = cell.read(0.2)
    n_frames = len(frames)
    assert lab.physics.formed[1, 2] and len(v) < len(ramp) and abs(i[-1]) == pytest.approx(100e-6)
    assert g == pytest.approx(lab.physics.g[1, 2], rel=0.05)
    assert (lab.smu.output_on, lab.smu.source_level) == (False, 0.0)
    assert g == pytest.approx(xbar.read_cell(1, 2, 0.2, 1.2), rel=0.05)
    assert len(frames) == 2 * n_frames  # read_cell routes once more, like the block did
    with pytest.raises(ZeroDivisionError):
        with xbar.cell(0, 0, 1.2) as cell:
            cell.read(0.2)
            raise ZeroDivisionError("an error inside the block")
    assert (lab.smu.output_on, lab.smu.source_level) == (False, 0.0)
    frames.clear()
    with pytest.raises(SafetyError, match="max_v_wl"):
        with xbar.cell(0, 0, 9.0):
            pass
    assert frames == []
    with xbar.cell(0, 1, 1.2) as cell:
        with pytest.raises(SafetyError, match="max_v_bl"):
            cell.sweep([0.0, 9.0], 100e-6)
        with pytest.raises(SafetyError, match="max_current"):
            cell.sweep([0.0, 1.0], 1.0)
        assert lab.smu.source_level == 0.0 and not lab.smu.output_on
    assert not lab.physics.formed[0, 1]


def test_board_operations_end_released_with_one_release_all_only_when_needed(sim_station):
    """The crossbar releases the board after an operation unless it was released before (the
    operation restored that routing: docs/fpga-protocol.md): the board's STATUS is the safe state
    after every operation, routed or not before it, failed or not."""
    from labctl.instruments.fpga import BoardError, LineMode
    from labctl.instruments.fpga_wire import Command

    xbar, lab = sim_station.crossbar, sim_station.lab
    sent = []
    handle = lab.board.handle
    lab.board.handle = lambda data: sent.append(data[2]) or handle(data)

    def released() -> bool:
        modes, dac = xbar.board.status()
        return bool(np.all(modes == LineMode.GROUND) and np.all(dac == 0.0))

    def releases(operation) -> int:
        sent.clear()
        operation()
        return sent.count(Command.RELEASE_ALL)

    x = np.full((2, 4), 0.5)
    xbar.configure_mvm()
    assert releases(lambda: xbar.mvm_forward(x)) == 1  # the board's state unknown before
    assert xbar.board.released and released()
    assert releases(lambda: xbar.mvm_forward(x)) == 0
    assert releases(lambda: xbar.mvm_backward(np.full(8, 0.5))) == 0
    assert releases(lambda: xbar.parallel_update(np.ones(4, np.uint32), np.ones(8, np.uint32), 1, 1, 0.5, 1e-7)) == 0
    assert xbar.board.released and released()
    with xbar.cell(1, 2, 1.2):  # routes lines: no longer released
        assert not xbar.board.released
    assert releases(lambda: xbar.mvm_forward(x)) == 1
    assert xbar.board.released and released()
    lab.board._map = None  # the board forgets its map: the next request fails
    with pytest.raises(BoardError, match="NOT_CONFIGURED"):
        xbar.mvm_forward(x)
    assert sent[-1] == Command.RELEASE_ALL and xbar.board.released and released()
