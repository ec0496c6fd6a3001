"""Byte pipes to instruments: PyVISA, pyserial and in-process (a virtual instrument), and the
retry policy every driver's request goes through (:func:`exchange`).

Drivers speak only to a :class:`Transport`; which one is chosen from the resource string by
:func:`open_transport`, so the same driver runs on a bench, over loopback TCP and in-process.

Retry policy (docs/fpga-protocol.md, "Retry"): a request whose reply does not come within the
transport's timeout is sent once more, after the stream is resynchronised, only when the driver
says it may be (an idempotent SCPI query; any board request, which the board recognises as a
duplicate by its sequence number); the resend waits `retry_grace` at most. A command that
changes state is never silently repeated. After an exchange that got no reply at all the link
counts as failed (`Transport.failed`): until it answers again, each request gets one attempt of
the grace, so a dead instrument costs the timeout once, not once per call (the safe state).
"""
from __future__ import annotations

import errno
import re
import select
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from pyvisa.resources import MessageBasedResource


class TransportError(IOError):
    """The link to an instrument failed (refused, closed, timed out); names the resource."""


class InstrumentTimeout(TransportError):
    """No (complete) reply arrived in time."""


RETRY_GRACE = 0.2  # s: the longest wait for the reply to a resend (at most half the timeout)
R = TypeVar("R")


class Transport(ABC):
    """A bidirectional byte pipe to one instrument.

    `timeout` (s) bounds every read (the whole read, however the bytes trickle in), and `limit`
    bounds the reads of a block further. `failed` is set by `exchange` when a request got no
    reply (or the link broke) and cleared by the next reply. The defaults suit a transport that
    wraps another (a recording): its reads are bounded by the inner transport's timeout.
    """

    resource: str
    timeout: float = 5.0
    failed: str | None = None  # what went unanswered last, until the link answers again
    _until: float | None = None  # monotonic deadline set by `limit`

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Send bytes as they are (the driver adds any termination)."""

    @abstractmethod
    def read(self, size: int) -> bytes:
        """Return exactly `size` bytes or raise InstrumentTimeout."""

    @abstractmethod
    def read_line(self, terminator: bytes = b"\n") -> bytes:
        """Return the bytes up to `terminator`, without it; raise InstrumentTimeout if none comes."""

    def close(self) -> None:  # noqa: B027 (a link with nothing to release keeps this no-op)
        """Release the link; closing twice is harmless."""

    def flush_input(self) -> None:  # noqa: B027 (a link that keeps nothing unread has nothing to flush)
        """Discard whatever has arrived and was not read: stale replies (a duplicate, the late
        reply to a request given up on). Raises TransportError if the link turns out closed."""

    @contextmanager
    def limit(self, seconds: float) -> Iterator[None]:
        """Reads inside the block end within `seconds` from now (or sooner, by `timeout`)."""
        previous, until = self._until, time.monotonic() + seconds
        self._until = until if previous is None else min(previous, until)
        try:
            yield
        finally:
            self._until = previous

    def _time_left(self) -> float:
        """Seconds the current read may still wait; raises InstrumentTimeout when none are left."""
        left = self.timeout if self._until is None else min(self.timeout, self._until - time.monotonic())
        if left <= 0:
            raise InstrumentTimeout(f"{self.resource}: no reply")
        return left

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VirtualInstrument(Protocol):
    """What an in-process transport talks to: bytes in, the reply bytes they cause out."""

    def handle(self, data: bytes) -> bytes: ...


class InProcessTransport(Transport):
    """Hands bytes straight to a virtual instrument; fastest, used by tests and `--station sim`."""

    timeout = 0.0  # a twin in-process answers at once, or never

    def __init__(self, instrument: VirtualInstrument, resource: str = "sim://"):
        self.instrument = instrument
        self.resource = resource
        self._rx = bytearray()

    def write(self, data: bytes) -> None:
        self._rx += self.instrument.handle(bytes(data))

    def flush_input(self) -> None:
        self._rx.clear()

    def read(self, size: int) -> bytes:
        if len(self._rx) < size:
            raise InstrumentTimeout(f"{self.resource}: expected {size} bytes, got {len(self._rx)}")
        with memoryview(self._rx) as pending:  # one copy of a reply, not two
            out = bytes(pending[:size])
        del self._rx[:size]
        return out

    def read_line(self, terminator: bytes = b"\n") -> bytes:
        end = self._rx.find(terminator)
        if end < 0:
            raise InstrumentTimeout(f"{self.resource}: no reply")
        out = bytes(self._rx[:end])
        del self._rx[: end + len(terminator)]
        return out


class VisaTransport(Transport):
    """Any VISA resource string; pyvisa-py is the default backend, so no vendor VISA is needed."""

    def __init__(self, resource: str, timeout: float = 5.0, backend: str = "@py"):
        import pyvisa

        self.resource, self.timeout = resource, float(timeout)
        self._tmo_ms = int(timeout * 1000)
        self._visa_error = pyvisa.errors.VisaIOError
        self._errors = (pyvisa.errors.VisaIOError, OSError)
        try:
            self._rm = pyvisa.ResourceManager(backend)
            inst = self._rm.open_resource(resource, timeout=int(timeout * 1000))
        except self._errors as exc:
            raise TransportError(f"{resource}: cannot connect ({exc})") from exc
        if not isinstance(inst, pyvisa.resources.MessageBasedResource):  # e.g. a VXI memory window
            raise TransportError(f"{resource}: not a message-based VISA resource ({type(inst).__name__})")
        self._inst: MessageBasedResource | None = inst
        inst.read_termination = "\n"
        inst.write_termination = ""
        _disable_nagle(inst)

    def _session(self) -> MessageBasedResource:
        if self._inst is None:
            raise TransportError(f"{self.resource}: the link is closed")
        return self._inst

    def write(self, data: bytes) -> None:
        try:
            self._session().write_raw(data)
        except OSError as exc:
            raise _lost(self.resource, exc) from exc
        except self._errors as exc:
            raise TransportError(f"{self.resource}: write failed ({exc})") from exc

    def _armed(self) -> MessageBasedResource:
        """The session with its timeout set to what the read may still wait (set only when it
        changes by more than 10 ms: a VISA attribute call per read otherwise)."""
        inst = self._session()
        ms = max(1, int(self._time_left() * 1000))
        if abs(ms - self._tmo_ms) > 10:
            inst.timeout = self._tmo_ms = ms
        return inst

    def _failed_read(self, exc: Exception, what: str) -> TransportError:
        if isinstance(exc, OSError):
            return _lost(self.resource, exc)
        closed = self._closed_by_peer()
        if closed is not None:
            return closed
        if isinstance(exc, self._visa_error) and "TMO" not in str(exc):
            return TransportError(f"{self.resource}: {what} failed ({exc})")
        return InstrumentTimeout(f"{self.resource}: no reply")

    def read(self, size: int) -> bytes:
        try:
            return bytes(self._armed().read_bytes(size))
        except self._errors as exc:
            raise self._failed_read(exc, f"read of {size} bytes") from exc

    def read_line(self, terminator: bytes = b"\n") -> bytes:
        inst = self._armed()
        if inst.read_termination != terminator.decode():  # rare: set only on a change
            inst.read_termination = terminator.decode()
        try:
            raw = inst.read_raw()
        except self._errors as exc:
            raise self._failed_read(exc, "read") from exc
        return raw[: -len(terminator)] if raw.endswith(terminator) else raw

    def _socket_session(self):
        """pyvisa-py's session of a TCPIP SOCKET resource (its socket and read-ahead buffer),
        else None (other VISA resources keep no bytes for us to flush)."""
        inst = self._inst
        session = getattr(getattr(inst, "visalib", None), "sessions", {}).get(getattr(inst, "session", None))
        sock = getattr(session, "interface", None)
        return session if isinstance(sock, socket.socket) and hasattr(session, "_pending_buffer") else None

    def flush_input(self) -> None:
        session = self._socket_session()
        if session is None:
            return
        session._pending_buffer.clear()
        sock = session.interface
        while select.select([sock], [], [], 0)[0]:
            try:
                chunk = sock.recv(65536)
            except OSError as exc:
                raise _lost(self.resource, exc) from exc
            if not chunk:
                raise TransportError(f"{self.resource}: connection closed by the instrument")

    def _closed_by_peer(self) -> TransportError | None:
        """After a read that timed out: was it the instrument closing the connection (pyvisa-py
        reads an orderly close as silence until the timeout)?"""
        session = self._socket_session()
        if session is None:
            return None
        try:
            if select.select([session.interface], [], [], 0)[0] and not session.interface.recv(1, socket.MSG_PEEK):
                return TransportError(f"{self.resource}: connection closed by the instrument")
        except OSError as exc:
            return _lost(self.resource, exc)
        return None

    def close(self) -> None:
        inst, self._inst = getattr(self, "_inst", None), None
        if inst is not None:
            inst.close()
            self._rm.close()


def _disable_nagle(inst) -> None:
    """Send small writes at once: otherwise a command followed by a query waits ~40 ms for the
    instrument's delayed ACK. pyvisa-py 0.8 cannot set VI_ATTR_TCPIP_NODELAY (its setter is
    miswired), so set it on the session's socket when there is one."""
    session = getattr(inst.visalib, "sessions", {}).get(inst.session)
    sock = getattr(session, "interface", None)
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


_SERIAL_URL = re.compile(r"^([a-z0-9+]+://|/dev/|COM\d+$)", re.IGNORECASE)


class SerialTransport(Transport):
    """A serial port or any pyserial URL (`socket://HOST:PORT`, `loop://`, `rfc2217://...`)."""

    def __init__(self, url: str, baudrate: int = 921600, timeout: float = 5.0):
        import serial

        self.resource, self.baudrate, self.timeout = url, baudrate, float(timeout)
        self._port_timeout = self.timeout
        self._errors = (serial.SerialException, OSError)
        self._write_timeout = serial.SerialTimeoutException
        try:
            # A write that cannot go out within the timeout (an instrument that stopped reading)
            # fails instead of blocking for ever.
            self._port = serial.serial_for_url(url, baudrate=baudrate, timeout=timeout, write_timeout=timeout)
            self._rx = bytearray()
        except self._errors as exc:
            raise TransportError(f"{url}: cannot open ({exc})") from exc

    def write(self, data: bytes) -> None:
        try:
            self._port.write(data)
        except self._write_timeout as exc:
            raise InstrumentTimeout(f"{self.resource}: write of {len(data)} bytes timed out: the "
                                    f"instrument does not read") from exc
        except self._errors as exc:
            raise _lost(self.resource, exc) from exc

    def flush_input(self) -> None:
        self._rx.clear()
        try:
            self._port.reset_input_buffer()
        except self._errors as exc:
            raise _lost(self.resource, exc) from exc

    def _fill(self) -> None:
        """Move what the port has (at least one byte, within what the read may still wait) into
        the buffer. The port's timeout is set only when it changes by more than 10 ms."""
        left = self._time_left()
        if abs(left - self._port_timeout) > 0.01:
            self._port.timeout = self._port_timeout = left
        try:
            chunk = self._port.read(max(1, self._port.in_waiting))
        except self._errors as exc:
            raise _lost(self.resource, exc) from exc
        if not chunk:
            raise InstrumentTimeout(f"{self.resource}: no reply")
        self._rx += chunk

    def read(self, size: int) -> bytes:
        try:
            while len(self._rx) < size:
                self._fill()
        except InstrumentTimeout:
            raise InstrumentTimeout(f"{self.resource}: expected {size} bytes, got {len(self._rx)}") from None
        out = bytes(self._rx[:size])
        del self._rx[:size]
        return out

    def read_line(self, terminator: bytes = b"\n") -> bytes:
        # pyserial's read_until goes byte by byte; take whatever is waiting instead
        while (end := self._rx.find(terminator)) < 0:
            self._fill()
        out = bytes(self._rx[:end])
        del self._rx[: end + len(terminator)]
        return out

    def close(self) -> None:
        port, self._port = getattr(self, "_port", None), None
        if port is None:
            return
        sock = getattr(port, "_socket", None)
        if isinstance(sock, socket.socket):  # socket://: pyserial's close() then sleeps 0.3 s
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already gone
            sock.close()
            port._socket, port.is_open = None, False
        port.close()


def _lost(resource: str, exc: BaseException) -> TransportError:
    """The error of a link that broke: reset or closed by the instrument, or another failure."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__context__
    code = getattr(cause, "errno", None)
    text = str(exc)
    if code == errno.ECONNRESET or "reset by peer" in text:
        return TransportError(f"{resource}: connection reset by the instrument ({exc})")
    if code in (errno.EPIPE, errno.ESHUTDOWN, errno.ENOTCONN) or "disconnected" in text:
        return TransportError(f"{resource}: connection closed by the instrument ({exc})")
    return TransportError(f"{resource}: link failed ({exc})")


def retry_grace(transport: Transport, extra: float = 0.0) -> float:
    """How long the resend of a request waits for its reply: RETRY_GRACE (at most half the
    timeout) plus `extra` (the request's link time and duration, which the board driver knows)."""
    timeout = transport.timeout or RETRY_GRACE * 2
    return min(RETRY_GRACE, timeout / 2) + extra


def named(exc: TransportError, what: str, resource: str) -> TransportError:
    """`exc` again (same type), its message led by `what` (the instrument and the request)."""
    where = what.rsplit(": ", 1)[0]  # "smu at RESOURCE" of "smu at RESOURCE: ':READ?'"
    if getattr(exc, "named", False) or str(exc).startswith(f"{where}: "):
        return exc
    detail = str(exc).removeprefix(f"{resource}: ")
    renamed = type(exc)(f"{what}: {detail}")
    renamed.named = True  # type: ignore[attr-defined]
    return renamed


def exchange(transport: Transport, what: str, attempt: Callable[[], R], retry: Callable[[], R] | None = None,
             retry_on: tuple[type[Exception], ...] = (InstrumentTimeout,), grace: float | None = None) -> R:
    """One request and its reply, under the retry policy (the module docstring): `attempt()`
    sends the request and reads the reply within the transport's timeout; if it raises one of
    `retry_on` and `retry` is given (the driver has declared the request safe to repeat),
    `retry()` resynchronises the stream, sends it again and reads the reply within the grace.
    Transport errors come out named by `what` (e.g. "smu at TCPIP0::...: ':READ?'")."""
    grace = retry_grace(transport) if grace is None else grace
    timeout, resource = transport.timeout, transport.resource
    failed_before = transport.failed
    try:
        if failed_before is not None:  # no reply since the last failure: one attempt, the grace
            try:
                with transport.limit(grace):
                    result = attempt()
            except InstrumentTimeout as exc:
                raise InstrumentTimeout(f"{what}: no reply{_within(grace)}; the link had not answered "
                                        f"since: {failed_before}") from exc
        else:
            try:
                with transport.limit(timeout or grace):
                    result = attempt()
            except retry_on as first:
                if retry is None:
                    if isinstance(first, InstrumentTimeout):
                        raise InstrumentTimeout(f"{what}: no reply{_within(timeout)}") from first
                    raise
                try:
                    with transport.limit(grace):
                        result = retry()
                except InstrumentTimeout as second:
                    raise InstrumentTimeout(f"{what}: no reply{_within(timeout)}, nor{_within(grace)} after "
                                            f"it was resent once") from second
    except TransportError as exc:
        error = named(exc, what, resource)
        if type(exc) is TransportError or isinstance(exc, InstrumentTimeout):  # silence, or a broken
            transport.failed = str(error)  # link (a corrupt reply, e.g. FrameError, is an answer)
        if error is exc:
            raise
        raise error from exc
    transport.failed = None
    return result


def _within(seconds: float) -> str:
    return f" within {seconds:.3g} s" if seconds else ""


def is_serial_resource(resource: str) -> bool:
    """True for device paths, COM ports and pyserial URLs; False for VISA resource strings."""
    return bool(_SERIAL_URL.match(resource)) and not resource.startswith("sim://")
