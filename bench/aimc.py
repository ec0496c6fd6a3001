"""Analog-AI throughput of the board's twin, against a plain numpy reference in the same run.

Prints one JSON object: per array size (64x64, 256x256, 512x512 by default; add 4096), the time
of a forward MVM and a backward MVM on a batch of 64 vectors and of one parallel update (31-slot
trains: dense, every cell sees coincidences; sparse, ~2 % of the lines pulse), each through the
full stack (crossbar -> FpgaBoard driver -> frames -> VirtualBoard -> physics), against the
numpy operation that computes the same ideal result (x @ G, d @ G.T, the coincidence counts of
the trains); ratio = stack time / numpy time. The weights are pre-aged (programmed 1 h before),
the steady state of inference; `forward_after_update` is the first forward after a dense update
(it re-evaluates the read state of every updated cell). `virtual_s` is the chip's clock per
operation, the modelled 921600-baud UART included. Peak RSS (MB) after each size. --clock cpu
times with the process's CPU time instead of the wall clock: on a machine shared with other
work it leaves out the time the process waits for a core (both sides of a ratio alike).

--aihwkit runs bench/aihwkit_ops.py in the venv of bench/setup_aihwkit.sh (same sizes, batch,
repeats and threads; a soft-bounds device matching the window and step) and prints its figures
and labctl / aihwkit ratios beside ours.

Usage: python bench/aimc.py [--sizes 64 256 512 4096] [--batch 64] [--repeats 3] [--threads 1]
                            [--clock wall|cpu] [--aihwkit]
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # BLAS threads are fixed when numpy loads
    threads = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "1"
    os.environ.setdefault("OPENBLAS_NUM_THREADS", threads)

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from aihwkit_side import aihwkit_report
from labctl.station import Station
from timing import best

TRAIN = 31  # slots of a parallel-update train
AGE = 3600.0  # s since programming: steady-state inference


def trains(rng: np.random.Generator, n: int, p_line: float) -> np.ndarray:
    """Random TRAIN-slot bitmasks for n lines, a fraction p_line of them pulsing."""
    bits = rng.integers(0, 2**TRAIN, n, dtype=np.uint32)
    return np.where(rng.random(n) < p_line, bits, 0).astype(np.uint32)


def measure(n: int, batch: int, repeats: int, rng: np.random.Generator, clock=time.perf_counter) -> dict:
    with tempfile.TemporaryDirectory() as tmp, \
            Station.open(f"sim:{n}x{n}", sim_state=Path(tmp) / "chip.npz", seed=1) as station:
        physics = station.lab.physics
        physics.formed[:] = True  # the SMU forming ramp of every cell is bench/forming.py's
        physics.g[:] = physics.g_formed
        physics.t_prog[:] = physics.clock.now - AGE
        xbar = station.crossbar
        xbar.configure_mvm()
        x = rng.uniform(-1, 1, (batch, n))
        d = rng.uniform(-1, 1, (batch, n))
        g = physics.conductance()
        dense = trains(rng, n, 1.0), trains(rng, n, 1.0)
        sparse = trains(rng, n, 0.02), trains(rng, n, 0.02)

        def update(rows_cols):
            return lambda: xbar.parallel_update(*rows_cols, TRAIN, +1, 1.2, 5e-9)

        def counts(rows_cols):
            rows, cols = rows_cols
            return lambda: np.bitwise_count(rows[:, None] & cols[None, :])

        def forward_after_update():
            xbar.parallel_update(*dense, TRAIN, -1, 1.2, 5e-9)
            start = clock()
            xbar.mvm_forward(x)
            return clock() - start

        def timed(fn) -> float:
            if clock is time.perf_counter:
                return best(fn, repeats)
            times = []
            for _ in range(repeats):
                start = clock()
                fn()
                times.append(clock() - start)
            return min(times)

        ops = {
            "forward_mvm": (lambda: xbar.mvm_forward(x), lambda: x @ g),
            "backward_mvm": (lambda: xbar.mvm_backward(d), lambda: d @ g.T),
            "parallel_update_dense": (update(dense), counts(dense)),
            "parallel_update_sparse": (update(sparse), counts(sparse)),
        }
        result = {}
        for name, (stack, reference) in ops.items():
            stack()  # warm: the first read of a configuration tabulates its I(V)
            t0 = physics.clock.now
            t_stack = timed(stack)
            virtual = (physics.clock.now - t0) / repeats
            t_numpy = timed(reference)
            result[name] = {"stack_s": t_stack, "numpy_s": t_numpy, "ratio": t_stack / t_numpy,
                            "virtual_s": virtual}
        t_after = min(forward_after_update() for _ in range(repeats))
        result["forward_after_update"] = {"stack_s": t_after,
                                          "ratio": t_after / result["forward_mvm"]["numpy_s"]}
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 512])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (and aihwkit's torch threads)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall clock (perf_counter) or the process's CPU time (process_time)")
    parser.add_argument("--aihwkit", action="store_true", help="run IBM aihwkit side by side")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    report = {"batch": args.batch, "threads": args.threads, "train_slots": TRAIN, "clock": args.clock,
              "sizes": {f"{n}x{n}": measure(n, args.batch, args.repeats, rng, clock) for n in args.sizes}}
    if args.aihwkit:
        theirs = report["aihwkit"] = aihwkit_report("--sizes", *map(str, args.sizes), "--batch", str(args.batch),
                                                    "--repeats", str(args.repeats), "--threads", str(args.threads))
        for n in args.sizes:
            ours, other = report["sizes"][f"{n}x{n}"], theirs.get("sizes", {}).get(str(n), {})
            pairs = {"forward": ("forward_mvm", "forward_s"), "backward": ("backward_mvm", "backward_s"),
                     "update": ("parallel_update_dense", "update_s")}
            ours["vs_aihwkit"] = {key: ours[a]["stack_s"] / other[b] for key, (a, b) in pairs.items()
                                  if b in other}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
