"""Vectorized array physics against a per-cell loop, measured in the same run.

Prints one JSON object. For each array size (default 64x64 and 512x512, every cell formed at
40 uS via `chip.formed[:] = True; chip.g[:] = 40e-6`) and each operation:

- read: the current of every cell at V_BL = 0.2 V, all gates at 1.2 V (`currents`, noise-free,
  changes nothing); conductance = I / 0.2 V;
- pulse: one SET pulse on every cell: all gates 1.2 V, every BL 1.35 V, SL 0 V, 100 ns (`apply`);
- write_verify: `--iterations` rounds of read + conditional pulse toward a random target map
  (15..75 uS, tolerance 2 uS): a cell below its target gets a SET pulse (BL 1.35 V), a cell above
  it a RESET pulse (SL 1.5 V), 100 ns.

Vectorized = one `ArrayPhysics(rows, cols)` driven through its public `currents` / `apply` with
line voltages, as the board drives it. Reads and the uniform pulse are one call for the whole
array. A *conditional* pulse cannot be one call: a cell is biased only where its row's gate and its
column's BL/SL are both driven, so arbitrary per-cell choices need one `apply` per word line
(all columns of the row in parallel, SET and RESET columns in the same call), as on the chip.

Per-cell = the same physics code called once per cell on a 1x1 `ArrayPhysics` holding that cell's
state (the arrays in `ArrayPhysics.STATE_KEYS`, copied before timing; building those holders is
setup and not timed, as building the big chip is not). It is timed on a random subset of cells
(`--cells`) and extrapolated linearly to the whole array. On large arrays the vectorized
write-verify is also timed on the first `--wv-rows` rows only (each row's `apply` costs the same)
and its pulse part extrapolated to every row; the JSON says where it extrapolates.

Usage: python bench/sim_physics.py [--sizes 64 512] [--cells 100] [--iterations 3] [--wv-rows 4]
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from labctl.sim.clock import VirtualClock
from labctl.sim.physics import ArrayPhysics, DeviceParams

V_GATE, V_READ, V_SET, V_RESET, WIDTH = 1.2, 0.2, 1.35, 1.5, 100e-9
G_START, TARGET_LO, TARGET_HI, TOLERANCE = 40e-6, 15e-6, 75e-6, 2e-6
RATIO_MIN, TARGET_SIZE = 50.0, (512, 512)
FULL_WV_ROWS = 64  # arrays with up to this many rows get their vectorized write-verify timed in full


def formed_chip(rows: int, cols: int, params: DeviceParams, seed: int) -> ArrayPhysics:
    chip = ArrayPhysics(rows, cols, params, seed=seed)
    chip.formed[:] = True
    chip.g[:] = G_START
    return chip


def cell_chip(chip: ArrayPhysics, row: int, col: int) -> ArrayPhysics:
    """A 1x1 ArrayPhysics holding cell (row, col) of `chip` (same parameters and virtual time)."""
    one = ArrayPhysics(1, 1, chip.p, seed=chip.seed * 1_000_003 + row * chip.cols + col,
                       clock=VirtualClock(chip.clock.now))
    for key in ArrayPhysics.STATE_KEYS:
        value = getattr(chip, key)
        setattr(one, key, value[row:row + 1, col:col + 1].copy() if np.shape(value) == chip.shape
                else np.copy(value))
    return one


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def lines(n: int, value: float) -> np.ndarray:
    return np.full(n, value)


# -- operations, vectorized ---------------------------------------------------------------------
def read_array(chip: ArrayPhysics) -> np.ndarray:
    """Conductance (S) of every cell, selector included."""
    return chip.currents(lines(chip.rows, V_GATE), lines(chip.cols, V_READ), lines(chip.cols, 0.0)) / V_READ


def pulse_array(chip: ArrayPhysics) -> None:
    chip.apply(lines(chip.rows, V_GATE), lines(chip.cols, V_SET), lines(chip.cols, 0.0), WIDTH)


def write_verify_array(chip: ArrayPhysics, target: np.ndarray, iterations: int, rows: int
                       ) -> tuple[float, float, np.ndarray]:
    """Whole-array reads, conditional pulses one word line at a time on the first `rows` rows.

    Returns (seconds reading, seconds pulsing, final conductance map)."""
    t_read = t_pulse = 0.0
    zero = lines(chip.cols, 0.0)
    for _ in range(iterations):
        dt, g = timed(lambda: read_array(chip))
        t_read += dt
        start = time.perf_counter()
        up, down = g < target - TOLERANCE, g > target + TOLERANCE
        for r in range(rows):
            if not (up[r].any() or down[r].any()):
                continue
            v_wl = lines(chip.rows, 0.0)
            v_wl[r] = V_GATE
            chip.apply(v_wl, np.where(up[r], V_SET, zero), np.where(down[r], V_RESET, zero), WIDTH)
        t_pulse += time.perf_counter() - start
    return t_read, t_pulse, read_array(chip)


# -- operations, per cell -----------------------------------------------------------------------
ONE_GATE, ONE_READ, ONE_SET, ONE_RESET, ONE_ZERO = (np.array([v]) for v in (V_GATE, V_READ, V_SET, V_RESET, 0.0))


def read_cells(cells: list[ArrayPhysics]) -> np.ndarray:
    return np.array([one.currents(ONE_GATE, ONE_READ, ONE_ZERO)[0, 0] / V_READ for one in cells])


def pulse_cells(cells: list[ArrayPhysics]) -> None:
    for one in cells:
        one.apply(ONE_GATE, ONE_SET, ONE_ZERO, WIDTH)


def write_verify_cells(cells: list[ArrayPhysics], target: np.ndarray, iterations: int) -> np.ndarray:
    for _ in range(iterations):
        for one, t in zip(cells, target):
            g = one.currents(ONE_GATE, ONE_READ, ONE_ZERO)[0, 0] / V_READ
            if g < t - TOLERANCE:
                one.apply(ONE_GATE, ONE_SET, ONE_ZERO, WIDTH)
            elif g > t + TOLERANCE:
                one.apply(ONE_GATE, ONE_ZERO, ONE_RESET, WIDTH)
    return read_cells(cells)


# -- one size -----------------------------------------------------------------------------------
def entry(vectorized: float, per_cell_timed: float, n_timed: int, n_cells: int, **extra: Any) -> dict[str, Any]:
    per_cell = per_cell_timed * n_cells / n_timed
    return {"vectorized_s": vectorized, "per_cell_s": per_cell, "ratio": per_cell / vectorized,
            "per_cell_timed_s": per_cell_timed, "per_cell_cells_timed": n_timed,
            "per_cell_extrapolated": n_timed < n_cells, **extra}


def bench_size(rows: int, cols: int, params: DeviceParams, n_sample: int, iterations: int, wv_rows: int,
               seed: int) -> dict[str, Any]:
    n_cells = rows * cols
    rng = np.random.default_rng(seed)
    rows_timed = rows if rows <= FULL_WV_ROWS else max(1, min(rows, wv_rows))
    # the per-cell sample lies in the rows the vectorized write-verify processes, so both can be compared
    flat = rng.choice(rows_timed * cols, size=min(n_sample, rows_timed * cols), replace=False)
    sample = [divmod(int(k), cols) for k in flat]
    index = tuple(np.array(sample).T)
    n = len(sample)

    # read: best of 3 whole-array reads; per cell once
    chip = formed_chip(rows, cols, params, seed)
    t_vec = min(timed(lambda: read_array(chip))[0] for _ in range(3))
    g_vec = read_array(chip)
    cells = [cell_chip(chip, r, c) for r, c in sample]
    t_cell, g_cell = timed(lambda: read_cells(cells))
    read = entry(t_vec, t_cell, n, n_cells,
                 check_max_rel_diff=float(np.max(np.abs(g_cell - g_vec[index]) / g_vec[index])))

    # pulse: a fresh chip each time (best of 2); per cell once on copies of the fresh state
    t_vec = np.inf
    for _ in range(2):
        chip = formed_chip(rows, cols, params, seed)
        t_vec = min(t_vec, timed(lambda chip=chip: pulse_array(chip))[0])
    step_vec = read_array(chip)[index] - read_array(formed_chip(rows, cols, params, seed))[index]
    fresh = formed_chip(rows, cols, params, seed)
    cells = [cell_chip(fresh, r, c) for r, c in sample]
    before = read_cells(cells)
    t_cell = timed(lambda: pulse_cells(cells))[0]
    step_cell = read_cells(cells) - before
    pulse = entry(t_vec, t_cell, n, n_cells, check_mean_step_uS={"vectorized": 1e6 * float(step_vec.mean()),
                                                                  "per_cell": 1e6 * float(step_cell.mean())})

    # write-verify toward one target map
    target = rng.uniform(TARGET_LO, TARGET_HI, (rows, cols))
    chip = formed_chip(rows, cols, params, seed)
    g0 = read_array(chip)
    one_row = np.where(np.arange(rows) == 0, V_GATE, 0.0)
    row_apply = timed(lambda: chip.apply(one_row, lines(cols, V_SET), lines(cols, 0.0), WIDTH))[0]
    chip = formed_chip(rows, cols, params, seed)
    t_read, t_pulse, g_final = write_verify_array(chip, target, iterations, rows_timed)
    t_vec = t_read + t_pulse * rows / rows_timed
    cells = [cell_chip(formed_chip(rows, cols, params, seed), r, c) for r, c in sample]
    t_cell, g_cell = timed(lambda: write_verify_cells(cells, target[index], iterations))

    def rms_uS(g: np.ndarray) -> float:
        return 1e6 * float(np.sqrt(np.mean((g - target[index]) ** 2)))

    write_verify = entry(t_vec, t_cell, n, n_cells, iterations=iterations, vectorized_rows_timed=rows_timed,
                         vectorized_extrapolated=rows_timed < rows, vectorized_read_s=t_read,
                         vectorized_pulse_s=t_pulse * rows / rows_timed,
                         check_rms_error_uS={"start": rms_uS(g0[index]), "vectorized": rms_uS(g_final[index]),
                                             "per_cell": rms_uS(g_cell)})
    ops = {"read": read, "pulse": pulse, "write_verify": write_verify}
    total_vec = sum(op["vectorized_s"] for op in ops.values())
    total_cell = sum(op["per_cell_s"] for op in ops.values())
    return {"cells": n_cells, **ops,
            "total": {"vectorized_s": total_vec, "per_cell_s": total_cell, "ratio": total_cell / total_vec},
            "one_row_apply_s": row_apply}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 512], help="square array sizes")
    parser.add_argument("--cells", type=int, default=100, help="cells timed in the per-cell loop")
    parser.add_argument("--iterations", type=int, default=3, help="write-verify rounds")
    parser.add_argument("--wv-rows", type=int, default=4,
                        help=f"rows timed in the vectorized write-verify of arrays above {FULL_WV_ROWS} rows")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    start = time.perf_counter()
    params = DeviceParams.load()
    sizes = {}
    for size in args.sizes:
        sizes[f"{size}x{size}"] = bench_size(size, size, params, args.cells, args.iterations, args.wv_rows,
                                             args.seed)
    key = f"{TARGET_SIZE[0]}x{TARGET_SIZE[1]}"
    ratios = {op: sizes[key][op]["ratio"] for op in ("read", "pulse", "write_verify")} if key in sizes else {}
    print(json.dumps({
        "physics": "labctl.sim.physics.ArrayPhysics, public currents()/apply() only",
        "per_cell_method": "same physics on a 1x1 ArrayPhysics per cell holding that cell's state "
                           "(ArrayPhysics.STATE_KEYS copied, untimed); timed on a random subset of "
                           "cells and extrapolated linearly to the whole array",
        "write_verify_method": "whole-array read, then one apply per word line with SET columns "
                               "(BL 1.35 V) and RESET columns (SL 1.5 V) of that row, 100 ns; rows "
                               "with nothing to program skipped",
        "operations": {"read": "all gates 1.2 V, BL 0.2 V, SL 0 V (currents)",
                       "pulse": "all gates 1.2 V, BL 1.35 V, SL 0 V, 100 ns (apply)",
                       "write_verify": f"{args.iterations} x (read + conditional SET/RESET pulse), "
                                       f"targets 15..75 uS, tolerance 2 uS"},
        "sizes": sizes,
        "targets": {"ratio_min": RATIO_MIN, "size": key, "rule": "every operation's ratio at that size",
                    "ratios": ratios,
                    "below": [op for op, r in ratios.items() if r < RATIO_MIN],
                    "met": bool(ratios) and min(ratios.values()) >= RATIO_MIN},
        "wall_time_s": time.perf_counter() - start,
    }, indent=2))


if __name__ == "__main__":
    main()
