"""The station worker: the one thread that touches instruments.

Every station operation (connect, disconnect, run a protocol, all outputs off) is a job on the
worker's queue, run in order on its own thread; the UI thread only enqueues jobs and flips the
thread-safe RunControl (pause / resume / abort). Results come back as Qt signals, which Qt
queues to the UI thread. Live data and progress are coalesced: the worker stores them and emits
one signal while the previous one is still unhandled, so a fast protocol cannot flood the event
loop; the UI drains everything stored when it handles the signal.

The worker also keeps the session's HDF5 file open for writing from start to shutdown (see
gui.h5read): HDF5 shares one open file per path within a process, so readers in the UI thread
and the engine's DataStore in the worker never collide on open modes or locking flags.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PyQt6.QtCore import QObject, pyqtSignal

from labctl.engine import RunControl, get_protocol, run_protocol
from labctl.station import Station, StationConfig
from labctl.store import software_versions

log = logging.getLogger(__name__)

# The UI thread gives up the GIL at every Qt call and must get it back from a worker that runs
# Python (the simulator, the drivers) flat out; Python makes a waiting thread wait up to the
# switch interval for each reacquisition (5 ms by default), which adds up over the many Qt calls
# of one repaint. A shorter interval bounds that wait; in bench/gui.py it lowered the event loop's
# p99 lateness (60 -> 45-50 ms on a loaded 2-core machine), at a negligible cost to the worker.
GIL_SWITCH_INTERVAL_S = 0.001


@dataclass
class ProgressReport:
    done: int
    total: int
    message: str
    at: float  # time.monotonic() when the protocol reported it


def _rows(block: dict[str, np.ndarray]) -> int | None:
    """Rows of a table block (scalars broadcast), None for a saved array (2-D and up)."""
    if any(v.ndim > 1 for v in block.values()):
        return None
    return max((v.size for v in block.values()), default=0)


def merge_blocks(blocks: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Consecutive row blocks of the same table (same columns) concatenated, in order."""
    merged: list[tuple[str, dict[str, Any]]] = []
    pending: list[dict[str, np.ndarray]] = []
    pending_rows: list[int] = []  # _rows() of each pending block
    table: str | None = None

    def flush() -> None:
        if not pending:
            return
        if table is None:  # unreachable: blocks are pending only while `table` names their table
            raise AssertionError("row blocks pending without their table's name")
        if len(pending) == 1:
            merged.append((table, pending[0]))
        else:
            merged.append((table, {k: np.concatenate([np.broadcast_to(np.atleast_1d(b[k]), (n,))
                                                      for b, n in zip(pending, pending_rows)])
                                   for k in pending[0]}))
        pending.clear()
        pending_rows.clear()

    for name, block in blocks:
        rows = _rows(block)
        if rows is None or name != table or (pending and set(block) != set(pending[0])):
            flush()
        if rows is None:
            merged.append((name, block))
            table = None
            continue
        table = name
        pending.append(block)
        pending_rows.append(rows)
    flush()
    return merged


class StationWorker(QObject):
    """Owns the Station (opened and used only on its thread) and runs protocols on it."""

    state_changed = pyqtSignal(str, dict)  # "connected" | "disconnected" | "error", {role: identity}
    busy_changed = pyqtSignal(bool)
    run_started = pyqtSignal(str, dict)  # protocol name, the values asked for
    progress_ready = pyqtSignal()  # call take_progress()
    data_ready = pyqtSignal()  # call take_data()
    run_finished = pyqtSignal(object)  # RunResult, or None when the run could not start
    safe_state_done = pyqtSignal(bool, str)  # ok, error
    error = pyqtSignal(str)
    stopped = pyqtSignal()

    def __init__(self, config: StationConfig, sim_state: str | Path | None, out: str | Path,
                 seed: int | None = None, parent: QObject | None = None):
        super().__init__(parent)
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL_S))
        self.config = config
        self.sim_state = sim_state
        self.seed = seed
        self.out = Path(out)
        self.station: Station | None = None  # worker thread only
        self._jobs: deque[tuple[str, Callable[[], object]]] = deque()
        self._cv = threading.Condition()
        self._busy = False
        self._stopping = False
        self._control: RunControl | None = None
        self._lock = threading.Lock()
        self._data: list[tuple[str, dict[str, Any]]] = []
        self._data_signalled = False
        self._progress: ProgressReport | None = None
        self._progress_signalled = False
        self.out.parent.mkdir(parents=True, exist_ok=True)
        # open before any reader can (module doc); a failure here is the caller's to report
        self._anchor = h5py.File(self.out, "a")
        self._thread = threading.Thread(target=self._loop, name="labctl-station", daemon=True)
        self._thread.start()

    # -- called from the UI thread ---------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """A job is running or waiting."""
        with self._cv:
            return self._busy or bool(self._jobs)

    @property
    def control(self) -> RunControl | None:
        """The active run's control, None when no run is active or queued."""
        return self._control

    def connect_station(self) -> None:
        self._submit("connect", self._open)

    def disconnect_station(self) -> None:
        self._submit("disconnect", self._close)

    def run(self, protocol: str, values: dict[str, Any]) -> RunControl:
        """Queue a run; returns its control at once (so an abort can never miss it)."""
        control = RunControl()
        self._control = control
        self._submit("run", lambda: self._run(protocol, dict(values), control))
        return control

    def all_outputs_off(self) -> None:
        """Abort the active run (if any), drop queued runs, then put the station in its safe state.

        The abort is immediate (the run stops at its next checkpoint and the engine makes the
        station safe); the safe-state job then runs first in the queue, opening the station if
        it was not connected.
        """
        control = self._control
        if control is not None:
            control.abort()
        with self._cv:
            dropped = self._drop({"run"})
            self._jobs.appendleft(("safe", self._safe_state))
            self._cv.notify()
        self._dropped(dropped)

    def pause(self) -> None:
        if self._control is not None:
            self._control.pause()

    def resume(self) -> None:
        if self._control is not None:
            self._control.resume()

    def abort(self) -> None:
        if self._control is not None:
            self._control.abort()

    def shutdown(self) -> None:
        """Abort any run, close the station (saving a simulated chip) and stop; emits `stopped`."""
        self.abort()
        with self._cv:
            dropped = self._drop({"run", "connect"})
            self._jobs.append(("stop", self._stop))
            self._cv.notify()
        self._dropped(dropped)

    def take_data(self) -> list[tuple[str, dict[str, Any]]]:
        """Every row block / saved array received since the last call (UI thread), consecutive
        row blocks of one table merged into one (so the UI handles one block per table per drain)."""
        with self._lock:
            data, self._data = self._data, []
            self._data_signalled = False
        return merge_blocks(data)

    def take_progress(self) -> ProgressReport | None:
        with self._lock:
            report, self._progress = self._progress, None
            self._progress_signalled = False
        return report

    def _drop(self, names: set[str]) -> int:
        """Remove queued jobs by name (caller holds the condition); returns the runs removed."""
        runs = sum(job[0] == "run" for job in self._jobs if job[0] in names)
        self._jobs = deque(job for job in self._jobs if job[0] not in names)
        return runs

    def _dropped(self, runs: int) -> None:
        """A run that never started still ends, for whoever waits on run_finished."""
        if runs:
            self._control = None
            log.warning("%d queued run(s) dropped", runs)
        for _ in range(runs):
            self.run_finished.emit(None)

    # -- worker thread ----------------------------------------------------------------------------
    def _submit(self, name: str, job: Callable[[], object]) -> None:
        with self._cv:
            if self._stopping:
                return
            self._jobs.append((name, job))
            self._cv.notify()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._jobs:
                    self._cv.wait()
                name, job = self._jobs.popleft()
                self._busy = True
            self.busy_changed.emit(True)
            try:
                job()
            except Exception as exc:  # a job never kills the worker
                log.exception("%s failed", name)
                self.error.emit(f"{name}: {type(exc).__name__}: {exc}")
            finally:
                with self._cv:
                    self._busy = False
                    idle = not self._jobs
                if idle:
                    self.busy_changed.emit(False)
            if name == "stop":
                self.stopped.emit()
                return

    def _open(self) -> Station:
        if self.station is not None:
            return self.station
        try:
            self.station = Station(self.config, sim_state=self.sim_state, seed=self.seed)
        except Exception as exc:
            self.state_changed.emit("error", {"error": f"{type(exc).__name__}: {exc}"})
            raise
        software_versions()  # its imports (pyvisa, pyserial) now, not in the middle of a first run
        log.info("station %s connected: %s", self.config.name,
                 ", ".join(f"{k}={v}" for k, v in self.station.identities.items()))
        self.state_changed.emit("connected", dict(self.station.identities))
        return self.station

    def _close(self) -> None:
        if self.station is None:
            return
        station, self.station = self.station, None
        try:
            station.safe_state()
        finally:
            station.close()
            log.info("station %s disconnected", self.config.name)
            self.state_changed.emit("disconnected", {})

    def _safe_state(self) -> None:
        try:
            self._open().safe_state()
        except Exception as exc:
            self.safe_state_done.emit(False, f"{type(exc).__name__}: {exc}")
            raise
        log.warning("all outputs off: station %s in its safe state", self.config.name)
        self.safe_state_done.emit(True, "")

    def _stop(self) -> None:
        with self._cv:
            self._stopping = True
        try:
            self._close()
        finally:
            if self._anchor is not None:
                self._anchor.close()
                self._anchor = None

    def _run(self, protocol: str, values: dict[str, Any], control: RunControl) -> None:
        result = None
        try:
            self._open()
            self.run_started.emit(protocol, values)
            log.info("run %s started with %s", protocol, values or "defaults")
            result = run_protocol(self.station, get_protocol(protocol), values, out=self.out,
                                  progress=self._on_progress, control=control,
                                  subscribers=[self._on_data])
            log.log(logging.INFO if result.status == "completed" else logging.WARNING,
                    "run %s %s%s", result.run_id, result.status, f": {result.error}" if result.error else "")
        finally:
            if self._control is control:
                self._control = None
            self.run_finished.emit(result)

    def _on_progress(self, done: int, total: int, message: str) -> None:
        with self._lock:
            self._progress = ProgressReport(done, total, message, time.monotonic())
            signal, self._progress_signalled = not self._progress_signalled, True
        if signal:
            self.progress_ready.emit()

    def _on_data(self, table: str, columns: dict[str, Any]) -> None:
        block = {k: np.array(v, copy=True) for k, v in columns.items()}  # the protocol may reuse its arrays
        with self._lock:
            self._data.append((table, block))
            signal, self._data_signalled = not self._data_signalled, True
        if signal:
            self.data_ready.emit()
