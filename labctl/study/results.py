"""A study's results: one HDF5 file, written as points finish, read as a DataFrame or a Dataset.

Layout::

    /                 attrs: kind = "labctl-study", name, description, source (the study file),
                             definition (its text), plan (JSON: every point's index, coords and
                             overrides), axes (JSON: name, values, members), coordinates (JSON),
                             device_file, device (JSON: the base device values), data_dir,
                             software (JSON: versions), created, labctl_version
    /points/<index>   one group per finished point; attrs: index, coords, overrides, summaries
                      (JSON: step -> summary), run_ids (JSON: step -> run id in run_file),
                      run_file, worker, host, started, ended (UTC), duration_s, error, and
                      status (completed | failed), written last

Crash safety: the file is open only while one point is appended (a few ms: open, one group, close,
with Ctrl-C and SIGTERM held as in the run engine), so an interruption or a killed process leaves
it closed and readable with every point appended before; a group without `status` counts as not
run. Readers open it with labctl.store's lock-free open, so `labctl study status` and the
analysis calls work while a study is still running.
"""
from __future__ import annotations

import json
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py

from labctl import __version__
from labctl.engine import Terminated, deferred_interrupts
from labctl.store import decode_attr, open_readonly, software_versions

from .point import plain, to_json
from .spec import Study, StudyError

KIND = "labctl-study"
MAX_LIST = 32  # summary lists up to this many numbers become columns of the frame (name[i]); longer stay in the file
STATUSES = ("completed", "failed", "pending")


def _utc(epoch: float | None = None) -> str:
    moment = datetime.fromtimestamp(epoch, UTC) if epoch is not None else datetime.now(UTC)
    return moment.isoformat(timespec="milliseconds")


def _plan(study: Study) -> list[dict[str, Any]]:
    return plain([{"index": p.index, "coords": p.coords, "overrides": p.overrides} for p in study.points])


def _base_device(study: Study) -> dict[str, float]:
    return {name: float(entry["value"]) for section in study.device_doc.values() for name, entry in section.items()}


def versions() -> dict[str, str]:
    out = software_versions()
    for name in ("dask", "distributed"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            pass
    return out


def create(path: Path, study: Study, data_dir: str) -> None:
    """A new results file for `study` (replacing any file at `path`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs.update({
            "kind": KIND, "name": study.name, "description": study.description, "source": study.source,
            "definition": study.text, "plan": to_json(_plan(study)), "coordinates": to_json(study.coordinates),
            "axes": to_json([{"name": a.name, "values": a.values, "members": a.members} for a in study.axes]),
            "device_file": str(study.device_file), "device": to_json(_base_device(study)), "data_dir": data_dir,
            "software": to_json(versions()), "created": _utc(), "labctl_version": __version__})
        f.create_group("points")


def read_header(path: str | Path) -> dict[str, Any]:
    """The root attributes of a results file, JSON decoded; StudyError if it is not one."""
    try:
        with open_readonly(path) as f:
            attrs = {k: decode_attr(v) for k, v in f.attrs.items()}
    except OSError as exc:
        raise StudyError(f"{path}: not a readable study results file ({exc})") from None
    if attrs.get("kind") != KIND:
        raise StudyError(f"{path}: not a labctl study results file (kind {attrs.get('kind')!r})")
    for key in ("plan", "coordinates", "axes", "device", "software"):
        attrs[key] = json.loads(attrs[key])
    return attrs


def check_same(path: Path, study: Study) -> None:
    """Resuming: the study must define the same points on the same device file as the file's."""
    header = read_header(path)
    if header["plan"] != _plan(study):
        raise StudyError(f"{path} holds study {header['name']!r} with other points than {study.source} now "
                         f"defines; resume it from its own definition (labctl study resume {path}) or start a "
                         f"new file")
    if header["device"] != _base_device(study):
        raise StudyError(f"{path}: the device file {study.device_file} changed since the study started")


def append(path: Path, record: dict[str, Any]) -> None:
    """Write one finished point (replacing an earlier record of it), Ctrl-C / SIGTERM held meanwhile."""
    with deferred_interrupts() as caught:
        with h5py.File(path, "a") as f:
            points = f.require_group("points")
            key = f"{record['index']:06d}"
            if key in points:
                del points[key]
            group = points.create_group(key)
            group.attrs.update({
                "index": record["index"], "coords": to_json(record["coords"]),
                "overrides": to_json(record["overrides"]), "summaries": to_json(record["summaries"]),
                "run_ids": to_json(record["run_ids"]), "run_file": record["run_file"], "worker": record["worker"],
                "host": record.get("host", ""), "started": _utc(record["started"]), "ended": _utc(record["ended"]),
                "duration_s": float(record["duration_s"]), "error": record["error"]})
            group.attrs["status"] = record["status"]
    if caught:
        raise Terminated() if caught[0] == signal.SIGTERM else KeyboardInterrupt()


def read_points(path: str | Path) -> list[dict[str, Any]]:
    """Every point of the plan in order: its record if it finished, else status "pending"."""
    header = read_header(path)
    records: dict[int, dict[str, Any]] = {}
    with open_readonly(path) as f:
        for group in f.get("points", {}).values():
            attrs = {k: decode_attr(v) for k, v in group.attrs.items()}
            if "status" not in attrs:
                continue  # never completed its write
            for key in ("coords", "overrides", "summaries", "run_ids"):
                attrs[key] = json.loads(attrs[key])
            records[int(attrs["index"])] = attrs
    return [records.get(p["index"], {**p, "status": "pending", "error": "", "summaries": {}, "run_ids": {},
                                     "run_file": "", "worker": "", "host": "", "duration_s": float("nan")})
            for p in header["plan"]]


def finished(path: Path, retry_failed: bool = False) -> set[int]:
    """Indices of the points not to run again: completed ones, and failed ones unless `retry_failed`."""
    keep = {"completed"} if retry_failed else {"completed", "failed"}
    return {p["index"] for p in read_points(path) if p["status"] in keep}


def study_status(path: str | Path) -> dict[str, Any]:
    """name, file, created, counts per status, total, and the failed points with their errors."""
    header, points = read_header(path), read_points(path)
    counts = {status: sum(p["status"] == status for p in points) for status in STATUSES}
    return {"name": header["name"], "file": str(Path(path).resolve()), "created": header["created"],
            "total": len(points), **counts,
            "failures": [{"index": p["index"], "coords": p["coords"], "error": p["error"]}
                         for p in points if p["status"] == "failed"]}


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    elif isinstance(value, list):
        if len(value) <= MAX_LIST:
            for k, item in enumerate(value):
                _flatten(f"{prefix}[{k}]", item, out)
    else:
        out[prefix] = float("nan") if value is None else value


def metrics(record: dict[str, Any]) -> dict[str, Any]:
    """A point's summaries as flat columns: `step.key`, `step.key[i]` for a short list."""
    out: dict[str, Any] = {}
    for step, summary in record.get("summaries", {}).items():
        _flatten(step, summary, out)
    return out


def study_frame(path: str | Path):
    """The study as a pandas.DataFrame: one row per point of the plan (pending ones too), with its
    coordinates, the parameters its zipped axes set, status, error, worker, host, duration_s,
    run_file, run_ids and every summary value as a column `step.key` (lists as `step.key[i]`)."""
    import pandas as pd

    header, rows = read_header(path), []
    for point in read_points(path):
        row = {"point": point["index"], **point["coords"]}
        row.update({k: v for k, v in point.get("overrides", {}).items() if k not in row})
        row.update({key: point.get(key) for key in ("status", "error", "worker", "host", "duration_s", "run_file")})
        row["run_ids"] = json.dumps(point.get("run_ids", {}))
        row.update(metrics(point))
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs = {"name": header["name"], "file": str(Path(path).resolve()), "coordinates": header["coordinates"]}
    return frame


def study_dataset(path: str | Path):
    """The study as an xarray.Dataset: one dimension per coordinate (grid axes, listed parameters),
    the parameters of a zipped axis as coordinates along it, and every column of `study_frame`
    as a variable (NaN where a point is pending or failed, or a combination was not listed)."""
    header, frame = read_header(path), study_frame(path)
    dims = header["coordinates"] or ["point"]
    members = {member: axis["name"] for axis in header["axes"] for member in axis["members"] if member != axis["name"]}
    dataset = frame.drop(columns=[m for m in members if m in frame]).set_index(dims).to_xarray()
    for axis in header["axes"]:  # the dimension's values come sorted: each member by its coordinate
        position = {json.dumps(v): k for k, v in enumerate(axis["values"])}
        order = [position[json.dumps(plain(v))] for v in dataset[axis["name"]].values]
        for member, values in axis["members"].items():
            if member != axis["name"]:
                dataset = dataset.assign_coords({member: (axis["name"], [values[k] for k in order])})
    dataset.attrs = {"name": header["name"], "file": str(Path(path).resolve()), "source": header["source"],
                     "definition": header["definition"], "software": json.dumps(header["software"]),
                     "created": header["created"]}
    return dataset
