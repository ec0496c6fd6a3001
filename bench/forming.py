"""Forming through the SMU ramp on the simulated lab: wall time per array, against the same ramp
played point by point in the same run.

Prints one JSON object: per size, the `forming` protocol's wall time (the test suite's coarse
ramp by default: 50 mV steps from 2.9 V; `--v-start 0 --v-step 0.01` is the protocol's default
ramp), ms per cell, yield, the virtual time the ramps took, and the SCPI messages and board
frames per cell (the SMU keeps its setup and ramp between cells and is only re-armed);
and, on the smallest size, the same run with the 2450 twin's bulk quiet-point path switched off
(every sweep point an exact circuit solve with its compliance check), whose ratio to the bulk
path is the speed-up of resolving a ramp in one physics call.

Usage: python bench/forming.py [--sizes 16 64] [--v-start 2.9] [--v-step 0.05]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from labctl.engine import run_protocol
from labctl.station import Station


def form(n: int, values: dict, point_by_point: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as tmp, \
            Station.open(f"sim:{n}x{n}", sim_state=Path(tmp) / "chip.npz", seed=1) as station:
        lab = station.lab
        if point_by_point:
            lab.quiet_ramp = lambda levels, duration, limit: ()
        counts = {"smu": 0, "board": 0}
        for name, twin in (("smu", lab.smu), ("board", lab.board)):
            def counted(data, handle=twin.handle, name=name):
                counts[name] += data.count(b"\n") if name == "smu" else 1
                return handle(data)
            twin.handle = counted
        t0, start = lab.physics.clock.now, time.perf_counter()
        result = run_protocol(station, "forming", values, out=Path(tmp) / "forming.h5")
        wall = time.perf_counter() - start
        if result.status != "completed":
            raise RuntimeError(f"forming {n}x{n}: {result.status}: {result.error}")
        return {"wall_s": wall, "ms_per_cell": 1e3 * wall / n**2, "yield": result.summary["yield"],
                "virtual_s": lab.physics.clock.now - t0, "scpi_messages_per_cell": counts["smu"] / n**2,
                "board_writes_per_cell": counts["board"] / n**2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--v-start", type=float, default=2.9)
    parser.add_argument("--v-step", type=float, default=0.05)
    args = parser.parse_args()
    values = {"v_start": args.v_start, "v_step": args.v_step}
    report = {"ramp": values, "sizes": {f"{n}x{n}": form(n, values) for n in args.sizes}}
    n = min(args.sizes)
    exact = form(n, values, point_by_point=True)
    report["point_by_point"] = exact | {"size": f"{n}x{n}",
                                        "ratio": exact["wall_s"] / report["sizes"][f"{n}x{n}"]["wall_s"]}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
