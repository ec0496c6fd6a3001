"""How time passes on a station (`Station.wait`): one interface, three clocks.

- WallClock: a bench; real seconds, the checkpoint (pause/abort) called at least once a second.
- SimulatedClock: the in-process simulated chip; its virtual clock advances at once, so ten
  years of retention cost no wall time.
- RemoteSimulatedClock: a virtual lab behind `labctl sim serve`, whose simulator-control port
  (station file `[simulator] control = "HOST:PORT"`) advances its virtual clock."""
from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    def wait(self, seconds: float, checkpoint: Callable[[], None]) -> None:
        """Let `seconds` (>= 0) pass."""


class WallClock:
    def wait(self, seconds: float, checkpoint: Callable[[], None]) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            checkpoint()
            time.sleep(min(left, 1.0))


class SimulatedClock:
    def __init__(self, virtual_clock):
        self.virtual_clock = virtual_clock  # labctl.sim.clock.VirtualClock

    def wait(self, seconds: float, checkpoint: Callable[[], None]) -> None:
        self.virtual_clock.advance(seconds)


class RemoteSimulatedClock:
    def __init__(self, address: str):
        self.address = address  # HOST:PORT of the virtual lab's simulator-control port

    def wait(self, seconds: float, checkpoint: Callable[[], None]) -> None:
        self.command(f"ADVANCE {seconds!r}")

    def command(self, command: str) -> str:
        """One command to the simulator-control port; its reply (an `ERR` reply raises)."""
        host, _, port = self.address.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=10) as conn, conn.makefile("rw") as f:
            f.write(command + "\n")
            f.flush()
            reply = f.readline().strip()
        if not reply or reply.startswith("ERR"):
            raise ConnectionError(f"simulator control {self.address}: {reply or 'no reply'}")
        return reply
