"""Running a study: every point an independent task on dask.distributed, results appended as they come.

`run_study` is what `labctl study run` and `labctl study resume` call. By default it starts a
LocalCluster on this machine (one single-threaded worker process per core, at most one per point);
`scheduler="tcp://HOST:PORT"` sends the same tasks to an existing Dask cluster instead; `serial=True`
runs them one after another in this process without Dask (debugging, the benchmark's baseline).
The client (this process) is the only writer of the results file: a worker returns its point's
record (a few kB of summaries) and the client appends it, so workers need no access to the file.
"""
from __future__ import annotations

import importlib.metadata
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.lock import StationLock

from . import results
from .point import PointTask, run_point
from .spec import Study, StudyError, load_study, parse_study

REFRESH_S = 0.5  # how often the progress is refreshed while waiting for points
WORKERS_SHOWN = 8  # per-worker counts in the progress line


@dataclass
class WorkerCount:
    done: int = 0
    failed: int = 0
    running: int = 0


@dataclass
class StudyProgress:
    """Where a study is: every point of the plan is completed, failed, running or waiting."""

    total: int
    completed: int  # including points finished before this session
    failed: int
    running: int
    skipped: int    # finished before this session (resume)
    elapsed_s: float
    eta_s: float | None
    workers: dict[str, WorkerCount] = field(default_factory=dict)
    dashboard: str = ""

    @property
    def waiting(self) -> int:
        return self.total - self.completed - self.failed - self.running

    def line(self) -> str:
        shown = list(self.workers.items())[:WORKERS_SHOWN]
        per_worker = ", ".join(f"{name}: {c.done} done{f' {c.failed} failed' if c.failed else ''}"
                               f"{f' {c.running} running' if c.running else ''}" for name, c in shown)
        more = f", +{len(self.workers) - WORKERS_SHOWN} workers" if len(self.workers) > WORKERS_SHOWN else ""
        eta = f", ETA {_clock(self.eta_s)}" if self.eta_s is not None else ""
        return (f"{self.completed + self.failed}/{self.total} points: {self.completed} done, {self.failed} failed, "
                f"{self.running} running [{per_worker}{more}] {_clock(self.elapsed_s)}{eta}")


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


@dataclass
class StudyResult:
    file: Path
    name: str
    total: int
    completed: int
    failed: int
    pending: int
    ran: int      # points run in this call
    skipped: int  # points finished before it
    wall_s: float   # the whole call, a LocalCluster's start and stop included
    points_s: float  # from the first point sent to the last one written
    scheduler: str  # "serial", "LocalCluster(N workers)" or the scheduler's address
    dashboard: str = ""
    #: per point run in this call: index, worker, started, ended (worker clock), duration_s (the point's own
    #: time), received (the client has its record), appended (written to the file): epoch seconds
    timings: list[dict[str, Any]] = field(default_factory=list)

    def frame(self):
        return results.study_frame(self.file)

    def dataset(self):
        return results.study_dataset(self.file)

    def as_dict(self) -> dict[str, Any]:
        return {"file": str(self.file), "name": self.name, "total": self.total, "completed": self.completed,
                "failed": self.failed, "pending": self.pending, "ran": self.ran, "skipped": self.skipped,
                "wall_s": self.wall_s, "points_s": self.points_s, "scheduler": self.scheduler, "dashboard": self.dashboard}


class _Tracker:
    """Counts for the progress display, and the timings of the points run now."""

    def __init__(self, total: int, skipped: int, completed: int, failed: int, callback):
        self.total, self.skipped, self.completed, self.failed = total, skipped, completed, failed
        self.callback, self.start, self.finished_now = callback, time.monotonic(), 0
        self.workers: dict[str, WorkerCount] = {}
        self.timings: list[dict[str, Any]] = []
        self.dashboard = ""
        self.submitted = self.last = 0.0  # epoch s: the first point sent, the last one written

    def running(self, per_worker: dict[str, int]) -> None:
        for name in per_worker.keys() - self.workers.keys():
            self.workers[name] = WorkerCount()
        for name, count in self.workers.items():
            count.running = per_worker.get(name, 0)

    def finished(self, record: dict[str, Any], received: float, appended: float) -> None:
        self.finished_now += 1
        ok = record["status"] == "completed"
        self.completed, self.failed = self.completed + ok, self.failed + (not ok)
        count = self.workers.setdefault(record["worker"] or "?", WorkerCount())
        count.done, count.failed = count.done + ok, count.failed + (not ok)
        self.last = appended
        self.timings.append({"index": record["index"], "worker": record["worker"], "started": record["started"],
                             "ended": record["ended"], "duration_s": record["duration_s"], "received": received,
                             "appended": appended})

    def report(self) -> None:
        if self.callback is None:
            return
        elapsed = time.monotonic() - self.start
        to_run = self.total - self.skipped
        running_s = time.time() - self.submitted  # since the first point was sent (a cluster's start excluded)
        eta = running_s / self.finished_now * (to_run - self.finished_now) if self.finished_now else None
        self.callback(StudyProgress(self.total, self.completed, self.failed,
                                    sum(c.running for c in self.workers.values()), self.skipped, elapsed, eta,
                                    {k: WorkerCount(c.done, c.failed, c.running) for k, c in self.workers.items()},
                                    self.dashboard))


def default_out(study: Study) -> Path:
    return Path("labctl_data") / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', Path(study.source).stem or study.name)}.h5"


def run_study(study: Study | str | os.PathLike, out: str | os.PathLike | None = None, *,
              scheduler: str | None = None, workers: int | None = None, processes: bool = True,
              serial: bool = False, resume: bool = False, retry_failed: bool = False, overwrite: bool = False,
              data_dir: str | os.PathLike | None = None,
              progress: Callable[[StudyProgress], None] | None = None) -> StudyResult:
    """Run every point of `study` (a Study or the path of a study file) into the results file `out`
    (default labctl_data/<study>.h5); returns counts and timings (`.frame()`, `.dataset()` for analysis).

    Dask: `scheduler` an existing cluster's address, else a LocalCluster of `workers` (default: the
    cores) single-threaded worker processes (`processes=False`: threads of this process). `serial`:
    no Dask. An existing `out` is refused unless `resume` (run the points it lacks, and its failed
    ones with `retry_failed`) or `overwrite`. Each point's full run data goes to
    `data_dir`/point_NNNNNN.h5 (default: `out` with suffix .runs), as written by the worker that runs
    it. `progress` is called with a StudyProgress as points start and finish. Ctrl-C stops the
    study: what finished is kept, and resume runs the rest.
    """
    study = study if isinstance(study, Study) else load_study(Path(study))
    out = Path(out) if out is not None else default_out(study)
    lock = StationLock(out.with_name(out.name + ".lock"), f"study results {out}")
    lock.acquire()
    try:
        data = _data_dir(out, data_dir, resume)
        if out.exists() and resume:
            results.check_same(out, study)
        elif out.exists() and not overwrite:
            raise StudyError(f"{out} exists: `labctl study resume {out}` runs its missing points, --overwrite "
                             f"starts it again")
        else:
            results.create(out, study, str(data))
        done = results.finished(out, retry_failed)
        points = results.read_points(out)
        tracker = _Tracker(len(study.points), len(done),
                           sum(p["status"] == "completed" and p["index"] in done for p in points),
                           sum(p["status"] == "failed" and p["index"] in done for p in points), progress)
        tasks = [_task(study, point, data) for point in study.points if point.index not in done]
        start = time.monotonic()
        if not tasks:
            where = "nothing to run"
        elif serial:
            where = "serial"
            _run_serial(tasks, study.device_doc, out, tracker)
        else:
            where = _run_dask(tasks, study.device_doc, out, tracker, scheduler, workers, processes)
        status = results.study_status(out)
        return StudyResult(out.resolve(), study.name, status["total"], status["completed"], status["failed"],
                           status["pending"], tracker.finished_now, len(done), time.monotonic() - start,
                           tracker.last - tracker.submitted if tracker.finished_now else 0.0, where,
                           tracker.dashboard, tracker.timings)
    finally:
        lock.release()


def resume_study(path: str | os.PathLike, **options: Any) -> StudyResult:
    """Run the points a results file lacks, from the definition stored in it (run_study's options)."""
    header = results.read_header(Path(path))
    study = parse_study(header["definition"], header["source"])
    return run_study(study, path, resume=True, data_dir=options.pop("data_dir", None) or header["data_dir"],
                     **options)


def _data_dir(out: Path, data_dir: str | os.PathLike | None, resume: bool) -> Path:
    if data_dir is None and resume and out.exists():
        return Path(results.read_header(out)["data_dir"])
    return Path(data_dir).resolve() if data_dir is not None else out.resolve().with_suffix(".runs")


def _task(study: Study, point, data: Path) -> PointTask:
    steps = tuple((step.name, step.protocol, values, step.input) for step, values in study.step_values(point))
    return PointTask(point.index, point.coords, point.overrides, study.config, study.device_values(point), steps,
                     study.point_seed(point), study.formed, str(data / f"point_{point.index:06d}.h5") if study.run_data else "")


def _finish(record: dict[str, Any], out: Path, tracker: _Tracker) -> None:
    received = time.time()
    results.append(out, record)
    tracker.finished(record, received, time.time())


def _run_serial(tasks: list[PointTask], device_doc: dict, out: Path, tracker: _Tracker) -> None:
    tracker.submitted = time.time()
    for task in tasks:
        tracker.running({"local": 1})
        tracker.report()
        record = run_point(task, device_doc)
        tracker.running({})
        _finish(record, out, tracker)
    tracker.report()


@contextmanager
def _client(scheduler: str | None, workers: int, processes: bool) -> Iterator[Any]:
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise StudyError(f"running a study on Dask needs dask.distributed (pip install 'labctl[study]'), or "
                         f"serial=True / --serial: {exc}") from None
    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    import logging
    import warnings

    import dask

    # Dask starts each worker with MALLOC_TRIM_THRESHOLD_ set, which also fixes glibc's mmap
    # threshold: every temporary array then costs fresh pages (about 15 % more CPU per point here,
    # measured on bench16); and its sampling profiler interrupts the point's thread every 10 ms.
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with warnings.catch_warnings(), dask.config.set({"distributed.nanny.pre-spawn-environ": environ,
                                                     "distributed.worker.profile.enabled": False}):
        warnings.filterwarnings("ignore", "Port 8787 is already in use", UserWarning)  # the port in use is printed
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes,
                               dashboard_address=":8787", silence_logs=logging.ERROR)
    with cluster, Client(cluster) as client:
        yield client


def _check_workers(client, protocols: set[str]) -> None:
    """Every worker must have this labctl version and the study's protocols (a point runs labctl's
    code there); asking them also loads labctl and its protocols on every worker before the first point."""
    def labctl_on_worker() -> tuple[str, list[str]]:
        import importlib.metadata

        try:
            from labctl.registry import PROTOCOLS

            return importlib.metadata.version("labctl"), sorted(PROTOCOLS)
        except (ImportError, importlib.metadata.PackageNotFoundError):
            return "not installed", []

    ours = importlib.metadata.version("labctl")
    wrong = {}
    for address, (version, known) in client.run(labctl_on_worker).items():
        if version != ours:
            wrong[address] = f"labctl {version}"
        elif protocols - set(known):
            wrong[address] = f"no protocol {', '.join(sorted(protocols - set(known)))}"
    if wrong:
        listed = ", ".join(f"{address}: {why}" for address, why in sorted(wrong.items()))
        raise StudyError(f"workers unable to run this study ({listed}): install labctl {ours} (this client's) and "
                         f"the study's protocols on every worker (pip install 'labctl[study]')")


def _dashboard(client) -> str:
    try:
        return str(client.dashboard_link or "")
    except (KeyError, AttributeError):
        return ""


def _run_dask(tasks: list[PointTask], device_doc: dict, out: Path, tracker: _Tracker, scheduler: str | None,
              workers: int | None, processes: bool) -> str:
    from distributed import wait

    count = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    with _client(scheduler, count, processes) as client:
        _check_workers(client, {name for task in tasks[:1] for _, name, _, _ in task.steps})
        tracker.dashboard = _dashboard(client)
        where = scheduler or f"LocalCluster({count} worker{'s' if count > 1 else ''})"
        token = uuid.uuid4().hex[:8]
        tracker.submitted = time.time()
        [doc] = client.scatter([device_doc], broadcast=True)  # sent to each worker once, not with every task
        futures = {client.submit(run_point, task, doc, key=f"labctl-study-{token}-{task.index}", pure=False): task
                   for task in tasks}
        pending = set(futures)
        try:
            while pending:
                try:
                    done, not_done = wait(list(pending), timeout=REFRESH_S, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    done, not_done = set(), pending
                pending = set(not_done)
                for future in done:
                    _finish(_record(future, futures[future]), out, tracker)
                if tracker.callback is not None:
                    info = client.scheduler_info().get("workers", {})
                    tracker.running({str(info.get(address, {}).get("name", address)):
                                     min(len(keys), info.get(address, {}).get("nthreads", len(keys)))
                                     for address, keys in client.processing().items()})
                    tracker.report()
        finally:
            if pending:
                client.cancel(list(pending))
    return where


def _record(future, task: PointTask) -> dict[str, Any]:
    """A finished future's record; a task that raised (a worker died, ...) becomes a failed point."""
    if future.status == "finished":
        return future.result()
    if future.status == "cancelled":
        error = "cancelled by the scheduler"
    else:
        exc = future.exception()
        error = f"{type(exc).__name__}: {exc}"
    now = time.time()
    return {"index": task.index, "coords": task.coords, "overrides": task.overrides, "status": "failed",
            "error": f"task error: {error}", "summaries": {}, "run_ids": {}, "run_file": task.run_file,
            "worker": "", "host": "", "started": now, "ended": now, "duration_s": float("nan")}
