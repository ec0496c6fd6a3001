"""Record the bytes a station exchanges with its instruments, and replay them as a test.

`labctl run ... --record FILE` (or `Station(..., record=FILE)`) wraps every instrument's
transport: each write and read (and each failure) goes to FILE with its time, as JSON lines,
after a header that holds the station file, the protocol and its parameters; the run's result
closes it. The clock's waits are recorded too (a virtual lab's, or a bench's real time).

`replay(FILE)` (and `labctl replay FILE`) runs the same protocol with the same parameters on a
station whose transports are the recording: every byte the drivers send must be the recorded
byte (a ReplayMismatch names the instrument, the event and both versions), every read returns
the recorded reply, and the result must equal the recorded one. No instrument is needed, so a
bench session becomes a regression test of drivers and protocols (PyMeasure's
expected_protocol is the model); the `labctl_replay` fixture of labctl's pytest plugin does the
same in a test.

Format (one JSON object per line): {"labctl_recording": 1, "station_toml", "started"}, then
events {"t": s, "role", "op": write | read | read_line | error | wait, "data": the bytes as a
latin-1 string, "size" / "terminator" / "seconds" / "error"}: the station's opening, then
{"run": {"protocol", "parameters"}}, the run's events, {"result": {"status", "summary",
"error"}}, and the closing's events.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from labctl.instruments.transport import InstrumentTimeout, Transport, TransportError

FORMAT = 1
ERRORS: dict[str, type[Exception]] = {"InstrumentTimeout": InstrumentTimeout, "TransportError": TransportError}


class ReplayMismatch(AssertionError):
    """What the drivers did differs from the recording."""


def _text(data: bytes) -> str:
    return bytes(data).decode("latin-1")


class Recorder:
    """The open recording file; one per station."""

    def __init__(self, path: str | os.PathLike, header: dict[str, Any]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = open(self.path, "w", encoding="utf-8")
        self._start = time.monotonic()
        self._line({"labctl_recording": FORMAT, **header})

    def event(self, role: str, op: str, **fields: Any) -> None:
        self._line({"t": round(time.monotonic() - self._start, 6), "role": role, "op": op, **fields})

    def run(self, protocol: str, parameters: dict[str, Any]) -> None:
        self._line({"run": {"protocol": protocol, "parameters": parameters}})

    def result(self, status: str, summary: dict[str, Any], error: str) -> None:
        self._line({"result": {"status": status, "summary": summary, "error": error}})

    def _line(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, default=str) + "\n")
        self._file.flush()  # a recording of a run that crashed keeps what it saw

    def close(self) -> None:
        self._file.close()


class RecordingTransport(Transport):
    """Passes everything to `inner` and writes it to the recorder."""

    def __init__(self, inner: Transport, role: str, recorder: Recorder):
        self.inner, self.role, self.recorder, self.resource = inner, role, recorder, inner.resource
        self.timeout = inner.timeout

    def _failed(self, exc: Exception) -> None:
        kind = type(exc).__name__ if type(exc).__name__ in ERRORS else "TransportError"
        self.recorder.event(self.role, "error", error=kind, message=str(exc))

    def write(self, data: bytes) -> None:
        self.recorder.event(self.role, "write", data=_text(data))
        try:
            self.inner.write(data)
        except TransportError as exc:
            self._failed(exc)
            raise

    def read(self, size: int) -> bytes:
        try:
            data = self.inner.read(size)
        except TransportError as exc:
            self._failed(exc)
            raise
        self.recorder.event(self.role, "read", size=size, data=_text(data))
        return data

    def read_line(self, terminator: bytes = b"\n") -> bytes:
        try:
            data = self.inner.read_line(terminator)
        except TransportError as exc:
            self._failed(exc)
            raise
        self.recorder.event(self.role, "read_line", terminator=_text(terminator), data=_text(data))
        return data

    def flush_input(self) -> None:
        self.inner.flush_input()

    def limit(self, seconds: float):
        return self.inner.limit(seconds)  # the inner transport's reads are the ones to bound

    def close(self) -> None:
        self.inner.close()


class RecordingClock:
    def __init__(self, inner, recorder: Recorder):
        self.inner, self.recorder = inner, recorder

    def wait(self, seconds: float, checkpoint: Callable[[], None]) -> None:
        self.recorder.event("clock", "wait", seconds=seconds)
        self.inner.wait(seconds, checkpoint)


class Recording:
    """A recording read back: its header, its events per role in order, its result."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        lines = [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not lines or lines[0].get("labctl_recording") != FORMAT:
            raise ValueError(f"{self.path}: not a labctl recording (format {FORMAT})")
        self.header = lines[0]
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.run: dict[str, Any] | None = None
        self.result: dict[str, Any] | None = None
        for record in lines[1:]:
            if "result" in record:
                self.result = record["result"]
            elif "run" in record:
                if self.run is not None:
                    raise ValueError(f"{self.path}: more than one run recorded; replay takes one")
                self.run = record["run"]
            else:
                self.events.setdefault(record["role"], []).append(record)


class ReplayTransport(Transport):
    """Plays one instrument's recorded side: checks what is written, returns what was read."""

    def __init__(self, role: str, events: list[dict[str, Any]], resource: str):
        self.role, self.events, self.resource, self.position = role, events, resource, 0

    def _next(self, op: str, what: str) -> dict[str, Any]:
        if self.position >= len(self.events):
            raise ReplayMismatch(f"{self.role}: {what} after the end of the recording "
                                 f"({len(self.events)} events)")
        event = self.events[self.position]
        self.position += 1
        if event["op"] == "error" and op != "write":
            raise ERRORS[event["error"]](event["message"])
        if event["op"] != op:
            raise ReplayMismatch(f"{self.role} event {self.position}: recorded {event['op']} "
                                 f"{event.get('data', '')!r}, replayed {what}")
        return event

    def write(self, data: bytes) -> None:
        event = self._next("write", f"write {_text(data)!r}")
        if event["data"] != _text(data):
            raise ReplayMismatch(f"{self.role} event {self.position}: recorded write {event['data']!r}, "
                                 f"replayed write {_text(data)!r}")
        follows = self.events[self.position] if self.position < len(self.events) else None
        if follows is not None and follows["op"] == "error" and follows["error"] == "TransportError":
            self.position += 1
            raise TransportError(follows["message"])

    def read(self, size: int) -> bytes:
        event = self._next("read", f"read of {size} bytes")
        if event["size"] != size:
            raise ReplayMismatch(f"{self.role} event {self.position}: recorded a read of {event['size']} "
                                 f"bytes, replayed one of {size}")
        return event["data"].encode("latin-1")

    def read_line(self, terminator: bytes = b"\n") -> bytes:
        return self._next("read_line", "read_line")["data"].encode("latin-1")

    def unplayed(self) -> int:
        return len(self.events) - self.position


class ReplayClock:
    def __init__(self, events: list[dict[str, Any]]):
        self.events, self.position = events, 0

    def wait(self, seconds: float, checkpoint: Callable[[], None]) -> None:
        if self.position >= len(self.events) or self.events[self.position]["seconds"] != seconds:
            recorded = self.events[self.position]["seconds"] if self.position < len(self.events) else None
            raise ReplayMismatch(f"clock: recorded wait {recorded!r} s, replayed wait {seconds!r} s")
        self.position += 1


@contextmanager
def replay_station(recording: Recording) -> Iterator[Any]:
    """A Station on the recording's transports (no instrument, no simulator)."""
    import tomllib

    from .station import Station, parse_station

    config = parse_station(tomllib.loads(recording.header["station_toml"]), str(recording.path))
    transports: dict[str, ReplayTransport] = {role: ReplayTransport(role, recording.events.get(role, []), inst.resource)
                  for role, inst in config.instruments.items()}
    with Station(config, transports=dict[str, Transport](transports)) as station:
        station.clock = ReplayClock(recording.events.get("clock", []))
        yield station
    left = {role: t.unplayed() for role, t in transports.items() if t.unplayed()}
    if left:
        raise ReplayMismatch(f"the replay left recorded events unplayed: {left}")


def replay(path: str | Path, out: str | Path) -> Any:
    """Run the recorded protocol again on the recording; returns the RunResult. Raises
    ReplayMismatch when the bytes or the result differ from the recording."""
    from .engine import run_protocol

    recording = Recording(path)
    if recording.run is None:
        raise ValueError(f"{path}: the recording holds no run")
    with replay_station(recording) as station:
        result = run_protocol(station, recording.run["protocol"], recording.run["parameters"], out=out)
    recorded = recording.result
    if recorded is None:
        raise ReplayMismatch(f"{path}: the recording has no result (the recorded run did not end)")
    replayed = json.loads(json.dumps({"status": result.status, "summary": result.summary,
                                      "error": result.error}, default=str))
    if replayed != recorded:
        raise ReplayMismatch(f"replayed result {replayed} differs from the recorded {recorded}")
    return result
