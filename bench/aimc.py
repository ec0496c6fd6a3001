"""Analog-AI throughput of the board's twin, against a plain numpy reference in the same run.

Prints one JSON object: per array size (64x64, 256x256, 512x512 by default), the time of a forward
MVM and a backward MVM on a batch of 64 vectors and of one parallel update, each through the full
stack (crossbar -> FpgaBoard driver -> frames -> VirtualBoard -> physics), against the numpy
operation that computes the same ideal result (x @ G, d @ G.T, the outer product of the pulse
counts); the ratio is stack time / numpy time (the price of simulating the physics and speaking
the wire protocol). The digits training epoch is timed by bench/training.py. If IBM's aihwkit is
installed, the same operations with a matching soft-bounds device would be compared; without it
the comparison is skipped with a message.

Usage: python bench/aimc.py [--sizes 64 256 512] [--batch 64] [--repeats 3]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from labctl.station import Station


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(n: int, batch: int, repeats: int, rng: np.random.Generator) -> dict:
    with tempfile.TemporaryDirectory() as tmp, \
            Station.open(f"sim:{n}x{n}", sim_state=Path(tmp) / "chip.npz", seed=1) as station:
        physics = station.lab.physics
        physics.formed[:] = True  # the SMU forming ramp of every cell would dominate the run
        physics.g[:] = physics.g_formed
        xbar = station.crossbar
        xbar.configure_mvm()
        x = rng.uniform(-1, 1, (batch, n))
        d = rng.uniform(-1, 1, (batch, n))
        g = physics.conductance()
        rows = rng.integers(0, 2**31, n, dtype=np.uint32)
        cols = rng.integers(0, 2**31, n, dtype=np.uint32)
        ops = {
            "forward_mvm": (lambda: xbar.mvm_forward(x), lambda: x @ g),
            "backward_mvm": (lambda: xbar.mvm_backward(d), lambda: d @ g.T),
            "parallel_update": (lambda: xbar.parallel_update(rows, cols, 31, +1, 1.2, 5e-9),
                                lambda: np.bitwise_count(rows[:, None] & cols[None, :])),
        }
        result = {}
        for name, (stack, reference) in ops.items():
            t_stack, t_numpy = best(stack, repeats), best(reference, repeats)
            result[name] = {"stack_s": t_stack, "numpy_s": t_numpy, "ratio": t_stack / t_numpy,
                            "vectors_per_s" if "mvm" in name else "updates_per_s":
                                (batch if "mvm" in name else 1) / t_stack}
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 512])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    report = {"batch": args.batch,
              "sizes": {f"{n}x{n}": measure(n, args.batch, args.repeats, rng) for n in args.sizes}}
    report["aihwkit"] = ("installed: side-by-side comparison not implemented yet"
                         if importlib.util.find_spec("aihwkit") else
                         "not installed (optional): comparison skipped")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
