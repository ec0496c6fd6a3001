"""The whole simulated bench on loopback: each SCPI instrument on its own raw socket (as LAN
instruments listen on port 5025), the FPGA board behind a pyserial `socket://` URL, and a
simulator-control port. Clients reach it through pyvisa-py and pyserial like a real bench.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from .lab import SimLab
from .server import InstrumentServer, serve

ORDER = ("smu", "pulse", "board", "control")  # port = base_port + index


@dataclass(frozen=True)
class Endpoint:
    name: str
    model: str
    resource: str


class SimControl:
    """Line commands for the simulator itself (not an instrument):

    `TIME?` virtual seconds; `ADVANCE <s>` lets time pass with every line as it is; `SAVE` writes
    the chip state file; `RESET` makes the chip pristine. Errors answer `ERR <message>`.
    """

    def __init__(self, lab: SimLab, state_path: Path | None):
        self.lab, self.state_path, self._rx = lab, state_path, bytearray()

    def handle(self, data: bytes) -> bytes:
        self._rx += data
        out = []
        while (end := self._rx.find(b"\n")) >= 0:
            line = self._rx[:end].decode(errors="replace").strip()
            del self._rx[: end + 1]
            if line:
                out.append(self._command(line))
        return "".join(f"{reply}\n" for reply in out).encode()

    def device_clear(self) -> None:
        self._rx.clear()

    def _command(self, line: str) -> str:
        word, _, arg = line.partition(" ")
        physics = self.lab.physics
        try:
            match word.upper():
                case "*IDN?":
                    return "LABCTL,SIM-CONTROL,0,1"
                case "TIME?":
                    return f"{physics.clock.now:.9e}"
                case "ADVANCE":
                    physics.clock.advance(float(arg))
                    return "OK"
                case "SAVE" if self.state_path is not None:
                    self.lab.save(self.state_path)
                    return "OK"
                case "RESET":
                    physics.reset()
                    return "OK"
            return f"ERR unknown command {line!r} (TIME?, ADVANCE <s>, SAVE, RESET)"
        except ValueError as exc:
            return f"ERR {exc}"


class VirtualLabServer:
    """Serves a SimLab's instruments on loopback; all share one lock (one chip behind them)."""

    def __init__(self, lab: SimLab, host: str = "127.0.0.1", base_port: int = 5025,
                 state_path: Path | None = None):
        self.lab, self.state_path = lab, state_path
        self._lock = threading.Lock()
        self._servers: list[InstrumentServer] = []
        self.endpoints: list[Endpoint] = []
        twins = {"smu": lab.smu, "pulse": lab.pulse, "board": lab.board,
                 "control": SimControl(lab, state_path)}
        try:
            for index, name in enumerate(ORDER):
                if twins[name] is None:
                    continue
                server = serve(twins[name], host, base_port + index if base_port else 0, self._lock)
                self._servers.append(server)
                h, port = server.address
                resource = (f"socket://{h}:{port}" if name == "board" else f"{h}:{port}" if name == "control"
                            else f"TCPIP0::{h}::{port}::SOCKET")
                self.endpoints.append(Endpoint(name, lab.models.get(name, "sim-control"), resource))
        except BaseException:
            self.close()
            raise

    def resource(self, name: str) -> str:
        return next(e.resource for e in self.endpoints if e.name == name)

    def close(self) -> None:
        """Stop every server and save the chip's state."""
        for server in self._servers:
            server.close()
        self._servers.clear()
        if self.state_path is not None:
            with self._lock:
                self.lab.save(self.state_path)
