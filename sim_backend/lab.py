"""The simulated bench: one chip, its FPGA board and an SMU, wired as in the lab.

The SMU's HI terminal reaches the chip only through lines the board routes to its SMU input
(LO is ground), so the board's routing decides which cells the SMU sees. The chip's state
survives between sessions in a state file (numpy .npz, no pickle), as a real chip keeps its
conductances between runs.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from instruments.fpga import LineMode
from .board import VirtualBoard
from .keithley2450 import VirtualKeithley2450
from .physics import ArrayPhysics, DeviceParams


class SimLab:
    """A virtual chip behind a virtual FPGA board and a virtual Keithley 2450."""

    def __init__(self, physics: ArrayPhysics, wl_channels, bl_channels, sl_channels):
        self.physics = physics
        self.board = VirtualBoard(physics, wl_channels, bl_channels, sl_channels)
        self.smu = VirtualKeithley2450(self)

    def instrument(self, name: str):
        """The twin behind resource `sim://NAME`."""
        twins = {"smu": self.smu, "board": self.board}
        if name not in twins:
            raise KeyError(f"the simulated lab has no instrument {name!r} (it has {', '.join(twins)})")
        return twins[name]

    # -- what the SMU's HI terminal sees (SmuLoad) -----------------------------------------------
    def apply(self, v: float | None, duration: float) -> float:
        return self._smu_current(v, duration)

    def current(self, v: float) -> float:
        return self._smu_current(v, None)

    def _smu_current(self, v: float | None, duration: float | None) -> float:
        lines = self.board.line_voltages(np.nan if v is None else v)
        cells = (self.physics.currents(*lines) if duration is None
                 else self.physics.apply(*lines, duration))
        _, bl_modes, sl_modes = self.board.line_modes()
        smu = int(LineMode.SMU)
        return float(cells[:, bl_modes == smu].sum() - cells[:, sl_modes == smu].sum())

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
