"""The study engine on 2 cores: one 16-point study run serially in this process and on a LocalCluster
with 2 worker processes, in one run. Prints one JSON object.

The study (docs/studies/bench16.toml): a formed sim:12x12 chip, mvm at 1 s and at 10 years
(write-verify at 0.2 % each), over 4 programming-noise values x 4 seeds. Both runs go through
`labctl.study.run_study` (serial=True, then the default Dask path) into their own results file,
and the report checks that their summaries are equal point for point.

- speedup: serial time of the 16 points / the cluster's, both from the first point sent to the
  last one written (`points_s`: the cluster already up, as an existing cluster is); also with the
  LocalCluster's start and stop (`speedup_with_startup`). Target >= 1.7x on 2 cores.
- overhead of the engine per point, against a point's own time (`duration_s`, measured inside
  the task): `dispatch_gap_s` (on each worker, from the previous point's end, or from the first
  submission, to the point's start: scheduling and transfer to the worker), `append_s` (the
  client writing its record into the HDF5 file), `result_latency_s` (worker's end to the client
  having the record; it overlaps the worker's next point). overhead_fraction =
  (dispatch_gap_s + append_s) / mean point time: target < 5 %. `idle_fraction` is everything that
  kept the two workers from computing during `points_s`, the unequal points at the end included.

Usage: python bench/study.py [--workers 2] [--study docs/studies/bench16.toml]
"""
from __future__ import annotations

import os

if __name__ == "__main__":  # one BLAS thread in the serial run too (Dask's workers get the same)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from labctl.study import load_study, read_points, run_study

ROOT = Path(__file__).resolve().parents[1]


def overheads(result, workers: int) -> dict:
    timings = sorted(result.timings, key=lambda t: t["started"])
    submitted = max(t["appended"] for t in timings) - result.points_s
    gaps, previous = [], {}
    for t in timings:
        gaps.append(t["started"] - previous.get(t["worker"], submitted))
        previous[t["worker"]] = t["ended"]
    duration = np.array([t["duration_s"] for t in timings])
    append = np.array([t["appended"] - t["received"] for t in timings])
    latency = np.array([t["received"] - t["ended"] for t in timings])
    per_point = float(np.mean(gaps) + append.mean())
    return {"point_s_mean": float(duration.mean()), "point_s_min": float(duration.min()),
            "point_s_max": float(duration.max()), "dispatch_gap_s": float(np.mean(gaps)),
            "append_s": float(append.mean()), "result_latency_s": float(latency.mean()),
            "overhead_per_point_s": per_point, "overhead_fraction": per_point / float(duration.mean()),
            "idle_fraction": 1.0 - float(duration.sum()) / (workers * result.points_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--study", type=Path, default=ROOT / "docs" / "studies" / "bench16.toml")
    args = parser.parse_args()
    study = load_study(args.study)
    with tempfile.TemporaryDirectory() as tmp:
        serial = run_study(study, Path(tmp) / "serial.h5", serial=True)
        cluster = run_study(study, Path(tmp) / "cluster.h5", workers=args.workers)
        same = [a["summaries"] == b["summaries"] for a, b in zip(read_points(serial.file), read_points(cluster.file))]
        failed = serial.failed + cluster.failed
    report = {
        "study": str(args.study.relative_to(ROOT) if args.study.is_relative_to(ROOT) else args.study),
        "points": len(study.points), "station": study.station, "workers": args.workers, "cores": os.cpu_count(),
        "failed_points": failed, "summaries_equal": all(same),
        "serial": {"points_s": serial.points_s, "wall_s": serial.wall_s,
                   "engine_s_per_point": (serial.points_s - sum(t["duration_s"] for t in serial.timings))
                   / len(serial.timings), **{k: v for k, v in overheads(serial, 1).items()
                                             if k.startswith("point_s") or k == "append_s"}},
        "cluster": {"scheduler": cluster.scheduler, "points_s": cluster.points_s, "wall_s": cluster.wall_s,
                    **overheads(cluster, args.workers)},
        "speedup": serial.points_s / cluster.points_s,
        "speedup_with_startup": serial.wall_s / cluster.wall_s,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
