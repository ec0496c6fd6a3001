"""Firmware emulator of the FPGA routing board: parses and answers the same frames as the real
board (docs/fpga-protocol.md) and drives the simulated chip through its physical wiring."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

import numpy as np
from labctl.instruments.fpga_wire import (
    ACK,
    DAC_DTYPE,
    DAC_LIMIT,
    MAX_ADC_BITS,
    MAX_BLOCK_CELLS,
    MAX_DAC_BITS,
    MAX_LONG_PAYLOAD,
    MAX_MVM_OUTPUTS,
    MAX_PAYLOAD,
    MAX_SEQUENCE_TRAINS,
    MAX_TRAIN_LENGTH,
    MODEL,
    MVM_CONFIG_DTYPE,
    MVM_DEFAULTS,
    MVM_DTYPE,
    PULSE_CELL_DTYPE,
    PULSES_DTYPE,
    READ_DTYPE,
    REPLY_FLAG,
    ROUTE_DTYPE,
    SEQUENCE_DTYPE,
    SEQUENCE_TRAIN_DTYPE,
    UPDATE_DTYPE,
    Command,
    ErrorCode,
    Frame,
    FrameDecoder,
    LineMode,
    MvmSettings,
    encode_frame,
)

from .clock import VirtualClock
from .physics import load_kernels

FIRMWARE = "1.0"
MAX_CHANNELS = (MAX_PAYLOAD - 3) // 5  # the STATUS reply must fit in one frame
# A partial frame is dropped after this much line silence (docs/fpga-protocol.md): the firmware's
# 20 ms, raised for a loopback TCP stream, whose pieces can lie that far apart on a loaded machine.
LINE_SILENCE = 0.25  # s


class ChipModel(Protocol):
    """What the board needs from the chip it is wired to: the calls it makes on the chip model
    (sim_backend.physics.ArrayPhysics satisfies it)."""

    rows: int
    cols: int
    clock: VirtualClock

    def apply(self, v_wl: np.ndarray, v_bl: np.ndarray, v_sl: np.ndarray,
              duration: float) -> np.ndarray: ...

    def pulse_trains(self, rows: np.ndarray, cols: np.ndarray, gates: np.ndarray, pulses: np.ndarray,
                     runs: np.ndarray, amplitudes: np.ndarray, lengths: np.ndarray, v_gate: float, width: float,
                     period: float) -> np.ndarray: ...

    def pulse_cells(self, rows: np.ndarray, cols: np.ndarray, v_cell: np.ndarray, v_gate: float,
                    width: np.ndarray, period: float) -> None: ...

    def read_only(self, v: float) -> bool: ...

    def read_rows(self, rows: np.ndarray, cols: np.ndarray, v_cols: np.ndarray, v_gate: float,
                  duration: float) -> np.ndarray: ...

    def read_forward(self, rows: np.ndarray, cols: np.ndarray, x: np.ndarray, v_read: float,
                     v_gate: float, duration: float) -> np.ndarray: ...


class _Fault(Exception):
    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code


def _expect_length(payload: bytes, n: int) -> None:
    if len(payload) != n:
        raise _Fault(ErrorCode.BAD_LENGTH, f"payload of {len(payload)} bytes, expected {n}")


def _dac_output(volts: float) -> float:
    """What a DAC set to `volts` puts out: its f4 register's value."""
    return float(np.float32(volts))


def quantize(values: np.ndarray, bits: int, full_scale: float = 1.0) -> np.ndarray:
    """Round to a signed `bits`-bit code (sign included): the nearest of the levels
    k * full_scale / (2**(bits-1) - 1), |k| <= 2**(bits-1) - 1, ties to even; bits 0 = ideal.
    Values are expected within ±full_scale (the board clips outputs before quantizing). Ideal
    (bits 0): the values as they are, in their own dtype (an MVM's f4 inputs stay f4)."""
    if bits == 0:
        return np.asarray(values)
    values = np.asarray(values, dtype=float)
    levels = 2 ** (bits - 1) - 1
    codes = np.multiply(values, levels / full_scale)  # one new array, the steps in place
    np.rint(codes, out=codes)  # (np.round's rounding: half to even)
    codes *= full_scale / levels
    return codes


def _head(payload: bytes, dtype: np.dtype) -> np.void:
    """The fixed head of a request whose variable part follows it."""
    if len(payload) < dtype.itemsize:
        raise _Fault(ErrorCode.BAD_LENGTH, f"payload of {len(payload)} bytes, expected at least "
                                           f"{dtype.itemsize}")
    return np.frombuffer(payload, dtype, 1)[0]


class VirtualBoard:
    """The board with its channels wired to a simulated chip.

    wl/bl/sl_channels give the board channel physically wired to each chip line; the host's
    CONFIGURE_MAP says which channels it *believes* drive which lines, so a wrong map misroutes
    exactly as on the bench. Power-up: every channel GROUND, every DAC 0 V, no map.

    link_baud: the UART's rate; when given, every byte in and out costs 10 bits (8N1) of the
    chip's virtual time, as on the bench (a 512-input batch of 64 f4 vectors is 1.4 s at
    921600 baud). None: the link takes no time.

    A request with the sequence number and the bytes of the last one executed is a duplicate
    (the host resent it after losing the reply): it is answered with the last reply and not
    executed again. `executed` and `duplicates` count both kinds.
    """

    def __init__(self, physics: ChipModel, wl_channels: Sequence[int],
                 bl_channels: Sequence[int], sl_channels: Sequence[int],
                 n_channels: int | None = None, serial: str = "SIM0001",
                 link_baud: float | None = None, line_silence: float | None = LINE_SILENCE):
        wl, bl, sl = (np.asarray(c, dtype=np.int64).reshape(-1) for c in (wl_channels, bl_channels, sl_channels))
        wiring = (wl, bl, sl)
        if (len(wiring[0]), len(wiring[1]), len(wiring[2])) != (physics.rows, physics.cols,
                                                               physics.cols):
            raise ValueError(f"wiring has {len(wiring[0])} WL, {len(wiring[1])} BL, "
                             f"{len(wiring[2])} SL channels for a {physics.rows}x{physics.cols} chip")
        used = np.concatenate(wiring)
        n_channels = len(used) if n_channels is None else int(n_channels)
        if not 0 < n_channels <= MAX_CHANNELS:
            raise ValueError(f"n_channels={n_channels} outside 1..{MAX_CHANNELS}")
        if used.min() < 0 or used.max() >= n_channels or len(np.unique(used)) != len(used):
            raise ValueError(f"wiring channels must be distinct and in 0..{n_channels - 1}")
        self.physics = physics
        self.serial = serial
        self.link_baud = link_baud
        self._wiring = wiring
        # chip row / column driven by each channel's WL / BL / SL wire, -1 if none
        self._wl_row = np.full(n_channels, -1)
        self._wl_row[wiring[0]] = np.arange(physics.rows)
        self._bl_col = np.full(n_channels, -1)
        self._bl_col[wiring[1]] = np.arange(physics.cols)
        self._sl_col = np.full(n_channels, -1)
        self._sl_col[wiring[2]] = np.arange(physics.cols)
        self._modes = np.full(n_channels, LineMode.GROUND, np.uint8)
        self._dac = np.zeros(n_channels, np.float32)
        self._map: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        # per MVM block (r0, c0, n_rows, n_cols): its lines and _chip_block's answer, until the
        # next CONFIGURE_MAP (a training step's requests go to the same few blocks)
        self._mvm_blocks: dict[tuple[int, int, int, int], tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                  tuple[np.ndarray, np.ndarray] | None]] = {}
        self._update_blocks: dict[tuple[tuple[int, int, int, int], bytes], tuple] = {}  # _update_wiring
        load_kernels()  # compiled or loaded here, not in the first update (sim_backend.physics.load_kernels)
        self._mvm: MvmSettings = MVM_DEFAULTS.copy()
        # The longest valid request is a SET_DAC naming every channel once or a PARALLEL_UPDATE
        # of every mapped line; MVM batches and PULSE_CELLS lists may fill a whole frame.
        self._longest = max(DAC_DTYPE.itemsize * n_channels, UPDATE_DTYPE.itemsize + 4 * n_channels)
        self._decoder = self._new_decoder()
        self.line_silence = line_silence
        self._quiet_since = time.monotonic()  # when the last bytes were taken in
        # (seq, cmd, payload) of the last request executed and the reply frame it got
        self._last: tuple[int, int, bytes, bytes] | None = None
        self.executed = 0
        self.duplicates = 0
        self._handlers: dict[int, Callable[[bytes], bytes]] = {
            Command.IDENTIFY: self._identify, Command.STATUS: self._status,
            Command.CONFIGURE_MAP: self._configure_map, Command.ROUTE: self._route,
            Command.SET_DAC: self._set_dac, Command.RELEASE_ALL: self._release_all,
            Command.READ_BLOCK: self._read_block, Command.CONFIGURE_MVM: self._configure_mvm,
            Command.MVM_FORWARD: self._mvm_forward, Command.MVM_BACKWARD: self._mvm_backward,
            Command.PARALLEL_UPDATE: self._parallel_update, Command.PULSE_CELLS: self._pulse_cells,
            Command.UPDATE_SEQUENCE: self._update_sequence,
        }

    @property
    def n_channels(self) -> int:
        return len(self._modes)

    def _new_decoder(self) -> FrameDecoder:
        # The longest valid request is a SET_DAC naming every channel once or a PARALLEL_UPDATE
        # of every mapped line; MVM batches and PULSE_CELLS lists may fill a whole frame.
        return FrameDecoder(max_payload=self._longest, limits={
            Command.MVM_FORWARD: MAX_LONG_PAYLOAD, Command.MVM_BACKWARD: MAX_LONG_PAYLOAD,
            Command.PULSE_CELLS: MAX_PAYLOAD, Command.UPDATE_SEQUENCE: MAX_LONG_PAYLOAD})

    def device_clear(self) -> None:
        """The host's link went away (the server calls this when a client disconnects): a
        partial frame is dropped, as the firmware drops one after line silence. The last
        request and reply are kept (a duplicate is still recognised)."""
        self._decoder = self._new_decoder()

    def handle(self, data: bytes) -> bytes:
        """Bytes from the host in (any chunking), reply frames out.

        A corrupt frame that starts where the previous valid frame ended gets a BAD_CRC reply;
        garbage and corrupt candidates met while resynchronising are skipped silently. A partial
        frame followed by `line_silence` seconds without bytes is dropped. A duplicate of the last
        request executed gets the last reply, unexecuted.
        """
        now = time.monotonic()
        if self.line_silence is not None and self._decoder.pending and now - self._quiet_since > self.line_silence:
            self._decoder = self._new_decoder()
        self._on_link(len(data))
        out: list[bytes] = []  # joined at the end: one reply is returned as it is, not copied
        for frame in self._decoder.feed(data):
            if frame.crc_ok:
                last = self._last
                if last is not None and last[:3] == (frame.seq, frame.cmd, frame.payload):
                    self.duplicates += 1
                    out.append(last[3])
                    continue
                status, body = self._execute(frame)
                reply = encode_frame(frame.seq, frame.cmd | REPLY_FLAG, bytes((status,)), body)
                self._last = (frame.seq, frame.cmd, frame.payload, reply)
                self.executed += 1
                out.append(reply)
            elif frame.in_sync:
                status, body = ErrorCode.BAD_CRC, (
                    f"corrupt frame (CRC mismatch or length over "
                    f"{self._decoder.limit(frame.cmd)} bytes)").encode()
                out.append(encode_frame(frame.seq, frame.cmd | REPLY_FLAG, bytes((status,)), body))
        reply_bytes = b"".join(out)
        self._on_link(len(reply_bytes))
        self._quiet_since = time.monotonic()
        return reply_bytes

    def _on_link(self, n_bytes: int) -> None:
        if self.link_baud and n_bytes:
            self.physics.clock.advance(10 * n_bytes / self.link_baud)

    def line_modes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(wl_modes, bl_modes, sl_modes): the LineMode value of each chip line's channel."""
        wl, bl, sl = self._wiring
        return self._modes[wl].astype(int), self._modes[bl].astype(int), self._modes[sl].astype(int)

    def line_voltages(self, v_smu: float, v_pulse: float = float("nan")
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(v_wl, v_bl, v_sl) in volts on each chip line, NaN = floating, given the SMU and pulse
        generator outputs at the board's inputs."""
        table = np.array([np.nan, 0.0, v_smu, v_pulse, np.nan, 0.0])  # indexed by LineMode
        volts = table[self._modes]
        is_dac = self._modes == LineMode.DAC
        volts[is_dac] = self._dac[is_dac]
        wl, bl, sl = self._wiring
        return volts[wl], volts[bl], volts[sl]

    def _execute(self, frame: Frame) -> tuple[int, bytes]:
        handler = self._handlers.get(frame.cmd)
        if handler is None:
            return ErrorCode.UNKNOWN_COMMAND, f"unknown command 0x{frame.cmd:02X}".encode()
        try:
            return ACK, handler(frame.payload)
        except _Fault as fault:
            return fault.code, str(fault).encode()

    # ROUTE, SET_DAC and RELEASE_ALL change the state only through these two, in the firmware's
    # order (READ_BLOCK's temporary routing is restored before it replies).
    def _write_dac(self, channels: np.ndarray, volts: np.ndarray | float) -> None:
        self._dac[channels] = volts

    def _write_modes(self, channels: np.ndarray, modes: np.ndarray | int) -> None:
        self._modes[channels] = modes

    def _check_channels(self, channels: np.ndarray) -> None:
        bad = channels[channels >= self.n_channels]
        if len(bad):
            raise _Fault(ErrorCode.BAD_ARGUMENT,
                         f"channel {bad[0]} out of range 0..{self.n_channels - 1}")
        # a set for the few channels of a routing frame (np.unique sorts: ~10 us a frame)
        distinct = len(set(channels.tolist())) if len(channels) <= 64 else len(np.unique(channels))
        if distinct != len(channels):
            raise _Fault(ErrorCode.BAD_ARGUMENT, "a channel appears more than once")

    def _identify(self, payload: bytes) -> bytes:
        _expect_length(payload, 0)
        return f"LABCTL,{MODEL},{self.serial},{FIRMWARE}".encode("ascii")

    def _status(self, payload: bytes) -> bytes:
        _expect_length(payload, 0)
        return self.n_channels.to_bytes(2, "little") + self._modes.tobytes() + \
            self._dac.astype("<f4").tobytes()

    def _configure_map(self, payload: bytes) -> bytes:
        if len(payload) < 4:
            raise _Fault(ErrorCode.BAD_LENGTH, "CONFIGURE_MAP needs rows and cols")
        rows, cols = (int(x) for x in np.frombuffer(payload, "<u2", 2))
        _expect_length(payload, 4 + 2 * (rows + 2 * cols))
        if rows == 0 or cols == 0:
            raise _Fault(ErrorCode.BAD_ARGUMENT, f"map of {rows}x{cols} lines is empty")
        channels = np.frombuffer(payload, "<u2", offset=4).astype(np.int64)
        self._check_channels(channels)
        self._map = (channels[:rows], channels[rows:rows + cols], channels[rows + cols:])
        self._mvm_blocks.clear()
        self._update_blocks.clear()
        return b""

    def _channel_entries(self, payload: bytes, dtype: np.dtype, command: str
                         ) -> tuple[np.ndarray, np.ndarray]:
        """The records of a ROUTE or SET_DAC payload, and their channels (checked)."""
        if len(payload) % dtype.itemsize:
            raise _Fault(ErrorCode.BAD_LENGTH, f"{command} payload of {len(payload)} bytes is not "
                                               f"a multiple of {dtype.itemsize}")
        entries = np.frombuffer(payload, dtype)
        channels = entries["channel"].astype(np.int64)
        self._check_channels(channels)
        return entries, channels

    def _route(self, payload: bytes, _highest: int = max(LineMode)) -> bytes:
        entries, channels = self._channel_entries(payload, ROUTE_DTYPE, "ROUTE")
        bad = entries["mode"][entries["mode"] > _highest]
        if len(bad):
            raise _Fault(ErrorCode.BAD_ARGUMENT, f"line mode {bad[0]} unknown")
        self._write_modes(channels, entries["mode"])
        return b""

    def _set_dac(self, payload: bytes) -> bytes:
        entries, channels = self._channel_entries(payload, DAC_DTYPE, "SET_DAC")
        self._check_dac(entries["volts"])
        self._write_dac(channels, entries["volts"])
        return b""

    def _release_all(self, payload: bytes) -> bytes:
        _expect_length(payload, 0)
        everything = np.arange(self.n_channels)
        self._write_dac(everything, 0.0)
        self._write_modes(everything, LineMode.GROUND)
        return b""

    def _read_block(self, payload: bytes) -> bytes:
        _expect_length(payload, READ_DTYPE.itemsize)
        self._need_map("READ_BLOCK")
        req = np.frombuffer(payload, READ_DTYPE)[0]
        self._check_dac(np.array([req["v_read"], req["v_gate"]]))
        t_read = float(req["t_read"])
        if not (np.isfinite(t_read) and t_read > 0):
            raise _Fault(ErrorCode.BAD_ARGUMENT, f"t_read={t_read:g} s must be positive")
        wl, bl, sl = self._mapped
        r0, c0, n_rows, n_cols = self._block(req)
        if n_rows * n_cols > MAX_BLOCK_CELLS:
            raise _Fault(ErrorCode.BAD_ARGUMENT, f"block of {n_rows * n_cols} cells exceeds "
                                                 f"{MAX_BLOCK_CELLS} per reply")
        block_bl, block_sl = bl[c0:c0 + n_cols], sl[c0:c0 + n_cols]
        saved = self._modes.copy(), self._dac.copy()
        currents = np.empty((n_rows, n_cols))
        try:
            self._modes[:] = LineMode.GROUND
            self._dac[:] = 0.0
            self._modes[wl] = LineMode.DAC
            self._modes[block_bl] = LineMode.DAC
            self._dac[block_bl] = req["v_read"]
            self._modes[block_sl] = LineMode.ADC
            for i in range(n_rows):
                self._dac[wl] = 0.0
                self._dac[wl[r0 + i]] = req["v_gate"]
                currents[i] = self._adc_currents(block_sl, t_read)
        finally:
            self._modes[:], self._dac[:] = saved
        return currents.astype("<f8").tobytes()

    # -- analog AI: MVM and parallel update ---------------------------------------------------
    def _configure_mvm(self, payload: bytes) -> bytes:
        _expect_length(payload, MVM_CONFIG_DTYPE.itemsize)
        req = np.frombuffer(payload, MVM_CONFIG_DTYPE)[0]
        v_read, t_int, i_range = (float(req[k]) for k in ("v_read", "t_int", "i_range"))
        self._check_dac(np.array([req["v_read"], req["v_gate"]]))
        if not v_read > 0:
            raise _Fault(ErrorCode.BAD_ARGUMENT, f"v_read={v_read:g} V must be positive")
        if not (np.isfinite(t_int) and t_int > 0):
            raise _Fault(ErrorCode.BAD_ARGUMENT, f"t_int={t_int:g} s must be positive")
        for name, most in (("dac_bits", MAX_DAC_BITS), ("adc_bits", MAX_ADC_BITS)):
            if not (req[name] == 0 or 2 <= req[name] <= most):
                raise _Fault(ErrorCode.BAD_ARGUMENT,
                             f"{name}={req[name]} must be 0 or 2..{most}")
        if not (np.isfinite(i_range) and i_range > 0):
            raise _Fault(ErrorCode.BAD_ARGUMENT, f"i_range={i_range:g} A must be positive")
        self._mvm = {"v_read": req["v_read"], "v_gate": req["v_gate"], "t_int": t_int,
                     "dac_bits": int(req["dac_bits"]), "adc_bits": int(req["adc_bits"]),
                     "i_range": i_range}
        return b""

    def _mvm_forward(self, payload: bytes) -> bytes:
        """Inputs pulse-width encoded on the block's WL gates, BLs at ±v_read, SLs integrated:
        output j is the charge / t_int, sum_i x_i I_ij(v_read) with I(-v_read) = -I(v_read) for
        the negative-input phase. Each vector is a read of its own, with its own noise. When the
        map reaches the block's own lines and v_read is read-only, physics.read_forward takes
        the whole batch at once; otherwise one apply() per vector plays it through the wiring."""
        block, x = self._mvm_request(payload, "MVM_FORWARD", backward=False)
        n_cols = block[3]
        cfg = self._mvm
        x = quantize(x, cfg["dac_bits"])
        rows, bls, sls, chip = self._mvm_lines(block)
        v_read, v_gate = _dac_output(cfg["v_read"]), _dac_output(cfg["v_gate"])
        if chip and self.physics.read_only(v_read):
            return self._integrated(self.physics.read_forward(*chip, x, v_read, v_gate, cfg["t_int"]))
        out = np.empty((len(x), n_cols))
        with self._mvm_bias(rows, bls, sls):
            self._dac[bls] = cfg["v_read"]
            for b, vector in enumerate(x):
                cells = self.physics.apply(*self.line_voltages(np.nan), cfg["t_int"])
                out[b] = vector @ self._block_currents(cells, rows, sls)
        return self._integrated(out)

    def _mvm_backward(self, payload: bytes) -> bytes:
        """Row-serial transposed MVM: for each block row, its WL at v_gate, BL j at d_j v_read,
        every block SL into one integrator for t_int. Cells do not interact, so all block rows
        at once give the same per-cell currents, n_rows * t_int per input vector, each vector
        with its own read-noise draw. When the map reaches the block's own lines and the bias is
        read-only, physics.read_rows takes the whole batch at once; otherwise (a mis-wired map, a
        read voltage that can disturb) one apply() per vector plays it through the wiring."""
        block, d = self._mvm_request(payload, "MVM_BACKWARD", backward=True)
        n_rows = block[2]
        cfg = self._mvm
        # d v_read rounded once to f4, as read_rows takes it: its transpose, (columns, batch) in C order
        volts = np.empty(d.shape[::-1], np.float32).T
        np.multiply(quantize(d, cfg["dac_bits"]), float(cfg["v_read"]), out=volts, dtype=np.float64,
                    casting="same_kind")
        rows, bls, sls, chip = self._mvm_lines(block)
        if chip and self.physics.read_only(float(np.abs(volts).max(initial=0.0))):
            return self._integrated(self.physics.read_rows(*chip, volts, _dac_output(cfg["v_gate"]),
                                                           n_rows * cfg["t_int"]))
        out = np.empty((len(d), n_rows))
        with self._mvm_bias(rows, bls, sls):
            for b, v_bl in enumerate(volts):
                self._dac[bls] = v_bl
                cells = self.physics.apply(*self.line_voltages(np.nan), n_rows * cfg["t_int"])
                out[b] = self._block_currents(cells, rows, sls).sum(axis=1)
        return self._integrated(out)

    def _mvm_lines(self, block: tuple[int, int, int, int]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        """The block's WL, BL and SL channels (_block_lines) and _chip_block of them."""
        lines = self._mvm_blocks.get(block)
        if lines is None:
            rows, bls, sls = self._block_lines(*block)
            lines = self._mvm_blocks[block] = rows, bls, sls, self._chip_block(rows, bls, sls)
        return lines

    def _chip_block(self, rows: np.ndarray, bls: np.ndarray, sls: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray] | None:
        """(chip rows, chip columns) of a block whose WL, BL and SL channels reach the block's own
        chip lines (a column's BL and SL on one chip column), else None."""
        chip_rows, chip_cols = self._wl_row[rows], self._bl_col[bls]
        if np.all(chip_rows >= 0) and np.all(chip_cols >= 0) and np.array_equal(self._sl_col[sls], chip_cols):
            return chip_rows, chip_cols
        return None

    def _parallel_update(self, payload: bytes) -> bytes:
        """Coincidence update: bit k of a row train opens the row's gates in slot k, bit k of a
        column train pulses its BL (SET) or SL (RESET); counts per cell in closed form."""
        head_size = UPDATE_DTYPE.itemsize
        req = _head(payload, UPDATE_DTYPE)
        n_rows, n_cols = int(req["n_rows"]), int(req["n_cols"])
        _expect_length(payload, head_size + 4 * (n_rows + n_cols))
        self._need_map("PARALLEL_UPDATE")
        block = self._block(req)
        trains = np.frombuffer(payload, "<u4", n_rows + n_cols, head_size)[None, :]
        counts = self._fire_trains(block, trains, req["train_length"][None], req["polarity"][None],
                                   req["amplitude"][None], req)
        return counts.astype("<u8").tobytes()

    def _update_sequence(self, payload: bytes) -> bytes:
        """PARALLEL_UPDATEs of one block back to back, one request: each train's coincidences."""
        head_size = SEQUENCE_DTYPE.itemsize
        req = _head(payload, SEQUENCE_DTYPE)
        n, n_rows, n_cols = int(req["n_trains"]), int(req["n_rows"]), int(req["n_cols"])
        entry_size = SEQUENCE_TRAIN_DTYPE.itemsize
        _expect_length(payload, head_size + n * (entry_size + 4 * (n_rows + n_cols)))
        self._need_map("UPDATE_SEQUENCE")
        block = self._block(req)
        if not 1 <= n <= MAX_SEQUENCE_TRAINS:
            raise _Fault(ErrorCode.BAD_ARGUMENT, f"{n} trains outside 1..{MAX_SEQUENCE_TRAINS}")
        entries = np.frombuffer(payload, SEQUENCE_TRAIN_DTYPE, n, head_size)
        trains = np.frombuffer(payload, "<u4", n * (n_rows + n_cols), head_size + n * entry_size
                               ).reshape(n, n_rows + n_cols)
        counts = self._fire_trains(block, trains, entries["train_length"], entries["polarity"],
                                   entries["amplitude"], req)
        return counts.astype("<u8").tobytes()

    def _fire_trains(self, block: tuple[int, int, int, int], trains: np.ndarray, lengths: np.ndarray,
                     polarities: np.ndarray, amplitudes: np.ndarray, req: np.void) -> np.ndarray:
        """Check, then fire trains (n, n_rows + n_cols: row bitmasks then column bitmasks) one
        after the other on the block; width, period and v_gate from `req`. Returns each train's
        coincidences.

        The chip model takes the trains on the chip lines they reach (physics.pulse_trains), with
        each train's run: consecutive trains of one polarity and amplitude, which compose."""
        width, period, v_gate = (float(req[k]) for k in ("width", "period", "v_gate"))
        lengths = lengths.astype(np.int64)
        bad = np.flatnonzero((lengths < 1) | (lengths > MAX_TRAIN_LENGTH))
        if len(bad):
            raise _Fault(ErrorCode.BAD_ARGUMENT, f"train length {lengths[bad[0]]} outside 1..{MAX_TRAIN_LENGTH}")
        bad = np.flatnonzero((polarities != 1) & (polarities != -1))
        if len(bad):
            raise _Fault(ErrorCode.BAD_ARGUMENT, f"polarity {polarities[bad[0]]} must be +1 (SET) or -1 "
                                                 f"(RESET)")
        self._check_dac(np.concatenate([amplitudes, [req["v_gate"]]]))
        if not np.all(amplitudes > 0):
            raise _Fault(ErrorCode.BAD_ARGUMENT, f"amplitude={amplitudes.min():g} V must be positive")
        if not (np.isfinite(width) and width > 0 and np.isfinite(period) and period >= width):
            raise _Fault(ErrorCode.BAD_ARGUMENT, f"width={width:g} s must be positive and "
                                                 f"period={period:g} s at least the width")
        used = np.bitwise_or.reduce(trains, axis=1).astype(np.uint64)  # each train's slots, over its lines
        if (used >> lengths.astype(np.uint64)).any():
            k, line = np.argwhere(trains >> (lengths[:, None] - 1).astype(np.uint32) > 1)[0]
            r0, c0, n_rows, n_cols = block
            name = f"row train {line}" if line < n_rows else f"column train {line - n_rows}"
            raise _Fault(ErrorCode.BAD_ARGUMENT, f"{name} has a pulse after slot {lengths[k] - 1} "
                                                 f"(train length {lengths[k]})")
        n_rows = block[2]
        wired_rows, chip_rows, chip_cols, targets, plain = self._update_wiring(block, polarities)
        gates = trains[:, :n_rows] if wired_rows is None else trains[:, :n_rows][:, wired_rows]
        gates = np.array(gates, np.uint32, order="C")  # the kernels' one array type: writable, C order
        # the pulses of the +amplitude and the -amplitude side (V_BL - V_SL) per train and chip
        # column (a correctly wired block pulses one side per train)
        sides = np.zeros((2, len(trains), len(chip_cols)), np.uint32)  # BL, SL pulses per chip column
        if plain is not None:
            sides[plain] = trains[:, n_rows:]
        else:
            to, origin, on_both = targets
            sides.put(to, trains.take(origin))
            if on_both:  # a column wired to both lines: neither side's pulse
                sides ^= sides[0] & sides[1]
        # each train's run: consecutive trains of one polarity and amplitude
        runs = np.zeros(len(trains), np.int64)
        if len(trains) > 1:
            np.cumsum((polarities[1:] != polarities[:-1]) | (amplitudes[1:] != amplitudes[:-1]), out=runs[1:])
        return self.physics.pulse_trains(chip_rows, chip_cols, gates, sides, runs, amplitudes, lengths, v_gate,
                                         width, period)

    def _update_wiring(self, block: tuple[int, int, int, int], polarities: np.ndarray) -> tuple:
        """Where an update's trains land, kept per (block, polarities) until the next
        CONFIGURE_MAP: (which block rows reach a chip row, None for all; the chip rows they reach;
        the chip columns pulsed, sorted; where the column pulses land: flat indices into the
        (side, train, chip column) pulses and into the trains, and whether a train pulses both
        lines of a column; the side that takes all column pulses in the block's column order, or
        None).

        The trains leave the board on the mapped channels and reach whatever chip line each
        channel is wired to: a column pulse on a BL sets, on an SL resets. Counts are taken on the
        chip rows and columns the block's channels reach."""
        key = (block, polarities.tobytes())
        wiring = self._update_blocks.get(key)
        if wiring is not None:
            return wiring
        r0, c0, n_rows, n_cols = block
        wl, bl, sl = self._mapped
        chip_rows = self._wl_row[wl[r0:r0 + n_rows]]
        wired_rows = None if (chip_rows >= 0).all() else chip_rows >= 0
        chip_rows = chip_rows[chip_rows >= 0]
        channels = np.where(polarities[:, None] > 0, bl[c0:c0 + n_cols], sl[c0:c0 + n_cols])
        on_bl, on_sl = self._bl_col[channels], self._sl_col[channels]
        chip_cols = np.unique(np.concatenate([on_bl[on_bl >= 0], on_sl[on_sl >= 0]]))
        sided = []
        for target in (on_bl, on_sl):
            k, j = np.nonzero(target >= 0)
            sided.append((k, j, np.searchsorted(chip_cols, target[k, j])))
        if len(self._update_blocks) >= 64:  # sequences of many polarity patterns: keep a few
            self._update_blocks.clear()
        # a side on which every column pulse of every train lands, block column j on chip column j
        # (a block on the whole chip, as wired): its pulses are the trains' column bitmasks as they are
        plain = None
        for side, (k, j, column) in enumerate(sided):
            if len(k) == len(polarities) * n_cols and np.array_equal(column, j) and not len(sided[1 - side][0]):
                plain = side
        # otherwise the pulses go by flat index: train k's column j to sides[side, k, column]
        n = len(polarities)
        to = np.concatenate([(side * n + k) * len(chip_cols) + column for side, (k, j, column) in enumerate(sided)])
        origin = np.concatenate([k * (n_rows + n_cols) + n_rows + j for k, j, _ in sided])
        landed = [set(zip(k.tolist(), column.tolist())) for k, _, column in sided]
        targets = to, origin, bool(landed[0] & landed[1])
        wiring = self._update_blocks[key] = wired_rows, chip_rows, chip_cols, targets, plain
        return wiring

    def _pulse_cells(self, payload: bytes) -> bytes:
        """Cell after cell, one every period: the cell's WL at v_gate, its BL (amplitude > 0) or
        SL (< 0) at |amplitude| for its width, every other line at 0 V. One cell is biased at a
        time, so the chip model takes the whole list in one call."""
        head_size = PULSES_DTYPE.itemsize
        req = _head(payload, PULSES_DTYPE)
        n = int(req["n_cells"])
        _expect_length(payload, head_size + PULSE_CELL_DTYPE.itemsize * n)
        self._need_map("PULSE_CELLS")
        entries = np.frombuffer(payload, PULSE_CELL_DTYPE, n, head_size)
        wl, bl, sl = self._mapped
        rows, cols = entries["row"].astype(np.int64), entries["col"].astype(np.int64)
        amplitude, width = entries["amplitude"].astype(float), entries["width"].astype(float)
        period = float(req["period"])
        if n and (rows.max() >= len(wl) or cols.max() >= len(bl)):
            raise _Fault(ErrorCode.BAD_ARGUMENT, f"a cell lies outside the {len(wl)}x{len(bl)} map")
        if np.unique(rows * len(bl) + cols).size != n:
            raise _Fault(ErrorCode.BAD_ARGUMENT, "a cell appears more than once")
        self._check_dac(np.append(amplitude, req["v_gate"]))
        if not np.all(amplitude != 0):
            raise _Fault(ErrorCode.BAD_ARGUMENT, "an amplitude is 0 V (its sign gives SET or RESET)")
        if not (np.all(np.isfinite(width) & (width > 0)) and np.isfinite(period)
                and period >= width.max(initial=0.0)):
            raise _Fault(ErrorCode.BAD_ARGUMENT, f"widths must be positive and period={period:g} s "
                                                 f"at least the longest")
        # Each pulse leaves on its mapped channels and reaches whatever chip line the channel is
        # wired to: a column pulse landing on an SL resets instead of setting, and the reverse.
        row = self._wl_row[wl[rows]]
        channel = np.where(amplitude > 0, bl[cols], sl[cols])
        on_bl, on_sl = self._bl_col[channel], self._sl_col[channel]
        col = np.where(on_bl >= 0, on_bl, on_sl)
        v_cell = np.where(on_bl >= 0, 1.0, -1.0) * np.abs(amplitude)
        pending = np.flatnonzero((row >= 0) & (col >= 0))
        if n > pending.size:  # pulses on unwired lines take their slots too
            self._idle((n - pending.size) * period)
        while pending.size:  # a mis-wired map can land two pulses on one cell: one wave each
            wave = pending[np.sort(np.unique(row[pending] * self.physics.cols + col[pending], return_index=True)[1])]
            self.physics.pulse_cells(row[wave], col[wave], v_cell[wave], float(req["v_gate"]), width[wave], period)
            pending = np.setdiff1d(pending, wave)
        return b""

    def _mvm_request(self, payload: bytes, command: str, backward: bool
                     ) -> tuple[tuple[int, int, int, int], np.ndarray]:
        """Block and (batch, n_in) inputs of an MVM request, checked."""
        head_size = MVM_DTYPE.itemsize
        req = _head(payload, MVM_DTYPE)
        batch = int(req["batch"])
        n_in, n_out = ((int(req["n_cols"]), int(req["n_rows"])) if backward
                       else (int(req["n_rows"]), int(req["n_cols"])))
        _expect_length(payload, head_size + 4 * batch * n_in)
        self._need_map(command)
        block = self._block(req)
        if batch < 1:
            raise _Fault(ErrorCode.BAD_ARGUMENT, "empty batch")
        if batch * n_out > MAX_MVM_OUTPUTS:
            raise _Fault(ErrorCode.BAD_ARGUMENT, f"batch of {batch} x {n_out} outputs exceeds "
                                                 f"{MAX_MVM_OUTPUTS} per reply")
        values = np.frombuffer(payload, "<f4", batch * n_in, head_size).reshape(batch, n_in)
        if not np.abs(values).max() <= 1.0:  # (a NaN fails too; checked in f4, which f8 holds exactly)
            b, k = np.argwhere(~(np.abs(values) <= 1.0))[0]
            raise _Fault(ErrorCode.BAD_ARGUMENT, f"input {k} of vector {b} is "
                                                 f"{values[b, k]:g}, outside [-1, 1]")
        return block, values

    def _block_lines(self, r0: int, c0: int, n_rows: int, n_cols: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Channels of the block's WLs, BLs and SLs according to the host's map."""
        wl, bl, sl = self._mapped
        return wl[r0:r0 + n_rows], bl[c0:c0 + n_cols], sl[c0:c0 + n_cols]

    @contextmanager
    def _mvm_bias(self, rows: np.ndarray, bls: np.ndarray, sls: np.ndarray) -> Iterator[None]:
        """MVM routing: the block's WLs DAC at v_gate, every other mapped WL DAC at 0 V, the
        block's BLs DAC (the caller sets their volts), the block's SLs on the integrators
        (ADC), everything else floating; the previous routing and DAC values come back after."""
        saved = self._modes.copy(), self._dac.copy()
        try:
            self._modes[:] = LineMode.FLOAT
            self._dac[:] = 0.0
            self._modes[self._mapped[0]] = LineMode.DAC
            self._dac[rows] = self._mvm["v_gate"]
            self._modes[bls] = LineMode.DAC
            self._modes[sls] = LineMode.ADC
            yield
        finally:
            self._modes[:], self._dac[:] = saved

    def _block_currents(self, cells: np.ndarray, rows: np.ndarray, adc: np.ndarray
                        ) -> np.ndarray:
        """(n_rows, n_cols) current of each block row's cells into each integrator channel:
        a row channel selects the chip row wired to it, an integrator on an SL collects the
        column's current, one on a BL sources it (sign flips)."""
        row = self._wl_row[rows]
        per_row = np.where(row[:, None] >= 0, cells[row], 0.0)
        sl_col, bl_col = self._sl_col[adc], self._bl_col[adc]
        return (np.where(sl_col >= 0, per_row[:, sl_col], 0.0)
                - np.where(bl_col >= 0, per_row[:, bl_col], 0.0))

    def _integrated(self, outputs: np.ndarray) -> bytes:
        """Integrator outputs (A-equivalent) clipped to ±i_range, quantized to adc_bits (clipped in
        place: the outputs are the twin's own, just computed)."""
        i_range = self._mvm["i_range"]
        np.clip(outputs, -i_range, i_range, out=outputs)
        return quantize(outputs, self._mvm["adc_bits"], i_range).astype("<f8", copy=False).tobytes()

    def _idle(self, duration: float) -> None:
        """Let time pass with every chip line floating: no cell conducts (what apply() of
        floating lines does), so only the chip's clock moves."""
        self.physics.clock.advance(duration)

    def _need_map(self, command: str) -> None:
        if self._map is None:
            raise _Fault(ErrorCode.NOT_CONFIGURED, f"{command} needs CONFIGURE_MAP first")

    @property
    def _mapped(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The host's map (WL, BL, SL channels); each request that uses it checked it with _need_map."""
        if self._map is None:
            raise AssertionError("the map is used before _need_map checked that it exists")
        return self._map

    def _block(self, req: np.void) -> tuple[int, int, int, int]:
        """(r0, c0, n_rows, n_cols) of a request, which must lie inside the map."""
        wl, bl, _ = self._mapped
        r0, c0, n_rows, n_cols = (int(req[k]) for k in ("r0", "c0", "n_rows", "n_cols"))
        if n_rows < 1 or n_cols < 1 or r0 + n_rows > len(wl) or c0 + n_cols > len(bl):
            raise _Fault(ErrorCode.BAD_ARGUMENT,
                         f"block of {n_rows}x{n_cols} at ({r0}, {c0}) is empty or outside the "
                         f"{len(wl)}x{len(bl)} map")
        return r0, c0, n_rows, n_cols

    def _adc_currents(self, adc_channels: np.ndarray, duration: float) -> np.ndarray:
        """Bias the chip for `duration` and return the current into each ADC channel (A)."""
        cells = self.physics.apply(*self.line_voltages(np.nan), duration)
        column = cells.sum(axis=0)  # BL -> SL current of each chip column
        sl_col, bl_col = self._sl_col[adc_channels], self._bl_col[adc_channels]
        # A channel on an SL collects the column current; on a BL it sources it (sign flips).
        return (np.where(sl_col >= 0, column[sl_col], 0.0)
                - np.where(bl_col >= 0, column[bl_col], 0.0))

    @staticmethod
    def _check_dac(volts: np.ndarray) -> None:
        bad = volts[~(np.abs(volts) <= DAC_LIMIT)]
        if len(bad):
            raise _Fault(ErrorCode.DAC_RANGE,
                         f"{float(bad[0]):g} V is outside the DAC range ±{DAC_LIMIT:g} V")
