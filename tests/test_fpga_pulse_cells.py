"""PULSE_CELLS: the board-timed programming pulses of a write-verify round. Exact bytes against a
scripted transport, then driver + firmware emulator on the real physics, then the crossbar's
safe-operating-area gate."""
import struct

import numpy as np
import pytest
from labctl.instruments.fpga import BoardError, FpgaBoard
from labctl.instruments.fpga_wire import MAX_PULSE_CELLS, Command, ErrorCode, LineMode, encode_frame
from labctl.instruments.transport import InProcessTransport
from labctl.sim.board import VirtualBoard
from labctl.sim.physics import ArrayPhysics

from fakes import ScriptedTransport
from labctl.safety import SafetyError
from test_fpga_ai import BL, SL, WL, ack, make_chip, raw

F4 = np.float32


def entries(rows, cols, amplitudes, widths) -> bytes:
    return b"".join(struct.pack("<2H2f", *e) for e in zip(rows, cols, amplitudes, widths))


def test_pulse_cells_bytes():
    payload = struct.pack("<H2f", 2, 1.2, 2e-7) + entries([1, 0], [2, 5], [1.35, -1.3], [1e-7, 5e-8])
    assert len(payload) == 10 + 2 * 12
    transport = ScriptedTransport([(encode_frame(0, 0x34, payload), ack(0, 0x34))], resource="script://board",
                                  binary=True)
    FpgaBoard(transport).pulse_cells([1, 0], [2, 5], [1.35, -1.3], [1e-7, 5e-8], v_gate=1.2, period=2e-7)
    assert not transport.script


def test_a_long_list_goes_out_in_several_frames():
    n = MAX_PULSE_CELLS + 1
    rows, cols = np.divmod(np.arange(n), 100)
    first = struct.pack("<H2f", MAX_PULSE_CELLS, 1.2, 2e-7) + entries(rows[:-1], cols[:-1], [1.5] * (n - 1),
                                                                       [1e-7] * (n - 1))
    second = struct.pack("<H2f", 1, 1.2, 2e-7) + entries(rows[-1:], cols[-1:], [1.5], [1e-7])
    transport = ScriptedTransport([(encode_frame(0, 0x34, first), ack(0, 0x34)),
                                   (encode_frame(1, 0x34, second), ack(1, 0x34))],
                                  resource="script://board", binary=True)
    FpgaBoard(transport).pulse_cells(rows, cols, 1.5, 1e-7, 1.2, 2e-7)
    assert not transport.script


@pytest.mark.parametrize("args, match", [
    (([0, 0], [1, 1], 1.3, 1e-7, 1.2, 2e-7), "distinct"),
    (([0], [1, 2], 1.3, 1e-7, 1.2, 2e-7), "one of each"),
    (([0], [1], 0.0, 1e-7, 1.2, 2e-7), "nonzero"),
    (([0], [1], -5.5, 1e-7, 1.2, 2e-7), "nonzero and within"),
    (([0], [1], 1.3, 0.0, 1.2, 2e-7), "widths must be positive"),
    (([0], [1], 1.3, 3e-7, 1.2, 2e-7), "period=2e-07 s must be at least the longest width"),
    (([0], [1], 1.3, 1e-7, 6.0, 2e-7), "v_gate=6 V is outside the DAC range"),
    (([-1], [1], 1.3, 1e-7, 1.2, 2e-7), "rows must be integers"),
    (([0.5], [1], 1.3, 1e-7, 1.2, 2e-7), "rows must be integers"),
])
def test_the_driver_refuses_bad_pulses_before_sending(args, match):
    transport = ScriptedTransport([], resource="script://board", binary=True)
    with pytest.raises(ValueError, match=match):
        FpgaBoard(transport).pulse_cells(*args)


@pytest.fixture
def chip():
    chip = make_chip(read_noise=True)
    chip.g = np.full((4, 6), 40e-6)
    chip.clock.advance(10.0)
    return chip


def test_each_pulse_is_its_cell_alone_under_bias(chip):
    """SET on (0, 1) and RESET on (2, 3) through the board give exactly what the chip model gives
    with only that cell selected and biased, one after the other; no other cell changes."""
    fpga = FpgaBoard(InProcessTransport(VirtualBoard(chip, WL, BL, SL, n_channels=20)))
    fpga.configure_map(WL, BL, SL)
    twin = ArrayPhysics.from_state(chip.state(), chip.p)
    t0, width, period = chip.clock.now, float(F4(1e-7)), float(F4(2e-7))
    fpga.pulse_cells([0, 2], [1, 3], [1.35, -1.3], 1e-7, 1.2, 2e-7)
    for k, (row, col, v) in enumerate([(0, 1, float(F4(1.35))), (2, 3, float(F4(-1.3)))]):
        v_wl, v_bl, v_sl = np.zeros(4), np.zeros(6), np.zeros(6)
        v_wl[row] = float(F4(1.2))
        (v_bl if v > 0 else v_sl)[col] = abs(v)
        twin.clock.now = t0 + k * period
        twin.apply(v_wl, v_bl, v_sl, width)
    changed = np.argwhere(chip.g != 40e-6).tolist()
    assert changed == [[0, 1], [2, 3]] and chip.g[0, 1] > 40e-6 > chip.g[2, 3]
    # one switching-noise draw per cell in the same order: the same conductances
    np.testing.assert_allclose(chip.g[0, 1], twin.g[0, 1], rtol=1e-12)
    np.testing.assert_allclose(chip.t_prog[[0, 2], [1, 3]], [t0 + width, t0 + period + width])
    assert chip.clock.now == pytest.approx(t0 + 2 * period)


def test_pulses_follow_the_map(chip):
    """The host's map swaps rows 0 and 1 and puts column 4's BL channel where column 5's SL is:
    a SET request for map cell (0, 4) lands on chip cell (1, 5) as a RESET."""
    fpga = FpgaBoard(InProcessTransport(VirtualBoard(chip, WL, BL, SL, n_channels=20)))
    fpga.configure_map([WL[1], WL[0], *WL[2:]], BL[:4] + [SL[5], BL[5]], SL[:4] + [SL[4], BL[4]])
    twin = ArrayPhysics.from_state(chip.state(), chip.p)
    fpga.pulse_cells([0], [4], [1.35], 1e-7, 1.2, 2e-7)
    assert np.argwhere(chip.g != 40e-6).tolist() == [[1, 5]]
    v_wl, v_sl = np.zeros(4), np.zeros(6)
    v_wl[1], v_sl[5] = float(F4(1.2)), float(F4(1.35))
    twin.apply(v_wl, np.zeros(6), v_sl, float(F4(1e-7)))  # V_BL - V_SL = -1.35 V: a RESET
    np.testing.assert_allclose(chip.g[1, 5], twin.g[1, 5], rtol=1e-12)


def test_two_pulses_that_a_mis_wired_map_lands_on_one_cell_both_fire(chip):
    """Map column 4's BL channel is chip column 5's SL: SET requests for map cells (0, 4) and
    (0, 5) reach chip cell (0, 5) as a RESET, then as a SET."""
    fpga = FpgaBoard(InProcessTransport(VirtualBoard(chip, WL, BL, SL, n_channels=20)))
    fpga.configure_map(WL, BL[:4] + [SL[5], BL[5]], SL[:4] + [SL[4], BL[4]])
    twin = ArrayPhysics.from_state(chip.state(), chip.p)
    t0 = chip.clock.now
    fpga.pulse_cells([0, 0], [4, 5], [1.35, 1.35], 1e-7, 1.2, 2e-7)
    twin.pulse_cells([0], [5], [-float(F4(1.35))], float(F4(1.2)), float(F4(1e-7)), float(F4(2e-7)))
    twin.pulse_cells([0], [5], [float(F4(1.35))], float(F4(1.2)), float(F4(1e-7)), float(F4(2e-7)))
    assert np.argwhere(chip.g != 40e-6).tolist() == [[0, 5]]
    np.testing.assert_allclose(chip.g[0, 5], twin.g[0, 5], rtol=1e-12)
    assert chip.clock.now == pytest.approx(t0 + 2 * float(F4(2e-7)))


def test_the_board_refuses_bad_requests_and_changes_nothing(chip):
    vboard = VirtualBoard(chip, WL, BL, SL, n_channels=20)
    fpga = FpgaBoard(InProcessTransport(vboard))
    good = struct.pack("<H2f", 1, 1.2, 2e-7) + entries([0], [1], [1.35], [1e-7])
    assert raw(fpga, 0x34, good)[0] == ErrorCode.NOT_CONFIGURED
    fpga.configure_map(WL, BL, SL)
    g0, t0 = chip.g.copy(), chip.clock.now
    head = struct.pack("<H2f", 2, 1.2, 2e-7)
    for payload, code, text in (
            (head + entries([0, 0], [1, 1], [1.35, 1.35], [1e-7, 1e-7]), ErrorCode.BAD_ARGUMENT, b"more than once"),
            (head + entries([0, 4], [1, 1], [1.35, 1.35], [1e-7, 1e-7]), ErrorCode.BAD_ARGUMENT, b"outside the 4x6"),
            (head + entries([0, 1], [1, 1], [1.35, 0.0], [1e-7, 1e-7]), ErrorCode.BAD_ARGUMENT, b"is 0 V"),
            (head + entries([0, 1], [1, 1], [1.35, 6.0], [1e-7, 1e-7]), ErrorCode.DAC_RANGE, b"6 V"),
            (head + entries([0, 1], [1, 1], [1.35, 1.3], [1e-7, 3e-7]), ErrorCode.BAD_ARGUMENT, b"period"),
            (head + entries([0], [1], [1.35], [1e-7]), ErrorCode.BAD_LENGTH, b"expected 34")):
        status, message = raw(fpga, 0x34, payload)
        assert status == code and text in message, message
    np.testing.assert_array_equal(chip.g, g0)
    assert chip.clock.now == t0
    with pytest.raises(BoardError, match="more than once"):  # the driver's own check bypassed
        fpga._transact(Command.PULSE_CELLS, head + entries([0, 0], [1, 1], [1.35, 1.35], [1e-7, 1e-7]))


# -- the crossbar: safe operating area first, lines released after --------------------------------
def test_crossbar_pulse_cells_checks_the_soa_and_releases_the_board(sim_station):
    xbar, physics = sim_station.crossbar, sim_station.lab.physics
    g0 = physics.g.copy()
    for kwargs, match in (({"amplitudes": [1.35, 4.5]}, "max_v_bl"), ({"amplitudes": [-4.5, 1.3]}, "max_v_sl"),
                          ({"amplitudes": 1.35, "widths": 1.0}, "max_pulse_width"),
                          ({"amplitudes": 1.35, "v_gate": 3.0}, "max_v_wl")):
        with pytest.raises(SafetyError, match=match):
            xbar.pulse_cells([(0, 0), (1, 1)], **{"widths": 1e-7, **kwargs})
    with pytest.raises(IndexError, match=r"cell \(4, 0\) is outside the 4x8 array"):
        xbar.pulse_cells([(0, 0), (4, 0)], 1.35, 1e-7)
    with pytest.raises(ValueError, match="nonzero"):
        xbar.pulse_cells([(0, 0)], 0.0, 1e-7)
    np.testing.assert_array_equal(physics.g, g0)
    xbar.pulse_cells([(0, 0), (3, 7)], [1.35, -1.3], 1e-7)
    assert physics.clock.now > 0
    modes, dac = sim_station.board.status()
    assert np.all(modes == LineMode.GROUND) and np.all(dac == 0.0)
