"""FPGA routing board: the driver.

The wire format is specified in docs/fpga-protocol.md and implemented in instruments/fpga_wire.py,
which the firmware emulator shares; this module checks arguments, sends requests and reads replies.
The driver knows commands and replies, never protocols or the chip's physics.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from .base import InstrumentError
from .fpga_wire import (
    ACK,
    DAC_DTYPE,
    DAC_LIMIT,
    LINK_BAUD,
    MAX_ADC_BITS,
    MAX_BLOCK_CELLS,
    MAX_DAC_BITS,
    MAX_LONG_PAYLOAD,
    MAX_MVM_OUTPUTS,
    MAX_PAYLOAD,
    MAX_PULSE_CELLS,
    MAX_SEQUENCE_TRAINS,
    MAX_TRAIN_LENGTH,
    MODEL,
    MVM_CONFIG_DTYPE,
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
    encode_frame,
)
from .transport import InstrumentTimeout, Transport, TransportError, exchange, retry_grace

# Re-exported: labctl.station, labctl.crossbar and labctl.cli take the link rate and line modes from here.
__all__ = ["LINK_BAUD", "BoardError", "FpgaBoard", "FrameError", "LineMode"]


class BoardError(InstrumentError):
    """The board rejected a command; `code` is an ErrorCode value, `message` the board's text."""

    def __init__(self, code: int, message: str, where: str = "board"):
        try:
            label = ErrorCode(code).name
        except ValueError:
            label = "UNKNOWN"
        super().__init__(f"{where}: error {code} ({label}): {message}")
        self.code = code
        self.message = message


class FrameError(TransportError):
    """A frame was corrupt or lost: bad start byte, CRC mismatch, wrong sequence number or command."""


def _u16(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{name}={value} is outside 0..65535")
    return int(value)


def _dac_volts(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and abs(value) <= DAC_LIMIT):
        raise ValueError(f"{name}={value:g} V is outside the DAC range ±{DAC_LIMIT:g} V")
    return value


def _int_in(name: str, value: object, lo: int, hi: int, also: Sequence[int] = ()) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if not (lo <= value <= hi or value in also):
        extra = "".join(f"{a} or " for a in also)
        raise ValueError(f"{name}={value} must be {extra}{lo}..{hi}")
    return int(value)


def _positive(name: str, value: float, unit: str, upper: float = math.inf) -> float:
    value = float(value)
    if not (math.isfinite(value) and 0 < value <= upper):
        limit = f" and at most {upper:g} {unit}" if math.isfinite(upper) else ""
        raise ValueError(f"{name}={value:g} {unit} must be positive{limit}")
    return value


def _update_pulse(polarity: int, amplitude: float) -> tuple[int, float]:
    """Checked (polarity, amplitude) of a parallel update's column pulses."""
    if isinstance(polarity, bool) or polarity not in (1, -1):
        raise ValueError(f"polarity={polarity!r} must be +1 (SET) or -1 (RESET)")
    return int(polarity), _positive("amplitude", _dac_volts("amplitude", amplitude), "V", DAC_LIMIT)


def per_item(values, n: int, dtype=None) -> np.ndarray:
    """`values` as one value per item (shape (n,)): broadcast from one value, as it is when it
    already has that shape (np.broadcast_to alone costs ~5 us either way)."""
    values = np.asarray(values, dtype=dtype)
    return values if values.shape == (n,) else np.broadcast_to(values, (n,))


def _sequence_entries(lengths: np.ndarray, polarities: np.ndarray, amplitudes: np.ndarray) -> np.ndarray:
    """Checked SEQUENCE_TRAIN_DTYPE entries of trains with these lengths, polarities and
    amplitudes, checked all at once; the first bad train raises the error its scalar checks
    (_int_in, _update_pulse) give."""
    numeric = lengths.dtype.kind in "iu" and polarities.dtype.kind in "iuf"
    if numeric:
        volts = np.asarray(amplitudes, dtype=float)
        ok = ((lengths >= 1) & (lengths <= MAX_TRAIN_LENGTH) & ((polarities == 1) | (polarities == -1))
              & (volts > 0) & (volts <= DAC_LIMIT))
    for k in np.flatnonzero(~ok)[:1] if numeric else range(1):  # wrong dtypes: the first train fails
        _int_in(f"train_lengths[{k}]", lengths[k].item(), 1, MAX_TRAIN_LENGTH)
        _update_pulse(polarities[k].item(), amplitudes[k])
    entries = np.empty(len(lengths), SEQUENCE_TRAIN_DTYPE)
    entries["train_length"], entries["polarity"], entries["amplitude"] = lengths, polarities, amplitudes
    return entries


def _update_timing(width: float, period: float, v_gate: float) -> tuple[float, float, float]:
    """Checked (width, period, v_gate) of a parallel update's slots."""
    width = _positive("width", width, "s")
    period = _positive("period", period, "s")
    if period < width:
        raise ValueError(f"period={period:g} s must be at least the pulse width={width:g} s")
    return width, period, _dac_volts("v_gate", v_gate)


_ROUTING = (Command.ROUTE, Command.SET_DAC)  # the requests that leave lines routed or biased


class FpgaBoard:
    """Driver for the FPGA routing board. Every call sends one frame and waits for its reply
    (read_block splits blocks larger than one reply can carry)."""

    def __init__(self, transport: Transport, name: str = "board"):
        self.transport = transport
        self.name = name
        #: (rows, cols) of the map last sent with configure_map, else None
        self.map_shape: tuple[int, int] | None = None
        #: MVM settings last sent with configure_mvm, else None (the board's power-up defaults
        #: are MVM_DEFAULTS)
        self.mvm_config: dict[str, float | int] | None = None
        self._seq = 0
        self._decoder = self._new_decoder()
        self._frames: deque[Frame] = deque()
        # Requests whose reply never came: a late reply with one of these seqs is dropped.
        self._abandoned: set[int] = set()
        # The last request answered: a second reply to it (a duplicate, or the reply to its
        # resend) is dropped too.
        self._answered: int | None = None
        self._resync = False
        #: True while the board is known to be in its safe state: RELEASE_ALL was acknowledged and
        #: since then only requests went out that restore every channel's mode and DAC value before
        #: they reply (docs/fpga-protocol.md: READ_BLOCK, the analog-AI commands and those that
        #: route nothing); a ROUTE, a SET_DAC or any request that failed ends it.
        self.released = False

    @property
    def _where(self) -> str:
        return f"{self.name} at {self.transport.resource}"

    @property
    def identity(self) -> str:
        """The board's identification, e.g. ``LABCTL,FPGA-1T1R,<serial>,<firmware>``."""
        return self._transact(Command.IDENTIFY).decode("ascii", "replace")

    def check_identity(self) -> str:
        """Read the identity; raise InstrumentError unless the model is FPGA-1T1R."""
        idn = self.identity
        fields = idn.split(",")
        if len(fields) < 2 or fields[1].strip() != MODEL:
            raise InstrumentError(f"{self._where}: not an {MODEL} board (identity {idn!r})")
        return idn

    def configure_map(self, wl_channels: Iterable[int], bl_channels: Iterable[int],
                      sl_channels: Iterable[int]) -> None:
        """Tell the board which channel drives each WL (row), BL and SL (column) of the chip."""
        lines = [[_u16(f"{kind}[{i}]", c) for i, c in enumerate(chs)]
                 for kind, chs in (("wl", wl_channels), ("bl", bl_channels), ("sl", sl_channels))]
        wl, bl, sl = lines
        if not wl or not bl or len(bl) != len(sl):
            raise ValueError(f"map needs >= 1 WL and equal, nonzero BL/SL counts "
                             f"(got {len(wl)} WL, {len(bl)} BL, {len(sl)} SL)")
        channels = wl + bl + sl
        if len(set(channels)) != len(channels):
            raise ValueError("map uses a channel for more than one chip line")
        payload = np.array([len(wl), len(bl), *channels], "<u2").tobytes()
        self._transact(Command.CONFIGURE_MAP, payload)
        self.map_shape = (len(wl), len(bl))

    def route(self, assignments: Mapping[int, LineMode]) -> None:
        """Switch channels to modes, all in one batch (the board applies all or none)."""
        entries = np.array([(_u16("channel", ch), mode if type(mode) is LineMode else LineMode(mode))
                            for ch, mode in assignments.items()], ROUTE_DTYPE)
        self._transact(Command.ROUTE, entries.tobytes())

    def set_dac(self, volts: Mapping[int, float]) -> None:
        """Set DAC channel outputs (V, within ±5 V); on a WL channel this is the gate voltage."""
        entries = np.array([(_u16("channel", ch), _dac_volts(f"dac[{ch}]", v))
                            for ch, v in volts.items()], DAC_DTYPE)
        self._transact(Command.SET_DAC, entries.tobytes())

    def release_all(self) -> None:
        """Safe state: every DAC to 0 V, then every channel to GROUND (the map is kept)."""
        self._transact(Command.RELEASE_ALL)

    def read_block(self, v_read: float, v_gate: float, r0: int = 0, c0: int = 0,
                   n_rows: int | None = None, n_cols: int | None = None,
                   t_read: float = 1e-6) -> np.ndarray:
        """Row-serial read of a block: currents (A, BL to SL) of shape (n_rows, n_cols).

        n_rows/n_cols default to the rest of the map from r0/c0 (needs configure_map first).
        Each row is read for t_read seconds with its WL gate at v_gate and BL at v_read.
        """
        v_read, v_gate = _dac_volts("v_read", v_read), _dac_volts("v_gate", v_gate)
        t_read = float(t_read)
        if not (math.isfinite(t_read) and t_read > 0):
            raise ValueError(f"t_read={t_read:g} s must be positive")
        r0, c0, n_rows, n_cols = self._block(r0, c0, n_rows, n_cols)
        if n_cols > MAX_BLOCK_CELLS:
            raise ValueError(f"n_cols={n_cols} exceeds {MAX_BLOCK_CELLS} cells per reply")
        step = MAX_BLOCK_CELLS // n_cols
        out = np.empty((n_rows, n_cols))
        for r in range(0, n_rows, step):
            k = min(step, n_rows - r)
            request = np.array([(v_read, v_gate, t_read, r0 + r, c0, k, n_cols)], READ_DTYPE)
            data = self._transact(Command.READ_BLOCK, request.tobytes(), reply_bytes=8 * k * n_cols,
                                 busy=k * t_read)
            out[r:r + k] = self._array(data, "<f8", k * n_cols).reshape(k, n_cols)
        return out

    def configure_mvm(self, v_read: float = 0.2, v_gate: float = 1.2, t_int: float = 1e-6,
                      dac_bits: int = 0, adc_bits: int = 0, i_range: float = 1e-3) -> None:
        """Set the board's MVM settings (kept until power-down; RELEASE_ALL keeps them).

        v_read (V, > 0): BL read voltage; v_gate (V): WL gate voltage of an active row;
        t_int (s): integration time per input unit (a forward input x is a gate pulse of
        |x| * t_int); dac_bits / adc_bits: input / output resolution, sign included
        (0 = ideal, else 2..16 / 2..24); i_range (A): full-scale output, beyond ±i_range the
        outputs clip.
        """
        config = {
            "v_read": _positive("v_read", _dac_volts("v_read", v_read), "V", DAC_LIMIT),
            "v_gate": _dac_volts("v_gate", v_gate),
            "t_int": _positive("t_int", t_int, "s"),
            "dac_bits": _int_in("dac_bits", dac_bits, 2, MAX_DAC_BITS, also=(0,)),
            "adc_bits": _int_in("adc_bits", adc_bits, 2, MAX_ADC_BITS, also=(0,)),
            "i_range": _positive("i_range", i_range, "A"),
        }
        if not 0 < np.float32(config["t_int"]) < np.inf:
            raise ValueError(f"t_int={config['t_int']:g} s is outside the f4 range")
        fields = MVM_CONFIG_DTYPE.names
        if fields is None:  # unreachable: MVM_CONFIG_DTYPE is a structured dtype
            raise AssertionError("MVM_CONFIG_DTYPE has no fields")
        request = np.array([tuple(config[k] for k in fields)], MVM_CONFIG_DTYPE)
        self._transact(Command.CONFIGURE_MVM, request.tobytes())
        self.mvm_config = config

    def mvm_forward(self, x: np.ndarray, r0: int = 0, c0: int = 0, n_rows: int | None = None,
                    n_cols: int | None = None) -> np.ndarray:
        """Forward MVM on the block: y[b, j] = sum_i I_ij(v_read) x[b, i] (A).

        x has shape (batch, n_rows) (or (n_rows,) for one vector), values in [-1, 1]; the
        result has shape (batch, n_cols) (or (n_cols,)), clipped to ±i_range and quantized as
        set by configure_mvm. n_rows defaults to x's length, n_cols to the rest of the map.
        Batches larger than one frame carries are split over several requests.
        """
        return self._mvm(Command.MVM_FORWARD, "x", x, r0, c0, n_rows, n_cols)

    def mvm_backward(self, d: np.ndarray, r0: int = 0, c0: int = 0, n_rows: int | None = None,
                     n_cols: int | None = None) -> np.ndarray:
        """Transposed MVM on the block: z[b, i] = sum_j I_ij(d[b, j] v_read) (A), row-serial.

        d has shape (batch, n_cols) (or (n_cols,)), values in [-1, 1]; the result has shape
        (batch, n_rows) (or (n_rows,)), clipped and quantized like mvm_forward. n_cols defaults
        to d's length, n_rows to the rest of the map.
        """
        return self._mvm(Command.MVM_BACKWARD, "d", d, r0, c0, n_rows, n_cols)

    def parallel_update(self, row_trains: Sequence[int] | np.ndarray,
                        col_trains: Sequence[int] | np.ndarray, train_length: int,
                        polarity: int, amplitude: float, width: float, period: float,
                        v_gate: float, r0: int = 0, c0: int = 0, n_rows: int | None = None,
                        n_cols: int | None = None) -> int:
        """Parallel (outer-product) update of the block with coincident pulse trains.

        row_trains (n_rows) and col_trains (n_cols) are bitmasks: bit k set = a pulse in slot k
        of a train of `train_length` (1..32) slots, one every `period` s. A row pulse opens the
        row's gates at v_gate; a column pulse of `amplitude` V (> 0) lasting `width` s goes on
        the BL (polarity +1, SET) or the SL (polarity -1, RESET). A cell steps once per slot in
        which its row and its column both pulse. Returns the total number of coincidences.
        n_rows / n_cols default to the trains' lengths.
        """
        length = _int_in("train_length", train_length, 1, MAX_TRAIN_LENGTH)
        polarity, amplitude = _update_pulse(polarity, amplitude)
        width, period, v_gate = _update_timing(width, period, v_gate)
        rows = self._trains("row_trains", row_trains, length)
        cols = self._trains("col_trains", col_trains, length)
        r0, c0, n_rows, n_cols = self._update_block(r0, c0, n_rows, n_cols, len(rows), len(cols))
        head = np.array([(r0, c0, n_rows, n_cols, length, polarity, amplitude, width, period,
                          v_gate)], UPDATE_DTYPE)
        data = self._transact(Command.PARALLEL_UPDATE, head.tobytes(), rows.tobytes(), cols.tobytes(),
                              reply_bytes=8, busy=length * period)
        return int(self._array(data, "<u8", 1)[0])

    def update_sequence(self, row_trains: np.ndarray, col_trains: np.ndarray,
                        train_lengths: Sequence[int] | np.ndarray, polarities: Sequence[int] | np.ndarray,
                        amplitudes: Sequence[float] | np.ndarray, width: float, period: float,
                        v_gate: float, r0: int = 0, c0: int = 0, n_rows: int | None = None,
                        n_cols: int | None = None) -> np.ndarray:
        """Parallel updates of one block fired back to back: train k (row_trains[k] (n_rows),
        col_trains[k] (n_cols), train_lengths[k] slots, polarities[k], amplitudes[k] V) as one
        PARALLEL_UPDATE, the next train starting when it ends; width, period and v_gate are
        shared. One request carries as many trains as fit in a long frame (the rest go in the
        next). Returns the coincidences of each train (n_trains,).
        """
        rows, cols = np.asarray(row_trains), np.asarray(col_trains)
        if rows.ndim != 2 or cols.ndim != 2 or len(rows) != len(cols) or not len(rows):
            raise ValueError(f"row_trains and col_trains must be (n_trains, n_rows) and "
                             f"(n_trains, n_cols) with n_trains >= 1, got {rows.shape} and {cols.shape}")
        n = len(rows)
        lengths, polarities, amplitudes = (per_item(a, n) for a in (train_lengths, polarities, amplitudes))
        entries = _sequence_entries(lengths, polarities, amplitudes)
        width, period, v_gate = _update_timing(width, period, v_gate)
        r0, c0, n_rows, n_cols = self._update_block(r0, c0, n_rows, n_cols, rows.shape[1], cols.shape[1])
        bits = np.concatenate([self._trains("row_trains", rows.reshape(-1), MAX_TRAIN_LENGTH).reshape(n, -1),
                               self._trains("col_trains", cols.reshape(-1), MAX_TRAIN_LENGTH).reshape(n, -1)], axis=1)
        used = np.bitwise_or.reduce(bits, axis=1).astype(np.uint64)  # each train's slots, over its lines
        late = np.flatnonzero(used >> entries["train_length"].astype(np.uint64))
        if len(late):
            k = late[0]
            raise ValueError(f"train {k} has bits outside its {entries['train_length'][k]} slots")
        per_request = min(MAX_SEQUENCE_TRAINS, (MAX_LONG_PAYLOAD - SEQUENCE_DTYPE.itemsize)
                          // (SEQUENCE_TRAIN_DTYPE.itemsize + 4 * (n_rows + n_cols)))
        counts = np.empty(n, np.uint64)
        for k in range(0, n, per_request):
            part = slice(k, k + per_request)
            head = np.array([(r0, c0, n_rows, n_cols, len(entries[part]), width, period, v_gate)],
                            SEQUENCE_DTYPE)
            data = self._transact(Command.UPDATE_SEQUENCE, head.tobytes(), entries[part].tobytes(),
                                  bits[part].tobytes(), reply_bytes=8 * len(entries[part]),
                                  busy=float(entries[part]["train_length"].sum()) * period)
            counts[part] = self._array(data, "<u8", len(entries[part]))
        return counts

    def _update_block(self, r0: int, c0: int, n_rows: int | None, n_cols: int | None, trains_rows: int,
                      trains_cols: int) -> tuple[int, int, int, int]:
        """The checked block of an update whose trains have trains_rows / trains_cols lines."""
        r0, c0, n_rows, n_cols = self._block(r0, c0, trains_rows if n_rows is None else n_rows,
                                             trains_cols if n_cols is None else n_cols)
        if (trains_rows, trains_cols) != (n_rows, n_cols):
            raise ValueError(f"{trains_rows} row_trains and {trains_cols} col_trains for a block of "
                             f"{n_rows}x{n_cols} cells")
        if UPDATE_DTYPE.itemsize + 4 * (n_rows + n_cols) > MAX_PAYLOAD:
            raise ValueError(f"a block of {n_rows}x{n_cols} cells needs a "
                             f"{UPDATE_DTYPE.itemsize + 4 * (n_rows + n_cols)}-byte request, over the "
                             f"{MAX_PAYLOAD}-byte frame limit")
        return r0, c0, n_rows, n_cols

    def pulse_cells(self, rows: Sequence[int] | np.ndarray, cols: Sequence[int] | np.ndarray,
                    amplitudes: Sequence[float] | np.ndarray, widths: Sequence[float] | np.ndarray,
                    v_gate: float, period: float) -> None:
        """One pulse on each listed cell (map coordinates, distinct), cell after cell, pulse k
        starting at k * period: the cell's WL at v_gate (every other line at 0 V) and
        V_BL - V_SL = amplitudes[k] for widths[k] s (> 0 on the BL, SET; < 0 on the SL, RESET).
        A list longer than one frame holds (MAX_PULSE_CELLS) goes out in several requests.
        """
        rows, cols = (np.asarray(a).reshape(-1) for a in (rows, cols))
        n = rows.size
        amplitudes, widths = (per_item(a, n, float) for a in (amplitudes, widths))
        if cols.size != n:
            raise ValueError(f"{n} rows and {cols.size} cols: one of each per cell")
        for name, lines in (("rows", rows), ("cols", cols)):
            if n and not (np.issubdtype(lines.dtype, np.integer) and lines.min() >= 0 and lines.max() <= 0xFFFF):
                raise ValueError(f"{name} must be integers in 0..65535")
        if np.unique(rows.astype(np.int64) * 0x10000 + cols).size != n:
            raise ValueError("cells must be distinct (one pulse per cell per request)")
        if not np.all((np.abs(amplitudes) > 0) & (np.abs(amplitudes) <= DAC_LIMIT)):
            raise ValueError(f"amplitudes must be nonzero and within ±{DAC_LIMIT:g} V")
        if not np.all((widths > 0) & np.isfinite(widths)):
            raise ValueError("widths must be positive (s)")
        period = _positive("period", period, "s")
        if n and period < widths.max():
            raise ValueError(f"period={period:g} s must be at least the longest width={widths.max():g} s")
        v_gate = _dac_volts("v_gate", v_gate)
        for start in range(0, n, MAX_PULSE_CELLS):
            part = slice(start, start + MAX_PULSE_CELLS)
            entries = np.empty(len(rows[part]), PULSE_CELL_DTYPE)
            entries["row"], entries["col"] = rows[part], cols[part]
            entries["amplitude"], entries["width"] = amplitudes[part], widths[part]
            head = np.array([(len(entries), v_gate, period)], PULSES_DTYPE)
            self._transact(Command.PULSE_CELLS, head.tobytes(), entries.tobytes(), busy=len(entries) * period)

    def status(self) -> tuple[np.ndarray, np.ndarray]:
        """(mode per channel as uint8 LineMode values, DAC volts per channel)."""
        data = self._transact(Command.STATUS)
        n = int.from_bytes(data[:2], "little")
        if len(data) != 2 + 5 * n:
            raise InstrumentError(f"{self._where}: STATUS reply of {len(data)} bytes "
                                  f"for {n} channels")
        modes = np.frombuffer(data, np.uint8, n, 2).copy()
        dac = np.frombuffer(data, "<f4", n, 2 + n).astype(float)
        return modes, dac

    def close(self) -> None:
        self.transport.close()

    def _block(self, r0: int, c0: int, n_rows: int | None, n_cols: int | None
               ) -> tuple[int, int, int, int]:
        """Checked block; a missing size is the rest of the map (which must then be known)."""
        if (n_rows is None or n_cols is None) and self.map_shape is None:
            raise ValueError(f"{self._where}: block size unknown; call configure_map() first "
                             f"or pass n_rows and n_cols")
        rows, cols = self.map_shape or (0xFFFF, 0xFFFF)
        r0, c0 = _u16("r0", r0), _u16("c0", c0)
        n_rows = rows - r0 if n_rows is None else _u16("n_rows", n_rows)
        n_cols = cols - c0 if n_cols is None else _u16("n_cols", n_cols)
        if n_rows < 1 or n_cols < 1 or r0 + n_rows > rows or c0 + n_cols > cols:
            raise ValueError(f"block of {n_rows}x{n_cols} cells at row {r0}, col {c0} is empty "
                             f"or outside the {rows}x{cols} map")
        return r0, c0, n_rows, n_cols

    def _mvm(self, cmd: Command, name: str, values: np.ndarray, r0: int, c0: int,
             n_rows: int | None, n_cols: int | None) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        if values.ndim not in (1, 2):
            raise ValueError(f"{name} must be one vector or a (batch, n) array, "
                             f"got shape {values.shape}")
        batch = values.reshape(-1, values.shape[-1])
        backward = cmd == Command.MVM_BACKWARD
        if backward and n_cols is None:
            n_cols = batch.shape[1]
        elif not backward and n_rows is None:
            n_rows = batch.shape[1]
        r0, c0, n_rows, n_cols = self._block(r0, c0, n_rows, n_cols)
        n_in, n_out = (n_cols, n_rows) if backward else (n_rows, n_cols)
        if batch.shape[1] != n_in:
            raise ValueError(f"{name} has {batch.shape[1]} entries per vector; the block has "
                             f"{n_in} {'columns' if backward else 'rows'}")
        if not np.abs(batch).max() <= 1.0:  # also refuses NaN
            b, k = np.argwhere(~(np.abs(batch) <= 1.0))[0]
            where = f"{name}[{b}, {k}]" if values.ndim == 2 else f"{name}[{k}]"
            raise ValueError(f"{where}={batch[b, k]:g} is outside [-1, 1]")
        per_frame = min(MAX_MVM_OUTPUTS // n_out,
                        (MAX_LONG_PAYLOAD - MVM_DTYPE.itemsize) // (4 * n_in), 0xFFFF)
        out = np.empty((len(batch), n_out))
        for b in range(0, len(batch), per_frame):
            chunk = batch[b:b + per_frame]
            head = np.array([(r0, c0, n_rows, n_cols, len(chunk))], MVM_DTYPE)
            data = self._transact(cmd, head.tobytes(), chunk.astype("<f4").tobytes(),
                                  reply_bytes=8 * len(chunk) * n_out)
            out[b:b + len(chunk)] = self._array(data, "<f8", chunk.size // n_in * n_out
                                                ).reshape(len(chunk), n_out)
        return out[0] if values.ndim == 1 else out

    @staticmethod
    def _trains(name: str, trains: Sequence[int] | np.ndarray, length: int) -> np.ndarray:
        """Pulse-train bitmasks as <u4, checked: integers with no pulse after slot length-1."""
        trains = np.asarray(trains)
        if trains.ndim != 1:
            raise ValueError(f"{name} must be one bitmask per line, got shape {trains.shape}")
        if trains.size and trains.dtype.kind not in "iu":
            raise TypeError(f"{name} must be integer bitmasks, got dtype {trains.dtype}")
        if trains.size and not ((trains.dtype.kind == "u" or trains.min() >= 0) and trains.max() < 2 ** length):
            bad = np.flatnonzero((trains < 0) | (trains >= 2 ** length))
            raise ValueError(f"{name}[{bad[0]}]={trains[bad[0]]} is not a {length}-slot train: it has bits "
                             f"outside the {length} slots (0..2**train_length - 1)")
        return trains.astype("<u4", copy=False)

    def _array(self, data: bytes, dtype: str, count: int) -> np.ndarray:
        if len(data) != count * np.dtype(dtype).itemsize:
            raise InstrumentError(f"{self._where}: reply of {len(data)} bytes, expected "
                                  f"{count} x {dtype}")
        return np.frombuffer(data, dtype)

    def _transact(self, cmd: Command, *payload: bytes, reply_bytes: int = 0, busy: float = 0.0) -> bytes:
        """Send one request (its payload in parts, see encode_frame); return the reply's data
        after an ACK status.

        Retry policy (docs/fpga-protocol.md, "Retry"; instruments/transport.py `exchange`): when
        no reply comes within the timeout the same frame, with the same sequence number, is sent
        once more; the board executes a request it has not executed and answers a duplicate of
        the last one from its last reply, so the request is executed exactly once either way.
        The resend waits the retry grace plus its link time (`reply_bytes` expected back) and
        the request's duration (`busy` s). A corrupt reply or a BAD_CRC status is not retried.
        """
        seq = self._seq
        frame = encode_frame(seq, cmd, *payload)
        released, self.released = self.released, False  # unknown until the reply is in
        self._seq = (seq + 1) % 256
        self._abandoned.discard(seq)
        if self._answered == seq:
            self._answered = None

        def attempt() -> bytes:
            self.transport.write(frame)
            return self._reply(seq, cmd)

        def retry() -> bytes:
            # The timed-out read may have lost bytes: a half-decoded frame is now meaningless,
            # and what comes now may be garbage or the late reply (to this same seq).
            self._decoder = self._new_decoder()
            self._resync = True
            self.transport.write(frame)
            return self._reply(seq, cmd)

        baud = float(getattr(self.transport, "baudrate", LINK_BAUD) or LINK_BAUD)
        link = 10 * (len(frame) + reply_bytes + 12) / baud
        try:
            reply = exchange(self.transport, f"{self._where}: {cmd.name} (seq {seq})", attempt, retry,
                             grace=retry_grace(self.transport, link + busy))
        except BaseException as exc:  # a transport error, or Ctrl-C while the reply was on its way
            self._abandoned.add(seq)  # its reply, if it comes, is skipped by the next request
            self._resync = True
            if isinstance(exc, InstrumentTimeout):
                # A timed-out read may have lost bytes: a half-decoded frame is now meaningless.
                self._decoder = self._new_decoder()
            raise
        self._answered = seq
        status, data = reply[0], reply[1:]
        if status == ACK:
            self.released = cmd == Command.RELEASE_ALL or (released and cmd not in _ROUTING)
            return data
        message = data.decode("utf-8", "replace")
        if status == ErrorCode.BAD_CRC:
            raise FrameError(f"{self._where}: the board received a corrupt {cmd.name} frame "
                             f"({message}); it was not executed")
        raise BoardError(status, message, f"{self._where}: {cmd.name}")

    def _reply(self, seq: int, cmd: Command) -> bytes:
        while True:
            frame = self._next_frame()
            if frame.crc_ok and frame.seq != seq and (frame.seq in self._abandoned or frame.seq == self._answered):
                continue  # a late or second reply to an earlier request (its seq, not this one's)
            if self._resync and not frame.crc_ok:
                continue
            if not frame.crc_ok:
                raise FrameError(f"{self._where}: CRC mismatch in the reply to {cmd.name}")
            if frame.seq != seq:
                raise FrameError(f"{self._where}: reply has seq {frame.seq}, expected {seq} "
                                 f"({cmd.name})")
            if frame.cmd != cmd | REPLY_FLAG:
                raise FrameError(f"{self._where}: reply command 0x{frame.cmd:02X}, expected "
                                 f"0x{cmd | REPLY_FLAG:02X} ({cmd.name})")
            if not frame.payload:
                raise FrameError(f"{self._where}: reply to {cmd.name} has no status byte")
            self._resync = False
            return frame.payload

    @staticmethod
    def _new_decoder() -> FrameDecoder:
        """Only MVM replies are long: a false start byte in line noise cannot make the driver
        wait for megabytes."""
        return FrameDecoder(MAX_PAYLOAD, {cmd | REPLY_FLAG: MAX_LONG_PAYLOAD
                                          for cmd in (Command.MVM_FORWARD, Command.MVM_BACKWARD)})

    def _next_frame(self) -> Frame:
        while not self._frames:
            data = self.transport.read(self._decoder.needed)
            discarded = self._decoder.discarded
            frames = self._decoder.feed(data)
            self._frames.extend(frames)
            if not frames and self._decoder.discarded > discarded and not self._resync:
                raise FrameError(f"{self._where}: reply does not start with 0xA5 or 0xA6 "
                                 f"(read {data[:8].hex(' ')})")
        return self._frames.popleft()
