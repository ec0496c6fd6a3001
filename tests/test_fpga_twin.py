"""FpgaBoard driver against its firmware emulator (VirtualBoard) through an in-process transport."""
import struct

import numpy as np
import pytest
from labctl.instruments.fpga import BoardError, FpgaBoard
from labctl.instruments.fpga_wire import ErrorCode, FrameDecoder, LineMode, encode_frame
from labctl.instruments.transport import InProcessTransport
from labctl.sim.board import VirtualBoard

# Physical wiring of a 2 x 3 chip to a 12-channel board, deliberately not the identity.
WL, BL, SL = [7, 2], [0, 9, 4], [11, 5, 1]
G = np.array([[10e-6, 20e-6, 30e-6], [40e-6, 50e-6, 60e-6]])


class FakePhysics:
    """Ohmic cells behind ideal selectors: a row conducts when its gate is above 0.6 V."""

    def __init__(self, g: np.ndarray):
        self.g = g
        self.rows, self.cols = g.shape
        self.calls: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]] = []

    def apply(self, v_wl, v_bl, v_sl, duration):
        self.calls.append((v_wl.copy(), v_bl.copy(), v_sl.copy(), duration))
        gate_on = np.nan_to_num(v_wl, nan=0.0) > 0.6
        v_cell = np.nan_to_num(v_bl - v_sl, nan=0.0)  # floating BL or SL: no current
        return self.g * gate_on[:, None] * v_cell[None, :]


@pytest.fixture
def twin():
    physics = FakePhysics(G)
    vboard = VirtualBoard(physics, WL, BL, SL, n_channels=12)
    return FpgaBoard(InProcessTransport(vboard, "sim://board")), vboard, physics


def raw(vboard: VirtualBoard, data: bytes) -> list[tuple[int, int, int, bytes]]:
    """Send raw bytes; return the replies as (seq, cmd, status, data)."""
    frames = FrameDecoder().feed(vboard.handle(data))
    assert all(f.crc_ok for f in frames)
    return [(f.seq, f.cmd, f.payload[0], f.payload[1:]) for f in frames]


def test_identity_and_power_up_state(twin):
    fpga, vboard, _ = twin
    assert fpga.check_identity() == "LABCTL,FPGA-1T1R,SIM0001,1.0"
    modes, dac = fpga.status()
    assert modes.tolist() == [LineMode.GROUND] * 12 and dac.tolist() == [0.0] * 12
    assert [m.tolist() for m in vboard.line_modes()] == [[1, 1], [1, 1, 1], [1, 1, 1]]


def test_read_block_through_the_true_map(twin):
    fpga, _, physics = twin
    fpga.configure_map(WL, BL, SL)
    out = fpga.read_block(v_read=0.2, v_gate=1.2, t_read=2e-6)
    np.testing.assert_allclose(out, G * 0.2, rtol=1e-6)
    assert len(physics.calls) == 2  # row-serial
    for row, (v_wl, v_bl, v_sl, duration) in enumerate(physics.calls):
        np.testing.assert_allclose(v_wl, np.where(np.arange(2) == row, 1.2, 0.0), rtol=1e-6)
        np.testing.assert_allclose(v_bl, 0.2, rtol=1e-6)
        assert v_sl.tolist() == [0.0, 0.0, 0.0]
        assert duration == pytest.approx(2e-6)


def test_read_sub_block(twin):
    fpga, _, _ = twin
    fpga.configure_map(WL, BL, SL)
    out = fpga.read_block(0.2, 1.2, r0=1, c0=1, n_rows=1, n_cols=2)
    np.testing.assert_allclose(out, G[1:, 1:] * 0.2, rtol=1e-6)


def test_the_map_decides_what_is_read(twin):
    fpga, _, _ = twin
    fpga.configure_map(WL[::-1], BL, SL)  # rows swapped
    np.testing.assert_allclose(fpga.read_block(0.2, 1.2), G[::-1] * 0.2, rtol=1e-6)
    fpga.configure_map(WL, BL, [SL[1], SL[0], SL[2]])  # SL of columns 0 and 1 swapped
    np.testing.assert_allclose(fpga.read_block(0.2, 1.2), G[:, [1, 0, 2]] * 0.2, rtol=1e-6)
    fpga.configure_map(range(2), range(2, 5), range(5, 8))  # identity: wrong for this board
    assert not np.allclose(fpga.read_block(0.2, 1.2), G * 0.2)


def test_read_block_restores_routing_and_dac(twin):
    fpga, _, _ = twin
    fpga.configure_map(WL, BL, SL)
    fpga.route({0: LineMode.SMU, 11: LineMode.FLOAT, 7: LineMode.DAC})
    fpga.set_dac({7: 0.5})
    before = fpga.status()
    fpga.read_block(0.2, 1.2)
    after = fpga.status()
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])


def test_routing_status_and_line_state(twin):
    fpga, vboard, _ = twin
    fpga.route({7: LineMode.DAC, 2: LineMode.FLOAT, 0: LineMode.SMU, 9: LineMode.PULSE,
                4: LineMode.FLOAT, 11: LineMode.ADC})
    fpga.set_dac({7: 1.2})
    modes, dac = fpga.status()
    assert modes[[7, 2, 0, 9, 11]].tolist() == [4, 0, 2, 3, 5]
    assert dac[7] == pytest.approx(1.2)
    wl_modes, bl_modes, sl_modes = vboard.line_modes()
    assert wl_modes.tolist() == [LineMode.DAC, LineMode.FLOAT]
    assert bl_modes.tolist() == [LineMode.SMU, LineMode.PULSE, LineMode.FLOAT]
    assert sl_modes.tolist() == [LineMode.ADC, LineMode.GROUND, LineMode.GROUND]
    v_wl, v_bl, v_sl = vboard.line_voltages(v_smu=0.3, v_pulse=1.5)
    np.testing.assert_allclose(v_wl, [1.2, np.nan], rtol=1e-6)
    np.testing.assert_allclose(v_bl, [0.3, 1.5, np.nan])
    assert v_sl.tolist() == [0.0, 0.0, 0.0]
    assert np.isnan(vboard.line_voltages(0.3)[1][1])  # pulse input without a pulse: floating


def test_dac_range_error_applies_nothing(twin):
    _, vboard, _ = twin
    payload = struct.pack("<Hf", 7, 1.0) + struct.pack("<Hf", 2, 5.5)
    [(seq, cmd, status, message)] = raw(vboard, encode_frame(4, 0x12, payload))
    assert (seq, cmd, status) == (4, 0x92, ErrorCode.DAC_RANGE)
    assert b"5.5 V is outside the DAC range" in message
    _, dac = FpgaBoard(InProcessTransport(vboard)).status()
    assert dac.tolist() == [0.0] * 12


def test_release_all_zeroes_dacs_before_grounding(twin, monkeypatch):
    fpga, vboard, _ = twin
    fpga.route({c: LineMode.DAC for c in range(12)})
    fpga.set_dac({7: 1.2, 0: -0.4})
    log = []
    write_dac, write_modes = vboard._write_dac, vboard._write_modes
    monkeypatch.setattr(vboard, "_write_dac", lambda ch, v: (log.append("dac"), write_dac(ch, v)))
    monkeypatch.setattr(vboard, "_write_modes",
                        lambda ch, m: (log.append("modes"), write_modes(ch, m)))
    fpga.release_all()
    assert log == ["dac", "modes"]
    modes, dac = fpga.status()
    assert modes.tolist() == [LineMode.GROUND] * 12 and dac.tolist() == [0.0] * 12


def test_board_errors_reach_the_caller(twin):
    fpga, vboard, _ = twin
    with pytest.raises(BoardError, match="CONFIGURE_MAP first") as info:
        fpga.read_block(0.2, 1.2, n_rows=1, n_cols=1)
    assert info.value.code == ErrorCode.NOT_CONFIGURED
    with pytest.raises(BoardError, match="channel 12 out of range") as info:
        fpga.route({12: LineMode.GROUND})
    assert info.value.code == ErrorCode.BAD_ARGUMENT
    with pytest.raises(BoardError, match="channel 20 out of range"):
        fpga.configure_map([0], [1], [20])
    duplicate = struct.pack("<5H", 1, 1, 3, 3, 4)
    assert raw(vboard, encode_frame(9, 0x10, duplicate))[0][2] == ErrorCode.BAD_ARGUMENT
    fpga.configure_map(WL, BL, SL)
    unmapped = FpgaBoard(InProcessTransport(vboard))  # a second host that does not know the map
    with pytest.raises(BoardError, match="outside the 2x3 map"):
        unmapped.read_block(0.2, 1.2, n_rows=3, n_cols=1)


def test_raw_frames_unknown_command_bad_length_crc_and_garbage(twin):
    _, vboard, _ = twin
    assert raw(vboard, encode_frame(1, 0x7E))[0][:3] == (1, 0xFE, ErrorCode.UNKNOWN_COMMAND)
    assert raw(vboard, encode_frame(2, 0x01, b"x"))[0][:3] == (2, 0x81, ErrorCode.BAD_LENGTH)
    assert raw(vboard, encode_frame(3, 0x11, b"\x00\x00"))[0][2] == ErrorCode.BAD_LENGTH
    corrupt = bytearray(encode_frame(5, 0x13))
    corrupt[2] ^= 0x01
    replies = raw(vboard, bytes(corrupt) + encode_frame(6, 0x02))
    assert [r[:3] for r in replies] == [(5, 0x92, ErrorCode.BAD_CRC), (6, 0x82, 0)]
    # garbage while out of sync is skipped silently; split frames are reassembled
    stream = b"\x00\xa5\x33" + encode_frame(7, 0x01)
    replies = [r for b in stream for r in raw(vboard, bytes([b]))]
    assert replies == [(7, 0x81, 0, b"LABCTL,FPGA-1T1R,SIM0001,1.0")]


def test_wiring_must_match_the_chip():
    with pytest.raises(ValueError, match="for a 2x3 chip"):
        VirtualBoard(FakePhysics(G), [0], [1, 2, 3], [4, 5, 6])
    with pytest.raises(ValueError, match="distinct"):
        VirtualBoard(FakePhysics(G), [0, 1], [2, 3, 4], [4, 5, 6])


def test_read_block_with_the_real_physics():
    from dataclasses import replace

    from labctl.sim.physics import ArrayPhysics, DeviceParams

    chip = ArrayPhysics(4, 8, replace(DeviceParams.load(), read_noise=0.0), seed=3)  # exact reads
    chip.formed[:] = True
    chip.g = np.linspace(10e-6, 80e-6, 32).reshape(4, 8)
    wl, bl, sl = [10, 3, 12, 0], list(range(23, 15, -1)), [1, 2, 4, 5, 6, 7, 8, 9]
    fpga = FpgaBoard(InProcessTransport(VirtualBoard(chip, wl, bl, sl, n_channels=24)))
    fpga.configure_map(wl, bl, sl)
    v_bl = np.full(8, np.float32(0.2))
    expected = np.array([chip.currents(np.where(np.arange(4) == row, np.float32(1.2), 0.0),
                                       v_bl, np.zeros(8))[row] for row in range(4)])
    t0 = chip.clock.now
    out = fpga.read_block(0.2, 1.2, t_read=1e-6)
    np.testing.assert_allclose(out, expected, rtol=1e-4)
    assert np.all(out > 0.9 * chip.g * 0.2)  # the selector drops only a little at 1.2 V gate
    assert chip.clock.now - t0 == pytest.approx(4e-6)


def test_the_uart_link_takes_ten_bits_per_byte_of_virtual_time():
    from labctl.sim.physics import ArrayPhysics

    chip = ArrayPhysics(4, 8, seed=3)
    wl, bl, sl = [10, 3, 12, 0], list(range(23, 15, -1)), [1, 2, 4, 5, 6, 7, 8, 9]
    vboard = VirtualBoard(chip, wl, bl, sl, n_channels=24, link_baud=921600)
    request = encode_frame(0, 0x02)  # STATUS: 7 bytes out, 7 + 1 + 2 + 5 x 24 bytes back
    t0 = chip.clock.now
    reply = vboard.handle(request)
    assert len(reply) == 7 + 3 + 5 * 24
    assert chip.clock.now - t0 == pytest.approx(10 * (len(request) + len(reply)) / 921600)
    vboard.link_baud = None
    t1 = chip.clock.now
    vboard.handle(request)
    assert chip.clock.now == t1
