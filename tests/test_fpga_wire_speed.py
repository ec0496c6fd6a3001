"""The fast paths of the wire codec give the same answers as the plain ones."""
import binascii
import random

import pytest
from labctl.instruments.fpga_wire import MAX_PAYLOAD, FrameDecoder, crc16, encode_frame


@pytest.mark.parametrize("length", [0, 1, 255, 8191, 8192, 8193, 16394, 32769, MAX_PAYLOAD, MAX_PAYLOAD + 4,
                                    70000])
def test_crc16_is_crc_hqx_at_any_length_and_start(length):
    rng = random.Random(length)
    data = rng.randbytes(length)
    start = rng.randrange(0x10000)
    assert crc16(data, start) == binascii.crc_hqx(data, start)
    assert crc16(bytearray(data)) == crc16(memoryview(data)) == binascii.crc_hqx(data, 0xFFFF)


def test_a_frame_changed_after_it_was_encoded_fails_its_crc():
    # the decoder trusts the CRC of a frame equal to one just encoded, and of no other
    frame = bytearray(encode_frame(7, 0x31, random.Random(0).randbytes(40000)))
    assert FrameDecoder().feed(bytes(frame))[0].crc_ok
    frame[1000] ^= 0x10
    assert not FrameDecoder().feed(bytes(frame))[0].crc_ok
    short = bytearray(encode_frame(8, 0x12, b"\x03\x00\x9a\x99\x99\x3f"))
    short[-1] ^= 1
    assert not FrameDecoder().feed(bytes(short))[0].crc_ok
