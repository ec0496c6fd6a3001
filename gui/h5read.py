"""Chip views of a labctl HDF5 file for the GUI (no Qt here): the conductance history of one cell
across runs and the latest conductance of every cell. They read through labctl.store's readers,
which work while another process is still writing the file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from labctl.store import dataset_units, decode_attr, open_readonly


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
            protocol = str(decode_attr(group.attrs.get("protocol", "")))
            for name, ds in group.items():
                if not isinstance(ds, h5py.Dataset):
                    continue
                units = dataset_units(ds)
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
