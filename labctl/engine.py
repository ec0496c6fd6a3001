"""Run engine: validates a protocol's parameters, runs it, records it, and always ends safe.

A protocol says *what* to measure (its `run` method, written against a RunContext); the engine
says *how* it runs: parameter and safe-operating-area checks before anything is applied, an
HDF5 group opened before the first row, progress and pause/abort checkpoints, and on every
exit path (success, error, abort, Ctrl-C) the station put back in its safe state and the run's
status recorded.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .live import LivePlot, with_units
from .params import Parameter, ParameterError, resolve
from .registry import PROTOCOLS
from .store import Column, DataStore, RunWriter

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]
Subscriber = Callable[[str, dict[str, Any]], None]


class Aborted(Exception):
    """Raised at a checkpoint once an abort was requested."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, as the CLI raises it: ends a run as Ctrl-C does (safe state, run recorded)."""

    def __init__(self, message: str = "terminated (SIGTERM)"):
        super().__init__(message)


class Protocol:
    """Base of every protocol: a name, typed parameters and a `run` that returns a summary.

    `tables` declares the schema of each table the protocol writes (name -> columns (name,
    numpy dtype, unit)) and `arrays` the unit of its saved arrays: `ctx.table(name)` and
    `ctx.save_array(name, data)` take them from there. `live_plots` declares what a live viewer
    (the GUI) plots while the protocol runs: curves that follow its tables and heat maps of its
    saved arrays (see labctl.live.LivePlot); their units come from the tables and arrays.
    """

    name: ClassVar[str]
    title: ClassVar[str] = ""
    parameters: ClassVar[tuple[Parameter, ...]] = ()
    tables: ClassVar[dict[str, list[Column]]] = {}
    arrays: ClassVar[dict[str, str]] = {}
    live_plots: ClassVar[tuple[LivePlot, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.live_plots = tuple(with_units(plot, cls.tables, cls.arrays, cls.__name__) for plot in cls.live_plots)

    def check(self, params: dict[str, Any], config) -> None:
        """Checks against the station config (chip size...) beyond each parameter's own limits."""

    def run(self, ctx: RunContext) -> dict[str, Any]:
        raise NotImplementedError


class RunControl:
    """Pause, resume and abort a run from another thread (GUI, signal handler)."""

    def __init__(self) -> None:
        self._abort = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self.reason = "aborted by user"

    def abort(self, reason: str = "aborted by user") -> None:
        """End the run at its next checkpoint, recorded with `reason`."""
        if not self._abort.is_set():
            self.reason = reason
        self._abort.set()
        self._running.set()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def checkpoint(self) -> None:
        self._running.wait()
        if self._abort.is_set():
            raise Aborted(self.reason)


@dataclass
class RunContext:
    """What a protocol gets: its parameters, the crossbar, the data sink, progress and abort."""

    params: dict[str, Any]
    station: Any
    writer: RunWriter
    control: RunControl
    progress_callbacks: list[Progress] = field(default_factory=list)
    subscribers: list[Subscriber] = field(default_factory=list)
    protocol: Protocol | None = None  # whose tables and arrays are declared

    @property
    def crossbar(self):
        return self.station.crossbar

    def table(self, name: str, columns: Iterable[Column] | None = None) -> None:
        """Create table `name` with the protocol's declared schema (`Protocol.tables`); `columns`
        for a table the protocol does not declare (a shared helper's), or the same schema again."""
        declared = self.protocol.tables.get(name) if self.protocol is not None else None
        if columns is None:
            if declared is None:
                raise KeyError(f"table {name!r} is not declared in {type(self.protocol).__name__}.tables")
            columns = declared
        elif declared is not None and list(columns) != list(declared):
            raise ValueError(f"table {name!r}: {list(columns)} differs from the declared schema {declared}")
        self.writer.create_table(name, columns)

    def append(self, table: str, **columns: Any) -> None:
        """Store rows (flushed at once) and hand them to live subscribers."""
        self.writer.append(table, columns)
        for subscriber in self.subscribers:
            subscriber(table, columns)

    def save_array(self, name: str, data: np.ndarray, unit: str | None = None) -> None:
        """Save an array with its declared unit (`Protocol.arrays`), or `unit` for an undeclared one."""
        declared = self.protocol.arrays.get(name) if self.protocol is not None else None
        if unit is None:
            if declared is None:
                raise KeyError(f"array {name!r} has no unit: declare it in {type(self.protocol).__name__}.arrays")
            unit = declared
        elif declared is not None and unit != declared:
            raise ValueError(f"array {name!r}: unit {unit!r} differs from the declared {declared!r}")
        self.writer.write_array(name, data, unit)
        for subscriber in self.subscribers:
            subscriber(name, {name: data})

    def wait(self, seconds: float) -> None:
        """Let time pass on the station (virtual time on a simulator); abortable."""
        self.station.wait(seconds, self.control.checkpoint)

    def progress(self, done: int, total: int, message: str = "") -> None:
        for callback in self.progress_callbacks:
            callback(done, total, message)
        self.control.checkpoint()


@dataclass
class RunResult:
    protocol: str
    run_id: str
    status: str  # completed | aborted | failed
    file: str
    summary: dict[str, Any]
    error: str = ""
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "run_id": self.run_id, "status": self.status,
                "file": self.file, "summary": self.summary, "error": self.error}


@contextmanager
def deferred_interrupts() -> Iterator[list[int]]:
    """Hold SIGINT (Ctrl-C) and SIGTERM while the block runs, so the safe state and the run's
    record are not cut short; yields the list of signals caught, for the caller to act on
    afterwards. Outside the main thread (where no signal handler can be set) it holds nothing."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, lambda signum, frame: caught.append(signum)) for signum in held}
    try:
        yield caught
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ParameterError(f"unknown protocol {name!r} (protocols: {', '.join(sorted(PROTOCOLS))})")
    return PROTOCOLS[name]


def prepare(protocol: Protocol, values: dict[str, Any], config) -> dict[str, Any]:
    """Validate values against the declaration and the station config's SOA; touches no instrument."""
    params = resolve(protocol.parameters, values, protocol.name)
    soa = config.soa
    for p in protocol.parameters:
        if p.soa:
            for value in np.atleast_1d(params[p.name]):
                soa.check(p.soa, float(value), p.name)
    protocol.check(params, config)
    return params


def run_protocol(station, protocol: str | Protocol, values: dict[str, Any] | None = None,
                 out: str | Path = "labctl_data.h5", progress: Progress | None = None,
                 control: RunControl | None = None,
                 subscribers: Iterable[Subscriber] = ()) -> RunResult:
    """Run one protocol on an open station, recording it in the HDF5 file `out`.

    Invalid parameters raise ParameterError / SafetyError before anything is applied. Once
    running, errors are recorded (status "failed") and returned, not raised; Ctrl-C is recorded
    as "aborted" and re-raised after the station is safe.
    """
    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    params = prepare(protocol, values or {}, station.config)
    control = control or RunControl()
    started = time.monotonic()
    status, summary, error, interrupt = "failed", {}, "", None
    with DataStore(out) as store:
        writer = store.begin_run(protocol.name, params, station.snapshot())
        station.run_started(protocol.name, out, writer.run_id, params)
        ctx = RunContext(params, station, writer, control, [progress] if progress else [], list(subscribers), protocol)
        try:
            summary = protocol.run(ctx)
            status = "completed"
        except Aborted as exc:
            status, error = "aborted", str(exc)
        except KeyboardInterrupt as exc:
            status, error, interrupt = "aborted", str(exc) or "interrupted (Ctrl-C)", exc
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.exception("run %s failed", writer.run_id)
        finally:
            with deferred_interrupts() as deferred:
                try:
                    try:
                        station.safe_state()
                    except KeyboardInterrupt as exc:  # a Ctrl-C that landed in it: once more, shielded
                        interrupt = interrupt or exc
                        status, error = "aborted", error or str(exc) or "interrupted (Ctrl-C)"
                        station.safe_state()
                except Exception as exc:
                    status, error = "failed", (error + "; " if error else "") + f"safe state failed: {exc}"
                try:
                    writer.finish(status, summary, error)
                except OSError as exc:  # disk full, file gone: the station is safe, the rows flushed
                    raise OSError(f"{Path(out).resolve()}: the end of run {writer.run_id} ({status}"
                                  f"{': ' + error if error else ''}) could not be recorded: {exc}; the rows "
                                  f"flushed before are kept, and the next open of the station marks the run "
                                  f"interrupted") from exc
                station.run_ended(status, summary, error)
            if deferred and interrupt is None:
                interrupt = Terminated() if deferred[0] == signal.SIGTERM else KeyboardInterrupt()
        result = RunResult(protocol.name, writer.run_id, status, str(Path(out).resolve()), summary,
                           error, time.monotonic() - started)
    if interrupt is not None:
        raise interrupt
    return result
