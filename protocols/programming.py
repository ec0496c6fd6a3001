"""What the protocols that program cells share (not a protocol itself): the write-verify
parameters, `program_cells` (labctl.writeverify with the run's parameters, then table "cells"),
`program_levels` (levels interleaved over the array), checks of levels and read-out times."""
from __future__ import annotations

import numpy as np

from labctl.engine import RunContext
from labctl.params import Parameter, ParameterError
from labctl.writeverify import WriteVerifyResult, assign_targets, write_verify

from .common import V_GATE, V_READ, WIDTH

TEN_YEARS = 3.15e8  # s

ACCEPTANCE = Parameter("acceptance", "float", 0.002, "", minimum=1e-4, maximum=0.5,
                       doc="half-width of the acceptance band as a fraction of the target (0.002 = 0.2 %)")
REPEATS = Parameter("repeats", "int", 0, "", minimum=0,
                    doc="cells per target/level; 0 fills the array")
MAX_PULSES = Parameter("max_pulses", "int", 500, "", minimum=0, maximum=100000,
                       doc="pulses allowed per cell before it counts as failed")
REFINE = Parameter("refine", "int", 2, "", minimum=0, maximum=6,
                   doc="times a cell's pulse width halves, once per overshoot of its band (0 = fixed width)")
# the cell-wise programming parameters; LEVEL_PROGRAMMING adds the cells per level
PROGRAMMING = (ACCEPTANCE, MAX_PULSES, WIDTH, REFINE, V_GATE, V_READ)
LEVEL_PROGRAMMING = (ACCEPTANCE, REPEATS, MAX_PULSES, WIDTH, REFINE, V_GATE, V_READ)
TRACE_COLUMNS = [("cell", "i4", ""), ("pulse", "i4", ""), ("g", "f8", "S")]  # index into "cells"
CELL_COLUMNS = [("row", "i4", ""), ("col", "i4", ""), ("target", "f8", "S"), ("g_initial", "f8", "S"),
                ("g_final", "f8", "S"), ("pulses", "i4", ""), ("success", "u1", "")]


def check_levels(levels: list[float], repeats: int, config, name: str) -> None:
    """Refuse repeated levels and more cells than the chip has."""
    if len(set(levels)) != len(levels):
        raise ParameterError(f"{name} must be distinct, got {levels}")
    cells = config.chip.rows * config.chip.cols
    if repeats > 0 and repeats * len(levels) > cells:
        raise ParameterError(f"repeats={repeats} x {len(levels)} {name} needs {repeats * len(levels)} cells; "
                             f"the chip has {cells}")
    if repeats <= 0 and cells < len(levels):
        raise ParameterError(f"{len(levels)} {name} need at least {len(levels)} cells; the chip has {cells}")


def check_times(times: list[float]) -> None:
    """Times must be >= 0 and strictly increasing."""
    if times[0] < 0 or np.any(np.diff(times) <= 0):
        raise ParameterError(f"times must be >= 0 s and strictly increasing, got {times}")


def program_cells(ctx: RunContext, cells: np.ndarray, targets: np.ndarray, on_read=None) -> WriteVerifyResult:
    """Write-verify cells ((n, 2) row, col) to targets (n, S) with the run's programming
    parameters (PROGRAMMING); stores table "cells" and returns the result."""
    p = ctx.params
    result = write_verify(ctx.crossbar, cells, targets, p["acceptance"], p["max_pulses"], p["width"],
                          p["v_gate"], p["v_read"], checkpoint=ctx.progress, refine=p["refine"], on_read=on_read)
    ctx.table("cells", CELL_COLUMNS)
    ctx.append("cells", row=cells[:, 0], col=cells[:, 1], target=result.targets, g_initial=result.g_initial,
               g_final=result.g, pulses=result.pulses, success=result.success.astype(np.uint8))
    return result


def program_levels(ctx: RunContext, levels: list[float], trace: bool = True) -> WriteVerifyResult:
    """Write-verify `repeats` cells per level (LEVEL_PROGRAMMING), stores table "cells" (and
    "trace": cell index into "cells", pulses so far, g) and returns the result."""
    cells, targets = assign_targets(ctx.crossbar.shape, levels, ctx.params["repeats"])
    if trace:
        ctx.table("trace", TRACE_COLUMNS)

    def on_read(index: np.ndarray, pulses: np.ndarray, g: np.ndarray) -> None:
        ctx.append("trace", cell=index, pulse=pulses, g=g)

    return program_cells(ctx, cells, targets, on_read if trace else None)


def sample_std(x: np.ndarray) -> float | None:
    """Sample standard deviation (ddof 1); None for fewer than two values."""
    return float(np.std(x, ddof=1)) if x.size > 1 else None
