"""In-situ training and long-term inference on the simulated chip, against the floating-point
baseline trained in the same run (the `train` protocol trains both).

Prints one JSON object:
- iris: `train` (sgd) on the packaged 4x8 chip (`sim`), formed first with the `forming`
  protocol; test accuracy against the floating-point baseline, wall time;
- digits: `train` of the 64-32-10 network on `sim:64x256` with each algorithm (default sgd,
  ttv2, agad): test / train accuracy, the floating-point test accuracy of the same split,
  sample order and epochs, the gap (fp - analog, points), wall time; the array is formed
  directly in the simulator (`physics.formed[:] = True`, each cell at its drawn post-forming
  conductance), because the SMU forming ramps of 16384 cells take ~2 minutes of wall time;
- inference: the `inference` protocol on the digits run of `--inference-from` (default agad):
  write-verify at 2 %, test accuracy and MVM error at 1 s, 1 h, 1 day, 1 year, 10 years, chance
  level for reference, wall time.
Each training run starts from a fresh chip (station seed `--chip-seed`); data split, order and
bit trains follow `--seed`.

Usage: python bench/training.py [--epochs 10] [--algorithms sgd ttv2 agad] [--iris-epochs 20]
                                [--seed 0] [--chip-seed 1] [--inference-from agad] [--no-inference]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from labctl.engine import run_protocol
from labctl.station import Station

KEYS = ("test_accuracy", "train_accuracy", "fp_test_accuracy", "fp_train_accuracy", "loss", "fp_loss", "lr",
        "transfer_lr", "dw", "coincidences", "transfers", "c_writes")


def run(station, name: str, values: dict, out: Path) -> tuple[dict, float, str]:
    start = time.perf_counter()
    result = run_protocol(station, name, values, out=out)
    if result.status != "completed":
        raise RuntimeError(f"{name} {values}: {result.status}: {result.error}")
    return result.summary, time.perf_counter() - start, result.run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="digits epochs")
    parser.add_argument("--iris-epochs", type=int, default=20)
    parser.add_argument("--algorithms", nargs="+", default=["sgd", "ttv2", "agad"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chip-seed", type=int, default=1)
    parser.add_argument("--inference-from", default="agad")
    parser.add_argument("--no-inference", action="store_true")
    parser.add_argument("--no-iris", action="store_true")
    args = parser.parse_args()
    report: dict = {"seed": args.seed, "chip_seed": args.chip_seed}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.no_iris:
            with Station.open("sim", sim_state=tmp / "iris.npz", seed=args.chip_seed) as station:
                _, t_form, _ = run(station, "forming", {}, tmp / "iris.h5")
                s, t, _ = run(station, "train", {"dataset": "iris", "epochs": args.iris_epochs, "seed": args.seed},
                              tmp / "iris.h5")
            report["iris"] = {"station": "sim (4x8)", "epochs": args.iris_epochs, "algorithm": "sgd",
                              **{k: s[k] for k in KEYS if k in s}, "wall_s": round(t, 1),
                              "forming_wall_s": round(t_form, 1)}
        digits: dict = {"station": "sim:64x256", "epochs": args.epochs, "network": "64-32-10"}
        runs = {}
        for algorithm in args.algorithms:
            state = tmp / f"digits_{algorithm}.npz"
            with Station.open("sim:64x256", sim_state=state, seed=args.chip_seed) as station:
                physics = station.lab.physics
                physics.formed[:] = True
                physics.g[:] = physics.g_formed
                out = tmp / f"digits_{algorithm}.h5"
                s, t, run_id = run(station, "train", {"dataset": "digits", "algorithm": algorithm,
                                                      "epochs": args.epochs, "seed": args.seed}, out)
            runs[algorithm] = (state, out, run_id)
            digits[algorithm] = {**{k: s[k] for k in KEYS if k in s}, "wall_s": round(t, 1),
                                 "gap_points": round(100 * (s["fp_test_accuracy"] - s["test_accuracy"]), 2)}
            digits["fp_test_accuracy"] = s["fp_test_accuracy"]
        report["digits"] = digits
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
