"""Reading labctl HDF5 files while someone may still be writing them (no Qt here).

File locking: HDF5 (>= 1.10) takes an flock on the file. A writer in another process (`labctl
run`, another GUI) holds it exclusively for the whole run, so a plain `h5py.File(path, "r")`
fails with "unable to lock file". Readers here open with `locking=False`: the writer flushes
after every row block (labctl.store), so a read-only open sees every flushed row; a read that
catches the writer halfway through an update raises and is simply retried at the next poll
(the data browser keeps its last good view). Inside one process HDF5 shares one open file per
path and insists that every open use the same locking flag, so when the file is already open
here (the GUI's own session file, which its worker keeps open for writing) the reader falls back
to the default flag and shares that open file.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

_JSON_ATTRS = ("parameters", "summary", "station")


def open_readonly(path: str | Path) -> h5py.File:
    """Open `path` read-only, without taking HDF5's file lock (see the module doc)."""
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as exc:
        if "locking flag" not in str(exc):
            raise
        return h5py.File(path, "r")  # already open in this process: share it


def _attr(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _units(ds: h5py.Dataset) -> dict[str, str] | str:
    if "units" in ds.attrs:
        try:
            return json.loads(_attr(ds.attrs["units"]))
        except (TypeError, ValueError):
            return {}
    return str(_attr(ds.attrs.get("unit", "")))


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
            attrs = {k: _attr(v) for k, v in group.attrs.items()}
            decoded = {}
            for key in _JSON_ATTRS:
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
                                                     _units(ds)))
            runs.append(info)
    return runs


def read_dataset(path: str | Path, run_id: str, name: str) -> tuple[np.ndarray, dict[str, str] | str]:
    """One dataset of a run as a numpy array, with its units (a dict for tables)."""
    with open_readonly(path) as f:
        ds = f["runs"][run_id][name]
        return ds[()], _units(ds)


def is_conductance(name: str, unit: str) -> bool:
    """A measured conductance: `g` or `g_*` in siemens (not targets, levels or steps)."""
    return unit == "S" and (name == "g" or name.startswith("g_"))


@dataclass
class HistoryEntry:
    """The values (S) one dataset column holds for one cell in one run, in recording order."""

    run_id: str
    protocol: str
    dataset: str
    column: str
    values: np.ndarray


def cell_history(path: str | Path, row: int, col: int,
                 shape: tuple[int, int] | None = None) -> list[HistoryEntry]:
    """Every conductance recorded for cell (row, col) across the file's runs: values at [row, col]
    of conductance maps (g_map, g_max_map, ...) and the cell's rows of tables with row/col
    columns (g, g_after, g_final, g_on, ...), run by run in file order. With `shape` (the chip's
    rows, cols) only maps of the whole chip count (a map of a block of cells, e.g. a training
    run's weights, does not say which cell its [row, col] is)."""
    entries = []
    with open_readonly(path) as f:
        for run_id, group in f.get("runs", {}).items():
            protocol = str(_attr(group.attrs.get("protocol", "")))
            for name, ds in group.items():
                if not isinstance(ds, h5py.Dataset):
                    continue
                units = _units(ds)
                names = ds.dtype.names
                if names is None:
                    if (ds.ndim == 2 and row < ds.shape[0] and col < ds.shape[1]
                            and (shape is None or tuple(ds.shape) == tuple(shape))
                            and is_conductance(name, units if isinstance(units, str) else "")):
                        value = np.atleast_1d(np.asarray(ds[row, col], dtype=float))
                        if np.isfinite(value).any():
                            entries.append(HistoryEntry(run_id, protocol, name, "", value))
                    continue
                if not {"row", "col"} <= set(names) or not isinstance(units, dict):
                    continue
                wanted = [c for c in names if is_conductance(c, units.get(c, ""))]
                if not wanted or not ds.shape[0]:
                    continue
                data = ds[()]
                mask = (data["row"] == row) & (data["col"] == col)
                if not mask.any():
                    continue
                for column in wanted:
                    values = np.asarray(data[column][mask], dtype=float)
                    if np.isfinite(values).any():
                        entries.append(HistoryEntry(run_id, protocol, name, column, values))
    return entries


LATEST_COLUMNS = ("g", "g_after", "g_final", "g_off")  # a table column holding a cell's latest read


def latest_map(path: str | Path, rows: int, cols: int) -> np.ndarray:
    """The latest conductance (S) the file recorded for each cell (NaN where none): the last
    `g_map` and the last table rows with row/col and a read column (g, g_after, g_final, g_off),
    in recording order."""
    latest = np.full((rows, cols), np.nan)
    with open_readonly(path) as f:
        for group in f.get("runs", {}).values():
            for name, ds in group.items():
                if not isinstance(ds, h5py.Dataset):
                    continue
                names = ds.dtype.names
                if names is None:
                    if name == "g_map" and ds.shape == (rows, cols):
                        g = np.asarray(ds[()], dtype=float)
                        latest[np.isfinite(g)] = g[np.isfinite(g)]
                    continue
                column = next((c for c in LATEST_COLUMNS if c in names), None)
                if column is None or not {"row", "col"} <= set(names) or not ds.shape[0]:
                    continue
                data = ds[()]
                r, c, g = data["row"].astype(int), data["col"].astype(int), data[column].astype(float)
                ok = (r >= 0) & (r < rows) & (c >= 0) & (c < cols) & np.isfinite(g)
                latest[r[ok], c[ok]] = g[ok]  # later rows overwrite earlier ones
    return latest
