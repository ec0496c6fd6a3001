"""Batched analog-AI commands of the FPGA board: CONFIGURE_MVM, MVM_FORWARD, MVM_BACKWARD,
PARALLEL_UPDATE and UPDATE_SEQUENCE. Exact bytes against a scripted transport, then driver + firmware emulator on the
real (noise-free unless said otherwise) physics."""
import struct
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from labctl.instruments.fpga import BoardError, FpgaBoard
from labctl.instruments.fpga_wire import MAX_MVM_OUTPUTS, ErrorCode, FrameDecoder, encode_frame
from labctl.instruments.transport import InProcessTransport
from labctl.sim.board import VirtualBoard, quantize
from labctl.sim.physics import ArrayPhysics, DeviceParams

from fakes import ScriptedTransport

F4 = np.float32


def ack(seq: int, cmd: int, data: bytes = b"") -> bytes:
    return encode_frame(seq, cmd | 0x80, b"\x00" + data)


def board(*script: tuple[bytes, bytes]) -> tuple[FpgaBoard, ScriptedTransport]:
    transport = ScriptedTransport(list(script), resource="script://board", binary=True)
    return FpgaBoard(transport), transport


def mapped(rows: int, cols: int, *script: tuple[bytes, bytes]
           ) -> tuple[FpgaBoard, ScriptedTransport]:
    """A scripted board whose first exchange is CONFIGURE_MAP of an identity rows x cols map;
    the script's seqs start at 1."""
    n = rows + 2 * cols
    mapping = struct.pack(f"<2H{n}H", rows, cols, *range(n))
    fpga, t = board((encode_frame(0, 0x10, mapping), ack(0, 0x10)), *script)
    fpga.configure_map(range(rows), range(rows, rows + cols), range(rows + cols, n))
    return fpga, t


# -- exact bytes ------------------------------------------------------------------------------
def test_configure_mvm_bytes_defaults_and_values():
    defaults = struct.pack("<3f2Bd", 0.2, 1.2, 1e-6, 0, 0, 1e-3)
    custom = struct.pack("<3f2Bd", 0.25, 1.1, 2e-6, 6, 8, 5e-5)
    assert len(defaults) == 22
    fpga, t = board((encode_frame(0, 0x30, defaults), ack(0, 0x30)),
                    (encode_frame(1, 0x30, custom), ack(1, 0x30)))
    fpga.configure_mvm()
    fpga.configure_mvm(v_read=0.25, v_gate=1.1, t_int=2e-6, dac_bits=6, adc_bits=8,
                       i_range=5e-5)
    assert not t.script
    assert fpga.mvm_config == {"v_read": 0.25, "v_gate": 1.1, "t_int": 2e-6, "dac_bits": 6,
                               "adc_bits": 8, "i_range": 5e-5}


def test_configure_mvm_worked_example_in_the_docs():
    frame = bytes.fromhex("a5 00 30 16 00 cd cc 4c 3e 9a 99 99 3f bd 37 86 35 00 00 "
                          "fc a9 f1 d2 4d 62 50 3f e4 28")
    fpga, _ = board((frame, ack(0, 0x30)))
    fpga.configure_mvm()


def test_mvm_forward_bytes_and_shapes():
    x = np.array([[0.5, -0.25, 1.0], [0.0, 0.125, -1.0]])
    request = struct.pack("<5H", 1, 2, 3, 2, 2) + struct.pack("<6f", *x.ravel())
    outputs = np.array([1e-6, -2e-6, 3e-6, 4e-6])
    one = struct.pack("<5H", 1, 2, 3, 2, 1) + struct.pack("<3f", *x[0])
    fpga, t = board((encode_frame(0, 0x31, request), ack(0, 0x31, outputs.tobytes())),
                    (encode_frame(1, 0x31, one), ack(1, 0x31, outputs[:2].tobytes())))
    out = fpga.mvm_forward(x, r0=1, c0=2, n_rows=3, n_cols=2)
    np.testing.assert_array_equal(out, outputs.reshape(2, 2))
    single = fpga.mvm_forward(x[0], 1, 2, 3, 2)  # one vector in, one vector out
    np.testing.assert_array_equal(single, outputs[:2])
    assert not t.script


def test_mvm_backward_bytes_and_shapes():
    d = np.array([[0.5, -0.5], [1.0, 0.25]])  # (batch 2, n_cols 2) for a 3 x 2 block
    request = struct.pack("<5H", 0, 1, 3, 2, 2) + struct.pack("<4f", *d.ravel())
    outputs = np.arange(6, dtype="<f8") * 1e-7
    fpga, t = board((encode_frame(0, 0x32, request), ack(0, 0x32, outputs.tobytes())))
    out = fpga.mvm_backward(d, 0, 1, 3, 2)
    assert out.shape == (2, 3) and not t.script
    np.testing.assert_array_equal(out, outputs.reshape(2, 3))


def test_mvm_batches_split_by_reply_size():
    # 1 x 1000 block: a long reply holds MAX_MVM_OUTPUTS // 1000 = 524 output vectors
    per_reply = MAX_MVM_OUTPUTS // 1000
    x = np.linspace(-1, 1, per_reply + 76)[:, None]
    script = []
    for seq, (b, k) in enumerate([(0, per_reply), (per_reply, 76)], start=1):
        request = struct.pack("<5H", 0, 0, 1, 1000, k) + x[b:b + k].astype("<f4").tobytes()
        script.append((encode_frame(seq, 0x31, request),
                       ack(seq, 0x31, np.full(k * 1000, float(b)).tobytes())))
    fpga, t = mapped(1, 1000, *script)
    out = fpga.mvm_forward(x)
    assert out.shape == (per_reply + 76, 1000) and not t.script
    assert out[per_reply - 1, 0] == 0.0 and out[per_reply, 0] == per_reply


def test_mvm_batches_split_by_request_size():
    # backward of a 1 x 30000 block: 120 kB of inputs per vector, 34 vectors per 4 MiB frame
    d = np.zeros((40, 30000))
    d[34:] = 0.5
    script = [(encode_frame(seq, 0x32, struct.pack("<5H", 0, 0, 1, 30000, len(part))
                            + part.astype("<f4").tobytes()),
               ack(seq, 0x32, np.full(len(part), seq * 1e-6).tobytes()))
              for seq, part in ((1, d[:34]), (2, d[34:]))]
    fpga, t = mapped(1, 30000, *script)
    np.testing.assert_array_equal(fpga.mvm_backward(d)[:, 0], [1e-6] * 34 + [2e-6] * 6)
    assert not t.script


def test_a_batch_of_64_vectors_at_512x512_is_one_long_frame_each_way():
    x = np.zeros((64, 512))
    request = struct.pack("<5H", 0, 0, 512, 512, 64) + x.astype("<f4").tobytes()
    reply = ack(1, 0x31, np.zeros(64 * 512).tobytes())
    assert len(request) > 0xFFFF and reply[0] == 0xA6
    fpga, t = mapped(512, 512, (encode_frame(1, 0x31, request), reply))
    assert fpga.mvm_forward(x).shape == (64, 512) and not t.script


def test_parallel_update_bytes_and_total():
    head = struct.pack("<4HBb4f", 1, 0, 2, 3, 8, -1, 1.3, 1e-7, 1e-6, 1.2)
    trains = struct.pack("<2I3I", 0b1011, 0xFF, 0b1, 0b1111, 0)
    assert len(head) == 26
    fpga, t = board((encode_frame(0, 0x33, head + trains), ack(0, 0x33, struct.pack("<Q", 7))))
    total = fpga.parallel_update([0b1011, 0xFF], np.array([1, 15, 0], np.uint8), train_length=8,
                                 polarity=-1, amplitude=1.3, width=1e-7, period=1e-6,
                                 v_gate=1.2, r0=1, c0=0, n_rows=2, n_cols=3)
    assert total == 7 and not t.script


def test_update_sequence_bytes_and_counts():
    head = struct.pack("<5H3f", 1, 0, 2, 3, 2, 1e-7, 1e-6, 1.2)
    entries = struct.pack("<BbfBbf", 8, 1, 1.2, 4, -1, 1.3)
    trains = struct.pack("<10I", 0b1011, 0xFF, 0b1, 0b1111, 0, 0b11, 0, 0b1, 0b1, 0b1)
    assert len(head) == 22 and len(entries) == 12
    reply = ack(0, 0x35, struct.pack("<2Q", 7, 3))
    fpga, t = board((encode_frame(0, 0x35, head + entries + trains), reply))
    counts = fpga.update_sequence(np.array([[0b1011, 0xFF], [0b11, 0]]), np.array([[1, 15, 0], [1, 1, 1]]),
                                  [8, 4], [1, -1], [1.2, 1.3], width=1e-7, period=1e-6, v_gate=1.2,
                                  r0=1, c0=0, n_rows=2, n_cols=3)
    assert counts.tolist() == [7, 3] and not t.script


def test_update_sequence_checks_every_train_before_sending():
    fpga, t = board()
    rows, cols = np.array([[1], [1]]), np.array([[1], [0x100]])
    with pytest.raises(ValueError, match="train 1 has bits outside its 8 slots"):
        fpga.update_sequence(rows, cols, 8, 1, 1.2, 1e-7, 1e-6, 1.2, n_rows=1, n_cols=1)
    with pytest.raises(ValueError, match=r"polarity=0 must be \+1"):
        fpga.update_sequence(rows, rows, 8, [1, 0], 1.2, 1e-7, 1e-6, 1.2, n_rows=1, n_cols=1)
    with pytest.raises(ValueError, match=r"train_lengths\[1\]=33 must be 1..32"):
        fpga.update_sequence(rows, rows, [8, 33], 1, 1.2, 1e-7, 1e-6, 1.2, n_rows=1, n_cols=1)
    with pytest.raises(ValueError, match="n_trains >= 1"):
        fpga.update_sequence(np.zeros((0, 1)), np.zeros((0, 1)), 8, 1, 1.2, 1e-7, 1e-6, 1.2, n_rows=1, n_cols=1)
    assert t.sent == []


@pytest.mark.parametrize("call, match", [
    (lambda b: b.configure_mvm(v_read=0.0), "v_read=0 V must be positive"),
    (lambda b: b.configure_mvm(v_read=-0.2), "v_read=-0.2 V must be positive"),
    (lambda b: b.configure_mvm(v_read=5.5), "v_read=5.5 V is outside the DAC range"),
    (lambda b: b.configure_mvm(v_gate=6.0), "v_gate=6 V is outside the DAC range"),
    (lambda b: b.configure_mvm(t_int=0.0), "t_int=0 s must be positive"),
    (lambda b: b.configure_mvm(t_int=float("inf")), "t_int=inf s must be positive"),
    (lambda b: b.configure_mvm(dac_bits=1), "dac_bits=1 must be 0 or 2..16"),
    (lambda b: b.configure_mvm(dac_bits=17), "dac_bits=17 must be 0 or 2..16"),
    (lambda b: b.configure_mvm(adc_bits=25), "adc_bits=25 must be 0 or 2..24"),
    (lambda b: b.configure_mvm(adc_bits=8.0), "adc_bits must be an integer"),
    (lambda b: b.configure_mvm(i_range=0.0), "i_range=0 A must be positive"),
    (lambda b: b.configure_mvm(i_range=float("nan")), "i_range=nan A must be positive"),
    (lambda b: b.mvm_forward([[0.5, 1.5]], 0, 0, 2, 1), r"x\[0, 1\]=1.5 is outside \[-1, 1\]"),
    (lambda b: b.mvm_forward([0.5, np.nan], 0, 0, 2, 1), r"x\[1\]=nan is outside"),
    (lambda b: b.mvm_forward([[0.5, 0.5]], 0, 0, 3, 1), "x has 2 entries per vector; the block "
                                                        "has 3 rows"),
    (lambda b: b.mvm_forward([0.5, 0.5]), "block size unknown"),
    (lambda b: b.mvm_forward(np.zeros((1, 1, 2)), 0, 0, 2, 1), "one vector or a"),
    (lambda b: b.mvm_backward([[0.5, 0.5]], 0, 0, 1, 3), "d has 2 entries per vector; the "
                                                         "block has 3 columns"),
    (lambda b: b.mvm_backward([-2.0], 0, 0, 1, 1), r"d\[0\]=-2 is outside"),
    (lambda b: b.parallel_update([1], [1], 0, 1, 1.3, 1e-7, 1e-6, 1.2), "train_length=0 must "
                                                                        "be 1..32"),
    (lambda b: b.parallel_update([1], [1], 33, 1, 1.3, 1e-7, 1e-6, 1.2), "train_length=33"),
    (lambda b: b.parallel_update([1], [1], 8, 0, 1.3, 1e-7, 1e-6, 1.2),
     r"polarity=0 must be \+1 \(SET\) or -1"),
    (lambda b: b.parallel_update([1], [1], 8, True, 1.3, 1e-7, 1e-6, 1.2), "polarity=True must be"),
    (lambda b: b.parallel_update([1], [1], 8, 1, 0.0, 1e-7, 1e-6, 1.2), "amplitude=0 V must be "
                                                                        "positive"),
    (lambda b: b.parallel_update([1], [1], 8, 1, 5.5, 1e-7, 1e-6, 1.2), "amplitude=5.5 V is "
                                                                        "outside the DAC range"),
    (lambda b: b.parallel_update([1], [1], 8, 1, 1.3, 0.0, 1e-6, 1.2), "width=0 s must be"),
    (lambda b: b.parallel_update([1], [1], 8, 1, 1.3, 2e-6, 1e-6, 1.2), "period=1e-06 s must be "
                                                                        "at least the pulse"),
    (lambda b: b.parallel_update([1], [1], 8, 1, 1.3, 1e-7, 1e-6, 5.5), "v_gate=5.5 V is outside"),
    (lambda b: b.parallel_update([256], [1], 8, 1, 1.3, 1e-7, 1e-6, 1.2),
     r"row_trains\[0\]=256 is not a 8-slot train"),
    (lambda b: b.parallel_update([1], [1, -1], 8, 1, 1.3, 1e-7, 1e-6, 1.2),
     r"col_trains\[1\]=-1 is not"),
    (lambda b: b.parallel_update([1], [2**32], 32, 1, 1.3, 1e-7, 1e-6, 1.2), "col_trains"),
    (lambda b: b.parallel_update([1.0], [1], 8, 1, 1.3, 1e-7, 1e-6, 1.2), "integer bitmasks"),
    (lambda b: b.parallel_update([1, 2], [1], 8, 1, 1.3, 1e-7, 1e-6, 1.2, n_rows=1),
     "2 row_trains and 1 col_trains for a block of 1x1"),
    # a sequence names its first bad train as parallel_update names a bad argument
    (lambda b: b.update_sequence(np.ones((3, 1), int), np.ones((3, 1), int), [1, 2, 33], 1, 1.3, 1e-7, 1e-6, 1.2),
     r"train_lengths\[2\]=33 must be 1..32"),
    (lambda b: b.update_sequence(np.ones((2, 1), int), np.ones((2, 1), int), [1.0, 2], 1, 1.3, 1e-7, 1e-6, 1.2),
     r"train_lengths\[0\] must be an integer"),
    (lambda b: b.update_sequence(np.ones((2, 1), int), np.ones((2, 1), int), 1, [1, 0], 1.3, 1e-7, 1e-6, 1.2),
     r"polarity=0 must be \+1"),
    (lambda b: b.update_sequence(np.ones((2, 1), int), np.ones((2, 1), int), 1, [True, True], 1.3, 1e-7, 1e-6,
                                 1.2), "polarity=True must be"),
    (lambda b: b.update_sequence(np.ones((2, 1), int), np.ones((2, 1), int), 1, 1, [1.3, 5.5], 1e-7, 1e-6, 1.2),
     "amplitude=5.5 V is outside the DAC range"),
    (lambda b: b.update_sequence(np.ones((2, 1), int), np.ones((2, 1), int), 1, 1, [0.0, 1.3], 1e-7, 1e-6, 1.2),
     "amplitude=0 V must be positive"),
])
def test_invalid_input_is_rejected_before_anything_is_sent(call, match):
    fpga, t = board()
    with pytest.raises((ValueError, TypeError), match=match):
        call(fpga)
    assert t.sent == []


def test_blocks_outside_the_known_map_are_rejected_before_sending():
    fpga, t = mapped(2, 3)
    for call in (lambda: fpga.mvm_forward([[0.1, 0.2]], r0=1),
                 lambda: fpga.mvm_backward([0.1, 0.2], c0=2),
                 lambda: fpga.parallel_update([1, 1, 1], [1], 8, 1, 1.3, 1e-7, 1e-6, 1.2)):
        with pytest.raises(ValueError, match="outside the 2x3 map"):
            call()
    assert len(t.sent) == 1  # only the map


# -- driver + firmware emulator on the real physics -------------------------------------------
# A 4 x 6 chip wired to a 20-channel board, deliberately not the identity.
WL, BL, SL = [10, 3, 12, 0], [19, 18, 17, 16, 15, 14], [1, 2, 4, 5, 6, 7]
V_READ, V_GATE = F4(0.2), F4(1.2)


def make_chip(read_noise: bool = False, seed: int = 3) -> ArrayPhysics:
    params = DeviceParams.load()
    chip = ArrayPhysics(4, 6, params if read_noise else replace(params, read_noise=0.0), seed=seed)
    chip.formed[:] = True
    chip.g = np.linspace(10e-6, 80e-6, 24).reshape(4, 6)
    return chip


@pytest.fixture
def chip():
    return make_chip()


@pytest.fixture
def fpga(chip):
    vboard = VirtualBoard(chip, WL, BL, SL, n_channels=20)
    fpga = FpgaBoard(InProcessTransport(vboard, "sim://board"))
    fpga.configure_map(WL, BL, SL)
    return fpga


def read_currents(chip: ArrayPhysics, rows: slice, cols: slice, v_bl=V_READ) -> np.ndarray:
    """Noise-free per-cell currents of the block under the MVM bias: block gates at v_gate,
    other gates off, block BLs at v_bl, block SLs at 0 V, other columns floating."""
    v_wl = np.zeros(chip.rows)
    v_wl[rows] = V_GATE
    v_bl_all, v_sl = np.full(chip.cols, np.nan), np.full(chip.cols, np.nan)
    v_bl_all[cols], v_sl[cols] = v_bl, 0.0
    return chip.currents(v_wl, v_bl_all, v_sl)[rows, cols]


def raw(fpga: FpgaBoard, cmd: int, payload: bytes) -> tuple[int, bytes]:
    """Send one raw request to the emulator behind `fpga`; return (status, data)."""
    [frame] = FrameDecoder().feed(fpga.transport.instrument.handle(encode_frame(200, cmd, payload)))
    return frame.payload[0], frame.payload[1:]


def test_forward_mvm_is_x_times_the_read_currents(fpga, chip):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (7, 3))
    cells = read_currents(chip, slice(1, 4), slice(2, 5))
    g_apparent = cells / V_READ
    t0 = chip.clock.now
    out = fpga.mvm_forward(x, r0=1, c0=2, n_rows=3, n_cols=3)
    expected = x.astype(F4) @ (g_apparent * V_READ)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert chip.clock.now - t0 == pytest.approx(7 * float(F4(1e-6)))
    # the selector's drop keeps the apparent conductance within several % of G
    np.testing.assert_allclose(g_apparent, chip.g[1:4, 2:5], rtol=0.1)


def test_backward_mvm_of_a_non_square_block_is_row_serial(fpga, chip):
    rng = np.random.default_rng(1)
    d = rng.uniform(-1, 1, (4, 5))  # 3 x 5 block: inputs on 5 columns, outputs on 3 rows
    rows, cols = slice(1, 4), slice(0, 5)
    expected = np.array([read_currents(chip, rows, cols, v_bl=(di * float(V_READ)).astype(F4))
                         .sum(axis=1) for di in d])
    t0 = chip.clock.now
    out = fpga.mvm_backward(d, r0=1, c0=0, n_rows=3, n_cols=5)
    assert out.shape == (4, 3)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert chip.clock.now - t0 == pytest.approx(4 * 3 * float(F4(1e-6)))
    # it is the transpose of the forward product, up to the cells' slight nonlinearity
    forward_weights = read_currents(chip, rows, cols)
    np.testing.assert_allclose(out, d @ forward_weights.T, rtol=2e-2, atol=1e-8)


def test_mvm_defaults_cover_the_rest_of_the_map(fpga, chip):
    x = np.full(4, 0.5)
    np.testing.assert_allclose(fpga.mvm_forward(x), 0.5 * read_currents(chip, slice(0, 4),
                                                                        slice(0, 6)).sum(axis=0),
                               rtol=1e-6)
    assert fpga.mvm_backward(np.zeros(6)).tolist() == [0.0] * 4


def test_outputs_clip_at_i_range(fpga, chip):
    cells = read_currents(chip, slice(0, 4), slice(0, 6))
    ideal = cells.sum(axis=0)  # x = all ones
    i_range = float(np.median(ideal))
    fpga.configure_mvm(i_range=i_range)
    out = fpga.mvm_forward(np.ones((2, 4)) * [[1], [-1]])
    clipped = ideal > i_range
    assert clipped.any() and not clipped.all()
    np.testing.assert_array_equal(out[0][clipped], i_range)
    np.testing.assert_array_equal(out[1][clipped], -i_range)
    np.testing.assert_allclose(out[0][~clipped], ideal[~clipped], rtol=1e-6)
    back, rows = fpga.mvm_backward(np.ones(6)), cells.sum(axis=1)
    assert (rows > i_range).any() and (rows < i_range).any()
    np.testing.assert_array_equal(back[rows > i_range], i_range)
    np.testing.assert_allclose(back[rows < i_range], rows[rows < i_range], rtol=1e-9)


def test_inputs_quantized_to_dac_bits(fpga, chip):
    fpga.configure_mvm(dac_bits=3)  # levels k/3, |k| <= 3
    x = np.array([0.1, 0.2, 0.5, -0.9])
    x_q = np.array([0.0, 1 / 3, 2 / 3, -1.0])  # 0.5 * 3 = 1.5 rounds to even
    np.testing.assert_allclose(quantize(x.astype(F4), 3), x_q)
    cells = read_currents(chip, slice(0, 4), slice(0, 6))
    np.testing.assert_allclose(fpga.mvm_forward(x), x_q @ cells, rtol=1e-6)
    d = np.array([0.1, 0.2, 0.5, -0.9, 0.7, -0.16])
    d_q = quantize(d.astype(F4), 3)
    expected = read_currents(chip, slice(0, 4), slice(0, 6),
                             v_bl=(d_q * float(V_READ)).astype(F4)).sum(axis=1)
    np.testing.assert_allclose(fpga.mvm_backward(d), expected, rtol=1e-6)


def test_outputs_quantized_to_adc_bits(fpga, chip):
    i_range = 3e-5
    fpga.configure_mvm(adc_bits=6, i_range=i_range)  # step i_range / 31
    step = i_range / 31
    x = np.random.default_rng(2).uniform(-1, 1, (5, 4))
    out = fpga.mvm_forward(x)
    ideal = np.clip(x.astype(F4) @ read_currents(chip, slice(0, 4), slice(0, 6)), -i_range, i_range)
    codes = out / step
    np.testing.assert_allclose(codes, np.round(codes), atol=1e-9)
    assert np.abs(out - ideal).max() <= step / 2 * (1 + 1e-9)
    assert len(np.unique(np.round(codes))) > 10


def test_each_vector_of_a_forward_batch_is_a_read_with_its_own_noise():
    chip = make_chip(read_noise=True)
    chip.clock.advance(100.0)  # read noise grows with the time since programming
    vboard = VirtualBoard(chip, WL, BL, SL, n_channels=20)
    fpga = FpgaBoard(InProcessTransport(vboard))
    fpga.configure_map(WL, BL, SL)
    x = np.array([1.0, -0.5, 0.25, 0.0])
    n = 4000
    age = chip.clock.now + n * 0.5e-6  # mid-batch: the whole batch lasts n us
    out = fpga.mvm_forward(np.tile(x, (n, 1)))
    # the published 1/f law, sigma = 0.0277 uS log10(G / uS) sqrt(ln((t + t_r) / (2 t_r))), on
    # each cell's read current, summed in variance over the rows of the column
    g, p = chip.conductance()[:4], chip.p
    sigma = p.read_noise * np.log10(g / 1e-6) * np.sqrt(np.log((age + p.t_read_noise) / (2 * p.t_read_noise)))
    cells = read_currents(chip, slice(0, 4), slice(0, 6))
    expected = np.sqrt((x[:, None] ** 2 * (cells * sigma / g) ** 2).sum(axis=0))
    se = 1 / np.sqrt(2 * (n - 1))  # relative standard error of a sample sigma
    np.testing.assert_allclose(out.std(axis=0, ddof=1), expected, rtol=5 * se)
    np.testing.assert_allclose(out.mean(axis=0), x @ cells, atol=5 * expected.max() / np.sqrt(n))
    # independent draws: consecutive vectors of the batch are uncorrelated
    z = (out - out.mean(axis=0)) / out.std(axis=0)
    assert np.abs((z[1:] * z[:-1]).mean(axis=0)).max() < 5 / np.sqrt(n)


def test_backward_draws_its_own_read_noise_for_every_vector():
    """A sum of independent per-cell draws: each row's output spreads by
    sqrt(sum_j (I_ij sigma_ij / G_ij)^2) around the exact sum, afresh for every vector."""
    chip = make_chip(read_noise=True)
    chip.clock.advance(100.0)
    fpga = FpgaBoard(InProcessTransport(VirtualBoard(chip, WL, BL, SL, n_channels=20)))
    fpga.configure_map(WL, BL, SL)
    d = np.array([1.0, -0.5, 0.25, 0.75, -1.0, 0.5])
    v = (d.astype(F4) * V_READ).astype(F4)
    cells = read_currents(chip, slice(0, 4), slice(0, 6), v_bl=v)
    sigma = chip.read_noise_sigma(chip.g, chip.clock.now) / chip.g
    out = fpga.mvm_backward(np.tile(d, (2000, 1)))
    assert len(np.unique(out[:, 0])) == 2000  # one draw per vector
    # 2000 vectors: standard errors ~2 % on the spread, ~0.05 spreads on the mean
    expected_std = np.sqrt(((cells * sigma) ** 2).sum(axis=1))
    np.testing.assert_allclose(out.std(axis=0), expected_std, rtol=0.08)
    assert np.all(np.abs(out.mean(axis=0) - cells.sum(axis=1)) < 0.1 * expected_std)


def test_backward_at_a_read_voltage_that_can_switch_disturbs_the_cells(fpga, chip, monkeypatch):
    g0 = chip.g.copy()
    applied = []
    apply = chip.apply
    monkeypatch.setattr(chip, "apply", lambda *a: applied.append(a) or apply(*a))
    fpga.mvm_backward(np.ones((3, 6)))  # 0.2 V: a read, the batch in one read_rows call
    np.testing.assert_array_equal(chip.g, g0)
    assert not applied
    fpga.configure_mvm(v_read=1.4)  # above the 0.8 V SET threshold: the read sets cells
    fpga.mvm_backward(np.ones((3, 6)))
    assert len(applied) == 3  # vector by vector through the physics, switching included
    assert np.all(chip.g != g0) and np.mean(chip.g - g0) > 0


def test_mvm_restores_routing_and_dac(fpga):
    fpga.route({3: 4, 19: 2, 7: 0})
    fpga.set_dac({3: 0.7})
    before = fpga.status()
    fpga.mvm_forward(np.full(4, 0.3))
    fpga.mvm_backward(np.full(6, -0.3))
    fpga.parallel_update([1] * 4, [1] * 6, 1, 1, 1.35, 1e-7, 1e-6, 1.2)
    after = fpga.status()
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])


def test_large_batches_go_through_the_emulator_in_several_frames(fpga, chip):
    x = np.random.default_rng(4).uniform(-1, 1, (5000, 4))  # 8191 // 6 = 1365 vectors a frame
    out = fpga.mvm_forward(x)
    np.testing.assert_allclose(out, x.astype(F4) @ read_currents(chip, slice(0, 4), slice(0, 6)),
                               rtol=1e-6, atol=1e-15)


# -- parallel update ----------------------------------------------------------------------------
def full_counts(shape, r0, c0, rows, cols) -> np.ndarray:
    counts = np.zeros(shape, np.int64)
    block = np.bitwise_count(np.asarray(rows, np.uint32)[:, None] & np.asarray(cols, np.uint32))
    counts[r0:r0 + len(rows), c0:c0 + len(cols)] = block
    return counts


@pytest.mark.parametrize("polarity, amplitude", [(1, 1.35), (-1, 1.3)])
def test_parallel_update_steps_cells_by_their_coincidences(fpga, chip, polarity, amplitude):
    chip.g = np.full((4, 6), 40e-6)
    chip.clock.advance(10.0)
    rows = [0b1011_0110, 0b0000_0000, 0b1111_1111]  # block rows 1..3
    cols = [0b0000_0001, 0b1111_0000, 0b0101_0101, 0b1000_0000]  # block cols 2..5
    counts = full_counts(chip.shape, 1, 2, rows, cols)
    twin = ArrayPhysics.from_state(chip.state(), chip.p)
    g_before, t0 = chip.conductance(), chip.clock.now
    width, period, v_gate = 1e-7, 1e-6, 1.2
    total = fpga.parallel_update(rows, cols, 8, polarity, amplitude, width, period, v_gate,
                                 r0=1, c0=2)
    assert total == counts.sum() == 16
    twin.pulse_counts(counts, polarity * float(F4(amplitude)), float(F4(v_gate)),
                      float(F4(width)), float(F4(period)))
    np.testing.assert_array_equal(chip.g, twin.g)
    # cells without a coincidence keep their programmed state (they only relax on)
    np.testing.assert_array_equal(chip.g[counts == 0], 40e-6)
    np.testing.assert_array_equal(chip.t_prog[counts == 0], 0.0)
    g_after = chip.conductance()
    assert np.all(g_after[counts > 0] != g_before[counts > 0])
    assert np.mean(g_after[counts > 0] - g_before[counts > 0]) * polarity > 0
    assert chip.clock.now - t0 == pytest.approx(8 * float(F4(period)))


def test_parallel_update_follows_the_map():
    chip = make_chip()
    chip.g = np.full((4, 6), 40e-6)
    vboard = VirtualBoard(chip, WL, BL, SL, n_channels=20)
    fpga = FpgaBoard(InProcessTransport(vboard))
    # the host's map swaps rows 0 and 1 and columns 4 and 5: the pulses land where it says
    fpga.configure_map([WL[1], WL[0], *WL[2:]], BL[:4] + [BL[5], BL[4]], SL[:4] + [SL[5], SL[4]])
    twin = ArrayPhysics.from_state(chip.state(), chip.p)
    total = fpga.parallel_update([0xF], [0xF, 0x3], 4, 1, 1.35, 1e-7, 1e-6, 1.2,
                                 r0=0, c0=4)
    assert total == 6
    counts = np.zeros((4, 6), np.int64)
    counts[1, 5], counts[1, 4] = 4, 2  # map row 0 = chip row 1, map columns 4, 5 = chip 5, 4
    twin.pulse_counts(counts, float(F4(1.35)), float(F4(1.2)), float(F4(1e-7)), float(F4(1e-6)))
    np.testing.assert_array_equal(chip.g, twin.g)
    assert np.argwhere(chip.g != 40e-6).tolist() == [[1, 4], [1, 5]]


def test_update_with_no_coincidence_changes_nothing_but_time(fpga, chip):
    g_before, t0 = chip.g.copy(), chip.clock.now
    assert fpga.parallel_update([0b01] * 4, [0b10] * 6, 2, 1, 1.35, 1e-7, 2e-6, 1.2) == 0
    assert fpga.parallel_update([0b01] * 4, [0] * 6, 2, 1, 1.35, 1e-7, 2e-6, 1.2) == 0  # no column pulses
    np.testing.assert_array_equal(chip.g, g_before)
    assert chip.clock.now - t0 == pytest.approx(4 * float(F4(2e-6)))


@pytest.mark.parametrize("v_gate", [0.0, "below v_th"])
def test_update_with_the_gates_off_changes_nothing_but_time(fpga, chip, v_gate):
    """At or below the selector's threshold no current flows: the coincidences are counted and
    take their time, and every cell keeps its state (found by the fuzz tests: a drive table of a
    closed gate was NaN, and the NaN conductances then crashed the next update)."""
    v_gate = float(F4(chip.p.v_th - 0.05)) if v_gate == "below v_th" else v_gate
    chip.g = np.full((4, 6), 40e-6)
    state, t0 = {k: v.copy() for k, v in chip.state().items() if k != "meta"}, chip.clock.now
    for polarity in (1, -1):
        assert fpga.parallel_update([0xFF] * 4, [0xFF] * 6, 8, polarity, 1.35, 1e-7, 1e-6, v_gate) == 8 * 24
    for key, value in chip.state().items():
        if key != "meta":
            np.testing.assert_array_equal(value, state[key], err_msg=key)
    assert chip.clock.now - t0 == pytest.approx(16 * float(F4(1e-6)))


def random_trains(rng, n, lines, length, p=0.15):
    bits = rng.random((n, lines, length)) < p
    return (bits.astype(np.uint32) << np.arange(length, dtype=np.uint32)).sum(axis=2, dtype=np.uint32)


def test_update_sequence_is_its_trains_fired_one_after_the_other():
    """A sequence of SET then RESET trains reports each train's coincidences, lasts all of its
    slots, and moves the cells as the same trains sent as separate PARALLEL_UPDATEs do (in
    distribution: the emulator composes consecutive trains of one polarity in closed form)."""
    rng = np.random.default_rng(4)
    rows, cols, n = 32, 32, 12
    polarities = np.array([1] * 6 + [-1] * 6)
    row_trains, col_trains = random_trains(rng, n, rows, 16), random_trains(rng, n, cols, 16)
    chips = []
    for sequence in (True, False):
        chip = ArrayPhysics(rows, cols, seed=1)
        chip.formed[:] = True
        chip.g = np.full((rows, cols), 40e-6)
        chip.clock.advance(100.0)
        vboard = VirtualBoard(chip, range(rows), range(rows, rows + cols), range(rows + cols, rows + 2 * cols))
        fpga = FpgaBoard(InProcessTransport(vboard))
        fpga.configure_map(range(rows), range(rows, rows + cols), range(rows + cols, rows + 2 * cols))
        t0 = chip.clock.now
        if sequence:
            counts = fpga.update_sequence(row_trains, col_trains, 16, polarities, 1.3, 5e-9, 1e-8, 1.2)
        else:
            counts = [fpga.parallel_update(r, c, 16, int(pol), 1.3, 5e-9, 1e-8, 1.2)
                      for r, c, pol in zip(row_trains, col_trains, polarities)]
        expected = [np.bitwise_count(r[:, None] & c[None, :]).sum() for r, c in zip(row_trains, col_trains)]
        assert list(counts) == expected
        assert chip.clock.now - t0 == pytest.approx(n * 16 * float(F4(1e-8)))
        chips.append(chip.g - 40e-6)
    together, apart = (dg.ravel() for dg in chips)
    moved = (together != 0) | (apart != 0)
    assert moved.sum() > 300
    diff = together[moved] - apart[moved]
    # same mean step per cell within 5 standard errors of the cycle-to-cycle noise
    assert abs(diff.mean()) < 5 * diff.std() / np.sqrt(moved.sum())
    # and the same spread of the steps over the cells (counts, rates, cycle-to-cycle noise): the
    # standard error of a standard deviation over ~1000 cells is ~2 %
    assert together[moved].std() == pytest.approx(apart[moved].std(), rel=0.1)


class _Key:
    """A chip generator stand-in whose next output (the key of a pulse_counts) is `key`."""

    def __init__(self, key: int):
        self.bit_generator = SimpleNamespace(random_raw=lambda: key)


@pytest.mark.parametrize("block", [(0, 0, 4, 6), (1, 2, 2, 3)])
def test_no_cell_composes_more_coincidences_than_one_train_gives(fpga, chip, block):
    """Three trains of 16 coincidences on every cell of a block: the chip model composes the
    first two (32, as much as one train gives) and then takes the third, in one compiled call.
    The chip ends exactly as a copy given pulse_counts of 32 and then of 16 on the block's
    cells, the second keyed further along the first's stream, past the chip's cells."""
    r0, c0, n_rows, n_cols = block
    chip.g = np.full((4, 6), 40e-6)
    twin = ArrayPhysics.from_state(chip.state())
    full = np.full((3, max(n_rows, n_cols)), 0xFFFF, np.uint32)
    counts = fpga.update_sequence(full[:, :n_rows], full[:, :n_cols], 16, 1, 1.35, 1e-7, 1e-6, 1.2, r0, c0)
    assert counts.tolist() == [16 * n_rows * n_cols] * 3
    key = twin.rng.bit_generator.random_raw()
    cells = np.zeros((4, 6), np.uint8)
    for n, k in ((32, key), (16, key + 4 * 6 * 0x9E3779B97F4A7C15)):
        cells[r0:r0 + n_rows, c0:c0 + n_cols] = n
        twin.rng = _Key(k % 2**64)
        twin.pulse_counts(cells, float(F4(1.35)), float(F4(1.2)), float(F4(1e-7)), float(F4(1e-6)))
    for name in ArrayPhysics.STATE_KEYS:
        np.testing.assert_array_equal(getattr(chip, name), getattr(twin, name), err_msg=name)
    assert chip.clock.now == twin.clock.now


def test_board_rejects_a_sequence_with_one_bad_train_and_changes_nothing(fpga, chip):
    g_before, t0 = chip.g.copy(), chip.clock.now
    head = struct.pack("<5H3f", 0, 0, 1, 1, 2, 1e-7, 1e-6, 1.2)
    entries = struct.pack("<BbfBbf", 4, 1, 1.35, 4, -1, 1.3)
    status, message = raw(fpga, 0x35, head + entries + struct.pack("<4I", 1, 1, 1, 0x10))
    assert (status, message) == (ErrorCode.BAD_ARGUMENT, b"column train 0 has a pulse after slot 3 (train length 4)")
    entries = struct.pack("<BbfBbf", 4, 1, 1.35, 4, 2, 1.3)
    assert raw(fpga, 0x35, head + entries + struct.pack("<4I", 1, 1, 1, 1)) == (ErrorCode.BAD_ARGUMENT,
                                                                              b"polarity 2 must be +1 (SET) or -1 (RESET)")
    assert raw(fpga, 0x35, head + entries + struct.pack("<3I", 1, 1, 1))[0] == ErrorCode.BAD_LENGTH
    np.testing.assert_array_equal(chip.g, g_before)
    assert chip.clock.now == t0


# -- board errors -----------------------------------------------------------------------------
def test_board_rejects_blocks_outside_the_map_and_bad_trains(fpga, chip):
    unmapped = FpgaBoard(InProcessTransport(fpga.transport.instrument))  # does not know the map
    for call in (lambda: unmapped.mvm_forward(np.zeros((1, 5)), 0, 0, 5, 1),
                 lambda: unmapped.mvm_backward(np.zeros((1, 2)), 0, 5, 1, 2),
                 lambda: unmapped.parallel_update([1], [1], 4, 1, 1.35, 1e-7, 1e-6, 1.2,
                                                  r0=4, c0=0)):
        with pytest.raises(BoardError, match="outside the 4x6 map") as info:
            call()
        assert info.value.code == ErrorCode.BAD_ARGUMENT
    g_before = chip.g.copy()
    head = struct.pack("<4HBb4f", 0, 0, 1, 1, 33, 1, 1.35, 1e-7, 1e-6, 1.2)
    status, message = raw(fpga, 0x33, head + struct.pack("<2I", 1, 1))
    assert (status, message) == (ErrorCode.BAD_ARGUMENT, b"train length 33 outside 1..32")
    head = struct.pack("<4HBb4f", 0, 0, 1, 2, 4, 1, 1.35, 1e-7, 1e-6, 1.2)
    status, message = raw(fpga, 0x33, head + struct.pack("<3I", 1, 1, 0x10))
    assert status == ErrorCode.BAD_ARGUMENT
    assert message == b"column train 1 has a pulse after slot 3 (train length 4)"
    head = struct.pack("<4HBb4f", 0, 0, 1, 1, 4, 1, 6.0, 1e-7, 1e-6, 1.2)
    status, message = raw(fpga, 0x33, head + struct.pack("<2I", 1, 1))
    assert status == ErrorCode.DAC_RANGE and b"6 V is outside the DAC range" in message
    head = struct.pack("<4HBb4f", 0, 0, 1, 1, 4, 0, 1.35, 1e-7, 1e-6, 1.2)
    assert raw(fpga, 0x33, head + struct.pack("<2I", 1, 1))[0] == ErrorCode.BAD_ARGUMENT
    head = struct.pack("<4HBb4f", 0, 0, 1, 1, 4, 1, 1.35, 1e-6, 1e-7, 1.2)
    assert raw(fpga, 0x33, head + struct.pack("<2I", 1, 1))[0] == ErrorCode.BAD_ARGUMENT
    assert raw(fpga, 0x33, head + struct.pack("<I", 1))[0] == ErrorCode.BAD_LENGTH
    np.testing.assert_array_equal(chip.g, g_before)


def test_board_rejects_bad_mvm_requests(fpga):
    mvm = struct.pack("<5H", 0, 0, 2, 1, 1)
    status, message = raw(fpga, 0x31, mvm + struct.pack("<2f", 0.5, 1.5))
    assert (status, message) == (ErrorCode.BAD_ARGUMENT,
                                 b"input 1 of vector 0 is 1.5, outside [-1, 1]")
    assert raw(fpga, 0x31, mvm + struct.pack("<f", 0.5))[0] == ErrorCode.BAD_LENGTH
    assert raw(fpga, 0x32, struct.pack("<5H", 0, 0, 1, 1, 0))[1] == b"empty batch"
    wide = FpgaBoard(InProcessTransport(VirtualBoard(ArrayPhysics(1, 10), [0], range(1, 11), range(11, 21))))
    wide.configure_map([0], range(1, 11), range(11, 21))
    status, message = raw(wide, 0x31, struct.pack("<5H", 0, 0, 1, 10, 60000) + bytes(4 * 60000))
    assert status == ErrorCode.BAD_ARGUMENT and b"60000 x 10 outputs exceeds 524287 per reply" in message


def test_board_mvm_needs_the_map():
    vboard = VirtualBoard(make_chip(), WL, BL, SL, n_channels=20)
    fpga = FpgaBoard(InProcessTransport(vboard))
    with pytest.raises(BoardError, match="MVM_FORWARD needs CONFIGURE_MAP first") as info:
        fpga.mvm_forward([0.5], 0, 0, 1, 1)
    assert info.value.code == ErrorCode.NOT_CONFIGURED
    with pytest.raises(BoardError, match="PARALLEL_UPDATE needs CONFIGURE_MAP"):
        fpga.parallel_update([1], [1], 1, 1, 1.35, 1e-7, 1e-6, 1.2)


@pytest.mark.parametrize("config, code, message", [
    ((-0.2, 1.2, 1e-6, 0, 0, 1e-3), ErrorCode.BAD_ARGUMENT, b"v_read=-0.2 V must be positive"),
    ((0.2, 6.0, 1e-6, 0, 0, 1e-3), ErrorCode.DAC_RANGE, b"6 V is outside the DAC range"),
    ((0.2, 1.2, 0.0, 0, 0, 1e-3), ErrorCode.BAD_ARGUMENT, b"t_int=0 s must be positive"),
    ((0.2, 1.2, 1e-6, 1, 0, 1e-3), ErrorCode.BAD_ARGUMENT, b"dac_bits=1 must be 0 or 2..16"),
    ((0.2, 1.2, 1e-6, 0, 25, 1e-3), ErrorCode.BAD_ARGUMENT, b"adc_bits=25 must be 0 or 2..24"),
    ((0.2, 1.2, 1e-6, 0, 0, -1.0), ErrorCode.BAD_ARGUMENT, b"i_range=-1 A must be positive"),
])
def test_board_rejects_bad_mvm_configuration_and_keeps_the_old_one(fpga, chip, config, code,
                                                                     message):
    fpga.configure_mvm(i_range=1e-5)
    status, data = raw(fpga, 0x30, struct.pack("<3f2Bd", *config))
    assert status == code and data.startswith(message)
    assert raw(fpga, 0x30, struct.pack("<3f2B", *config[:5]))[0] == ErrorCode.BAD_LENGTH
    assert fpga.mvm_forward(np.ones(4)).max() == 1e-5  # still clipping at the old i_range
