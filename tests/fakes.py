"""Test doubles shared by the test modules: a scripted transport, fake loads for the twins (and the
holds a burst makes on one) and a plain pyvisa session to a twin served on loopback.

Importable as ``from fakes import ...`` because pyproject.toml puts tests/ on sys.path.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pyvisa
from labctl.instruments.transport import InProcessTransport
from labctl.sim.server import serve

R = 10e3  # ohm, the default Resistor


class ScriptedTransport(InProcessTransport):
    """Expects the scripted messages in order and answers each with its reply bytes.

    `sent` keeps every message written, `queries` counts those that had a reply. With `binary`
    the assertion messages show bytes as hex (frames) instead of text.
    """

    def __init__(self, script: list[tuple[bytes, bytes]], resource: str = "script://smu",
                 binary: bool = False):
        super().__init__(self, resource)
        self.script = list(script)
        self.sent: list[bytes] = []
        self.queries = 0
        self._show = (lambda data: data.hex(" ")) if binary else repr

    def handle(self, data: bytes) -> bytes:
        self.sent.append(data)
        assert self.script, f"unexpected write {self._show(data)}"
        expected, reply = self.script.pop(0)
        assert data == expected, f"sent {self._show(data)}, expected {self._show(expected)}"
        self.queries += bool(reply)
        return reply


class Resistor:
    """An ohmic SmuLoad that records every apply() call."""

    def __init__(self, resistance: float = R):
        self.resistance = resistance
        self.applied: list[tuple[float | None, float]] = []

    def apply(self, v, duration):
        self.applied.append((v, duration))
        return 0.0 if v is None else v / self.resistance

    def current(self, v):
        return v / self.resistance


class FormingCell(Resistor):
    """1 MOhm until it is held at 3 V or more, then 1 kOhm (a forming event)."""

    def __init__(self):
        super().__init__(1e6)

    def apply(self, v, duration):
        if v is not None and v >= 3.0:
            self.resistance = 1e3
        return super().apply(v, duration)


class RecordingLoad:
    """A PulseLoad that records every hold(channel, v, duration)."""

    def __init__(self):
        self.holds: list[tuple[int, float | None, float]] = []

    def hold(self, channel, v, duration):
        self.holds.append((channel, v, duration))


def burst(channel: int, pulse: float, rest: float, width: float, period: float, count: int):
    """The holds a burst of `count` pulses makes on a RecordingLoad (see PulseLoad.hold)."""
    return [(channel, pulse, width), (channel, rest, period - width)] * count


@contextmanager
def visa_session(twin) -> Iterator[pyvisa.resources.MessageBasedResource]:
    """Serve `twin` on loopback TCP and open a raw-socket pyvisa-py session to it, newline
    terminated, 2 s timeout; everything is closed afterwards."""
    server = serve(twin)
    manager = pyvisa.ResourceManager("@py")
    inst = manager.open_resource(f"TCPIP0::127.0.0.1::{server.address[1]}::SOCKET",
                                 read_termination="\n", write_termination="\n", timeout=2000)
    try:
        yield inst
    finally:
        inst.close()
        manager.close()
        server.close()
