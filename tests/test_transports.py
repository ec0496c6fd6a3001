"""Transports against the virtual 2450 served on loopback: pyvisa-py, pyserial and in-process."""
import socket

import numpy as np
import pytest
from labctl.instruments.keithley2450 import Keithley2450
from labctl.instruments.transport import (
    InProcessTransport,
    InstrumentTimeout,
    SerialTransport,
    TransportError,
    VisaTransport,
)
from labctl.sim.keithley2450 import VirtualKeithley2450
from labctl.sim.server import serve

from fakes import Resistor


@pytest.fixture
def served():
    twin = VirtualKeithley2450(Resistor(1e4))
    server = serve(twin)
    yield twin, server.address[1]
    server.close()


@pytest.fixture
def closed_port():
    """A loopback port nobody listens on: connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def identify_and_sweep(transport) -> None:
    smu = Keithley2450(transport, name="smu")
    try:
        assert "MODEL 2450" in smu.check_identity()
        smu.configure_voltage_source(1e-3, nplc=0.01)
        v, i = smu.sweep_linear(0, 1, 200, delay=0)
        np.testing.assert_allclose(i, v / 1e4, rtol=1e-6)
        assert len(v) == 200
        smu.source_off()
        assert not smu.output_enabled  # a query: the server has handled everything before it
    finally:
        smu.close()


def test_server_binds_loopback_only(served):
    _, port = served
    with socket.create_connection(("127.0.0.1", port)) as s:
        assert s.getpeername()[0] == "127.0.0.1"


def test_pyvisa_socket_resource(served):
    twin, port = served
    identify_and_sweep(VisaTransport(f"TCPIP0::127.0.0.1::{port}::SOCKET", timeout=2))
    assert not twin.output_on


def test_pyserial_socket_url(served):
    twin, port = served
    identify_and_sweep(SerialTransport(f"socket://127.0.0.1:{port}", timeout=2))
    assert not twin.output_on


def ask_raw(sock: socket.socket, query: bytes) -> bytes:
    sock.sendall(query)
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = sock.recv(4096)
        assert chunk, "server closed the connection"
        reply += chunk
    return reply


def test_clients_can_disconnect_and_reconnect(served):
    _, port = served
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            assert ask_raw(s, b"*OPC?\n") == b"1\n"
    with socket.create_connection(("127.0.0.1", port), timeout=2) as a, \
            socket.create_connection(("127.0.0.1", port), timeout=2) as b:
        assert ask_raw(a, b"*OPC?\n") == b"1\n"
        assert ask_raw(b, b"*IDN?\n").startswith(b"KEITHLEY")


def test_loop_url_echoes():
    with SerialTransport("loop://", timeout=0.5) as link:
        link.write(b"\xa5\x00ping\n")
        assert link.read(2) == b"\xa5\x00"
        assert link.read_line() == b"ping"


def test_refused_serial_socket_names_the_resource(closed_port):
    url = f"socket://127.0.0.1:{closed_port}"
    with pytest.raises(TransportError, match=url):
        SerialTransport(url, timeout=1)


def test_refused_visa_socket_names_the_resource(closed_port):
    resource = f"TCPIP0::127.0.0.1::{closed_port}::SOCKET"
    # pyvisa-py connects without blocking, so a refusal may surface at the first write.
    with pytest.raises(TransportError, match=resource):
        VisaTransport(resource, timeout=1).write(b"*IDN?\n")


def test_in_process_timeout_when_no_reply():
    link = InProcessTransport(VirtualKeithley2450(Resistor(1e4)), "sim://smu")
    link.write(b":SOUR:VOLT 1\n")  # a command: no reply
    with pytest.raises(InstrumentTimeout, match="sim://smu: no reply"):
        link.read_line()
    with pytest.raises(InstrumentTimeout, match="sim://smu"):
        link.read(1)
