"""A fault-injecting TCP proxy for the virtual lab's instrument ports (loopback only).

One `Proxy` listens on 127.0.0.1 and forwards each connection to one upstream port (an
instrument of `labctl sim serve` / VirtualLabServer). It cuts each direction of the stream into
messages (SCPI lines, or FPGA board frames), counts them, and applies an injected `Fault` to a
chosen message: the n-th reply (upstream to client) or request (client to upstream) after the
fault was armed, so a fault lands at a chosen moment, or at a random one drawn from a seed by the
caller. Kinds:

- ``kill``: the server dies: both connections are reset (RST) and the port refuses new ones;
  with ``partial`` the first part of the message goes through first (a death mid-message).
- ``close``: as kill, but an orderly close (FIN) instead of a reset.
- ``freeze``: the server hangs: the message and everything after it, both ways, are held
  (never delivered); connections stay open, so clients see timeouts.
- ``garbage``: the message is replaced by as many random bytes (a line stays a line).
- ``truncate``: only its first part goes through (a line without its terminator).
- ``duplicate``: it goes through twice.
- ``flip``: one bit of it is flipped (a board frame fails its CRC).
- ``drop``: it is not delivered.

`count` consecutive messages get the fault (freeze and kill need one). Buffers are bounded: a
partial message held while it completes is at most `MAX_MESSAGE` bytes (beyond that the bytes
are forwarded unframed), and a frozen connection stops reading, so the kernel's socket buffers
push back on the sender.

The harness below it: `FaultLab` (the 4x8 virtual lab served in this process, a proxy in front of
each instrument, station files through the proxies and direct, short timeouts), `run_with_fault`
(one protocol run with one fault armed after the station opened: status, error, rows reported
and in the file, time from the fault to the end) and `unsafe_at` (each instrument asked over its
own protocol on its own port). tests/faults/test_injected_faults.py and bench/faults.py use it.
"""
from __future__ import annotations

import random
import selectors
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

START, START_LONG = 0xA5, 0xA6
MAX_LONG_PAYLOAD = 1 << 22
MAX_MESSAGE = MAX_LONG_PAYLOAD + 16  # the longest board frame (4 MiB payload)
KINDS = ("kill", "close", "freeze", "garbage", "truncate", "duplicate", "flip", "drop")
DIRECTIONS = ("reply", "request")


@dataclass
class Fault:
    kind: str
    at: int = 0  # index of the message (0 = the next one after arming) in `direction`
    direction: str = "reply"  # "reply": upstream -> client; "request": client -> upstream
    count: int = 1  # consecutive messages affected (message faults)
    partial: float = 0.5  # truncate / kill: the fraction of the message that goes through
    seed: int = 0  # garbage bytes and flipped bit
    position: int | None = None  # flip: the byte (from the end if negative); None: a random one

    def __post_init__(self) -> None:
        if self.kind not in KINDS or self.direction not in DIRECTIONS:
            raise ValueError(f"fault {self.kind!r} {self.direction!r}: kinds {KINDS}, directions {DIRECTIONS}")


@dataclass
class Event:
    """A fault as applied: when (time.monotonic()), to which message."""

    kind: str
    direction: str
    index: int
    t: float
    message: bytes = field(repr=False, default=b"")


def split_lines(buf: bytearray) -> Iterator[tuple[bytes, bool]]:
    """Complete lines (with their terminator) from the front of buf; (bytes, is_message)."""
    while (end := buf.find(b"\n")) >= 0:
        line = bytes(buf[:end + 1])
        del buf[:end + 1]
        yield line, True


def split_frames(buf: bytearray) -> Iterator[tuple[bytes, bool]]:
    """Complete board frames from the front of buf, and runs of bytes that start no frame
    (is_message False: forwarded as they are, not counted)."""
    while buf:
        if buf[0] not in (START, START_LONG):
            end = next((k for k, b in enumerate(buf) if b in (START, START_LONG)), len(buf))
            chunk = bytes(buf[:end])
            del buf[:end]
            yield chunk, False
            continue
        long = buf[0] == START_LONG
        header = 7 if long else 5
        if len(buf) < header:
            return
        length = struct.unpack_from("<I" if long else "<H", buf, 3)[0]
        if long and length > MAX_LONG_PAYLOAD:  # not a frame: its start byte is noise
            yield bytes(buf[:1]), False
            del buf[:1]
            continue
        end = header + length + (4 if long else 2)
        if len(buf) < end:
            return
        frame = bytes(buf[:end])
        del buf[:end]
        yield frame, True


class _Connection:
    def __init__(self, proxy: Proxy, client: socket.socket, upstream: socket.socket):
        self.proxy, self.client, self.upstream = proxy, client, upstream
        self.buffers = {"request": bytearray(), "reply": bytearray()}
        self.closed = False

    def peer(self, direction: str) -> socket.socket:
        return self.upstream if direction == "request" else self.client

    def source(self, direction: str) -> socket.socket:
        return self.client if direction == "request" else self.upstream

    def shut(self, reset: bool) -> None:
        if self.closed:
            return
        self.closed = True
        for sock in (self.client, self.upstream):
            try:
                if reset:  # SO_LINGER 0: close() sends RST
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


class Proxy:
    """127.0.0.1:port -> upstream, with injectable faults; see the module docstring."""

    def __init__(self, upstream: tuple[str, int], framing: str = "lines", name: str = ""):
        if framing not in ("lines", "frames"):
            raise ValueError(f"framing {framing!r}: lines or frames")
        self.upstream, self.name = upstream, name or f"{upstream[0]}:{upstream[1]}"
        self._split = split_lines if framing == "lines" else split_frames
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self._lock = threading.Lock()
        self._fault: Fault | None = None
        self._counts = {"request": 0, "reply": 0}  # messages seen since the fault was armed
        self._affected = 0
        self.frozen = False
        self.dead = False
        self.events: list[Event] = []
        self.fired = threading.Event()
        self.messages = {"request": 0, "reply": 0}  # messages seen in all
        self._connections: list[_Connection] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, name=f"proxy-{self.name}", daemon=True)]
        self._threads[0].start()

    @property
    def port(self) -> int:
        return self.address[1]

    def inject(self, fault: Fault) -> None:
        """Arm `fault`: message counting starts now."""
        with self._lock:
            self._fault, self._counts, self._affected = fault, {"request": 0, "reply": 0}, 0
            self.fired.clear()

    def disarm(self) -> None:
        with self._lock:
            self._fault = None

    @property
    def fired_at(self) -> float | None:
        return self.events[0].t if self.events else None

    def close(self) -> None:
        self._stop.set()
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.shut(reset=True)
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------------
    def _accept(self) -> None:
        self._listener.settimeout(0.05)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed (killed)
            if self.dead:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _reset(client)
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(5.0)  # a send that cannot go through in 5 s ends the connection
            conn = _Connection(self, client, upstream)
            with self._lock:
                self._connections.append(conn)
            thread = threading.Thread(target=self._pump, args=(conn,), name=f"proxy-{self.name}-pump",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()

    def _pump(self, conn: _Connection) -> None:
        selector = selectors.DefaultSelector()
        selector.register(conn.client, selectors.EVENT_READ, "request")
        selector.register(conn.upstream, selectors.EVENT_READ, "reply")
        try:
            while not self._stop.is_set() and not conn.closed:
                if self.frozen:  # hold everything: read nothing, deliver nothing
                    time.sleep(0.02)
                    continue
                for key, _ in selector.select(timeout=0.05):
                    direction = key.data
                    try:
                        data = conn.source(direction).recv(65536)
                    except OSError:
                        data = b""
                    if not data:  # one side went away: so does the other
                        conn.shut(reset=False)
                        return
                    self._forward(conn, direction, data)
                    if conn.closed or self.frozen:
                        break
        except OSError:
            conn.shut(reset=True)
        finally:
            selector.close()

    def _forward(self, conn: _Connection, direction: str, data: bytes) -> None:
        buf = conn.buffers[direction]
        buf += data
        out = bytearray()
        for message, counted in self._split(buf):
            if not counted:
                out += message
                continue
            self.messages[direction] += 1
            action = self._action(direction, message)
            if action is None:
                out += message
                continue
            kind, fault = action
            rng = random.Random(fault.seed + self._affected)
            if kind in ("kill", "close"):
                cut = int(len(message) * fault.partial) if kind == "kill" else 0
                _send(conn.peer(direction), bytes(out) + message[:cut])
                if cut:  # let the first part arrive and be read: a reset discards unread bytes
                    time.sleep(0.05)
                self.dead = True
                self._listener.close()
                conn.shut(reset=kind == "kill")
                return
            if kind == "freeze":
                _send(conn.peer(direction), bytes(out))
                self.frozen = True
                buf.clear()
                return
            out += _mutate(kind, message, rng, fault, lines=self._split is split_lines)
        if len(buf) > MAX_MESSAGE:  # no message boundary in sight: pass it on unframed
            out += buf
            buf.clear()
        if out:
            _send(conn.peer(direction), bytes(out))

    def _action(self, direction: str, message: bytes) -> tuple[str, Fault] | None:
        with self._lock:
            fault = self._fault
            if fault is None or fault.direction != direction:
                return None
            index = self._counts[direction]
            self._counts[direction] += 1
            if index < fault.at or self._affected >= (1 if fault.kind in ("kill", "close", "freeze") else fault.count):
                return None
            self._affected += 1
            self.events.append(Event(fault.kind, direction, index, time.monotonic(), message[:64]))
            self.fired.set()
            return fault.kind, fault


def _mutate(kind: str, message: bytes, rng: random.Random, fault: Fault, lines: bool) -> bytes:
    partial = fault.partial
    if kind == "drop":
        return b""
    if kind == "duplicate":
        return message + message
    if kind == "truncate":
        body = message[:-1] if lines else message
        return body[:max(1, int(len(body) * partial))] if len(body) > 1 else b""
    if kind == "garbage":
        if lines:  # printable nonsense and a high byte, still one line
            n = max(1, len(message) - 1)
            return bytes(rng.choice(b"#@!?%&*~^xyzXYZ\xff") for _ in range(n)) + b"\n"
        return bytes(rng.randrange(256) for _ in range(len(message)))
    if kind == "flip":
        position = rng.randrange(len(message) - 1 if lines else len(message)) if fault.position is None \
            else fault.position % len(message)
        flipped = bytearray(message)
        flipped[position] ^= 1 << rng.randrange(8)
        return bytes(flipped)
    raise AssertionError(kind)


def _send(sock: socket.socket, data: bytes) -> None:
    if data:
        try:
            sock.sendall(data)
        except OSError:
            pass  # the other side is gone; the pump notices on its next read


def _reset(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


# -- the harness: a virtual lab with a proxy in front of each instrument -----------------------
ROLES = ("smu", "pulse", "board")


def address(resource: str) -> tuple[str, int]:
    """(host, port) of a `TCPIP0::HOST::PORT::SOCKET` or `socket://HOST:PORT` resource."""
    if "::" in resource:
        _, host, port, _ = resource.split("::")
        return host, int(port)
    host, _, port = resource.split("//", 1)[1].rpartition(":")
    return host, int(port)


def resource_at(role: str, host: str, port: int) -> str:
    return f"socket://{host}:{port}" if role == "board" else f"TCPIP0::{host}::{port}::SOCKET"


class FaultLab:
    """The built-in 4x8 simulated lab served on loopback (in this process), a Proxy in front of
    each instrument port, and a station file pointing at the proxies with `timeout` seconds on
    every instrument. `direct[role]` is the lab's own port, for asking an instrument afterwards
    without the proxy; `station_file_direct` is a station file for those ports."""

    def __init__(self, folder, seed: int = 3, timeout: float = 1.0):
        from labctl.sim.virtual_lab import VirtualLabServer

        from labctl.station import load_station, open_sim_lab, station_toml

        self.folder, self.timeout = Path(folder), timeout
        self.folder.mkdir(parents=True, exist_ok=True)
        folder = self.folder
        config = load_station("sim")
        self.sim, state = open_sim_lab(config, folder / "served.npz", seed=seed)
        self.server = VirtualLabServer(self.sim, base_port=0, state_path=None)
        self.proxies: dict[str, Proxy] = {}
        self.direct: dict[str, str] = {}
        try:
            models = {e.name: e.model for e in self.server.endpoints}
            for role in ROLES:
                self.direct[role] = self.server.resource(role)
                self.proxies[role] = Proxy(address(self.direct[role]), "frames" if role == "board" else "lines",
                                           role)
            control = self.server.resource("control")
            proxied = {role: (models[role], resource_at(role, *self.proxies[role].address)) for role in ROLES}
            direct = {role: (models[role], self.direct[role]) for role in ROLES}
            self.station_file = folder / "faulted.toml"
            self.station_file.write_text(_with_timeout(station_toml(config, proxied, "faulted lab", control), timeout))
            self.station_file_direct = folder / "direct.toml"
            self.station_file_direct.write_text(_with_timeout(station_toml(config, direct, "faulted lab", control),
                                                              timeout))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for proxy in self.proxies.values():
            proxy.close()
        self.server.close()

    def __enter__(self) -> FaultLab:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def unsafe(self) -> dict[str, str]:
        """What each instrument reports that is not its safe state, asked on the lab's own ports."""
        return unsafe_at(self.direct)



# -- each instrument asked over its own protocol, on its own port (not through a proxy) ----------

def ask_scpi(resource: str, *queries: str, timeout: float = 3.0) -> list[str]:
    with socket.create_connection(address(resource), timeout=timeout) as sock, sock.makefile("rwb") as f:
        replies = []
        for query in queries:
            f.write(query.encode() + b"\n")
            f.flush()
            replies.append(f.readline().decode("latin-1").strip())
        return replies


def board_status(resource: str, timeout: float = 2.0):
    """(modes, dac) from one STATUS frame on a fresh connection to the board's port: a plain
    exchange, no driver (whose resend could hide a board that lost its way)."""
    import numpy as np
    from labctl.instruments.fpga_wire import Command, FrameDecoder, encode_frame

    with socket.create_connection(address(resource), timeout=timeout) as sock:
        sock.sendall(encode_frame(0, Command.STATUS))
        decoder, end = FrameDecoder(), time.monotonic() + timeout
        while True:
            sock.settimeout(max(0.01, end - time.monotonic()))
            chunk = sock.recv(65536)  # TimeoutError: no reply
            if not chunk:
                raise ConnectionError("the board closed the connection")
            frames = [f for f in decoder.feed(chunk) if f.crc_ok and f.seq == 0]
            if frames:
                data = frames[0].payload
                if data[0] != 0:
                    raise RuntimeError(f"STATUS refused: {data!r}")
                n = int.from_bytes(data[1:3], "little")
                return (np.frombuffer(data, np.uint8, n, 3).copy(),
                        np.frombuffer(data, "<f4", n, 3 + n).astype(float))


def unsafe_at(direct: dict[str, str]) -> dict[str, str]:
    """What each instrument (a 2450 SMU, an 81160A generator, the board at the resources in
    `direct`) reports that is not its safe state: {role: what}, empty when all are safe; one that
    does not answer is reported as such."""
    from labctl.instruments.fpga_wire import LineMode

    found = {}
    checks = {"smu": (":OUTP?", ":SOUR:VOLT?"), "pulse": (":OUTP1?", ":OUTP2?")}
    for role, queries in checks.items():
        if role not in direct:
            continue
        try:
            replies = ask_scpi(direct[role], *queries)
        except OSError as exc:
            found[role] = f"no answer ({exc})"
            continue
        if role == "smu" and (replies[0] not in ("0", "OFF") or float(replies[1]) != 0.0):
            found[role] = f"output {replies[0]} at {replies[1]} V"
        if role == "pulse" and any(r not in ("0", "OFF") for r in replies):
            found[role] = f"outputs {replies}"
    try:
        modes, dac = board_status(direct["board"])
    except Exception as exc:  # noqa: BLE001 (any failure to answer is the finding)
        found["board"] = f"no answer ({type(exc).__name__}: {exc})"
    else:
        routed = int((modes != LineMode.GROUND).sum())
        if routed or (dac != 0).any():
            found["board"] = f"{routed} lines routed, DACs up to {abs(dac).max():g} V"
    return found


def _with_timeout(text: str, timeout: float) -> str:
    lines = []
    for line in text.splitlines():
        lines.append(line)
        if line.startswith("resource = "):
            lines.append(f"timeout = {timeout!r}")
    return "\n".join(lines) + "\n"


@dataclass
class Outcome:
    """One run with one fault: what the run said, what the file holds, how long it took."""

    status: str
    error: str
    summary: dict
    rows_reported: dict[str, int]  # rows handed to live subscribers per table (written first)
    rows_in_file: dict[str, int]
    fired: bool
    after_fault_s: float | None  # from the fault to the end of run_protocol (safe state and record included)
    run_id: str = ""


def run_with_fault(lab: FaultLab, protocol: str, params: dict, role: str | None, fault: Fault | None, out,
                   arm=None) -> Outcome:
    """Open the station through the proxies, arm `fault` on `role`'s proxy (after the station
    opened), run `protocol` and return what happened. `arm(station)` may arm it instead."""
    from labctl.engine import get_protocol, run_protocol
    from labctl.station import Station, load_station
    from labctl.store import list_runs, load_run

    tables = set(get_protocol(protocol).tables)
    reported: dict[str, int] = {}

    def count(table: str, columns: dict) -> None:
        if table in tables:
            n = max(len(_atleast_1d(values)) for values in columns.values())
            reported[table] = reported.get(table, 0) + n

    proxy = lab.proxies[role] if role else None
    with Station(load_station(str(lab.station_file))) as station:
        if arm is not None:
            arm(station)
        elif proxy is not None and fault is not None:
            proxy.inject(fault)
        result = run_protocol(station, protocol, params, out=out, subscribers=[count])
        ended = time.monotonic()
        if proxy is not None:
            proxy.disarm()
    record = next(r for r in list_runs(out) if r["run_id"] == result.run_id)
    load_run(out, result.run_id)  # the file opens and the run reads back
    in_file = {t: int(record["datasets"][t][0]) for t in tables if t in record["datasets"]}
    if record["status"] != result.status or record["error"] != result.error:
        raise AssertionError(f"the file says {record['status']!r} {record['error']!r}, the run {result.status!r}")
    fired_at = proxy.fired_at if proxy is not None else None
    return Outcome(result.status, result.error, result.summary, reported, in_file, fired_at is not None,
                   None if fired_at is None else ended - fired_at, result.run_id)


def _atleast_1d(value) -> list:
    import numpy as np

    return list(np.atleast_1d(np.asarray(value)))
