"""One point of a study, as a worker runs it: its own simulated station, the steps, the summaries.

A PointTask carries everything the point needs (the station config, the device parameters with
the point's values, each step's parameters, the seed) and the study's device file comes with it
(its sections: units and sources; Dask sends it to each worker once), so a worker needs labctl
installed and nothing else: no study file, no device file, no shared folder (unless the run data is kept,
see `run_file`). `run_point` never raises: a point that fails returns its error, with the
summaries of the steps that completed before.
"""
from __future__ import annotations

import json
import socket
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from labctl.engine import run_protocol
from labctl.station import Station, StationConfig

from .spec import device_doc_with


@dataclass(frozen=True)
class PointTask:
    index: int
    coords: dict[str, Any]
    overrides: dict[str, Any]
    config: StationConfig
    device: dict[str, float]                                   # every device parameter, at this point's values
    steps: tuple[tuple[str, str, dict[str, Any], str], ...]   # (name, protocol, parameters, input step)
    seed: int
    formed: bool
    run_file: str  # where the point's runs are written ("" = a temporary file, deleted after)


class StepFailed(RuntimeError):
    pass


def plain(value: Any) -> Any:
    """`value` with numpy scalars and arrays as Python numbers and lists (for JSON and transfer)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def to_json(value: Any) -> str:
    return json.dumps(plain(value), default=str)


def device_toml(doc: dict) -> str:
    """A device file (the format of sim_backend/device_cmo_hfox.toml) from its sections."""
    lines = ["# written by labctl study: the study's device file with this point's values"]
    for section, entries in doc.items():
        lines.append(f"\n[{section}]")
        for name, entry in entries.items():
            lines.append(f"{name} = {{ value = {float(entry['value'])!r}, unit = {json.dumps(entry.get('unit', ''))}, "
                         f"source = {json.dumps(entry.get('source', ''))} }}")
    return "\n".join(lines) + "\n"


def _worker() -> str:
    """The Dask worker's name, or "local" outside a worker."""
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        return "local"


def run_point(task: PointTask, device_doc: dict) -> dict[str, Any]:
    """Run a point's steps on a fresh simulated chip, built from `device_doc` (the study's device
    file, read with tomllib) with the point's values; returns its record (status, error,
    summaries, run ids, run file, worker, host, started/ended (epoch s), duration_s)."""
    record: dict[str, Any] = {"index": task.index, "coords": task.coords, "overrides": task.overrides,
                              "status": "failed", "error": "", "summaries": {}, "run_ids": {},
                              "run_file": task.run_file, "worker": _worker(), "host": socket.gethostname(),
                              "started": time.time()}
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="labctl-study-") as tmp:
            out = Path(task.run_file) if task.run_file else Path(tmp) / "runs.h5"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.unlink(missing_ok=True)  # a point interrupted before starts again
            device = out.with_suffix(".device.toml") if task.run_file else Path(tmp) / "device.toml"
            device.write_text(device_toml(device_doc_with(device_doc, task.device)), encoding="utf-8")
            config = replace(task.config, device_file=str(device))
            with Station(config, sim_state=Path(tmp) / "chip.npz", seed=task.seed) as station:
                if task.formed:  # every cell at its drawn post-forming conductance
                    assert station.lab is not None
                    physics = station.lab.physics
                    physics.formed[:] = True
                    physics.g[:] = physics.g_formed
                for name, protocol, values, source in task.steps:
                    if source:
                        values = {**values, "file": str(out), "run_id": record["run_ids"][source]}
                    result = run_protocol(station, protocol, values, out=out)
                    record["run_ids"][name] = result.run_id
                    record["summaries"][name] = plain(result.summary)
                    if result.status != "completed":
                        raise StepFailed(f"step {name} ({protocol}) {result.status}: {result.error}")
        record["status"] = "completed"
    except StepFailed as exc:
        record["error"] = str(exc)
    except Exception as exc:  # a point's failure is its record; the study goes on
        record["error"] = f"{type(exc).__name__}: {exc}"
    record["ended"] = time.time()
    record["duration_s"] = time.perf_counter() - start
    return record
