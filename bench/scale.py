"""A 4096 x 4096 virtual array (16.8 M cells) end to end, in bounded memory: open the simulated
station, form every cell directly in the simulator (each at its drawn post-forming conductance,
an hour ago; SMU ramps cell by cell would take days), a forward MVM of a batch, one dense parallel update,
the forward after it, then save the chip state and open it again.

Prints one JSON object: wall time of each step (s), the state file's size (MB) and the peak RSS
(MB). Usage: python bench/scale.py [--size 4096] [--batch 64]
"""
from __future__ import annotations

import os

if __name__ == "__main__":  # one BLAS thread, as the other benchmarks
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from labctl.station import Station


class Steps:
    """Wall time of named steps."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, fn):
        start = time.perf_counter()
        result = fn()
        self.seconds[name] = round(time.perf_counter() - start, 3)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    n, rng, step = args.size, np.random.default_rng(0), Steps()
    x = rng.uniform(-1, 1, (args.batch, n))
    rows, cols = (rng.integers(0, 2 ** 31, n, dtype=np.uint32) for _ in range(2))
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "chip.npz"
        station = step("open_s", lambda: Station.open(f"sim:{n}x{n}", sim_state=state, seed=1).__enter__())
        physics, xbar = station.lab.physics, station.crossbar

        def form() -> None:
            physics.formed[:] = True
            physics.g[:] = physics.g_formed
            physics.t_prog[:] = physics.clock.now - 3600.0  # formed an hour ago: steady-state reads
        step("form_directly_s", form)
        xbar.configure_mvm()
        step("forward_first_s", lambda: xbar.mvm_forward(x))
        step("forward_s", lambda: xbar.mvm_forward(x))
        step("update_dense_s", lambda: xbar.parallel_update(rows, cols, 31, 1, 1.2, 5e-9))
        step("forward_after_update_s", lambda: xbar.mvm_forward(x))
        step("save_s", lambda: station.__exit__(None, None, None))
        size_mb = state.stat().st_size / 2 ** 20
        reopened = step("load_s", lambda: Station.open(f"sim:{n}x{n}", sim_state=state, seed=1).__enter__())
        assert reopened.lab.physics.formed.all()
        reopened.__exit__(None, None, None)
    print(json.dumps({"size": f"{n}x{n}", "cells": n * n, "batch": args.batch, **step.seconds,
                      "state_file_mb": round(size_mb, 1),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}, indent=1))


if __name__ == "__main__":
    main()
