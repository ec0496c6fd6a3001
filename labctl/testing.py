"""A pytest fixture for protocol authors: `labctl_station`, an open station on the simulator.

Installed with labctl (the `pytest11` entry point of its pyproject.toml), so a test in any
package can ask for it. It is parametrised over two stations: `sim`, the simulated lab
in-process, and `virtual-lab`, the same chip served on loopback TCP (`labctl sim serve`) and
reached through the real transports (pyvisa-py sockets, a pyserial socket:// URL), as a
bench would be. Each test gets a fresh chip (seed 1), formed when marked
`@pytest.mark.labctl_formed`; the chip's size comes from `@pytest.mark.labctl_chip(rows, cols)`
(default the packaged 4x8).

    def test_my_protocol(labctl_station, tmp_path):
        result = labctl.engine.run_protocol(labctl_station, "my_protocol", {}, out=tmp_path / "d.h5")
        assert result.status == "completed"

See docs/writing-a-protocol.md.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from .station import Station, load_station, open_sim_lab, station_toml

STATIONS = ("sim", "virtual-lab")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "labctl_chip(rows, cols): the size of labctl_station's simulated chip")
    config.addinivalue_line("markers", "labctl_formed: labctl_station's chip is formed before the test")


@pytest.fixture(params=STATIONS)
def labctl_station(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[Station]:
    """An open Station on a fresh simulated chip: in-process (`sim`) or over loopback TCP
    (`virtual-lab`)."""
    tmp = tmp_path_factory.mktemp("labctl_station")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp / "state"))  # locks and default states stay here
    chip = request.node.get_closest_marker("labctl_chip")
    spec = f"sim:{chip.args[0]}x{chip.args[1]}" if chip else "sim"
    formed = request.node.get_closest_marker("labctl_formed") is not None
    if request.param == "sim":
        with Station.open(spec, sim_state=tmp / "chip.npz", seed=1) as station:
            if formed:
                _form(station.lab)
            yield station
        return
    from labctl.sim.virtual_lab import VirtualLabServer

    config = load_station(spec)
    lab, state = open_sim_lab(config, tmp / "served.npz", seed=1)
    if formed:
        _form(lab)
    server = VirtualLabServer(lab, base_port=0, state_path=state)
    try:
        roles = {e.name: (e.model, e.resource) for e in server.endpoints if e.name != "control"}
        station_file = tmp / "virtual-lab.toml"
        station_file.write_text(station_toml(config, roles, "virtual lab", server.resource("control")))
        with Station.open(str(station_file)) as station:
            yield station
    finally:
        server.close()


def _form(lab) -> None:
    """Every cell at its drawn post-forming conductance (what the forming protocol leaves)."""
    physics = lab.physics
    physics.formed[:] = True
    physics.g[:] = physics.g_formed


@pytest.fixture
def labctl_replay(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Replays a recording made with `labctl run --record` (labctl/record.py): call it with the
    recording's path; it returns the RunResult and fails the test (ReplayMismatch) when a byte
    sent or the result differs from the recording."""
    from .record import replay

    tmp = tmp_path_factory.mktemp("labctl_replay")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp / "state"))
    return lambda recording: replay(recording, tmp / "replay.h5")
