"""The simulated bench: one chip, its FPGA board, an SMU and a pulse generator, wired as in the lab.

The SMU's HI terminal and the generator's channel 1 reach the chip only through the lines the
board routes to its SMU and PULSE inputs (LO and the generator's return are ground), so the
board's routing decides which cells each instrument sees. The chip's state survives between
sessions in a state file (numpy .npz, no pickle), as a real chip keeps its conductances.
"""
from __future__ import annotations

import os
import tempfile
from importlib import import_module
from pathlib import Path
from typing import Sequence

import numpy as np

from instruments.fpga import LINK_BAUD, LineMode
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

    def _into_smu(self, cells: np.ndarray) -> float:
        return float(cells.sum(axis=0) @ self._column_weights(self._smu_lines()))

    def apply(self, v: float | None, duration: float) -> float:
        """SmuLoad: hold the SMU at v (None: output off) for duration; current into HI."""
        return self._into_smu(self._drive(np.nan if v is None else v, np.nan, duration))

    def current(self, v: float) -> float:
        """SmuLoad: current into HI at v, changing nothing."""
        return self._into_smu(self._drive(v, np.nan, None))

    def quiet_ramp(self, levels: Sequence[float], duration: float, limit: float) -> np.ndarray:
        """SmuLoad: the readings (A) of the leading levels that form or switch no cell and draw
        at most `limit`, each held `duration` s (the clock has run for them). Looks ahead in
        growing chunks, so an active point costs little and a quiet ramp one physics call per
        chunk."""
        on_smu = self._smu_lines()
        weights, fixed = self._column_weights(on_smu), self.board.line_voltages(np.nan)
        readings, start, size = [], 0, 16
        while start < len(levels):
            chunk = np.asarray(levels[start:start + size], dtype=float)[:, None]
            lines = (np.where(mask, chunk, line) for mask, line in zip(on_smu, fixed))
            currents, quiet = self.physics.quiet_ramp(*lines, duration, weights)
            over = np.flatnonzero(np.abs(currents) > limit)
            used = min(quiet, int(over[0]) if over.size else len(chunk))
            self.physics.clock.advance(used * duration)
            readings.append(currents[:used])
            if used < len(chunk):
                break
            start, size = start + used, 2 * size
        return np.concatenate(readings) if readings else np.empty(0)

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
                np.savez(f, **self.physics.state())
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    @staticmethod
    def load_physics(path: str | os.PathLike, params: DeviceParams | None = None) -> ArrayPhysics:
        with np.load(path, allow_pickle=False) as state:
            return ArrayPhysics.from_state(dict(state), params)
