"""pulse_response, endurance and variability_map: extraction on synthetic soft-bounds data with
known answers, and each protocol end to end on the simulated chip (sanity, not calibration)."""
import numpy as np
import pytest
from labctl.protocols.endurance import Endurance, logged_cycles
from labctl.protocols.pulse_response import (
    PulseResponse,
    analyze_pulse_response,
    bin_steps,
    symmetry_point,
    trace_from_table,
)
from labctl.protocols.variability_map import VariabilityMap, spread
from matplotlib.figure import Figure

from labctl.engine import run_protocol
from labctl.params import ParameterError
from labctl.safety import SafetyError
from labctl.store import load_run

G_LO, G_HI = 9.0e-6, 88.2e-6


def soft_bounds_trace(a_up: float, a_down: float, n_pulses: int, cycles: int, cells: int = 1,
                      sigma: float = 0.0, seed: int = 0) -> np.ndarray:
    """Reads (cells, cycles, 2, n_pulses + 1) of the soft-bounds model dG_up = a_up (G_hi - G),
    dG_down = -a_down (G - G_lo), each step times (1 + sigma * N(0, 1)) (multiplicative noise)."""
    rng = np.random.default_rng(seed)
    trace = np.empty((cells, cycles, 2, n_pulses + 1))
    g = np.full(cells, G_LO)
    for c in range(cycles):
        for d, (a, bound) in enumerate(((a_up, G_HI), (a_down, G_LO))):
            trace[:, c, d, 0] = g
            for k in range(1, n_pulses + 1):
                g = g + a * (bound - g) * (1 + sigma * rng.standard_normal(cells))
                trace[:, c, d, k] = g
    return trace


# -- extraction -----------------------------------------------------------------------------------
def test_noiseless_soft_bounds_gives_the_exact_symmetry_point_and_number_of_states():
    a_up, a_down = 0.05, 0.10
    result = analyze_pulse_response(soft_bounds_trace(a_up, a_down, n_pulses=400, cycles=3), n_bins=16)
    # |dG_up| = |dG_down|  <=>  a_up (G_hi - G) = a_down (G - G_lo)
    g_sym = (a_up * G_HI + a_down * G_LO) / (a_up + a_down)
    assert result.symmetry_point == pytest.approx(g_sym, rel=1e-9)
    assert result.step_at_symmetry == pytest.approx(a_up * (G_HI - g_sym), rel=1e-9)
    # saturated: range / dG at the symmetry point = (a_up + a_down) / (a_up a_down) = 30
    assert result.g_up_level == pytest.approx(G_HI, rel=1e-6)
    assert result.g_down_level == pytest.approx(G_LO, rel=1e-6)
    assert result.n_states == pytest.approx((a_up + a_down) / (a_up * a_down), rel=1e-6)
    assert result.step_up_mean > 0 > result.step_down_mean
    assert abs(result.step_down_mean) > result.step_up_mean  # down steeper (a_down > a_up)
    assert result.noise_to_signal < 0.1  # only the deterministic spread inside a bin
    s = result.summary()
    assert set(s) >= {"n_states", "symmetry_point", "step_up_mean", "step_down_mean", "noise_to_signal"}
    assert all(isinstance(v, float) for v in s.values())


@pytest.mark.parametrize("sigma", [0.3, 0.9])
def test_noise_to_signal_recovers_multiplicative_step_noise(sigma):
    trace = soft_bounds_trace(0.04, 0.08, n_pulses=60, cycles=30, cells=8, sigma=sigma, seed=3)
    result = analyze_pulse_response(trace, n_bins=16)
    assert result.noise_to_signal == pytest.approx(sigma, rel=0.15)
    assert result.noise_to_signal_up == pytest.approx(sigma, rel=0.2)
    assert result.noise_to_signal_down == pytest.approx(sigma, rel=0.2)
    g_sym = (0.04 * G_HI + 0.08 * G_LO) / 0.12
    assert result.symmetry_point == pytest.approx(g_sym, rel=0.1)


def test_symmetry_point_interpolates_and_reports_no_crossing_as_nan():
    g = np.array([10e-6, 30e-6, 50e-6])
    # |up| falls 3 -> 1, |down| rises 1 -> 3 (signed negative): they cross at 30 uS
    assert symmetry_point(g, [3e-6, 2e-6, 1e-6], g, [-1e-6, -2e-6, -3e-6]) == pytest.approx(30e-6)
    assert symmetry_point(g, [3e-6, 2.5e-6, 2e-6], g, [-1e-6, -1.5e-6, -2e-6]) == pytest.approx(50e-6)
    assert np.isnan(symmetry_point(g, [5e-6] * 3, g, [-1e-6] * 3))
    assert np.isnan(symmetry_point(g, [3e-6, 2e-6, 1e-6], g + 100e-6, [-1e-6, -2e-6, -3e-6]))  # no overlap


def test_bin_steps_groups_and_drops_thin_bins():
    g = np.array([1.0, 1.2, 1.4, 3.5, 3.6, 1.1, 1.3, 1.5])
    dg = np.array([1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 20.0, 30.0])
    groups = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    b = bin_steps(g, dg, np.array([1.0, 2.0, 4.0]), groups, min_count=3)
    np.testing.assert_array_equal(b.count, [[3, 2], [3, 0]])
    np.testing.assert_allclose(b.dg_mean[:, 0], [2.0, 20.0])
    np.testing.assert_allclose(b.dg_std[:, 0], [1.0, 10.0])
    np.testing.assert_allclose(b.g[:, 0], [1.2, 1.3])
    assert np.isnan(b.dg_mean[:, 1]).all()  # 2 and 0 steps: below min_count


def test_trace_table_round_trip():
    trace = soft_bounds_trace(0.1, 0.2, n_pulses=4, cycles=2, cells=3)
    rows, cols = np.array([0, 0, 1]), np.array([2, 3, 2])
    c, y, d, k = np.meshgrid(np.arange(3), np.arange(2), np.arange(2), np.arange(5), indexing="ij")
    table = np.zeros(trace.size, dtype=[("row", "i4"), ("col", "i4"), ("cycle", "i4"), ("direction", "i1"),
                                        ("pulse_index", "i4"), ("g", "f8")])
    table["row"], table["col"], table["cycle"] = rows[c.ravel()], cols[c.ravel()], y.ravel()
    table["direction"], table["pulse_index"], table["g"] = np.where(d.ravel() == 0, 1, -1), k.ravel(), trace.ravel()
    cells, back = trace_from_table(table[::-1])
    np.testing.assert_array_equal(cells, [[0, 2], [0, 3], [1, 2]])
    np.testing.assert_array_equal(back, trace)


def test_logged_cycles_are_log_spaced_and_include_both_ends():
    np.testing.assert_array_equal(logged_cycles(1, 5), [1])
    np.testing.assert_array_equal(logged_cycles(100, 2), [1, 3, 10, 32, 100])
    c = logged_cycles(1000, 5)
    assert c[0] == 1 and c[-1] == 1000 and np.all(np.diff(c) > 0)


def test_spread_is_mean_and_sample_cv():
    assert spread(np.array([1.0, 3.0, np.nan])) == pytest.approx((2.0, np.sqrt(2.0) / 2.0))
    assert spread(np.array([2.0])) == (2.0, None)
    assert spread(np.array([np.nan])) == (None, None)


# -- protocols on the simulated chip ---------------------------------------------------------------
def _formed(station, out):
    assert run_protocol(station, "forming", {"v_start": 2.9}, out=out).status == "completed"


def _figure(protocol, out, run_id) -> Figure:
    fig = Figure()
    protocol.plot(load_run(out, run_id), fig)
    assert fig.axes
    return fig


def test_pulse_response_on_the_simulated_chip(sim_station, tmp_path):
    out = tmp_path / "d.h5"
    _formed(sim_station, out)
    n, cycles = 30, 2
    result = run_protocol(sim_station, "pulse_response", {"row": 1, "col": 2, "n_cols": 2, "n_pulses": n,
                                                          "cycles": cycles, "n_bins": 12}, out=out)
    assert result.status == "completed", result.error
    s = result.summary
    run = load_run(out, result.run_id)
    trace = run["data"]["trace"]
    assert len(trace) == 2 * cycles * 2 * (n + 1)
    assert set(zip(trace["row"], trace["col"])) == {(1, 2), (1, 3)}
    assert run["units"]["trace"]["g"] == "S"
    g_lo, g_hi = trace["g"].min(), trace["g"].max()
    assert 1e-6 < g_lo < g_hi < 200e-6  # a formed cell, inside the analog window
    assert g_lo < s["symmetry_point"] < g_hi
    assert s["step_up_mean"] > 0 > s["step_down_mean"]
    assert abs(s["step_down_mean"]) > s["step_up_mean"]  # down steps steeper than up
    assert 0 < s["step_at_symmetry"] < g_hi - g_lo
    assert s["n_states"] > 1
    assert np.isfinite(s["noise_to_signal"]) and s["noise_to_signal"] >= 0
    assert s["cells"] == 2 and s["pulses"] == 2 * cycles * 2 * n
    steps = run["data"]["steps"]
    assert len(steps) == 2 * 12 and set(steps["direction"]) == {1, -1}
    _figure(PulseResponse, out, result.run_id)


def test_endurance_on_the_simulated_chip(sim_station, tmp_path):
    out = tmp_path / "d.h5"
    _formed(sim_station, out)
    cycles = 12
    result = run_protocol(sim_station, "endurance", {"row": 3, "col": 0, "n_cols": 2, "cycles": cycles,
                                                     "points_per_decade": 3, "pulses_per_half": 2,
                                                     "width": 5e-6}, out=out)
    assert result.status == "completed", result.error
    s = result.summary
    assert s["cycles"] == logged_cycles(cycles, 3).tolist() and s["cycles"][-1] == cycles
    assert len(s["window"]) == len(s["cycles"]) == len(s["on_off_ratio"])
    assert all(w > 0 for w in s["window"])
    assert s["on_off_ratio_first"] > 1 and s["on_off_ratio_last"] > 1
    table = load_run(out, result.run_id)["data"]["window"]
    assert len(table) == 2 * len(s["cycles"])
    np.testing.assert_allclose([np.mean(table["g_on"][table["cycle"] == c] - table["g_off"][table["cycle"] == c])
                                for c in s["cycles"]], s["window"])
    _figure(Endurance, out, result.run_id)


def test_variability_map_on_the_simulated_chip(sim_station, tmp_path):
    out = tmp_path / "d.h5"
    _formed(sim_station, out)
    result = run_protocol(sim_station, "variability_map", {"all_cells": False, "row": 1, "col": 5, "n_rows": 2,
                                                           "n_cols": 3, "full_pulses": 3, "n_steps": 3,
                                                           "max_approach": 100}, out=out)
    assert result.status == "completed", result.error
    s = result.summary
    data = load_run(out, result.run_id)["data"]
    inside = np.zeros((4, 8), dtype=bool)
    inside[1:3, 5:8] = True
    for name in ("g_max_map", "g_min_map", "window_map", "step_map"):
        assert data[name].shape == (4, 8)
        assert np.isnan(data[name][~inside]).all() and np.isfinite(data[name][inside]).all()
    assert np.all(data["window_map"][inside] > 0)
    np.testing.assert_allclose(data["window_map"], data["g_max_map"] - data["g_min_map"])
    assert s["cells"] == 6 and s["not_reached"] == 0
    assert s["window_mean"] > 0 and s["step_mean"] > 0
    assert s["window_cv"] >= 0 and s["step_cv"] >= 0
    assert s["step_mean"] < s["window_mean"]
    assert len(data["steps"]) == 6 * 3 and len(data["cells"]) == 6
    _figure(VariabilityMap, out, result.run_id)


def test_bad_cell_blocks_and_amplitudes_are_refused_before_anything_runs(sim_station, tmp_path):
    out = tmp_path / "d.h5"
    with pytest.raises(ParameterError, match="n_cols=3 runs past the chip's 8 columns"):
        run_protocol(sim_station, "pulse_response", {"col": 6, "n_cols": 3}, out=out)
    with pytest.raises(ParameterError, match="v_reset"):
        run_protocol(sim_station, "endurance", {"v_reset": 1.0}, out=out)
    with pytest.raises(SafetyError, match="v_set=5 V"):
        run_protocol(sim_station, "variability_map", {"v_set": 5.0}, out=out)
    assert not out.exists()
