"""The simulated chip, measured through the protocols, reproduces the published device
(DESIGN.md section 2; issue 4). Fixed seeds; each tolerance is the issue's, and the sample sizes
keep the statistical error well inside it (noted per test)."""
import shutil

import numpy as np
import pytest

from labctl.engine import run_protocol
from labctl.station import Station

TARGETS = [20e-6, 40e-6, 60e-6]  # low, middle, high
YEARS_10 = 3.15e8


@pytest.fixture(scope="module")
def formed_8x8(tmp_path_factory):
    """A 64-cell chip formed once; each test gets its own copy of the state file."""
    base = tmp_path_factory.mktemp("chip")
    with Station.open("sim:8x8", sim_state=base / "chip.npz", seed=21) as station:
        summary = run_protocol(station, "forming", out=base / "forming.h5").summary
    return base / "chip.npz", summary


@pytest.fixture
def station(formed_8x8, tmp_path):
    state = tmp_path / "chip.npz"
    shutil.copy(formed_8x8[0], state)
    with Station.open("sim:8x8", sim_state=state, seed=22) as station:
        yield station


def run(station, tmp_path, name, **params):
    result = run_protocol(station, name, params, out=tmp_path / "d.h5")
    assert result.status == "completed", result.error
    return result.summary


def test_forming_yield_and_voltage(formed_8x8):
    s = formed_8x8[1]
    assert s["yield"] == 1.0
    # 64 cells: standard error 9 mV on the mean, ~9 % on the spread
    assert s["v_form_mean"] == pytest.approx(3.2, abs=0.05)
    assert s["v_form_std"] == pytest.approx(0.075, rel=0.25)


def test_pulse_response_states_and_asymmetry(station, tmp_path):
    s = run(station, tmp_path, "pulse_response", row=0, col=0, n_rows=4, n_cols=4, n_pulses=40, cycles=2)
    assert 16 <= s["n_states"] <= 33
    assert 20e-6 <= s["symmetry_point"] <= 40e-6
    assert abs(s["step_down_mean"]) > s["step_up_mean"] > 0
    assert 0.6 <= s["noise_to_signal"] <= 1.2  # published ~0.9


@pytest.mark.parametrize("acceptance, law, pulses", [
    (0.002, (0.811e-9, 1.069e-3), (45, 135)),
    (0.02, (11.2e-9, 11.29e-3), (5, 17)),
])
def test_write_verify_programming_noise_and_effort(station, tmp_path, acceptance, law, pulses):
    # the published algorithm: fixed-width pulses (refine=0)
    s = run(station, tmp_path, "write_verify", targets=TARGETS, acceptance=acceptance, refine=0)
    assert s["success_rate"] == 1.0
    expected = law[0] + law[1] * np.array(TARGETS)
    # ~21 cells per target: the spread of a band-limited distribution is known to ~12 %
    np.testing.assert_allclose(s["sigma"], expected, rtol=0.30)
    assert pulses[0] <= s["pulses_mean_all"] <= pulses[1]


def test_retention_follows_the_log_time_law(station, tmp_path):
    times = [3600.0, 86400.0, YEARS_10]
    s = run(station, tmp_path, "retention", levels=TARGETS, times=times, acceptance=0.02)
    t = np.array(s["times"])
    assert list(t) == times
    # 63 cells: standard errors ~0.1 uS on the shift, ~9 % on its spread
    np.testing.assert_allclose(s["shift_mean"], -0.0890e-6 * np.log(t), rtol=0.20)
    np.testing.assert_allclose(s["shift_std"], 0.0420e-6 * np.log(t) + 0.4118e-6, rtol=0.20)


def test_read_noise_follows_the_1_over_f_law(station, tmp_path):
    times = [1.0, YEARS_10]
    s = run(station, tmp_path, "read_noise", levels=TARGETS, times=times, n_reads=50, acceptance=0.02)
    g = np.array(s["g_by_level"]) / 1e-6  # levels x times, uS
    law = 0.0277e-6 * np.log10(g) * np.sqrt(np.log((np.array(times) + 1e-6) / 2e-6))
    # 21 cells x 50 reads per level and time: the spread is known to ~3 %
    np.testing.assert_allclose(np.array(s["sigma_by_level"]), law, rtol=0.20)
