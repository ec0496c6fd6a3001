"""HDF5 data store: one group per run, written at its final path from the first row.

Layout of a file::

    /runs/<run_id>            attrs: protocol, status, error, started, ended, parameters,
                                     station, software, summary (JSON strings)
    /runs/<run_id>/<table>    growable 1-D compound dataset, one row per measurement; attr units
    /runs/<run_id>/<array>    an array snapshot (e.g. g_map, rows x cols); attr unit

Rows are flushed as they arrive, so a crash loses at most the row being written; a run that
never finished reads as status "running". A protocol that measures many small blocks may collect
them in a TableBuffer, which writes them in larger blocks at its own checkpoints, at least every
`max_age` seconds, and on every exit path.
"""
from __future__ import annotations

import csv
import json
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from . import __version__

Column = tuple[str, str, str]  # (name, numpy dtype, unit)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _json(value: Any) -> str:
    return json.dumps(value, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o))


def software_versions() -> dict[str, str]:
    import pyvisa
    import serial

    return {"labctl": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "h5py": h5py.__version__, "pyvisa": pyvisa.__version__, "pyserial": serial.__version__}


class RunWriter:
    """Writes one run's group; tables grow and are flushed row by row."""

    def __init__(self, file: h5py.File, group: h5py.Group):
        self._file, self.group = file, group
        self.run_id = group.name.rsplit("/", 1)[-1]

    def create_table(self, name: str, columns: Iterable[Column]) -> None:
        columns = list(columns)
        dtype = np.dtype([(c[0], c[1]) for c in columns])
        ds = self.group.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype,
                                       chunks=(max(1, 65536 // dtype.itemsize),))
        ds.attrs["units"] = _json({c[0]: c[2] for c in columns})
        self._file.flush()

    def append(self, name: str, rows: dict[str, Any]) -> None:
        """Append rows given as columns (scalars or equal-length arrays) and flush."""
        ds = self.group[name]
        data = {k: np.atleast_1d(np.asarray(v)) for k, v in rows.items()}
        n = max(len(v) for v in data.values())
        block = np.zeros(n, dtype=ds.dtype)
        for key in ds.dtype.names:
            if key not in data:
                raise KeyError(f"table {name}: missing column {key!r}")
            block[key] = data[key]
        ds.resize((ds.shape[0] + n,))
        ds[-n:] = block
        self._file.flush()

    def write_array(self, name: str, data: np.ndarray, unit: str) -> None:
        if name in self.group:
            del self.group[name]
        self.group.create_dataset(name, data=np.asarray(data)).attrs["unit"] = unit
        self._file.flush()

    def finish(self, status: str, summary: dict | None = None, error: str = "") -> None:
        attrs = self.group.attrs
        attrs.update({"status": status, "error": error, "ended": _now(), "summary": _json(summary or {})})
        self._file.flush()


class TableBuffer:
    """Blocks of rows for `append(table, **columns)` (e.g. RunContext.append), collected and
    written as one block per table: at flush(), by add() once the oldest row waiting is
    `max_age` s old (wall clock), and when a `with` block ends, on success or error, so rows are
    still written progressively and none is lost to an exception or an abort.

    Each add() is one block as RunContext.append takes it: scalars or equal-length arrays.
    """

    def __init__(self, append: Callable[..., None], max_age: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self._append, self.max_age, self._clock = append, max_age, clock
        self._blocks: dict[str, list[dict[str, Any]]] = {}
        self._since: float | None = None  # when the oldest waiting block came

    def add(self, table: str, **columns: Any) -> None:
        self._blocks.setdefault(table, []).append(columns)
        now = self._clock()
        if self._since is None:
            self._since = now
        elif now - self._since >= self.max_age:
            self.flush()

    def flush(self) -> None:
        """Write every waiting block, one append per table."""
        blocks, self._blocks, self._since = self._blocks, {}, None
        for table, rows in blocks.items():
            self._append(table, **_concatenate(rows))

    def __enter__(self) -> TableBuffer:
        return self

    def __exit__(self, *exc) -> None:
        self.flush()


def _concatenate(blocks: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Blocks of columns (scalars broadcast to their block's length) as one block."""
    if len(blocks) == 1:
        return blocks[0]
    parts: dict[str, list[np.ndarray]] = {}
    for block in blocks:
        data = {k: np.atleast_1d(np.asarray(v)) for k, v in block.items()}
        n = max(len(v) for v in data.values())
        for key, value in data.items():
            parts.setdefault(key, []).append(np.broadcast_to(value, (n,)) if len(value) == 1 else value)
    return {key: np.concatenate(values) for key, values in parts.items()}


class DataStore:
    """An HDF5 file holding runs; opened for appending, created with its parents if new."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.path, "a")
        self._file.attrs.setdefault("labctl_version", __version__)
        self._runs = self._file.require_group("runs")

    def begin_run(self, protocol: str, parameters: dict, station: dict) -> RunWriter:
        run_id = f"{len(self._runs) + 1:03d}_{protocol}"
        group = self._runs.create_group(run_id)
        group.attrs.update({"protocol": protocol, "run_id": run_id, "status": "running", "error": "",
                            "started": _now(), "ended": "", "parameters": _json(parameters),
                            "station": _json(station), "software": _json(software_versions()),
                            "summary": "{}"})
        self._file.flush()
        return RunWriter(self._file, group)

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()

    def __enter__(self) -> DataStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- reading ------------------------------------------------------------------------------------
# Every reader here may run while another process is still writing the file (`labctl run`, a GUI):
# HDF5 (>= 1.10) takes an flock on the file, which a writer in another process holds exclusively
# for its whole run, so a plain `h5py.File(path, "r")` fails with "unable to lock file". Readers
# open with `locking=False`: the writer flushes after every row block, so a read-only open sees
# every flushed row; a read that catches the writer halfway through an update raises, and a
# poller (the GUI's data browser) simply retries. Inside one process HDF5 shares one open file per
# path and insists that every open use the same locking flag, so when the file is already open
# here (a GUI's session file, kept open for writing by its worker) the reader falls back to the
# default flag and shares that open file.
_JSON_ATTRS = ("parameters", "station", "software", "summary")


def open_readonly(path: str | Path) -> h5py.File:
    """Open `path` read-only, without taking HDF5's file lock (see above)."""
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as exc:
        if "locking flag" not in str(exc):
            raise
        return h5py.File(path, "r")  # already open in this process: share it


def decode_attr(value: Any) -> Any:
    """An attribute as str where HDF5 handed back bytes."""
    return value.decode() if isinstance(value, bytes) else value


def dataset_units(ds: h5py.Dataset) -> dict[str, str] | str:
    """A table's units (column -> unit) or an array's unit."""
    if "units" in ds.attrs:
        try:
            return json.loads(decode_attr(ds.attrs["units"]))
        except (TypeError, ValueError):
            return {}
    return str(decode_attr(ds.attrs.get("unit", "")))


@dataclass
class DatasetInfo:
    name: str
    shape: tuple[int, ...]
    columns: tuple[str, ...]  # field names of a table; () for a plain array
    units: dict[str, str] | str


@dataclass
class RunInfo:
    run_id: str
    protocol: str
    status: str
    started: str
    ended: str
    error: str
    parameters: dict[str, Any]
    summary: dict[str, Any]
    datasets: list[DatasetInfo] = field(default_factory=list)


def read_runs(path: str | Path) -> list[RunInfo]:
    """Every run of a labctl file with its status, parameters and datasets (shapes, units)."""
    runs = []
    with open_readonly(path) as f:
        for run_id, group in f.get("runs", {}).items():
            attrs = {k: decode_attr(v) for k, v in group.attrs.items()}
            decoded = {}
            for key in ("parameters", "summary"):
                try:
                    decoded[key] = json.loads(attrs.get(key, "{}") or "{}")
                except (TypeError, ValueError):
                    decoded[key] = {}
            info = RunInfo(run_id, str(attrs.get("protocol", "")), str(attrs.get("status", "")),
                           str(attrs.get("started", "")), str(attrs.get("ended", "")), str(attrs.get("error", "")),
                           decoded["parameters"], decoded["summary"])
            for name, ds in group.items():
                if isinstance(ds, h5py.Dataset):
                    info.datasets.append(DatasetInfo(name, tuple(ds.shape), tuple(ds.dtype.names or ()),
                                                     dataset_units(ds)))
            runs.append(info)
    return runs


def read_dataset(path: str | Path, run_id: str, name: str) -> tuple[np.ndarray, dict[str, str] | str]:
    """One dataset of a run as a numpy array, with its units (a dict for tables)."""
    with open_readonly(path) as f:
        ds = f["runs"][run_id][name]
        return ds[()], dataset_units(ds)


def list_runs(path: str | Path) -> list[dict[str, Any]]:
    """Every run in a file: id, protocol, status, times, error and dataset shapes."""
    return [{"run_id": run.run_id, "protocol": run.protocol, "status": run.status, "started": run.started,
             "ended": run.ended, "error": run.error, "datasets": {d.name: list(d.shape) for d in run.datasets}}
            for run in read_runs(path)]


def load_run(path: str | Path, run_id: str) -> dict[str, Any]:
    """A run as plain Python: attrs (JSON decoded) and every dataset as a numpy array."""
    with open_readonly(path) as f:
        if run_id not in f.get("runs", {}):
            raise KeyError(f"{path} has no run {run_id!r}")
        group = f["runs"][run_id]
        attrs = {k: (json.loads(v) if k in _JSON_ATTRS else v) for k, v in group.attrs.items()}
        data = {name: ds[()] for name, ds in group.items()}
        units = {name: dataset_units(ds) for name, ds in group.items()}
    return {"attrs": attrs, "data": data, "units": units}


def mark_interrupted(path: str | Path, run_id: str, reason: str) -> bool:
    """Record a run whose process died mid-run (still `running` in its file) as `interrupted`,
    with `reason` as its error; returns whether it was still marked running."""
    with h5py.File(path, "r+") as f:
        group = f["runs"][run_id]
        if decode_attr(group.attrs.get("status")) != "running":
            return False
        group.attrs["status"] = "interrupted"
        group.attrs["error"] = reason
        group.attrs["ended"] = _now()
    return True


def export_csv(path: str | Path, run_id: str, out_dir: str | Path) -> list[Path]:
    """Write each dataset of a run as CSV (header `name [unit]`) plus run.json; returns the files."""
    run = load_run(path, run_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in run["data"].items():
        target = out / f"{run_id}_{name}.csv"
        with open(target, "w", newline="") as f:
            writer = csv.writer(f)
            if data.dtype.names:
                units = run["units"][name]
                writer.writerow([f"{c} [{units.get(c, '')}]" if units.get(c) else c for c in data.dtype.names])
                for row in data.tolist():
                    writer.writerow([v.decode() if isinstance(v, bytes) else repr(v) for v in row])
            else:
                for row in np.atleast_2d(data):
                    writer.writerow([repr(v) for v in row.tolist()])
        written.append(target)
    meta = out / f"{run_id}_run.json"
    meta.write_text(json.dumps(run["attrs"], indent=2, default=str))
    return written + [meta]
