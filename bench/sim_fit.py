"""Parameter recovery of `labctl sim fit` (labctl/fit) over seeds: how close, and how honest the
reported uncertainties are.

For each seed, a simulated chip with perturbed device parameters (window and step sizes x0.8,
read noise and relaxation drift x1.5, forming voltage +0.1 V, as tests/test_sim_fit.py) runs
forming, pulse_response, read_noise, retention and write_verify; the fit's estimate of every
parameter is compared with the chip's true value. Prints one JSON object: per parameter the true
value, the mean fitted value, the mean relative error, its rms and its largest, the mean reported relative
uncertainty, and the coverage (the fraction of seeds whose true value lies within 1, 2 and 3
reported standard uncertainties; ~0.68, 0.95, 0.997 if the uncertainties are right); the timings.

Usage:
  .venv/bin/python bench/sim_fit.py [--seeds 8] [--first-seed 100] [--chip 8x8] [--pulses 20] [--cycles 2]
      [--width 200e-9]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from labctl.sim.physics import DEFAULT_DEVICE_FILE

from labctl.fit import fit_runs
from labctl.station import load_station
from labctl.study.point import PointTask, run_point
from labctl.study.spec import device_entries, read_device_file

SCALED = {"g_min": 0.8, "g_max": 0.8, "tau_set": 1 / 0.8, "tau_reset": 1 / 0.8, "read_noise": 1.5, "drift_mean": 1.5}
SHIFTED = {"v_form_mean": 0.1}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--first-seed", type=int, default=100, help="chips are seeded first-seed, first-seed + 1, ...")
    parser.add_argument("--chip", default="8x8")
    parser.add_argument("--pulses", type=int, default=20)
    parser.add_argument("--cycles", type=int, default=2)
    parser.add_argument("--width", type=float, default=200e-9)
    args = parser.parse_args()
    rows, cols = (int(x) for x in args.chip.split("x"))
    doc = read_device_file(DEFAULT_DEVICE_FILE)
    base = {name: entry["value"] for name, entry in device_entries(doc).items()}
    true = base | {k: base[k] * f for k, f in SCALED.items()} | {k: base[k] + d for k, d in SHIFTED.items()}
    steps = (
        ("forming", "forming", {}, ""),
        ("pulse_response", "pulse_response", {"row": 0, "col": 0, "n_rows": rows, "n_cols": cols,
                                              "n_pulses": args.pulses, "cycles": args.cycles, "width": args.width}, ""),
        ("read_noise", "read_noise", {"levels": [20e-6, 50e-6], "times": [1.0, 100.0], "n_reads": 10,
                                      "acceptance": 0.05}, ""),
        ("retention", "retention", {"levels": [20e-6, 40e-6, 60e-6], "times": [1.0, 1e3, 1e6, 1e8],
                                    "acceptance": 0.05}, ""),
        ("write_verify", "write_verify", {"targets": [20e-6, 50e-6], "acceptance": 0.02}, ""),
    )
    fitted: dict[str, list[tuple[float, float]]] = {}
    t_runs = t_fit = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            path = Path(tmp) / f"runs_{seed}.h5"
            start = time.perf_counter()
            record = run_point(PointTask(0, {}, {}, load_station(f"sim:{args.chip}"), true, steps, args.first_seed + seed, False,
                                         str(path)), doc)
            t_runs += time.perf_counter() - start
            if record["status"] != "completed":
                print(json.dumps({"error": record["error"]}))
                return 1
            start = time.perf_counter()
            result = fit_runs(path)
            t_fit += time.perf_counter() - start
            for name, est in result.estimates.items():
                fitted.setdefault(name, []).append((est.value, est.uncertainty))
            print(f"seed {seed}: {len(result.estimates)} parameters", file=sys.stderr)
    report = {}
    for name, pairs in fitted.items():
        value, sigma = np.array(pairs).T
        z = np.abs(value - true[name]) / sigma
        rel = (value - true[name]) / true[name]
        report[name] = {"true": true[name], "fitted_mean": float(value.mean()), "rel_error_mean": float(rel.mean()),
                        "rel_error_rms": float(np.sqrt(np.mean(rel**2))), "rel_error_max_abs": float(np.abs(rel).max()),
                        "rel_uncertainty_mean": float(np.mean(sigma / np.abs(true[name]))),
                        "coverage_1sigma": float(np.mean(z <= 1)), "coverage_2sigma": float(np.mean(z <= 2)),
                        "coverage_3sigma": float(np.mean(z <= 3))}
    print(json.dumps({"seeds": args.seeds, "first_seed": args.first_seed, "chip": args.chip, "pulse_response": steps[1][2],
                      "runs_s_per_seed": t_runs / args.seeds, "fit_s_per_seed": t_fit / args.seeds,
                      "parameters": report}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
