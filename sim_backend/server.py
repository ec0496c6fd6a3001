"""Loopback TCP server for virtual instruments: a raw SCPI socket (like port 5025 on a LAN
instrument) or the far end of a pyserial ``socket://`` URL (the FPGA board)."""
from __future__ import annotations

import socket
import socketserver
import threading
import weakref

from labctl.instruments.transport import VirtualInstrument

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only
MAX_CLIENTS = 8  # connections one instrument port serves at once; more are closed at accept
_locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


def instrument_lock(instrument: VirtualInstrument) -> threading.Lock:
    """The lock every server of `instrument` holds while it handles bytes."""
    with _locks_guard:
        return _locks.setdefault(instrument, threading.Lock())


class _Connection(socketserver.BaseRequestHandler):
    server: InstrumentServer

    def handle(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server = self.server
        server.clients.add(self.request)
        try:
            while data := self.request.recv(65536):
                if _QUICKACK is not None:  # ACK at once, whatever the client's Nagle setting
                    self.request.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
                with server.lock:
                    reply = server.instrument.handle(data)
                if reply:
                    self.request.sendall(reply)
        except OSError:
            pass  # the client went away or close() shut the socket
        finally:
            server.clients.discard(self.request)
            with server.lock:
                getattr(server.instrument, "device_clear", lambda: None)()

    def finish(self) -> None:  # called however handle() ended
        self.server.slots.release()


class InstrumentServer(socketserver.ThreadingTCPServer):
    """Serves one instrument to its clients, one after another or at once.

    The instrument parses one byte stream, so clients at once must each send whole messages (as
    VISA and the drivers do); a client that disconnects mid-message has its partial input dropped.
    At most MAX_CLIENTS connections are served at once (one thread each): a connection beyond
    them is closed as soon as it is accepted, so churn or a flood cannot grow the server.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64  # listen backlog: a burst of connects must not wait out a SYN retry (1 s)

    def __init__(self, instrument: VirtualInstrument, host: str, port: int,
                 lock: threading.Lock | None = None):
        super().__init__((host, port), _Connection)
        self.instrument = instrument
        self.lock = lock or instrument_lock(instrument)
        self.clients: set[socket.socket] = set()
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"instrument-server-{self.address[1]}", daemon=True)
        self._thread.start()

    def verify_request(self, request, client_address) -> bool:
        return self.slots.acquire(blocking=False)  # released when its connection ends

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server_address[:2]
        if not isinstance(host, str):  # unreachable: getsockname() gives the host as a str
            raise TypeError(f"server host {host!r} is not a str")
        return host, port

    def close(self) -> None:
        """Stop accepting, drop connected clients and free the port; closing twice is harmless."""
        if self._thread.is_alive():
            self.shutdown()
            for client in list(self.clients):
                try:
                    client.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already gone
            self.server_close()


def serve(instrument: VirtualInstrument, host: str = "127.0.0.1", port: int = 0,
          lock: threading.Lock | None = None) -> InstrumentServer:
    """Serve `instrument` on host:port (port 0 picks a free one; see `.address`).

    `lock` serialises access to shared simulated hardware; by default each instrument has its own.
    """
    return InstrumentServer(instrument, host, port, lock)
