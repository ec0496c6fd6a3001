import pytest

from labctl.station import Station


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path, monkeypatch):
    """Keep the simulator's default state files out of the user's home."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture
def sim_station(tmp_path):
    with Station.open("sim", sim_state=tmp_path / "chip.npz", seed=1) as station:
        yield station
