"""Firmware emulator of the FPGA routing board: parses and answers the same frames as the real
board (docs/fpga-protocol.md) and drives the simulated chip through its physical wiring."""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from instruments.fpga import (ACK, DAC_DTYPE, DAC_LIMIT, MAX_BLOCK_CELLS, MAX_PAYLOAD, MODEL,
                              READ_DTYPE, REPLY_FLAG, ROUTE_DTYPE, Command, ErrorCode, Frame,
                              FrameDecoder, LineMode, encode_frame)

FIRMWARE = "1.0"
MAX_CHANNELS = (MAX_PAYLOAD - 3) // 5  # the STATUS reply must fit in one frame


class ArrayPhysics(Protocol):
    """What the board needs from the chip model (sim_backend.physics)."""

    rows: int
    cols: int

    def apply(self, v_wl: np.ndarray, v_bl: np.ndarray, v_sl: np.ndarray,
              duration: float) -> np.ndarray: ...


class _Fault(Exception):
    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code


def _expect_length(payload: bytes, n: int) -> None:
    if len(payload) != n:
        raise _Fault(ErrorCode.BAD_LENGTH, f"payload of {len(payload)} bytes, expected {n}")


class VirtualBoard:
    """The board with its channels wired to a simulated chip.

    wl/bl/sl_channels give the board channel physically wired to each chip line; the host's
    CONFIGURE_MAP says which channels it *believes* drive which lines, so a wrong map misroutes
    exactly as on the bench. Power-up: every channel GROUND, every DAC 0 V, no map.
    """

    def __init__(self, physics: ArrayPhysics, wl_channels: Sequence[int],
                 bl_channels: Sequence[int], sl_channels: Sequence[int],
                 n_channels: int | None = None, serial: str = "SIM0001"):
        wiring = tuple(np.asarray(c, dtype=np.int64).reshape(-1)
                       for c in (wl_channels, bl_channels, sl_channels))
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
        self._wiring = wiring
        # chip column driven by each channel's BL / SL wire, -1 if none (for the ADC's reading)
        self._bl_col = np.full(n_channels, -1)
        self._bl_col[wiring[1]] = np.arange(physics.cols)
        self._sl_col = np.full(n_channels, -1)
        self._sl_col[wiring[2]] = np.arange(physics.cols)
        self._modes = np.full(n_channels, LineMode.GROUND, np.uint8)
        self._dac = np.zeros(n_channels, np.float32)
        self._map: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        # The longest valid request is a SET_DAC naming every channel once.
        self._decoder = FrameDecoder(max_payload=DAC_DTYPE.itemsize * n_channels)
        self._handlers = {
            Command.IDENTIFY: self._identify, Command.STATUS: self._status,
            Command.CONFIGURE_MAP: self._configure_map, Command.ROUTE: self._route,
            Command.SET_DAC: self._set_dac, Command.RELEASE_ALL: self._release_all,
            Command.READ_BLOCK: self._read_block,
        }

    @property
    def n_channels(self) -> int:
        return len(self._modes)

    def handle(self, data: bytes) -> bytes:
        """Bytes from the host in (any chunking), reply frames out.

        A corrupt frame that starts where the previous valid frame ended gets a BAD_CRC reply;
        garbage and corrupt candidates met while resynchronising are skipped silently.
        """
        out = bytearray()
        for frame in self._decoder.feed(data):
            if frame.crc_ok:
                status, body = self._execute(frame)
            elif frame.in_sync:
                status, body = ErrorCode.BAD_CRC, (
                    f"corrupt frame (CRC mismatch or length over "
                    f"{self._decoder.max_payload} bytes)").encode()
            else:
                continue
            out += encode_frame(frame.seq, frame.cmd | REPLY_FLAG, bytes((status,)) + body)
        return bytes(out)

    def line_modes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(wl_modes, bl_modes, sl_modes): the LineMode value of each chip line's channel."""
        return tuple(self._modes[ch].astype(int) for ch in self._wiring)

    def line_voltages(self, v_smu: float, v_pulse: float = float("nan")
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(v_wl, v_bl, v_sl) in volts on each chip line, NaN = floating, given the SMU and pulse
        generator outputs at the board's inputs."""
        table = np.array([np.nan, 0.0, v_smu, v_pulse, np.nan, 0.0])  # indexed by LineMode
        volts = table[self._modes]
        is_dac = self._modes == LineMode.DAC
        volts[is_dac] = self._dac[is_dac]
        return tuple(volts[ch] for ch in self._wiring)

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
        if len(np.unique(channels)) != len(channels):
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

    def _route(self, payload: bytes) -> bytes:
        entries, channels = self._channel_entries(payload, ROUTE_DTYPE, "ROUTE")
        bad = entries["mode"][entries["mode"] > max(LineMode)]
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
        if self._map is None:
            raise _Fault(ErrorCode.NOT_CONFIGURED, "READ_BLOCK needs CONFIGURE_MAP first")
        req = np.frombuffer(payload, READ_DTYPE)[0]
        self._check_dac(np.array([req["v_read"], req["v_gate"]]))
        t_read = float(req["t_read"])
        if not (np.isfinite(t_read) and t_read > 0):
            raise _Fault(ErrorCode.BAD_ARGUMENT, f"t_read={t_read:g} s must be positive")
        wl, bl, sl = self._map
        r0, c0, n_rows, n_cols = (int(req[k]) for k in ("r0", "c0", "n_rows", "n_cols"))
        if n_rows < 1 or n_cols < 1 or r0 + n_rows > len(wl) or c0 + n_cols > len(bl):
            raise _Fault(ErrorCode.BAD_ARGUMENT, f"block of {n_rows}x{n_cols} at ({r0}, {c0}) "
                                                 f"is empty or outside the {len(wl)}x{len(bl)} map")
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
