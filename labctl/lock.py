"""One labctl process per station at a time, and a trace of the run it is doing.

A Station holds an exclusive flock on its lock file from open to close (the simulated chip's
lock sits beside its state file; a bench station's under the user's state directory), so a
second `labctl run` or GUI on the same station gets a clear error naming the process that has
it, instead of changing outputs under a running measurement. The file records the holder (pid,
since when, the run in progress); a clean close empties it. A holder killed outright (SIGKILL,
power cut), or one whose run could not be recorded at its end (disk full), leaves the run behind:
the next open finds the run that never ended and marks it `interrupted` in its data file (its
flushed rows are kept).
"""
from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any


class StationBusy(RuntimeError):
    """Another process holds the station."""


class StationLock:
    def __init__(self, path: str | os.PathLike, station: str):
        self.path, self.station = Path(path), station
        self.left_behind: dict[str, Any] = {}  # the record a killed holder left (its "run", if any)
        self._file: IO[str] | None = None
        self._record: dict[str, Any] = {}

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(file)
            file.close()
            run = holder.get("run") or {}
            doing = f", running {run['protocol']} into {run['file']}" if run else ""
            raise StationBusy(f"station {self.station} is in use by process {holder.get('pid', '?')} "
                              f"(since {holder.get('since', '?')}{doing}); wait for it to finish or close it "
                              f"(lock {self.path})") from None
        self.left_behind = _read(file)
        self._file = file
        self._record = {"pid": os.getpid(), "station": self.station,
                        "since": datetime.now(UTC).isoformat(timespec="seconds"), "run": None}
        self._write()

    def run_started(self, protocol: str, file: str | os.PathLike, run_id: str) -> None:
        self._record["run"] = {"protocol": protocol, "file": str(Path(file).resolve()), "run_id": run_id}
        self._write()

    def run_ended(self) -> None:
        self._record["run"] = None
        self._write()

    def release(self) -> None:
        if self._file is None:
            return
        if not self._record.get("run"):  # a clean exit leaves nothing behind; a run never ended stays
            self._file.truncate(0)
            self._file.flush()
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None

    def _write(self) -> None:
        assert self._file is not None
        self._file.seek(0)
        self._file.truncate(0)
        self._file.write(json.dumps(self._record))
        self._file.flush()
        os.fsync(self._file.fileno())


def _read(file: IO[str]) -> dict[str, Any]:
    file.seek(0)
    try:
        record = json.loads(file.read() or "{}")
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}
