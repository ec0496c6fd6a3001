"""The simulated bench: one chip, its FPGA board, an SMU and a pulse generator, wired as in the lab.

The SMU's HI terminal and the generator's channel 1 reach the chip only through the lines the
board routes to its SMU and PULSE inputs (LO and the generator's return are ground), so the
board's routing decides which cells each instrument sees. The chip's state survives between
sessions in a state file (numpy .npz, no pickle), as a real chip keeps its conductances.
"""
from __future__ import annotations

import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from importlib import import_module
from pathlib import Path

import numpy as np
from labctl.instruments.fpga_wire import LINK_BAUD, LineMode

from .board import VirtualBoard
from .physics import ArrayPhysics, DeviceParams

# station driver name -> (module, class) of its twin
SMU_TWINS = {"keithley2450": ("keithley2450", "VirtualKeithley2450"),
             "keysight_b2900": ("keysight_b2900", "VirtualKeysightB2900"),
             "keithley2600b": ("keithley2600b", "VirtualKeithley2600B")}
PULSE_TWINS = {"keysight81160a": ("keysight81160a", "VirtualKeysight81160A"),
               "keysight33500b": ("keysight33500b", "VirtualKeysight33500B")}
PULSE_CHANNEL = 1  # the generator channel cabled to the board's pulse input


def twin_class(table: dict, name: str, kind: str):
    if name not in table:
        raise ValueError(f"no virtual {kind} {name!r} (choose from {', '.join(table)})")
    module, cls = table[name]
    return getattr(import_module(f"{__package__}.{module}"), cls)


class SimLab:
    """A virtual chip behind a virtual FPGA board, SMU and pulse generator."""

    def __init__(self, physics: ArrayPhysics, wl_channels, bl_channels, sl_channels,
                 smu: str = "keithley2450", pulse: str | None = "keysight81160a",
                 link_baud: float | None = LINK_BAUD):
        self.physics = physics
        self._routed: tuple | None = None  # _routing()'s, with its key (board, its state)
        self._into_hi: tuple | None = None  # _cells_into_hi() of a _routing()
        self.board = VirtualBoard(physics, wl_channels, bl_channels, sl_channels, link_baud=link_baud)
        self.smu = twin_class(SMU_TWINS, smu, "SMU")(self)
        self.pulse = twin_class(PULSE_TWINS, pulse, "pulse generator")(self) if pulse else None
        self.models = {"smu": smu, "board": "fpga_board", **({"pulse": pulse} if pulse else {})}

    def instrument(self, name: str):
        """The twin behind resource `sim://NAME`."""
        twins = {"smu": self.smu, "board": self.board, "pulse": self.pulse}
        if twins.get(name) is None:
            raise KeyError(f"the simulated lab has no instrument {name!r} "
                           f"(it has {', '.join(k for k, v in twins.items() if v is not None)})")
        return twins[name]

    # -- what the instruments' outputs see -------------------------------------------------------
    def _smu_level(self) -> float:
        return self.smu.source_level if self.smu.output_on else np.nan

    def _drive(self, v_smu: float, v_pulse: float, duration: float | None) -> np.ndarray:
        lines = self.board.line_voltages(v_smu, v_pulse)
        return self.physics.currents(*lines) if duration is None else self.physics.apply(*lines, duration)

    def _smu_lines(self) -> list[np.ndarray]:
        """Which WLs, BLs and SLs the board routes to the SMU."""
        return [modes == LineMode.SMU for modes in self.board.line_modes()]

    @staticmethod
    def _column_weights(on_smu: list[np.ndarray]) -> np.ndarray:
        """Per column: +1 if its BL is on HI, -1 if its SL is (the current into HI, BL to SL)."""
        return on_smu[1].astype(float) - on_smu[2]

    def _routing(self) -> tuple[list[np.ndarray], np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(lines on the SMU, column weights, line voltages with the SMU input floating) of the
        board's routing now; kept while the board's channel modes and DAC registers are as they
        were (compared byte for byte: however the board changed them)."""
        board = self.board
        key = board, board._modes.tobytes() + board._dac.tobytes()
        if self._routed is None or self._routed[0][0] is not board or self._routed[0][1] != key[1]:
            on_smu = self._smu_lines()
            self._routed = key, (on_smu, self._column_weights(on_smu), board.line_voltages(np.nan))
        return self._routed[1]

    def _smu_drive(self, v: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The line voltages with the SMU at v (NaN: output off), the pulse input floating: what
        board.line_voltages(v) gives."""
        (on_wl, on_bl, on_sl), _, (v_wl, v_bl, v_sl) = self._routing()
        return np.where(on_wl, v, v_wl), np.where(on_bl, v, v_bl), np.where(on_sl, v, v_sl)

    def _into_smu(self, cells: np.ndarray) -> float:
        return float(cells.sum(axis=0) @ self._routing()[1])

    def apply(self, v: float | None, duration: float) -> float:
        """SmuLoad: hold the SMU at v (None: output off) for duration; current into HI."""
        return self._into_smu(self.physics.apply(*self._smu_drive(np.nan if v is None else v), duration))

    def current(self, v: float) -> float:
        """SmuLoad: current into HI at v, changing nothing."""
        return self._into_smu(self.physics.currents(*self._smu_drive(v)))

    def current_function(self) -> Callable[[float], float]:
        """SmuLoad (optional): current(v) for the chip and routing as they are now, for calls
        with nothing changing in between (one compliance solve). The cells that can carry
        current into HI (an open gate, the BL or SL on HI, the other line not floating; kept
        with the routing) and their conductance are looked up once; each call is then their
        circuit solve at v (physics._solve) with the column weights: what current(v) computes,
        without the line voltages of the whole array. A WL on the SMU (the gates follow v)
        takes current() itself."""
        physics = self.physics
        routed = self._routing()
        if self._into_hi is None or self._into_hi[0] is not routed:
            self._into_hi = routed, self._cells_into_hi(*routed)
        cells = self._into_hi[1]
        if cells is None:
            return self.current
        rows, cols, v_gate, w, lines = cells
        if not rows.size:
            return lambda v: 0.0
        formed = physics._formed[rows, cols]
        g = physics.conductance((rows, cols)) if formed.any() else physics._g[rows, cols]  # pristine: programmed g
        solve = physics._solve
        if rows.size <= 8:  # one by one in Python floats, as _solve takes so few cells
            solve_cell = physics._solve_cell
            few = list(zip(lines, v_gate.tolist(), formed.tolist(), g.tolist(), w.tolist()))

            def current_of_few(v: float) -> float:
                total = 0.0
                for (bl_on, bl, sl_on, sl), gate, is_formed, g_k, w_k in few:
                    v_cell = (v if bl_on else bl) - (v if sl_on else sl)
                    if v_cell != 0:
                        total += w_k * solve_cell(v_cell, gate, is_formed, g_k)[1]
                return total

            return current_of_few

        def current(v: float) -> float:
            v_cell = [(v if bl_on else bl) - (v if sl_on else sl) for bl_on, bl, sl_on, sl in lines]
            if all(x != 0 for x in v_cell):  # (never NaN: the other line does not float)
                return float(w @ solve(np.array(v_cell), v_gate, formed, g)[1])
            biased = np.flatnonzero(np.array(v_cell) != 0)
            if not biased.size:
                return 0.0
            i = solve(np.array(v_cell)[biased], v_gate[biased], formed[biased], g[biased])[1]
            return float(w[biased] @ i)

        return current

    def _cells_into_hi(self, on_smu, weights, fixed) -> tuple | None:
        """For current_function: (rows, cols, gate voltages, weights, per cell (BL on HI, V_BL,
        SL on HI, V_SL)) of the cells that can carry current into HI; None with a WL on HI."""
        if on_smu[0].any():
            return None
        v_wl, v_bl, v_sl = fixed
        gate = np.where(np.isnan(v_wl), 0.0, v_wl)
        # a column on HI whose other line floats carries no current (the bias is NaN)
        cols = np.flatnonzero((weights != 0) & ~np.isnan(np.where(on_smu[1], v_sl, v_bl)))
        rows = np.flatnonzero(gate > self.physics.p.v_th)
        rows, cols = np.repeat(rows, cols.size), np.tile(cols, rows.size)
        lines = list(zip(on_smu[1][cols].tolist(), v_bl[cols].tolist(), on_smu[2][cols].tolist(),
                         v_sl[cols].tolist()))
        return rows, cols, gate[rows], weights[cols], lines

    def quiet_ramp(self, levels: Sequence[float], duration: float, limit: float) -> np.ndarray:
        """SmuLoad: the readings (A) of the leading levels that form or switch no cell and draw
        at most `limit`, each held `duration` s (the clock has run for them): one
        physics.quiet_ramp, which looks ahead in growing chunks, so an active point costs
        little and a quiet ramp one pass over its conducting cells."""
        on_smu, weights, fixed = self._routing()
        return self.physics.quiet_ramp(*fixed, on_smu, levels, duration, weights, limit)

    def hold(self, channel: int, v: float | None, duration: float) -> None:
        """PulseLoad: the generator's channel at v for duration (only channel 1 is cabled)."""
        level = v if channel == PULSE_CHANNEL and v is not None else np.nan
        self._drive(self._smu_level(), level, duration)

    # -- persistence -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the chip state atomically (a crash never leaves a half-written file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                # mypy matches **dict against savez's allow_pickle: bool (python/mypy#5382); state() has no such key
                np.savez(f, **self.physics.state())  # type: ignore[arg-type]
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    @staticmethod
    def load_physics(path: str | os.PathLike, params: DeviceParams | None = None) -> ArrayPhysics:
        """The chip saved in `path`; ValueError naming the file (and the entry) if it is none."""
        try:
            with np.load(path, allow_pickle=False) as state:
                arrays = dict(state)
        # what numpy and zipfile raise on a damaged file (RuntimeError: a member flagged encrypted)
        except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError) as exc:
            raise ValueError(f"{path}: not a chip state file ({type(exc).__name__}: {exc})") from exc
        try:
            return ArrayPhysics.from_state(arrays, params, copy=False)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
