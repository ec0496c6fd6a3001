"""The virtual lab under load and against hostile input: churn and floods on every port leave it
up and bounded; an endless message is dropped with the instrument's own error; station names
cannot steer files out of the state folder."""
import socket
import threading
import time

import pytest
from labctl.sim.scpi import MAX_INPUT
from labctl.sim.server import MAX_CLIENTS
from labctl.sim.virtual_lab import VirtualLabServer

from labctl.station import default_sim_state, load_station, lock_path, open_sim_lab


@pytest.fixture
def lab(tmp_path):
    config = load_station("sim")
    sim, state = open_sim_lab(config, tmp_path / "served.npz", seed=3)
    server = VirtualLabServer(sim, base_port=0, state_path=state)
    yield server
    server.close()


def address(server, name):
    resource = server.resource(name)
    host, port = resource.split("::")[1:3] if "::" in resource else resource.split("//")[1].split(":")
    return host, int(port)


def ask(addr, line: bytes, timeout=5.0) -> bytes:
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(line)
        return s.makefile("rb").readline()


def settled(lab, threads_before: set) -> bool:
    """No connection's thread left (a handler releases its slot just before its thread exits)
    and every slot of every port free."""
    if set(threading.enumerate()) - threads_before:
        return False
    for server in lab._servers:
        free = 0
        while free < MAX_CLIENTS and server.slots.acquire(blocking=False):
            free += 1
        for _ in range(free):
            server.slots.release()
        if free < MAX_CLIENTS:
            return False
    return True


def settle(lab, threads_before: set) -> None:
    """Wait for settled(): on a loaded machine closed connections may still be served, or wait
    in a port's accept queue, and each is accepted, served and closed in turn."""
    deadline = time.monotonic() + 20
    while not settled(lab, threads_before) and time.monotonic() < deadline:
        for thread in set(threading.enumerate()) - threads_before:
            try:
                thread.join(timeout=10)
            except RuntimeError:
                pass  # started but not yet running: joined on the next pass
        time.sleep(0.01)  # (a connection still queued: accepted within one poll of its server)
    assert settled(lab, threads_before)


def answer(lab, name: str, line: bytes, threads_before: set) -> bytes:
    """The port's reply; a connection closed at accept (every slot held: the bound at work) is
    tried again once the connections holding the slots are gone."""
    for _ in range(20):
        if reply := ask(address(lab, name), line):
            return reply
        settle(lab, threads_before)
    raise AssertionError(f"{name} closed 20 connections in a row at accept")


def test_connect_disconnect_churn_leaves_every_port_answering_and_no_threads_behind(lab):
    threads_before = set(threading.enumerate())
    ports = [address(lab, name) for name in ("smu", "pulse", "board")]

    def churn(addr, k):
        for n in range(20):
            try:
                with socket.create_connection(addr, timeout=5) as s:
                    if n % 3 == 0:
                        s.sendall(b":SOUR:VOLT 0.1" if k % 2 else b"\xa5\x00")  # cut mid-message
            except OSError:
                pass  # refused while the port was full: that is the bound at work

    workers = [threading.Thread(target=churn, args=(addr, k)) for addr in ports for k in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert not any(w.is_alive() for w in workers)

    settle(lab, threads_before)
    assert answer(lab, "smu", b"*IDN?\n", threads_before).startswith(b"KEITHLEY")
    assert b"81160A" in answer(lab, "pulse", b"*IDN?\n", threads_before)
    assert answer(lab, "smu", b":OUTP?\n", threads_before).strip() == b"0"  # cut messages changed nothing
    settle(lab, threads_before)  # and every slot is given back


def test_connections_beyond_the_bound_are_closed_at_accept(lab):
    threads_before = set(threading.enumerate())
    addr = address(lab, "smu")
    held = [socket.create_connection(addr, timeout=5) for _ in range(MAX_CLIENTS)]
    try:
        for s in held:  # each held connection is served
            s.sendall(b"*IDN?\n")
            assert s.makefile("rb").readline().startswith(b"KEITHLEY")
        with socket.create_connection(addr, timeout=5) as extra:
            assert extra.recv(1) == b""  # closed by the server, nothing executed
    finally:
        for s in held:
            s.close()
    assert answer(lab, "smu", b"*IDN?\n", threads_before).startswith(b"KEITHLEY")  # once their handlers end


def test_an_endless_message_is_dropped_with_an_input_buffer_overrun(lab):
    addr = address(lab, "smu")
    with socket.create_connection(addr, timeout=10) as s:
        chunk = b"A" * 65536
        for _ in range(MAX_INPUT // len(chunk) + 2):
            s.sendall(chunk)
        s.sendall(b"\n:SYST:ERR?\n")
        line = s.makefile("rb").readline()  # the empty line left after the drop has no reply
    assert line.startswith(b"-363"), line
    assert lab.lab.smu._rx == bytearray()


@pytest.mark.parametrize("name", ["../../evil", "/etc/passwd", "a/../../b"])
def test_station_names_cannot_steer_state_files_out_of_their_folder(tmp_path, name):
    from dataclasses import replace

    config = replace(load_station("sim"), name=name)
    base = (tmp_path / "state" / "labctl").resolve()
    for path in (default_sim_state(config), lock_path(config)):
        assert path.resolve().parent == base, path
