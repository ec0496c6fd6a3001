"""FpgaBoard driver against a scripted transport: the exact bytes of every command."""
import struct

import numpy as np
import pytest
from labctl.instruments.base import InstrumentError
from labctl.instruments.fpga import BoardError, FpgaBoard, FrameError
from labctl.instruments.fpga_wire import LineMode, encode_frame
from labctl.instruments.transport import InstrumentTimeout

from fakes import ScriptedTransport


def ack(seq: int, cmd: int, data: bytes = b"") -> bytes:
    return encode_frame(seq, cmd | 0x80, b"\x00" + data)


def board(*script: tuple[bytes, bytes]) -> tuple[FpgaBoard, ScriptedTransport]:
    transport = ScriptedTransport(list(script), resource="script://board", binary=True)
    return FpgaBoard(transport), transport


def test_identify_exact_bytes():
    idn = b"LABCTL,FPGA-1T1R,SN42,1.0"
    fpga, t = board((bytes.fromhex("a5 00 01 00 00 f0 b3"), ack(0, 0x01, idn)))
    assert fpga.check_identity() == idn.decode()
    assert not t.script


def test_check_identity_rejects_other_models():
    fpga, _ = board((encode_frame(0, 0x01), ack(0, 0x01, b"ACME,SWITCHBOX,1,2")))
    with pytest.raises(InstrumentError, match="SWITCHBOX"):
        fpga.check_identity()


def test_configure_map_bytes():
    payload = struct.pack("<2H5H", 1, 2, 9, 3, 4, 5, 6)
    fpga, t = board((encode_frame(0, 0x10, payload), ack(0, 0x10)))
    fpga.configure_map([9], [3, 4], [5, 6])
    assert fpga.map_shape == (1, 2) and not t.script


def test_route_and_set_dac_bytes():
    route = struct.pack("<HBHB", 3, 4, 300, 5)
    dac = struct.pack("<Hf", 3, 1.25) + struct.pack("<Hf", 7, -5.0)
    fpga, t = board((encode_frame(0, 0x11, route), ack(0, 0x11)),
                    (encode_frame(1, 0x12, dac), ack(1, 0x12)))
    fpga.route({3: LineMode.DAC, 300: LineMode.ADC})
    fpga.set_dac({3: 1.25, 7: -5.0})
    assert not t.script


def test_release_all_and_status():
    status = struct.pack("<H", 3) + bytes([1, 4, 0]) + struct.pack("<3f", 0.0, 0.5, 0.0)
    fpga, _ = board((encode_frame(0, 0x13), ack(0, 0x13)),
                    (encode_frame(1, 0x02), ack(1, 0x02, status)))
    fpga.release_all()
    modes, dac = fpga.status()
    assert modes.tolist() == [LineMode.GROUND, LineMode.DAC, LineMode.FLOAT]
    assert dac.tolist() == [0.0, 0.5, 0.0]


def test_read_block_bytes_and_shape():
    request = struct.pack("<3f4H", 0.2, 1.5, 2e-6, 1, 0, 2, 3)
    currents = np.arange(6, dtype="<f8") * 1e-6
    fpga, _ = board((encode_frame(0, 0x20, request), ack(0, 0x20, currents.tobytes())))
    out = fpga.read_block(0.2, 1.5, r0=1, c0=0, n_rows=2, n_cols=3, t_read=2e-6)
    assert out.shape == (2, 3)
    np.testing.assert_array_equal(out, currents.reshape(2, 3))


def test_read_block_defaults_to_the_whole_map_and_splits_large_blocks():
    # 100 x 100 cells exceed one reply (8191 f8 values): 81 rows, then 19 rows
    mapping = struct.pack("<2H", 100, 100) + struct.pack("<300H", *range(300))
    script = [(encode_frame(0, 0x10, mapping), ack(0, 0x10))]
    for seq, (r0, k) in enumerate([(0, 81), (81, 19)], start=1):
        request = struct.pack("<3f4H", 0.2, 1.2, 1e-6, r0, 0, k, 100)
        script.append((encode_frame(seq, 0x20, request),
                       ack(seq, 0x20, np.full(k * 100, float(r0)).tobytes())))
    fpga, t = board(*script)
    fpga.configure_map(range(100), range(100, 200), range(200, 300))
    out = fpga.read_block(0.2, 1.2)
    assert out.shape == (100, 100) and not t.script
    assert out[80, 0] == 0.0 and out[81, 0] == 81.0


def test_sequence_numbers_wrap_mod_256():
    script = [(encode_frame(seq % 256, 0x13), ack(seq % 256, 0x13)) for seq in range(258)]
    fpga, t = board(*script)
    for _ in range(258):
        fpga.release_all()
    assert not t.script


def test_board_error_carries_code_and_message():
    error = encode_frame(0, 0x92, b"\x06" + "9 V is outside the DAC range ±5 V".encode())
    fpga, _ = board((encode_frame(0, 0x12, struct.pack("<Hf", 1, 1.0)), error))
    with pytest.raises(BoardError, match="DAC range") as info:
        fpga.set_dac({1: 1.0})
    assert info.value.code == 6
    assert info.value.message == "9 V is outside the DAC range ±5 V"
    assert "script://board" in str(info.value)


@pytest.mark.parametrize("reply, match", [
    (ack(1, 0x13), "seq 1, expected 0"),
    (ack(0, 0x02), "command 0x82"),
    (ack(0, 0x13)[:-1] + b"\x00", "CRC mismatch"),
    (b"\x5a" + ack(0, 0x13)[1:], "does not start with 0xA5"),
])
def test_corrupt_or_foreign_replies_raise_frame_error(reply, match):
    fpga, _ = board((encode_frame(0, 0x13), reply))
    with pytest.raises(FrameError, match=match) as info:
        fpga.release_all()
    assert "board at script://board" in str(info.value)


def test_bad_crc_status_means_the_request_was_corrupted():
    fpga, _ = board((encode_frame(0, 0x13), encode_frame(0, 0x93, b"\x01corrupt frame")))
    with pytest.raises(FrameError, match="corrupt frame"):
        fpga.release_all()


def test_a_late_reply_after_a_timeout_is_discarded():
    fpga, _ = board((encode_frame(0, 0x13), b""),
                    (encode_frame(0, 0x13), b""),  # the one resend, same seq (retry policy)
                    (encode_frame(1, 0x13), ack(0, 0x13) + ack(1, 0x13)),
                    (encode_frame(2, 0x13), ack(2, 0x13)))
    with pytest.raises(InstrumentTimeout):
        fpga.release_all()
    fpga.release_all()  # reads and drops the late reply to seq 0, then its own
    fpga.release_all()


def test_a_reply_left_by_a_ctrl_c_is_skipped_by_the_next_request(monkeypatch):
    """Ctrl-C while a reply is on its way (found by tests/faults: the safe state's RELEASE_ALL
    then read that stale reply and failed on its sequence number)."""
    fpga, transport = board((encode_frame(0, 0x13), b""),
                            (encode_frame(1, 0x13), ack(0, 0x13) + ack(1, 0x13)))

    def interrupted(n):
        monkeypatch.undo()
        raise KeyboardInterrupt

    monkeypatch.setattr(transport, "read", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fpga.release_all()
    fpga.release_all()  # drops the reply to seq 0, reads its own
    assert not transport.script


def test_garbage_is_skipped_after_a_frame_error():
    fpga, _ = board((encode_frame(0, 0x13), b"\x00\x01\x02\x03\x04"),
                    (encode_frame(1, 0x13), b"\x05\x06" + ack(1, 0x13)))
    with pytest.raises(FrameError):
        fpga.release_all()
    fpga.release_all()


def test_recovers_from_a_false_start_byte_that_claims_a_long_frame():
    # 05 a5 06 | a5 00 93: the false start a5 06 a5 00 93 claims a 0x9300-byte payload
    fpga, _ = board((encode_frame(0, 0x13), b"\x05\xa5\x06" + ack(0, 0x13)),
                    (encode_frame(1, 0x13), ack(1, 0x13)),
                    (encode_frame(1, 0x13), b""),  # the one resend, same seq (retry policy)
                    (encode_frame(2, 0x13), ack(2, 0x13)))
    with pytest.raises(FrameError, match="does not start"):
        fpga.release_all()
    # the false start waits for bytes that never come; after the timeout the resend starts a
    # fresh decoder, which skips the leftovers and finds the reply to seq 1 among them
    fpga.release_all()
    fpga.release_all()


@pytest.mark.parametrize("call", [
    lambda b: b.set_dac({0: 5.01}),
    lambda b: b.set_dac({0: float("nan")}),
    lambda b: b.set_dac({-1: 0.0}),
    lambda b: b.route({70000: LineMode.GROUND}),
    lambda b: b.route({1: 9}),
    lambda b: b.route({True: LineMode.GROUND}),
    lambda b: b.configure_map([0, 1], [2], [2]),
    lambda b: b.configure_map([0], [1, 2], [3]),
    lambda b: b.read_block(0.2, 1.2),  # no map known: block size unknown
    lambda b: b.read_block(0.2, 6.0, n_rows=1, n_cols=1),
    lambda b: b.read_block(0.2, 1.2, n_rows=1, n_cols=1, t_read=0.0),
    lambda b: b.read_block(0.2, 1.2, n_rows=0, n_cols=1),
])
def test_invalid_input_is_rejected_before_anything_is_sent(call):
    fpga, t = board()
    with pytest.raises((ValueError, TypeError)):
        call(fpga)
    assert t.sent == []


def test_read_block_outside_the_map_is_rejected_before_sending():
    mapping = struct.pack("<2H3H", 1, 1, 0, 1, 2)
    fpga, t = board((encode_frame(0, 0x10, mapping), ack(0, 0x10)))
    fpga.configure_map([0], [1], [2])
    with pytest.raises(ValueError, match="outside the 1x1 map"):
        fpga.read_block(0.2, 1.2, r0=1)
    assert len(t.sent) == 1
