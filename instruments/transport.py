"""Byte pipes to instruments: PyVISA, pyserial and in-process (a virtual instrument).

Drivers speak only to a :class:`Transport`; which one is chosen from the resource string by
:func:`open_transport`, so the same driver runs on a bench, over loopback TCP and in-process.
"""
from __future__ import annotations

import re
import socket
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pyvisa.resources import MessageBasedResource


class TransportError(IOError):
    """The link to an instrument failed (refused, closed, timed out); names the resource."""


class InstrumentTimeout(TransportError):
    """No (complete) reply arrived in time."""


class Transport(ABC):
    """A bidirectional byte pipe to one instrument."""

    resource: str

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

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VirtualInstrument(Protocol):
    """What an in-process transport talks to: bytes in, the reply bytes they cause out."""

    def handle(self, data: bytes) -> bytes: ...


class InProcessTransport(Transport):
    """Hands bytes straight to a virtual instrument; fastest, used by tests and `--station sim`."""

    def __init__(self, instrument: VirtualInstrument, resource: str = "sim://"):
        self.instrument = instrument
        self.resource = resource
        self._rx = bytearray()

    def write(self, data: bytes) -> None:
        self._rx += self.instrument.handle(bytes(data))

    def read(self, size: int) -> bytes:
        if len(self._rx) < size:
            raise InstrumentTimeout(f"{self.resource}: expected {size} bytes, got {len(self._rx)}")
        out = bytes(self._rx[:size])
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

        self.resource = resource
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
        except self._errors as exc:
            raise TransportError(f"{self.resource}: write failed ({exc})") from exc

    def read(self, size: int) -> bytes:
        try:
            return bytes(self._session().read_bytes(size))
        except self._errors as exc:
            raise InstrumentTimeout(f"{self.resource}: read of {size} bytes failed ({exc})") from exc

    def read_line(self, terminator: bytes = b"\n") -> bytes:
        inst = self._session()
        if inst.read_termination != terminator.decode():  # rare: set only on a change
            inst.read_termination = terminator.decode()
        try:
            raw = inst.read_raw()
        except self._errors as exc:
            raise InstrumentTimeout(f"{self.resource}: no reply ({exc})") from exc
        return raw[: -len(terminator)] if raw.endswith(terminator) else raw

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

        self.resource = url
        self._errors = (serial.SerialException, OSError)
        try:
            self._port = serial.serial_for_url(url, baudrate=baudrate, timeout=timeout)
            self._rx = bytearray()
        except self._errors as exc:
            raise TransportError(f"{url}: cannot open ({exc})") from exc

    def write(self, data: bytes) -> None:
        try:
            self._port.write(data)
        except self._errors as exc:
            raise TransportError(f"{self.resource}: write failed ({exc})") from exc

    def _fill(self) -> None:
        """Move what the port has (at least one byte, within the timeout) into the buffer."""
        try:
            chunk = self._port.read(max(1, self._port.in_waiting))
        except self._errors as exc:
            raise TransportError(f"{self.resource}: read failed ({exc})") from exc
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
        if port is not None:
            port.close()


def is_serial_resource(resource: str) -> bool:
    """True for device paths, COM ports and pyserial URLs; False for VISA resource strings."""
    return bool(_SERIAL_URL.match(resource)) and not resource.startswith("sim://")
