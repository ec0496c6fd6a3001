"""In-situ training and long-term inference on the simulated chip, against the floating-point
baseline trained in the same run (the `train` protocol trains both), and beside IBM aihwkit.

Prints one JSON object:
- iris: `train` (sgd) on the packaged 4x8 chip (`sim`), formed first with the `forming`
  protocol; test accuracy against the floating-point baseline, wall time;
- digits: `train` of the 64-32-10 network on `sim:64x256` (batch `--batch`, default 16) with each
  algorithm (default sgd, ttv2, agad) for each of `--seeds`: per algorithm the final test
  accuracy per seed with mean and standard deviation, the floating-point test accuracy of the
  same splits, sample orders and epochs, the gap (fp - analog, points), and the wall time of one
  epoch through the whole stack (protocol -> crossbar -> FpgaBoard driver -> frames ->
  VirtualBoard -> physics): `epoch_s` the training batches alone (as aihwkit's epoch time),
  `epoch_with_eval_s` with the per-epoch evaluation of training and test set, medians over
  seeds; the symmetry-point programming and step calibration before it are in `setup_s`. The array is formed directly in the simulator (`physics.formed[:] = True`, each
  cell at its drawn post-forming conductance); seed k uses chip seed `--chip-seed` + k and data
  seed k;
- aihwkit (`--aihwkit`): bench/aihwkit_ops.py --training in the venv of bench/setup_aihwkit.sh
  with the same epochs, seeds, batch and algorithms (ReRAM-like SoftBoundsDevice, see that
  file), and per algorithm labctl / aihwkit epoch time and the accuracy difference (points);
- inference: the `inference` protocol on the digits run of `--inference-from` (default agad,
  first seed): write-verify at 2 %, test accuracy and MVM error at 1 s, 1 h, 1 day, 1 year,
  10 years, chance level for reference, wall time.

Usage: python bench/training.py [--epochs 10] [--algorithms sgd ttv2 agad] [--seeds 0 1 2]
                                [--batch 16] [--iris-epochs 20] [--chip-seed 1] [--aihwkit]
                                [--inference-from agad] [--no-inference] [--no-iris]
The issue-10 figures: `--epochs 1 --no-iris --no-inference --aihwkit` (epoch time) and
`--epochs 40 --seeds 0 1 2 --no-iris --no-inference --aihwkit` (accuracy at equal work).
"""
from __future__ import annotations

import os

if __name__ == "__main__":  # one BLAS thread, as aihwkit's side runs (fixed when numpy loads)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from aihwkit_side import aihwkit_report
from labctl.engine import run_protocol
from labctl.station import Station

KEYS = ("test_accuracy", "train_accuracy", "fp_test_accuracy", "fp_train_accuracy", "loss", "fp_loss", "lr",
        "transfer_lr", "dw", "coincidences", "transfers", "c_writes")


class EpochClock:
    """Progress hook: wall time of the training batches (`train`: from an epoch's first batch to
    its evaluation, as aihwkit's epoch time is taken) and of training with the per-epoch
    evaluation (`total`: from the first batch to the end of training)."""

    def __init__(self):
        self.start = self.end = self.epoch_start = None
        self.train = 0.0

    def __call__(self, done: int, total: int, message: str = "") -> None:
        now = time.perf_counter()
        if message.startswith("epoch ") and ", batch 1/" in message:
            self.epoch_start = now
            if self.start is None:
                self.start = now
        if message.endswith(": evaluating") and self.epoch_start is not None:
            self.train += now - self.epoch_start
            self.epoch_start = None
        if self.start is not None and done == total:
            self.end = now


def run(station, name: str, values: dict, out: Path, progress=None) -> tuple[dict, float, str]:
    start = time.perf_counter()
    result = run_protocol(station, name, values, out=out, progress=progress)
    if result.status != "completed":
        raise RuntimeError(f"{name} {values}: {result.status}: {result.error}")
    return result.summary, time.perf_counter() - start, result.run_id


def train_digits(tmp: Path, algorithm: str, seed: int, args) -> tuple[dict, dict, tuple]:
    """One digits run on a fresh chip: (report entry, summary, (state, out, run_id))."""
    state, out = tmp / f"digits_{algorithm}_{seed}.npz", tmp / f"digits_{algorithm}_{seed}.h5"
    clock = EpochClock()
    with Station.open("sim:64x256", sim_state=state, seed=args.chip_seed + seed) as station:
        physics = station.lab.physics
        physics.formed[:] = True
        physics.g[:] = physics.g_formed
        s, t, run_id = run(station, "train", {"dataset": "digits", "algorithm": algorithm, "epochs": args.epochs,
                                              "batch": args.batch, "seed": seed}, out, clock)
    with_eval = (clock.end - clock.start) / args.epochs
    return ({"epoch_s": clock.train / args.epochs, "epoch_with_eval_s": with_eval,
             "setup_s": t - with_eval * args.epochs}, s, (state, out, run_id))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="digits epochs")
    parser.add_argument("--batch", type=int, default=16, help="digits mini-batch")
    parser.add_argument("--iris-epochs", type=int, default=20)
    parser.add_argument("--algorithms", nargs="+", default=["sgd", "ttv2", "agad"], choices=["sgd", "ttv2", "agad"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--chip-seed", type=int, default=1)
    parser.add_argument("--aihwkit", action="store_true", help="run IBM aihwkit's digits training beside")
    parser.add_argument("--inference-from", default="agad")
    parser.add_argument("--no-inference", action="store_true")
    parser.add_argument("--no-iris", action="store_true")
    args = parser.parse_args()
    report: dict = {"seeds": args.seeds, "chip_seed": args.chip_seed}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.no_iris:
            with Station.open("sim", sim_state=tmp / "iris.npz", seed=args.chip_seed) as station:
                _, t_form, _ = run(station, "forming", {}, tmp / "iris.h5")
                s, t, _ = run(station, "train", {"dataset": "iris", "epochs": args.iris_epochs, "seed": args.seeds[0]},
                              tmp / "iris.h5")
            report["iris"] = {"station": "sim (4x8)", "epochs": args.iris_epochs, "algorithm": "sgd",
                              **{k: s[k] for k in KEYS if k in s}, "wall_s": round(t, 1),
                              "forming_wall_s": round(t_form, 1)}
        digits: dict = {"station": "sim:64x256", "epochs": args.epochs, "batch": args.batch, "network": "64-32-10"}
        runs = {}
        for algorithm in args.algorithms:
            entries = []
            for seed in args.seeds:
                timing, s, files = train_digits(tmp, algorithm, seed, args)
                runs.setdefault(algorithm, files)
                entries.append({**timing, **{k: s[k] for k in KEYS if k in s}})
            final = np.array([e["test_accuracy"] for e in entries])
            fp = np.array([e["fp_test_accuracy"] for e in entries])
            digits[algorithm] = {"final_test_accuracy": final.tolist(), "final_mean": float(final.mean()),
                                 "final_std": float(final.std()), "fp_final_mean": float(fp.mean()),
                                 "gap_points": round(100 * float(fp.mean() - final.mean()), 2),
                                 "epoch_s": float(np.median([e["epoch_s"] for e in entries])),
                                 "epoch_with_eval_s": float(np.median([e["epoch_with_eval_s"] for e in entries])),
                                 "setup_s": float(np.mean([e["setup_s"] for e in entries])), "runs": entries}
        report["digits"] = digits
        if args.aihwkit:
            theirs = report["aihwkit"] = aihwkit_report(
                "--training", "--epochs", str(args.epochs), "--batch", str(args.batch), "--threads", "1",
                "--algorithms", *args.algorithms, "--seeds", *map(str, args.seeds))
            for algorithm in args.algorithms:
                if algorithm in theirs:
                    ours = digits[algorithm]
                    ours["vs_aihwkit"] = {
                        "epoch_time_ratio": ours["epoch_s"] / theirs[algorithm]["epoch_s_mean"],
                        "accuracy_points": round(100 * (ours["final_mean"] - theirs[algorithm]["final_mean"]), 2)}
        if not args.no_inference and args.inference_from in runs:
            state, out, run_id = runs[args.inference_from]
            with Station.open("sim:64x256", sim_state=state, seed=args.chip_seed + 1) as station:
                s, t, _ = run(station, "inference", {"file": str(out), "run_id": run_id}, out)
            report["inference"] = {"from": args.inference_from, "chance": 0.1, "wall_s": round(t, 1),
                                   **{k: s[k] for k in ("times", "test_accuracy", "mvm_rmse", "weight_rmse",
                                                        "fp_test_accuracy", "trained_test_accuracy", "g_scale",
                                                        "clipped", "cells", "pulses_mean", "success_rate")}}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
