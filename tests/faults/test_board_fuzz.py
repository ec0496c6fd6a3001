"""Hypothesis fuzzing of the FPGA board's wire format and of its firmware twin (deterministic:
derandomized, no example database; a few seconds in all).

Codec (FrameDecoder): on any byte stream, fed in any chunks, it never raises, always asks for
at least one more byte, decodes the same frames whatever the chunking, reports a frame valid
only when its CRC matches, and finds every valid frame hidden in garbage.

Twin (VirtualBoard): random frames (any command byte, any payload, and requests of every command
with random field values) and mutated streams of valid requests never raise and never hang;
every reply is a valid frame echoing the request's seq; a request the board refuses (an error
code comes back) changes nothing: no line routed, no DAC off 0 V, no map or MVM setting, no cell,
no clock; nothing is ever executed from a corrupt frame; a duplicate of the last request gets
the last reply and changes nothing.
"""
import os
import struct
import time

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from labctl.instruments.fpga_wire import (
    MAX_LONG_PAYLOAD,
    REPLY_FLAG,
    Command,
    FrameDecoder,
    LineMode,
    encode_frame,
)
from labctl.sim.board import VirtualBoard
from labctl.sim.physics import ArrayPhysics

from labctl.station import ChipMap

# LABCTL_BOARD_FUZZ_EXAMPLES=N: a longer, randomized campaign (bench/faults.py --fuzz N)
EXAMPLES = int(os.environ.get("LABCTL_BOARD_FUZZ_EXAMPLES", "0"))
FUZZ = settings(derandomize=not EXAMPLES, database=None, deadline=None, max_examples=EXAMPLES or 150,
                suppress_health_check=list(HealthCheck))
WALL_BOUND_S = 1.0  # per request: the slowest valid request drawn here takes ~10 ms
CHIP = ChipMap.default_layout(4, 8)
N_CHANNELS = 20
ROUTING = (Command.ROUTE, Command.SET_DAC)  # the only requests that may leave routing changed


def fresh_board(mapped: bool = True) -> VirtualBoard:
    board = VirtualBoard(ArrayPhysics(4, 8, seed=1), CHIP.wl_channels, CHIP.bl_channels, CHIP.sl_channels,
                         link_baud=None, line_silence=None)
    if mapped:
        payload = np.array([4, 8, *CHIP.wl_channels, *CHIP.bl_channels, *CHIP.sl_channels], "<u2").tobytes()
        assert board.handle(encode_frame(0, Command.CONFIGURE_MAP, payload))[5] == 0
    return board


def snapshot(board: VirtualBoard) -> dict:
    """Everything a request could change: routing, DACs, map, MVM settings, the chip and its clock."""
    chip = board.physics.state()
    return {"modes": board._modes.copy(), "dac": board._dac.copy(),
            "map": None if board._map is None else tuple(m.copy() for m in board._map),
            "mvm": dict(board._mvm), **{f"chip.{k}": np.array(v, copy=True) for k, v in chip.items()}}


def _equal(x, y) -> bool:
    x, y = np.asarray(x), np.asarray(y)
    return np.array_equal(x, y, equal_nan=x.dtype.kind in "fc" and y.dtype.kind in "fc")


def same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys() or a["mvm"] != b["mvm"] or (a["map"] is None) != (b["map"] is None):
        return False
    if a["map"] is not None and not all(_equal(x, y) for x, y in zip(a["map"], b["map"])):
        return False
    return all(_equal(a[k], b[k]) for k in a if k not in ("mvm", "map"))


def replies(data: bytes) -> list:
    frames = FrameDecoder().feed(data)
    assert all(f.crc_ok for f in frames), data.hex(" ")
    assert sum(len(encode_frame(f.seq, f.cmd, f.payload)) for f in frames) == len(data)  # nothing else
    return frames


# -- strategies ---------------------------------------------------------------------------------
def f4(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi).map(lambda x: float(np.float32(x)))


special = st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 5.0, -5.0, 5.000001, 1e30])
volts = st.one_of(f4(-5.0, 5.0), f4(-6.0, 6.0), special)
seconds = st.one_of(f4(1e-9, 1e-5), f4(-1e-3, 1e-3), special)
u16 = st.one_of(st.integers(0, 12), st.integers(0, 0xFFFF))
channel = st.one_of(st.integers(0, N_CHANNELS + 2), st.integers(0, 0xFFFF))
# a block (r0, c0, n_rows, n_cols): mostly inside the 4x8 map, sometimes anywhere
block = st.one_of(st.tuples(st.integers(0, 4), st.integers(0, 8), st.integers(0, 4), st.integers(0, 8)),
                  st.tuples(u16, u16, u16, u16))


def packed(fmt: str, *fields) -> st.SearchStrategy[bytes]:
    return st.tuples(*fields).map(lambda values: struct.pack(fmt, *values))


def repeated(fmt: str, *fields, most: int = 8) -> st.SearchStrategy[bytes]:
    return st.lists(packed(fmt, *fields), max_size=most).map(b"".join)


def lengths_off(payload: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """The payload as built (mostly), or with bytes cut off or added."""
    return st.tuples(payload, st.sampled_from([0, 0, 0, 0, -1, -4, 1, 4])).map(
        lambda pe: pe[0][:pe[1]] if pe[1] < 0 else pe[0] + bytes(pe[1]))


def floats_payload(n: int, lo: float = -1.2, hi: float = 1.2) -> st.SearchStrategy[bytes]:
    return st.lists(st.one_of(f4(lo, hi), special), min_size=n, max_size=n).map(
        lambda x: np.array(x, "<f4").tobytes())


def trains(n: int) -> st.SearchStrategy[bytes]:
    return st.lists(st.one_of(st.integers(0, 255), st.integers(0, 2**32 - 1)), min_size=n, max_size=n).map(
        lambda t: np.array(t, "<u4").tobytes())


def mvm(cmd: Command) -> st.SearchStrategy[tuple[int, bytes]]:
    def body(head):
        (r0, c0, rows, cols), batch = head
        n = batch * (cols if cmd == Command.MVM_BACKWARD else rows)
        return floats_payload(min(n, 64)).map(lambda x: struct.pack("<HHHHH", r0, c0, rows, cols, batch) + x)
    return st.tuples(st.just(cmd), lengths_off(st.tuples(block, st.integers(0, 3)).flatmap(body)))


def parallel_update(head) -> st.SearchStrategy[bytes]:
    (r0, c0, rows, cols), *rest = head
    return trains(min(rows + cols, 24)).map(lambda t: struct.pack("<HHHHBbffff", r0, c0, rows, cols, *rest) + t)


def update_sequence(head) -> st.SearchStrategy[bytes]:
    (r0, c0, rows, cols), n, *rest = head
    entry = packed("<Bbf", st.one_of(st.integers(1, 32), st.integers(0, 255)), st.sampled_from([1, -1, 1, -1, 0, 2]),
                   st.one_of(f4(0.1, 5.0), volts))
    entries = st.lists(entry, min_size=n, max_size=n).map(b"".join)
    return st.tuples(entries, trains(min(n * (rows + cols), 48))).map(
        lambda et: struct.pack("<HHHHHfff", r0, c0, rows, cols, n, *rest) + et[0] + et[1])


def pulse_cells(head) -> st.SearchStrategy[bytes]:
    n, v_gate, period = head
    cells = st.lists(packed("<HHff", st.integers(0, 9), st.integers(0, 9), volts, seconds), min_size=min(n, 6),
                     max_size=min(n, 6)).map(b"".join)
    return cells.map(lambda c: struct.pack("<Hff", n, v_gate, period) + c)


REQUESTS = st.one_of(
    st.tuples(st.just(Command.ROUTE), repeated("<HB", channel, st.integers(0, 9))),
    st.tuples(st.just(Command.SET_DAC), repeated("<Hf", channel, volts)),
    st.tuples(st.just(Command.RELEASE_ALL), st.sampled_from([b"", b"\x00"])),
    st.tuples(st.sampled_from([Command.IDENTIFY, Command.STATUS]), st.sampled_from([b"", b"\x00", b"\x00\x01"])),
    st.tuples(st.just(Command.CONFIGURE_MAP), st.tuples(st.integers(0, 5), st.integers(0, 9)).flatmap(
        lambda rc: st.lists(channel, min_size=rc[0] + 2 * rc[1], max_size=rc[0] + 2 * rc[1] + 1).map(
            lambda chs: struct.pack("<HH", *rc) + np.array(chs, "<u2").tobytes()))),
    st.tuples(st.just(Command.READ_BLOCK), lengths_off(st.tuples(volts, volts, seconds, block).map(
        lambda v: struct.pack("<fffHHHH", v[0], v[1], v[2], *v[3])))),
    st.tuples(st.just(Command.CONFIGURE_MVM), lengths_off(packed(
        "<fffBBd", volts, volts, seconds, st.one_of(st.integers(0, 17), st.integers(0, 255)),
        st.one_of(st.integers(0, 25), st.integers(0, 255)), st.one_of(st.floats(1e-9, 1e-2), special)))),
    mvm(Command.MVM_FORWARD),
    mvm(Command.MVM_BACKWARD),
    st.tuples(st.just(Command.PARALLEL_UPDATE), lengths_off(st.tuples(
        block, st.integers(0, 34), st.integers(-2, 2), volts, seconds, seconds, volts).flatmap(parallel_update))),
    st.tuples(st.just(Command.PARALLEL_UPDATE), st.tuples(  # timing and pulse valid: the block and trains decide
        st.tuples(st.integers(0, 3), st.integers(0, 7), st.integers(1, 4), st.integers(1, 8)), st.integers(8, 32),
        st.sampled_from([1, -1]), f4(0.1, 5.0), st.just(1e-7), st.just(2e-7), f4(0.0, 1.5)).flatmap(parallel_update)),
    st.tuples(st.just(Command.PULSE_CELLS), lengths_off(st.tuples(st.integers(0, 7), volts, seconds).flatmap(
        pulse_cells))),
    st.tuples(st.just(Command.UPDATE_SEQUENCE), lengths_off(st.tuples(
        block, st.integers(0, 3), seconds, seconds, volts).flatmap(update_sequence))),
    st.tuples(st.just(Command.UPDATE_SEQUENCE), st.tuples(  # timing and gate valid: the trains decide
        st.tuples(st.integers(0, 3), st.integers(0, 7), st.integers(1, 4), st.integers(1, 8)), st.integers(1, 3),
        st.just(1e-7), st.just(2e-7), f4(0.0, 1.5)).filter(lambda h: h[0][0] + h[0][2] <= 4 and h[0][1] + h[0][3] <= 8)
        .flatmap(update_sequence)),
    st.tuples(st.integers(0, 255), st.binary(max_size=64)),  # any command byte, any payload
)


@st.composite
def requests(draw, most: int = 6) -> list[tuple[int, int, bytes]]:
    """(seq, cmd, payload) of a few requests, seqs counting up as the host's do."""
    start, n = draw(st.integers(0, 255)), draw(st.integers(1, most))
    return [((start + k) % 256, *draw(REQUESTS)) for k in range(n)]


# -- the codec -----------------------------------------------------------------------------------
chunkings = st.lists(st.integers(1, 64), min_size=1, max_size=40)
streams = st.lists(st.one_of(st.binary(max_size=40), st.sampled_from([b"\xa5", b"\xa6", b"\xa5\x00\x13\xff\xff"]),
                             st.builds(encode_frame, st.integers(0, 255), st.integers(0, 255),
                                       st.binary(max_size=30))), max_size=12).map(b"".join)


def decode(data: bytes, cuts: list[int], max_payload: int = 200) -> list:
    decoder, frames, position, k = FrameDecoder(max_payload), [], 0, 0
    while position < len(data):
        step = cuts[k % len(cuts)]
        frames += decoder.feed(data[position:position + step])
        assert decoder.needed >= 1  # never a zero-byte read (that would spin)
        position, k = position + step, k + 1
    return frames


@FUZZ
@given(streams, chunkings)
def test_the_decoder_never_raises_and_any_chunking_gives_the_same_frames(data, cuts):
    frames = decode(data, cuts)
    assert frames == decode(data, [len(data) or 1])
    for frame in frames:
        if frame.crc_ok:  # a frame reported valid is a frame of the stream, CRC and all
            assert encode_frame(frame.seq, frame.cmd, frame.payload) in data


@FUZZ
@given(st.lists(st.tuples(st.binary(max_size=24), st.integers(0, 255), st.integers(0, 255), st.binary(max_size=30)),
                min_size=1, max_size=6), chunkings)
def test_every_valid_frame_hidden_in_garbage_is_found(parts, cuts):
    """Garbage (with false start bytes) before each frame; zeros at the end let every false
    candidate run out (max_payload bounds how long one may claim to be)."""
    frames = [encode_frame(seq, cmd, payload) for _, seq, cmd, payload in parts]
    data = b"".join(noise + frame for (noise, *_), frame in zip(parts, frames)) + bytes(220)
    found = [encode_frame(f.seq, f.cmd, f.payload) for f in decode(data, cuts) if f.crc_ok]
    it = iter(found)
    assert all(any(frame == f for f in it) for frame in frames)  # in order (a false one may come between)


@FUZZ
@given(st.binary(min_size=1, max_size=9), st.integers(0, 255), st.integers(0, 255))
def test_a_long_frame_is_waited_for_only_where_the_limits_allow(noise, seq, cmd):
    """A false long start (0xA6 claiming up to 4 MiB) holds the stream only for commands whose
    limit allows a long frame."""
    claim = bytes((0xA6, seq, cmd)) + (1 << 20).to_bytes(4, "little")
    decoder = FrameDecoder(200, {0x31: MAX_LONG_PAYLOAD})
    frames = decoder.feed(noise + claim + encode_frame(1, 2, b"ok") + bytes(220))  # zeros: false
    # starts in the noise run out
    if cmd == 0x31:
        assert decoder.needed > 1000
    else:
        assert any(f.crc_ok and f.payload == b"ok" for f in frames)


# -- the twin ------------------------------------------------------------------------------------

@FUZZ
@given(requests())
def test_the_board_refuses_a_bad_request_without_changing_anything(batch):
    board = fresh_board(mapped=len(batch) % 3 != 0)  # a third of the cases without a map
    for seq, cmd, payload in batch:
        before = snapshot(board)
        started = time.monotonic()
        out = board.handle(encode_frame(seq, cmd, payload))
        assert time.monotonic() - started < WALL_BOUND_S, (cmd, payload.hex())
        if len(payload) > board._decoder.limit(cmd):  # longer than any valid request of its command:
            assert all(r.payload[0] == 1 for r in replies(out))  # BAD_CRC, or none while resynchronising
            assert same(before, snapshot(board))
            board.device_clear()  # start the next request in sync (as the line silence would)
            continue
        (reply,) = replies(out)
        assert (reply.seq, reply.cmd) == (seq, (cmd | REPLY_FLAG) & 0xFF) and reply.payload
        after = snapshot(board)
        if reply.payload[0] != 0:  # refused: the board's own error code, and nothing changed
            assert 2 <= reply.payload[0] <= 6 or (reply.payload[0] == 1 and len(payload) > board._decoder.limit(cmd)), \
                reply.payload
            assert same(before, after), (Command(cmd).name if cmd in Command._value2member_map_ else cmd, payload.hex())
        elif cmd == Command.RELEASE_ALL:
            assert (after["modes"] == LineMode.GROUND).all() and not after["dac"].any()
        elif cmd not in ROUTING:
            # every other command restores the routing before it replies
            assert np.array_equal(before["modes"], after["modes"]) and np.array_equal(before["dac"], after["dac"])
    board.handle(encode_frame((batch[-1][0] + 1) % 256, Command.RELEASE_ALL))
    assert (board._modes == LineMode.GROUND).all() and not board._dac.any()


@FUZZ
@given(requests(), st.lists(st.tuples(st.integers(0, 2000), st.sampled_from(["flip", "drop", "insert", "cut"]),
                                      st.integers(0, 255)), min_size=1, max_size=6), chunkings)
def test_nothing_is_executed_from_a_corrupt_frame(batch, mutations, cuts):
    """A stream of valid requests, mutated (bits flipped, bytes dropped, inserted, cut), fed in
    random chunks: every request the board executes is one of the originals, byte for byte."""
    board = fresh_board()
    originals = {(seq, cmd, payload) for seq, cmd, payload in batch}
    stream = bytearray(b"".join(encode_frame(*r) for r in batch))
    for position, kind, value in mutations:
        if not stream:
            break
        k = position % len(stream)
        if kind == "flip":
            stream[k] ^= 1 << (value % 8)
        elif kind == "drop":
            del stream[k]
        elif kind == "insert":
            stream.insert(k, value)
        else:
            del stream[k:]
    executed = []
    execute = board._execute
    board._execute = lambda frame: executed.append((frame.seq, frame.cmd, frame.payload)) or execute(frame)
    position, k = 0, 0
    while position < len(stream):
        out = board.handle(bytes(stream[position:position + cuts[k % len(cuts)]]))
        replies(out)  # replies are whole, valid frames
        position, k = position + cuts[k % len(cuts)], k + 1
    assert set(executed) <= originals


@FUZZ
@given(requests(most=3))
def test_a_duplicate_of_the_last_request_gets_the_last_reply_and_changes_nothing(batch):
    board = fresh_board()
    for request in batch:
        if len(request[2]) > board._decoder.limit(request[1]):
            continue  # never executed (BAD_CRC): nothing to be a duplicate of
        frame = encode_frame(*request)
        first = board.handle(frame)
        before, executed = snapshot(board), board.executed
        assert board.handle(frame) == first
        assert board.executed == executed and same(before, snapshot(board))


def test_a_partial_frame_is_dropped_after_line_silence():
    board = VirtualBoard(ArrayPhysics(4, 8, seed=1), CHIP.wl_channels, CHIP.bl_channels, CHIP.sl_channels,
                         line_silence=0.05)
    frame = encode_frame(3, Command.STATUS)
    assert board.handle(frame[:4]) == b""
    time.sleep(0.06)
    assert replies(board.handle(frame))[0].seq == 3  # the stale half is gone, the frame is whole
