"""The demo: bring up a fresh simulated chip (form, read the map, one I-V loop) into one file."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from .engine import Progress, RunResult, run_protocol
from .station import Station, load_station, reset_sim_state

DEMO_STEPS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("forming", {}), ("read_map", {}), ("iv_sweep", {"row": 0, "col": 0}))


def run_demo(out_dir: str | Path = "labctl_demo", seed: int = 0,
             progress: Progress | None = None) -> list[RunResult]:
    """Run the demo steps on a pristine built-in chip; stops at the first run that fails."""
    out_dir = Path(out_dir)
    out = out_dir / f"demo-{datetime.now():%Y%m%d-%H%M%S}.h5"
    state = reset_sim_state(load_station("sim"), out_dir / "sim-chip.npz")
    results = []
    with Station.open("sim", sim_state=state, seed=seed) as station:
        for name, values in DEMO_STEPS:
            results.append(run_protocol(station, name, values, out=out, progress=progress))
            if results[-1].status != "completed":
                break
    return results


def format_g_map(g_map: np.ndarray) -> str:
    """A conductance map as a small table in uS: rows = WL, columns = BL/SL."""
    g = np.asarray(g_map) * 1e6
    header = "      " + "".join(f"{f'BL{c + 1}':>7}" for c in range(g.shape[1]))
    lines = [header] + [f"WL{r + 1:<4}" + "".join(f"{x:7.1f}" for x in row) for r, row in enumerate(g)]
    return "\n".join(lines)


def describe(results: list[RunResult]) -> str:
    """The human summary printed by `labctl demo`."""
    by_name = {r.protocol: r for r in results}
    lines = []
    forming = by_name.get("forming")
    if forming and forming.status == "completed":
        s = forming.summary
        lines.append(f"Forming: {s['formed']}/{s['cells']} cells formed (yield {s['yield']:.0%}); "
                     f"forming voltage {s['v_form_mean']:.3f} V mean, {1e3 * s['v_form_std']:.0f} mV std")
    read = by_name.get("read_map")
    if read and read.status == "completed":
        lines += ["", "Conductance map (uS) read at 0.2 V:", format_g_map(np.array(read.summary["g_map"]))]
    iv = by_name.get("iv_sweep")
    if iv and iv.status == "completed" and iv.summary["on_off_ratio"]:
        s = iv.summary
        lines += ["", f"I-V loop on cell WL1/BL1: {s['points']} points, LRS {1e6 * s['g_lrs']:.1f} uS, "
                      f"HRS {1e6 * s['g_hrs']:.1f} uS, on/off ratio {s['on_off_ratio']:.1f}"]
    for r in results:
        if r.status != "completed":
            lines.append(f"{r.protocol} {r.status}: {r.error}")
    if results:
        lines += ["", f"Data: {results[0].file}  (runs: {', '.join(r.run_id for r in results)})",
                  f"Look inside: labctl data ls {results[0].file}"]
    return "\n".join(lines)
