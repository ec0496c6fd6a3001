"""FPGA routing board: the wire format both ends of the link agree on.

docs/fpga-protocol.md specifies it; this module is its one implementation: the link rate, frame
layout and CRCs, the codec (encode_frame, FrameDecoder), command, status and line-mode codes, the
payload dtypes and the limits they imply. The driver (instruments/fpga.py) and the board's
firmware emulator (sim_backend/board.py) both use it; it knows neither.
"""
from __future__ import annotations

import binascii
import re
from collections.abc import Callable, Mapping
from enum import IntEnum
from typing import NamedTuple, TypedDict

import numpy as np
from zlib_ng.zlib_ng import crc32 as _crc32

LINK_BAUD = 921600  # the board's UART (8N1)
START = 0xA5
HEADER_SIZE = 5  # start, seq, cmd, length (u16 LE)
CRC_SIZE = 2
MAX_PAYLOAD = 0xFFFF  # the longest short frame a receiver accepts
# Senders put a payload in a short frame only while CRC-16/CCITT keeps Hamming distance 4 over
# it: 32751 bits, seq through payload (docs/fpga-protocol.md). Longer payloads go in long frames:
# start 0xA6, a u32 length and a CRC-32, whose distance holds over megabytes.
SHORT_FRAME_PAYLOAD = 32751 // 8 - 4  # 4089 bytes
START_LONG = 0xA6
LONG_HEADER_SIZE = 7  # start, seq, cmd, length (u32 LE)
LONG_CRC_SIZE = 4
MAX_LONG_PAYLOAD = 1 << 22  # the board's frame buffer (4 MiB)
_STARTS = re.compile(b"[\xa5\xa6]")
REPLY_FLAG = 0x80
ACK = 0
DAC_LIMIT = 5.0  # V: the board's DAC range is [-DAC_LIMIT, +DAC_LIMIT]
MODEL = "FPGA-1T1R"
MAX_BLOCK_CELLS = (MAX_PAYLOAD - 1) // 8  # f8 currents that fit in one READ_BLOCK reply
MAX_MVM_OUTPUTS = (MAX_LONG_PAYLOAD - 1) // 8  # f8 outputs that fit in one MVM reply
MAX_TRAIN_LENGTH = 32  # slots of a parallel-update pulse train (one u32 bitmask per line)
MAX_DAC_BITS = 16  # MVM input resolution, sign included (0 = ideal)
MAX_ADC_BITS = 24  # MVM output resolution, sign included (0 = ideal)

ROUTE_DTYPE = np.dtype([("channel", "<u2"), ("mode", "u1")])
DAC_DTYPE = np.dtype([("channel", "<u2"), ("volts", "<f4")])
READ_DTYPE = np.dtype([("v_read", "<f4"), ("v_gate", "<f4"), ("t_read", "<f4"),
                       ("r0", "<u2"), ("c0", "<u2"), ("n_rows", "<u2"), ("n_cols", "<u2")])
MVM_CONFIG_DTYPE = np.dtype([("v_read", "<f4"), ("v_gate", "<f4"), ("t_int", "<f4"),
                             ("dac_bits", "u1"), ("adc_bits", "u1"), ("i_range", "<f8")])
#: head of MVM_FORWARD / MVM_BACKWARD; batch x n_in f4 inputs follow
MVM_DTYPE = np.dtype([("r0", "<u2"), ("c0", "<u2"), ("n_rows", "<u2"), ("n_cols", "<u2"),
                      ("batch", "<u2")])
#: head of PARALLEL_UPDATE; n_rows then n_cols u32 train bitmasks follow
UPDATE_DTYPE = np.dtype([("r0", "<u2"), ("c0", "<u2"), ("n_rows", "<u2"), ("n_cols", "<u2"),
                         ("train_length", "u1"), ("polarity", "i1"), ("amplitude", "<f4"),
                         ("width", "<f4"), ("period", "<f4"), ("v_gate", "<f4")])
#: head of UPDATE_SEQUENCE; n_trains SEQUENCE_TRAIN_DTYPE entries, then per train its n_rows
#: row and n_cols column u32 bitmasks follow
SEQUENCE_DTYPE = np.dtype([("r0", "<u2"), ("c0", "<u2"), ("n_rows", "<u2"), ("n_cols", "<u2"),
                           ("n_trains", "<u2"), ("width", "<f4"), ("period", "<f4"), ("v_gate", "<f4")])
SEQUENCE_TRAIN_DTYPE = np.dtype([("train_length", "u1"), ("polarity", "i1"), ("amplitude", "<f4")])
MAX_SEQUENCE_TRAINS = (MAX_PAYLOAD - 1) // 8  # u64 coincidences per train fit in one short reply
#: head of PULSE_CELLS; n_cells PULSE_CELL_DTYPE entries follow
PULSES_DTYPE = np.dtype([("n_cells", "<u2"), ("v_gate", "<f4"), ("period", "<f4")])
PULSE_CELL_DTYPE = np.dtype([("row", "<u2"), ("col", "<u2"), ("amplitude", "<f4"), ("width", "<f4")])
MAX_PULSE_CELLS = (MAX_PAYLOAD - PULSES_DTYPE.itemsize) // PULSE_CELL_DTYPE.itemsize


class MvmSettings(TypedDict):
    """The board's MVM settings (CONFIGURE_MVM's fields): volts, seconds, bits (0 = ideal), amperes."""

    v_read: float
    v_gate: float
    t_int: float
    dac_bits: int
    adc_bits: int
    i_range: float


#: the board's MVM settings at power-up (CONFIGURE_MVM changes them until power-down)
MVM_DEFAULTS: MvmSettings = {"v_read": 0.2, "v_gate": 1.2, "t_int": 1e-6, "dac_bits": 0, "adc_bits": 0,
                             "i_range": 1e-3}


class Command(IntEnum):
    """Request command codes; the reply carries `code | 0x80`."""

    IDENTIFY = 0x01
    STATUS = 0x02
    CONFIGURE_MAP = 0x10
    ROUTE = 0x11
    SET_DAC = 0x12
    RELEASE_ALL = 0x13
    READ_BLOCK = 0x20
    CONFIGURE_MVM = 0x30
    MVM_FORWARD = 0x31
    MVM_BACKWARD = 0x32
    PARALLEL_UPDATE = 0x33
    PULSE_CELLS = 0x34
    UPDATE_SEQUENCE = 0x35


class ErrorCode(IntEnum):
    """Nonzero reply status codes; the message after the code says what was wrong."""

    BAD_CRC = 1
    UNKNOWN_COMMAND = 2
    BAD_LENGTH = 3
    BAD_ARGUMENT = 4
    NOT_CONFIGURED = 5
    DAC_RANGE = 6


class LineMode(IntEnum):
    """What a board channel connects its chip line to (ADC = transimpedance input, virtual ground)."""

    FLOAT = 0
    GROUND = 1
    SMU = 2
    PULSE = 3
    DAC = 4
    ADC = 5


def crc16(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of short frames (poly 0x1021, init 0xFFFF, no reflection, no final
    XOR); `crc` continues the CRC of the bytes before `data`."""
    return binascii.crc_hqx(data, crc)


def crc32(data: bytes | memoryview, crc: int = 0) -> int:
    """CRC-32/ISO-HDLC of long frames (zlib's: reflected poly 0x04C11DB7, init and final XOR
    0xFFFFFFFF); `crc` continues the CRC of the bytes before `data`. zlib-ng's, the same values
    as the standard library's zlib.crc32 at 15-19x its speed (folding with carry-less
    multiplies: 256 kB in 3 us, not 44 us)."""
    return _crc32(data, crc)


def encode_frame(seq: int, cmd: int, *payload: bytes) -> bytes:
    """One frame: 0xA5, seq, cmd, len u16 LE, payload, CRC-16 u16 LE over seq..payload; a payload
    over SHORT_FRAME_PAYLOAD bytes goes in a long frame: 0xA6, seq, cmd, len u32 LE, payload,
    CRC-32 u32 LE over seq..payload. The payload may come in parts (a head, then an array's
    bytes): they are copied once, into the frame."""
    if not (0 <= seq <= 0xFF and 0 <= cmd <= 0xFF):
        raise ValueError(f"seq {seq} and cmd {cmd} must be bytes (0..255)")
    size = sum(len(part) for part in payload)
    if size > MAX_LONG_PAYLOAD:
        raise ValueError(f"payload of {size} bytes exceeds {MAX_LONG_PAYLOAD}")
    global _recent
    # the CRC runs over the head, then the payload
    if size > SHORT_FRAME_PAYLOAD:
        start, head, crc, crc_size = START_LONG, bytes((seq, cmd)) + size.to_bytes(4, "little"), crc32, 4
    else:
        start, head, crc, crc_size = START, bytes((seq, cmd)) + size.to_bytes(2, "little"), crc16, 2
    check = crc(head)
    for part in payload:
        check = crc(part, check)
    frame = b"".join((bytes((start,)), head, *payload, check.to_bytes(crc_size, "little")))
    _recent = (frame, _recent[0])
    return frame


# The last two frames encoded in this process (a request and its reply). An in-process receiver
# (the twin behind InProcessTransport, and its driver) is handed exactly these bytes, so a
# FrameDecoder compares a candidate with them (a memcmp) before computing its CRC (crc_hqx runs
# at ~0.4 GB/s: ~80 us for the reply of a batch of 64 at 64x64). Equal bytes have the same CRC:
# the result of the check is the same either way. One tuple, replaced whole: thread-safe.
_recent: tuple[bytes, bytes] = (b"", b"")


def _layout(buf: bytearray) -> tuple[int, int, Callable[[bytes | memoryview], int]]:
    """Header size, CRC size and CRC of the frame `buf` begins (short until its start byte is in)."""
    if not buf or buf[0] == START:
        return HEADER_SIZE, CRC_SIZE, crc16
    return LONG_HEADER_SIZE, LONG_CRC_SIZE, crc32


class Frame(NamedTuple):
    """A decoded frame. `crc_ok` False: corrupt (seq/cmd untrustworthy). `in_sync` False: it did
    not start right where the previous valid frame ended (garbage or a bad frame came between)."""

    seq: int
    cmd: int
    payload: bytes
    crc_ok: bool = True
    in_sync: bool = True


class FrameDecoder:
    """Streaming decoder: feed any chunks, get complete frames in order.

    Frames are short (0xA5) or long (0xA6). Bytes before a start byte are discarded (counted in
    `discarded`). A candidate whose CRC fails, or whose length exceeds `max_payload`, is reported (crc_ok=False) and only its start byte is
    dropped, so a real frame that begins inside it is still found. A receiver that knows its
    largest valid frame sets `max_payload` so that a false start byte in garbage cannot hold up
    the stream waiting for a long bogus frame; `limits` raises (or lowers) that bound for the
    command codes that carry long payloads.
    """

    def __init__(self, max_payload: int = MAX_LONG_PAYLOAD, limits: Mapping[int, int] | None = None
                 ) -> None:
        self.max_payload = max_payload
        self.limits = dict(limits or {})
        self._buf = bytearray()
        self._in_sync = True
        self.discarded = 0

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        while buf:
            if buf[0] != START and buf[0] != START_LONG:
                start = _STARTS.search(buf)
                self._discard(len(buf) if start is None else start.start())
                if not buf:
                    break
            header, crc_size, crc = _layout(buf)
            if len(buf) < header:
                return frames
            length = int.from_bytes(buf[3:header], "little")
            if length > self.limit(buf[2]):
                frames.append(Frame(buf[1], buf[2], b"", False, self._in_sync))
                del buf[:1]
                self._in_sync = False
                continue
            end = header + length + crc_size
            if len(buf) < end:
                return frames
            with memoryview(buf) as view:  # released before buf is resized
                ok = (any(len(frame) == end and buf.startswith(frame) for frame in _recent)
                      or crc(view[1:end - crc_size]) == int.from_bytes(view[end - crc_size:end], "little"))
                payload = bytes(view[header:end - crc_size])
            frames.append(Frame(buf[1], buf[2], payload, ok, self._in_sync))
            del buf[:end if ok else 1]
            self._in_sync = ok
        return frames

    @property
    def pending(self) -> int:
        """Bytes held of a frame not yet complete (0: between frames)."""
        return len(self._buf)

    def limit(self, cmd: int) -> int:
        """Largest payload accepted for command code `cmd`."""
        return self.limits.get(cmd, self.max_payload)

    @property
    def needed(self) -> int:
        """Bytes still missing before the next decision (never reads past the current frame)."""
        header, crc_size, _ = _layout(self._buf)
        if len(self._buf) < header:
            return header - len(self._buf)
        return header + int.from_bytes(self._buf[3:header], "little") + crc_size - len(self._buf)

    def _discard(self, n: int) -> None:
        if n:
            del self._buf[:n]
            self.discarded += n
            self._in_sync = False
