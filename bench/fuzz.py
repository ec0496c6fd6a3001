"""Fuzz every parser with >= 10 000 inputs each and print JSON: per parser the inputs tried, how many
were accepted, ended in a clean (documented) error, were stopped as valid long work ("busy", see
tests/faults/fuzzkit.py), crashed (any broken property: an uncaught exception, a twin that stopped
answering or turned an output on, an error naming no field) or hung (past the per-input wall
bound), and the time taken.

    .venv/bin/python bench/fuzz.py [--inputs 10000] [--only scpi:keithley2450,...] [--seed 0]

The inputs come from the same hypothesis strategies as tests/faults/test_fuzz_parsers.py (generation
only: no shrinking, no example database), seeded, so a run is repeatable. Exit status 1 if any
parser crashed or hung.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "faults"))

import fuzzkit  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402


def fuzz(target, inputs: int, rng_seed: int) -> dict:
    tally = {"inputs": 0, "accepted": 0, "clean_errors": 0, "busy": 0, "crashes": 0, "hangs": 0}
    examples: list[str] = []

    @seed(rng_seed)
    @settings(max_examples=inputs, phases=[Phase.generate], database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(target.strategy())
    def run(case):
        if tally["inputs"] >= inputs:
            return
        outcome, detail = fuzzkit.run_one(target, case)
        tally["inputs"] += 1
        tally[{"error": "clean_errors", "crash": "crashes", "hang": "hangs"}.get(outcome, outcome)] += 1
        if detail and len(examples) < 5:
            examples.append(f"{outcome}: {detail[:400]}")

    start = time.perf_counter()
    while tally["inputs"] < inputs:  # hypothesis may end a run early (a small space): go on with a new seed
        before = tally["inputs"]
        run()
        if tally["inputs"] == before:
            break
        rng_seed += 1
    return tally | {"seconds": round(time.perf_counter() - start, 2)} | ({"first_failures": examples} if examples else {})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=10_000, help="inputs per parser (default 10000)")
    parser.add_argument("--only", default="", help="comma-separated parser names (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    targets = fuzzkit.targets()
    names = [n for n in args.only.split(",") if n] or list(targets)
    report = {}
    for name in names:
        report[name] = fuzz(targets[name], args.inputs, args.seed)
        print(f"{name}: {report[name]}", file=sys.stderr, flush=True)
    total = {key: sum(r[key] for r in report.values())
             for key in ("inputs", "accepted", "clean_errors", "busy", "crashes", "hangs")}
    total["seconds"] = round(sum(r["seconds"] for r in report.values()), 2)
    print(json.dumps({"parsers": report, "total": total, "wall_bound_s": fuzzkit.WALL_BOUND_S,
                      "busy_load_calls": fuzzkit.BUSY_LOAD_CALLS}, indent=2))
    return 1 if total["crashes"] or total["hangs"] else 0


if __name__ == "__main__":
    sys.exit(main())
