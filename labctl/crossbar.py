"""The crossbar API: chip-level operations (select a cell, read, sweep) built only from drivers.

Every request is checked against the safe operating area before anything is sent; the line
routing and order of operations that keep unselected cells unbiased live here and nowhere else.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from labctl.instruments.fpga import FpgaBoard, LineMode, per_item
from labctl.instruments.pulse import PulseGenerator
from labctl.instruments.smu import SourceMeter

from .safety import SafeOperatingArea


class Crossbar:
    """Operations on a rows x cols 1T1R array through an SMU and the FPGA board."""

    def __init__(self, smu: SourceMeter, board: FpgaBoard, chip, soa: SafeOperatingArea,
                 pulse: PulseGenerator | None = None):
        self.smu, self.board, self.chip, self.soa, self.pulse_generator = smu, board, chip, soa, pulse
        self._burst: tuple | None = None  # the generator's present burst setup, to skip resending it

    @property
    def shape(self) -> tuple[int, int]:
        return self.chip.rows, self.chip.cols

    def _check_cell(self, row: int, col: int) -> None:
        rows, cols = self.shape
        if not (0 <= row < rows and 0 <= col < cols):
            raise IndexError(f"cell ({row}, {col}) is outside the {rows}x{cols} array")

    def connect_cell(self, row: int, col: int, v_gate: float, bl: LineMode = LineMode.SMU,
                     sl: LineMode = LineMode.GROUND) -> None:
        """Route one cell's BL and SL (default: SMU and ground), its WL gate at v_gate.

        Every other BL/SL is grounded (no bias across unselected cells) and every other WL is
        grounded (gates off): the board's release_all first (every DAC to 0 V, then every channel
        grounded, one short frame instead of a routing entry per line), then the cell's BL and
        SL; the gate is raised last.
        """
        self._check_cell(row, col)
        self.soa.check("max_v_wl", v_gate, "v_gate")
        chip = self.chip
        self.board.release_all()
        self.board.route({chip.bl_channels[col]: bl, chip.sl_channels[col]: sl})
        wl = chip.wl_channels[row]
        self.board.set_dac({wl: v_gate})
        self.board.route({wl: LineMode.DAC})

    @contextmanager
    def cell(self, row: int, col: int, v_gate: float) -> Iterator[CellConnection]:
        """One cell routed to the SMU (BL on HI, SL grounded, WL gate at v_gate) for a sequence
        of reads and sweeps without re-routing between them (e.g. a forming ramp and its
        verify read); the SMU goes to 0 V and output off when the block ends, however it ends.

            with xbar.cell(r, c, v_gate) as cell:
                v, i = cell.sweep(ramp, i_stop, stop_at_limit=True)
                g = cell.read(v_read)
        """
        self._check_cell(row, col)
        self.soa.check("max_v_wl", v_gate, "v_gate")  # a refused request sends nothing
        try:
            self.connect_cell(row, col, v_gate)
            yield CellConnection(self, row, col, v_gate)
        finally:
            self.smu.source_off()

    def read_cell(self, row: int, col: int, v_read: float, v_gate: float) -> float:
        """Conductance of one cell (S) measured by the SMU at v_read: I / v_read, selector included."""
        _check_read(self.soa, v_read)
        with self.cell(row, col, v_gate) as cell:
            return cell.read(v_read)

    def read_map(self, v_read: float, v_gate: float, t_read: float = 1e-6,
                 block: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """Conductance (S) of every cell, or of block = (row0, col0, n_rows, n_cols), read row by
        row by the board in one transaction."""
        self.soa.check("max_v_bl", v_read, "v_read")
        self.soa.check("max_v_wl", v_gate, "v_gate")
        if v_read == 0:
            raise ValueError("v_read must be nonzero")
        r0, c0, n_rows, n_cols = block or (0, 0, *self.shape)
        self._check_cell(r0, c0)
        self._check_cell(r0 + n_rows - 1, c0 + n_cols - 1)
        return self.board.read_block(v_read, v_gate, r0, c0, n_rows, n_cols, t_read=t_read) / v_read

    def sweep(self, row: int, col: int, voltages, current_limit: float, v_gate: float,
              delay: float = 0.0, nplc: float = 1.0, stop_at_limit: bool = False
              ) -> tuple[np.ndarray, np.ndarray]:
        """Hardware-timed DC sweep of V_BL - V_SL over `voltages` on one cell.

        Returns (applied voltage, current) per point; with stop_at_limit the SMU ends the sweep
        at the first point in compliance (e.g. the forming event), so fewer points may return.
        """
        self._check_cell(row, col)
        voltages = _check_sweep(self.soa, voltages, current_limit)
        with self.cell(row, col, v_gate) as cell:
            return cell.sweep(voltages, current_limit, delay, nplc, stop_at_limit)

    def pulse(self, row: int, col: int, amplitude: float, width: float, count: int = 1,
              v_gate: float = 1.2, period: float | None = None) -> None:
        """Fire `count` pulses of V_BL - V_SL = amplitude (V), `width` s each, on one cell.

        SET pulses (amplitude > 0) reach the cell's BL with its SL grounded; RESET pulses
        (amplitude < 0) reach its SL with its BL grounded. The generator fires a burst on a bus
        trigger; `period` defaults to twice the width.
        """
        if self.pulse_generator is None:
            raise RuntimeError("this station has no pulse generator ([instruments.pulse])")
        line = "max_v_bl" if amplitude >= 0 else "max_v_sl"
        self.soa.check(line, amplitude, "pulse amplitude")
        self.soa.check("max_pulse_width", width, "pulse width")
        self.soa.check("max_pulses", count, "pulse count")
        if amplitude >= 0:
            self.connect_cell(row, col, v_gate, bl=LineMode.PULSE, sl=LineMode.GROUND)
        else:
            self.connect_cell(row, col, v_gate, bl=LineMode.GROUND, sl=LineMode.PULSE)
        generator = self.pulse_generator
        burst = (abs(amplitude), width, count, period or 2 * width)
        if burst != self._burst:
            self._burst = None  # unknown until the configuration has gone through
            generator.configure_burst(*burst)
            self._burst = burst
        generator.set_output(True)
        try:
            generator.fire()
        finally:
            generator.set_output(False)

    # -- board-timed operations (programming pulses, MVM, parallel update) -----------------------
    # Each is one self-contained board transaction: the board sets its own routing for the
    # operation and restores every channel's mode and DAC value before it replies
    # (docs/fpga-protocol.md). The crossbar then releases every line (DACs 0 V, lines grounded),
    # on error always and on success unless the board was released before the operation (the
    # driver's `released`): then the restored routing is the safe state already, and a second
    # RELEASE_ALL would only cost a transaction (~40 us in-process, ~0.2 ms of UART).
    def _block(self, block: tuple[int, int, int, int] | None) -> tuple[int, int, int, int]:
        """(r0, c0, n_rows, n_cols) checked against the chip; None = the whole array."""
        r0, c0, n_rows, n_cols = (int(v) for v in (block or (0, 0, *self.shape)))
        if n_rows < 1 or n_cols < 1:
            raise ValueError(f"block {block} is empty (n_rows and n_cols must be >= 1)")
        self._check_cell(r0, c0)
        self._check_cell(r0 + n_rows - 1, c0 + n_cols - 1)
        return r0, c0, n_rows, n_cols

    def _on_board(self, operation, *args, **kwargs):
        """Run a board operation, then put the board in its safe routing (release_all) unless it
        was there before and the operation succeeded (it restored that routing). The driver
        checks its arguments before a byte goes out: a ValueError or TypeError left the board as
        it was, with nothing to undo."""
        released = self.board.released
        try:
            result = operation(*args, **kwargs)
        except (ValueError, TypeError):
            raise
        except BaseException:
            try:
                self.board.release_all()
            except Exception:  # the operation's own error is the one to report
                pass
            raise
        if not released:
            self.board.release_all()
        return result

    @staticmethod
    def _vectors(values, n: int, name: str) -> tuple[np.ndarray, bool]:
        """(batch, n) float array of values in [-1, 1], and whether a single vector was given."""
        values = np.asarray(values, dtype=float)
        single = values.ndim == 1
        values = np.atleast_2d(values)
        if values.ndim != 2 or values.shape[1] != n or values.shape[0] < 1:
            raise ValueError(f"{name} must have shape (batch, {n}) or ({n},), got {np.shape(values)}")
        if not np.abs(values).max() <= 1.0:  # also refuses NaN
            raise ValueError(f"{name} must lie in [-1, 1] (inputs are fractions of the full-scale voltage)")
        return values, single

    def configure_mvm(self, v_read: float = 0.2, v_gate: float = 1.2, t_int: float = 1e-6,
                      dac_bits: int = 0, adc_bits: int = 0, i_range: float = 1e-3) -> None:
        """Set up the board's MVM periphery: full-scale input voltage v_read (V, on the BLs in
        forward and backward MVM), WL gate v_gate (V), integration time t_int (s), input DAC
        and output ADC resolution (bits; 0 = ideal converter) and the ADC's current range
        i_range (A, full scale +-i_range). Kept by the board for later mvm_forward/backward."""
        self.soa.check("max_v_bl", v_read, "v_read")
        self.soa.check("max_v_wl", v_gate, "v_gate")
        self.board.configure_mvm(v_read=v_read, v_gate=v_gate, t_int=t_int, dac_bits=dac_bits, adc_bits=adc_bits,
                                 i_range=i_range)

    def mvm_forward(self, x, block: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """Forward MVM on `block` (default the whole array): inputs x (batch, n_rows) in [-1, 1]
        on the rows, column currents (batch, n_cols) in A: sum_i I_ij(v_read) x_i, with the
        periphery of the last configure_mvm. A 1-D x gives a 1-D result."""
        r0, c0, n_rows, n_cols = self._block(block)
        x, single = self._vectors(x, n_rows, "x")
        out = np.asarray(self._on_board(self.board.mvm_forward, x, r0, c0, n_rows, n_cols), dtype=float)
        return out[0] if single else out

    def mvm_backward(self, d, block: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """Backward (transposed) MVM on `block`: inputs d (batch, n_cols) in [-1, 1] on the
        columns, row currents (batch, n_rows) in A: sum_j I_ij(d_j v_read) (row-serial on the
        board). A 1-D d gives a 1-D result."""
        r0, c0, n_rows, n_cols = self._block(block)
        d, single = self._vectors(d, n_cols, "d")
        out = np.asarray(self._on_board(self.board.mvm_backward, d, r0, c0, n_rows, n_cols), dtype=float)
        return out[0] if single else out

    def parallel_update(self, row_trains, col_trains, train_length: int, polarity: int,
                        amplitude: float, width: float, period: float | None = None,
                        v_gate: float = 1.2, block: tuple[int, int, int, int] | None = None) -> int:
        """Parallel stochastic update of `block` (default the whole array).

        row_trains (n_rows,) and col_trains (n_cols,) are uint32 bit trains of `train_length`
        slots (bit t = slot t, 1 <= train_length <= 32); cell (i, j) gets one pulse per slot
        where both its row and its column fire: popcount(row_i & col_j) SET pulses of
        V_BL - V_SL = +amplitude (polarity +1) or RESET pulses of -amplitude (polarity -1),
        `width` s each, one slot every `period` s (default 2 x width), WL gates at v_gate.
        Returns the total number of coincidences (pulses applied to cells) the board reports.
        """
        period = self._check_update([polarity], [amplitude], [train_length], width, period, v_gate)
        r0, c0, n_rows, n_cols = self._block(block)
        return int(self._on_board(self.board.parallel_update, row_trains, col_trains, train_length, polarity,
                                  amplitude, width, period, v_gate, r0, c0, n_rows, n_cols))

    def update_sequence(self, row_trains, col_trains, train_lengths, polarities, amplitudes, width: float,
                        period: float | None = None, v_gate: float = 1.2,
                        block: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """Parallel updates of `block` back to back, in one board request: train k is
        parallel_update(row_trains[k], col_trains[k], train_lengths[k], polarities[k],
        amplitudes[k], width, period, v_gate, block); row_trains (n, n_rows), col_trains
        (n, n_cols); train_lengths, polarities and amplitudes one per train or one for all.
        Returns each train's coincidences (n,)."""
        rows, cols = np.asarray(row_trains), np.asarray(col_trains)
        n = len(rows) if rows.ndim == 2 else 0
        lengths, polarities, amplitudes = (per_item(a, n) for a in (train_lengths, polarities, amplitudes))
        period = self._check_update(polarities, amplitudes, lengths, width, period, v_gate)
        r0, c0, n_rows, n_cols = self._block(block)
        return self._on_board(self.board.update_sequence, rows, cols, lengths, polarities, amplitudes,
                              width, period, v_gate, r0, c0, n_rows, n_cols).astype(np.int64)

    def _check_update(self, polarities, amplitudes, train_lengths, width: float, period: float | None,
                      v_gate: float) -> float:
        """Parallel updates against the safe operating area (the board driver checks the
        arguments themselves); returns the period (default 2 x width)."""
        polarities, amplitudes = np.asarray(polarities), np.abs(np.asarray(amplitudes, dtype=float))
        for polarity, limit in ((1, "max_v_bl"), (-1, "max_v_sl")):
            if np.any(polarities == polarity):
                self.soa.check(limit, float(amplitudes[polarities == polarity].max()), "update amplitude")
        self.soa.check("max_pulse_width", width, "update pulse width")
        self.soa.check("max_pulses", float(np.max(train_lengths)), "train_length")
        self.soa.check("max_v_wl", v_gate, "v_gate")
        return 2 * width if period is None else period

    def pulse_cells(self, cells, amplitudes, widths, v_gate: float = 1.2, period: float | None = None) -> None:
        """Board-timed programming pulses, one per cell, cell after cell (a write-verify round).

        cells: (n, 2) row, col, distinct. Cell k alone is selected (its WL at v_gate) and gets
        V_BL - V_SL = amplitudes[k] for widths[k] s: > 0 on its BL with the SL grounded (SET),
        < 0 on its SL with the BL grounded (RESET). amplitudes and widths are one value or one
        per cell; period (one pulse every period s) defaults to twice the longest width.
        """
        cells = np.asarray(cells, dtype=int).reshape(-1, 2)
        n = len(cells)
        if n == 0:
            return
        amplitudes, widths = (per_item(a, n, float) for a in (amplitudes, widths))
        outside = np.flatnonzero(np.any((cells < 0) | (cells >= self.shape), axis=1))
        if outside.size:
            self._check_cell(*(int(v) for v in cells[outside[0]]))
        self.soa.check("max_v_bl", max(amplitudes.max(), 0.0), "SET pulse amplitude")
        self.soa.check("max_v_sl", min(amplitudes.min(), 0.0), "RESET pulse amplitude")
        self.soa.check("max_pulse_width", np.abs(widths).max(), "pulse width")
        self.soa.check("max_v_wl", v_gate, "v_gate")
        period = 2 * widths.max() if period is None else period
        self._on_board(self.board.pulse_cells, cells[:, 0], cells[:, 1], amplitudes, widths, v_gate, period)

    def safe_state(self) -> None:
        """SMU to 0 V and output off, pulse outputs off, then every board line grounded with
        DACs at 0 V; each source then confirms (*OPC?) that it received it, so a source that
        froze on its last commands is found (the board's reply is its confirmation). Every step
        is tried even if one fails; the first error is raised afterwards."""
        errors, self._burst = [], None
        sources: list[tuple[SourceMeter | PulseGenerator, Callable[[], None]]] = [(self.smu, self.smu.source_off)]
        if self.pulse_generator is not None:
            sources.append((self.pulse_generator, self.pulse_generator.safe_state))
        for source, off in sources:
            try:
                off()
                source.confirm(always=True)
            except Exception as exc:  # keep going: the next step still makes the bench safer
                errors.append(exc)
        try:
            self.board.release_all()
        except Exception as exc:
            errors.append(exc)
        if errors:
            raise errors[0]


def _check_read(soa: SafeOperatingArea, v_read: float) -> None:
    soa.check("max_v_bl", v_read, "v_read")
    if v_read == 0:
        raise ValueError("v_read must be nonzero")


def _check_sweep(soa: SafeOperatingArea, voltages, current_limit: float) -> np.ndarray:
    voltages = np.asarray(voltages, dtype=float)
    soa.check("max_v_bl", float(np.max(np.abs(voltages))), "sweep voltage")
    soa.check("max_current", current_limit, "current_limit")
    return voltages


class CellConnection:
    """SMU operations on the cell that Crossbar.cell routed (valid inside its `with` block).
    Each checks its request against the safe operating area before anything is sent."""

    def __init__(self, crossbar: Crossbar, row: int, col: int, v_gate: float):
        self.crossbar, self.row, self.col, self.v_gate = crossbar, row, col, v_gate

    def read(self, v_read: float) -> float:
        """Conductance (S) at v_read: I / v_read, selector included. The output stays on at
        v_read (a read disturbs nothing) until the next operation or the end of the block."""
        _check_read(self.crossbar.soa, v_read)
        smu = self.crossbar.smu
        smu.source_voltage = v_read
        smu.output_enabled = True
        return smu.measure_current() / v_read

    def sweep(self, voltages, current_limit: float, delay: float = 0.0, nplc: float = 1.0,
              stop_at_limit: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Hardware-timed DC sweep of V_BL - V_SL over `voltages` (see Crossbar.sweep). The
        SMU's setup and sweep are sent only when they changed (the driver's business); the
        output is left at the last point until the next operation or the end of the block."""
        voltages = _check_sweep(self.crossbar.soa, voltages, current_limit)
        smu = self.crossbar.smu
        smu.configure_voltage_source(current_limit, nplc=nplc)
        return smu.sweep_list(voltages, delay, fail_abort=stop_at_limit)
