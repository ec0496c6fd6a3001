"""The crossbar API: chip-level operations (select a cell, read, sweep) built only from drivers.

Every request is checked against the safe operating area before anything is sent; the line
routing and order of operations that keep unselected cells unbiased live here and nowhere else.
"""
from __future__ import annotations

import numpy as np

from instruments.fpga import FpgaBoard, LineMode
from instruments.pulse import PulseGenerator
from instruments.smu import SourceMeter

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
        grounded (gates off); the gate is raised last.
        """
        self._check_cell(row, col)
        self.soa.check("max_v_wl", v_gate, "v_gate")
        chip = self.chip
        routing = {ch: LineMode.GROUND for ch in chip.wl_channels + chip.bl_channels + chip.sl_channels}
        routing[chip.bl_channels[col]] = bl
        routing[chip.sl_channels[col]] = sl
        self.board.route(routing)
        wl = chip.wl_channels[row]
        self.board.set_dac({wl: v_gate})
        self.board.route({wl: LineMode.DAC})

    def read_cell(self, row: int, col: int, v_read: float, v_gate: float) -> float:
        """Conductance of one cell (S) measured by the SMU at v_read: I / v_read, selector included."""
        self.soa.check("max_v_bl", v_read, "v_read")
        if v_read == 0:
            raise ValueError("v_read must be nonzero")
        self.connect_cell(row, col, v_gate)
        self.smu.source_voltage = v_read
        self.smu.output_enabled = True
        try:
            return self.smu.measure_current() / v_read
        finally:
            self.smu.source_off()

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
        voltages = np.asarray(voltages, dtype=float)
        self._check_cell(row, col)
        self.soa.check("max_v_bl", float(np.max(np.abs(voltages))), "sweep voltage")
        self.soa.check("max_current", current_limit, "current_limit")
        self.connect_cell(row, col, v_gate)
        self.smu.configure_voltage_source(current_limit, nplc=nplc)
        try:
            return self.smu.sweep_list(voltages, delay, fail_abort=stop_at_limit)
        finally:
            self.smu.source_off()

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

    def safe_state(self) -> None:
        """SMU to 0 V and output off, pulse outputs off, then every board line grounded with
        DACs at 0 V. Every step is tried even if one fails; the first error is raised afterwards.
        """
        errors, self._burst = [], None
        steps = [self.smu.source_off, self.board.release_all]
        if self.pulse_generator is not None:
            steps.insert(1, self.pulse_generator.safe_state)
        for step in steps:
            try:
                step()
            except Exception as exc:  # keep going: the next step still makes the bench safer
                errors.append(exc)
        if errors:
            raise errors[0]
