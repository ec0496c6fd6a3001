"""Frame codec of the FPGA board link: CRC, encoding and the streaming decoder."""
import zlib

import pytest
from labctl.instruments.fpga_wire import (
    MAX_LONG_PAYLOAD,
    SHORT_FRAME_PAYLOAD,
    Frame,
    FrameDecoder,
    crc16,
    crc32,
    encode_frame,
)


def bitwise_crc(data: bytes) -> int:
    """Reference CRC-16/CCITT-FALSE, bit by bit, independent of binascii."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


def bitwise_crc32(data: bytes) -> int:
    """Reference CRC-32/ISO-HDLC, bit by bit (reflected polynomial 0xEDB88320)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xEDB88320 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def test_crc_known_answer():
    assert crc16(b"123456789") == 0x29B1
    assert bitwise_crc(b"123456789") == 0x29B1
    assert crc32(b"123456789") == bitwise_crc32(b"123456789") == 0xCBF43926


def test_encode_exact_bytes():
    assert encode_frame(0x12, 0x01, b"\x01\x02") == bytes.fromhex("a5 12 01 02 00 01 02 9e cb")
    assert encode_frame(0, 0x01) == bytes.fromhex("a5 00 01 00 00 f0 b3")
    assert bitwise_crc(bytes.fromhex("12 01 02 00 01 02")) == 0xCB9E


def test_encode_rejects_out_of_range():
    with pytest.raises(ValueError):
        encode_frame(256, 1)
    with pytest.raises(ValueError, match="exceeds 4194304"):
        encode_frame(0, 1, bytes(MAX_LONG_PAYLOAD + 1))



def test_payloads_past_crc16s_hamming_distance_go_in_long_frames_and_receivers_take_either():
    """CRC-16/CCITT keeps Hamming distance 4 over 32751 bits: a sender puts seq..payload in a
    short frame up to 4 + 4089 bytes, a longer payload in a long frame (CRC-32). A receiver
    still accepts a short frame up to 65535 payload bytes."""
    short, long = encode_frame(0, 1, bytes(SHORT_FRAME_PAYLOAD)), encode_frame(0, 1, bytes(SHORT_FRAME_PAYLOAD + 1))
    assert (short[0], len(short)) == (0xA5, SHORT_FRAME_PAYLOAD + 7)
    assert 8 * (len(short) - 3) <= 32751 < 8 * (len(short) - 3 + 1)  # seq..payload, one byte more
    assert (long[0], len(long)) == (0xA6, SHORT_FRAME_PAYLOAD + 1 + 11)
    head = bytes((5, 0x31)) + (65535).to_bytes(2, "little")
    payload = bytes(range(256)) * 255 + bytes(255)
    frame = b"\xa5" + head + payload + crc16(head + payload).to_bytes(2, "little")
    assert FrameDecoder().feed(frame) == [Frame(5, 0x31, payload)]


def test_payloads_over_64k_go_in_long_frames_with_crc32():
    payload = bytes(range(256)) * 300  # 76800 bytes
    frame = encode_frame(0x21, 0x31, payload)
    head = bytes.fromhex("21 31") + len(payload).to_bytes(4, "little")
    assert frame == b"\xa6" + head + payload + bitwise_crc32(head + payload).to_bytes(4, "little")
    assert zlib.crc32(frame[1:-4]) == int.from_bytes(frame[-4:], "little")


def test_decoder_reads_long_and_short_frames_in_any_chunking():
    long_frame, short = encode_frame(1, 0x31, bytes(70000)), encode_frame(2, 0x13)
    data = b"\x00" + long_frame + short
    dec = FrameDecoder()
    frames = [f for k in range(0, len(data), 4099) for f in dec.feed(data[k:k + 4099])]
    assert frames == [Frame(1, 0x31, bytes(70000), True, False), Frame(2, 0x13, b"")]


def test_decoder_flags_a_corrupt_long_frame_and_limits_long_lengths_per_command():
    bad = bytearray(encode_frame(3, 0x31, bytes(70000)))
    bad[40000] ^= 0x01
    frames = FrameDecoder().feed(bytes(bad) + encode_frame(4, 0x13))
    assert frames[0].crc_ok is False and frames[0].in_sync and frames[0].seq == 3
    assert frames[-1] == Frame(4, 0x13, b"", True, False)
    dec = FrameDecoder(max_payload=100, limits={0x31: MAX_LONG_PAYLOAD})
    assert dec.feed(encode_frame(5, 0x31, bytes(70000)))[0].crc_ok
    rejected = dec.feed(encode_frame(6, 0x32, bytes(70000)))
    assert not rejected[0].crc_ok and dec.needed < 100  # no wait for the 70 kB it claims


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
    long_frame = encode_frame(9, 0x31, bytes(70000))
    dec.feed(long_frame[:1])
    assert dec.needed == 6  # the long header is 7 bytes
    dec.feed(long_frame[1:7])
    assert dec.needed == len(long_frame) - 7
