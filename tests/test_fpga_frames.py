"""Frame codec of the FPGA board link: CRC, encoding and the streaming decoder."""
import pytest

from instruments.fpga import Frame, FrameDecoder, crc16, encode_frame


def bitwise_crc(data: bytes) -> int:
    """Reference CRC-16/CCITT-FALSE, bit by bit, independent of binascii."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


def test_crc_known_answer():
    assert crc16(b"123456789") == 0x29B1
    assert bitwise_crc(b"123456789") == 0x29B1


def test_encode_exact_bytes():
    assert encode_frame(0x12, 0x01, b"\x01\x02") == bytes.fromhex("a5 12 01 02 00 01 02 9e cb")
    assert encode_frame(0, 0x01) == bytes.fromhex("a5 00 01 00 00 f0 b3")
    assert bitwise_crc(bytes.fromhex("12 01 02 00 01 02")) == 0xCB9E


def test_encode_rejects_out_of_range():
    with pytest.raises(ValueError):
        encode_frame(256, 1)
    with pytest.raises(ValueError):
        encode_frame(0, 1, bytes(65536))
    assert len(encode_frame(0, 1, bytes(65535))) == 65535 + 7


def test_decoder_split_frames_byte_by_byte():
    data = encode_frame(7, 0x20, bytes(range(40)))
    dec = FrameDecoder()
    frames = [f for b in data for f in dec.feed(bytes([b]))]
    assert frames == [Frame(7, 0x20, bytes(range(40)))]


def test_decoder_two_frames_in_one_chunk():
    data = encode_frame(1, 0x11, b"\xa5\xa5") + encode_frame(2, 0x12)
    assert FrameDecoder().feed(data) == [Frame(1, 0x11, b"\xa5\xa5"), Frame(2, 0x12, b"")]


def test_decoder_skips_garbage_before_the_start_byte():
    dec = FrameDecoder()
    assert dec.feed(b"\x00\xff\x13" + encode_frame(3, 0x02, b"ok")) == [
        Frame(3, 0x02, b"ok", True, False)]  # valid, but garbage came before it
    assert dec.discarded == 3


def test_decoder_skips_a_false_start_byte_in_garbage():
    # a5 01 a5 03 claims a 0x0203-byte payload: too long for this receiver, so rejected at once
    dec = FrameDecoder(max_payload=100)
    frames = dec.feed(b"\x00\xa5\x01" + encode_frame(3, 0x02, b"ok"))
    assert [f for f in frames if f.crc_ok] == [Frame(3, 0x02, b"ok", True, False)]
    assert all(not f.in_sync for f in frames)


def test_decoder_flags_a_flipped_bit_then_resyncs():
    bad = bytearray(encode_frame(4, 0x12, b"\x01\x02\x03"))
    bad[6] ^= 0x10
    frames = FrameDecoder().feed(bytes(bad) + encode_frame(5, 0x13))
    assert frames[0].crc_ok is False and frames[0].in_sync and frames[0].seq == 4
    assert frames[-1] == Frame(5, 0x13, b"", True, False)
    assert all(not f.crc_ok for f in frames[:-1])


def test_decoder_needed_never_reads_past_a_frame():
    data = encode_frame(9, 0x01, b"abc")
    dec = FrameDecoder()
    assert dec.needed == 5
    dec.feed(data[:2])
    assert dec.needed == 3
    dec.feed(data[2:5])
    assert dec.needed == len(data) - 5
    assert dec.feed(data[5:]) == [Frame(9, 0x01, b"abc")]
    assert dec.needed == 5
