"""Analog-AI operations and protocols: the crossbar's MVM / parallel-update calls and the mvm,
weight_transfer and parallel_update protocols on the simulator, including the published 64x64
MVM reference (RMSE ~0.05 at 1 s, ~0.25 at 10 years; bench/aimc_reference.py prints the same
study as JSON).
"""
import shutil
from dataclasses import replace

import numpy as np
import pytest
from labctl.instruments.fpga import LineMode
from labctl.protocols import mvm, parallel_update, weight_transfer

from labctl.engine import get_protocol, run_protocol
from labctl.params import ParameterError
from labctl.plots import run_figure
from labctl.safety import SafetyError
from labctl.station import Station
from labctl.store import load_run

TEN_YEARS = 3.15e8


def run(station, tmp_path, name, **params):
    result = run_protocol(station, name, params, out=tmp_path / "d.h5")
    assert result.status == "completed", result.error
    return result


@pytest.fixture
def formed(sim_station, tmp_path):
    """The 4x8 simulated chip, formed."""
    run(sim_station, tmp_path, "forming", v_start=2.9)
    return sim_station


def formed_chip_state(tmp_path_factory, size: int, seed: int, v_start: float):
    """State file of a size x size chip formed once (coarse 50 mV ramp)."""
    base = tmp_path_factory.mktemp(f"chip{size}")
    with Station.open(f"sim:{size}x{size}", sim_state=base / "s.npz", seed=seed) as station:
        result = run_protocol(station, "forming", {"v_start": v_start, "v_step": 0.05}, out=base / "f.h5")
        assert result.status == "completed" and result.summary["yield"] == 1.0
    return base / "s.npz"


@pytest.fixture(scope="module")
def formed_16x16(tmp_path_factory):
    """A 16x16 chip formed once; each test copies it."""
    return formed_chip_state(tmp_path_factory, 16, seed=31, v_start=2.9)


@pytest.fixture
def station_16x16(formed_16x16, tmp_path):
    shutil.copy(formed_16x16, tmp_path / "s.npz")
    with Station.open("sim:16x16", sim_state=tmp_path / "s.npz", seed=32) as station:
        yield station


def board_is_released(station) -> bool:
    modes, dac = station.board.status()
    return bool(np.all(modes == LineMode.GROUND) and np.all(dac == 0.0))


# -- crossbar ---------------------------------------------------------------------------------
def test_mvm_measures_the_conductances_in_both_directions(formed):
    xbar = formed.crossbar
    g = xbar.read_map(0.2, 1.2)
    rng = np.random.default_rng(0)
    x, d = rng.uniform(-1, 1, (5, 4)), rng.uniform(-1, 1, (5, 8))
    xbar.configure_mvm(v_read=0.2, v_gate=1.2)
    forward, backward = xbar.mvm_forward(x), xbar.mvm_backward(d)
    assert forward.shape == (5, 8) and backward.shape == (5, 4)
    # I = sum of G V (near-ohmic cells at <= 0.2 V), within the read noise (~1 %)
    np.testing.assert_allclose(forward, 0.2 * x @ g, atol=0.02 * 0.2 * 4 * g.max())
    np.testing.assert_allclose(backward, 0.2 * d @ g.T, atol=0.02 * 0.2 * 8 * g.max())
    assert board_is_released(formed)

    # a block, and one vector in -> one vector out
    one = xbar.mvm_forward(x[0, 1:3], block=(1, 2, 2, 3))
    assert one.shape == (3,)
    np.testing.assert_allclose(one, 0.2 * x[0, 1:3] @ g[1:3, 2:5], atol=0.02 * 0.2 * 2 * g.max())
    assert xbar.mvm_backward(d[0, :3], block=(1, 2, 2, 3)).shape == (2,)


def test_parallel_update_steps_only_coincident_cells(formed):
    physics = formed.lab.physics
    # no cycle-to-cycle noise: it is ~95 % of a one-pulse step, so with it the direction of a
    # cell's step is a draw (each of these cells goes the other way with a probability of 7-15 %)
    physics.p = replace(physics.p, c2c_noise=0.0)
    g0 = physics.g.copy()
    rows = np.array([0b0111, 0, 0b0001, 0], dtype=np.uint32)  # rows 0 and 2 fire
    cols = np.array([0b0011, 0, 0, 0b0100, 0, 0, 0, 0], dtype=np.uint32)  # cols 0 and 3 fire
    total = formed.crossbar.parallel_update(rows, cols, 4, +1, 1.35, 100e-9)
    # coincidences: (0,0) 2, (0,3) 1, (2,0) 1, (2,3) 0
    assert total == 4
    changed = {tuple(c) for c in np.argwhere(physics.g != g0)}
    assert changed == {(0, 0), (0, 3), (2, 0)}
    assert np.all(physics.g[0, [0, 3]] > g0[0, [0, 3]]) and physics.g[2, 0] > g0[2, 0]
    assert board_is_released(formed)

    g1 = physics.g.copy()
    formed.crossbar.parallel_update(rows[1:3], cols[:2], 4, -1, 1.3, 100e-9, block=(1, 0, 2, 2))
    assert {tuple(c) for c in np.argwhere(physics.g != g1)} == {(2, 0)}  # block row 1 = chip row 2
    assert physics.g[2, 0] < g1[2, 0]


def test_aimc_requests_outside_the_soa_or_the_chip_apply_nothing(formed):
    xbar, physics = formed.crossbar, formed.lab.physics
    g0, t0 = physics.g.copy(), physics.clock.now
    rows, cols = np.ones(4, np.uint32), np.ones(8, np.uint32)
    with pytest.raises(SafetyError, match="max_v_bl"):
        xbar.configure_mvm(v_read=4.5)
    with pytest.raises(SafetyError, match="max_v_wl"):
        xbar.configure_mvm(v_gate=3.0)
    with pytest.raises(SafetyError, match="max_v_bl"):
        xbar.parallel_update(rows, cols, 1, +1, 4.5, 1e-7)
    with pytest.raises(SafetyError, match="max_v_sl"):
        xbar.parallel_update(rows, cols, 1, -1, 4.5, 1e-7)
    with pytest.raises(SafetyError, match="max_pulse_width"):
        xbar.parallel_update(rows, cols, 1, +1, 1.35, 1.0)
    with pytest.raises(SafetyError, match="max_v_wl"):
        xbar.parallel_update(rows, cols, 1, +1, 1.35, 1e-7, v_gate=3.0)
    with pytest.raises(ValueError, match="train_length"):
        xbar.parallel_update(rows, cols, 33, +1, 1.35, 1e-7)
    with pytest.raises(ValueError, match="outside the 2 slots"):
        xbar.parallel_update(rows * 4, cols, 2, +1, 1.35, 1e-7)
    with pytest.raises(ValueError, match="polarity"):
        xbar.parallel_update(rows, cols, 1, 0, 1.35, 1e-7)
    with pytest.raises(IndexError, match="outside"):
        xbar.mvm_forward(np.zeros(4), block=(1, 0, 4, 8))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        xbar.mvm_forward(np.full(4, 1.5))
    with pytest.raises(ValueError, match="shape"):
        xbar.mvm_backward(np.zeros(4))
    assert np.array_equal(physics.g, g0) and physics.clock.now == t0


# -- protocols --------------------------------------------------------------------------------
def documented(module, summary):
    """Every summary key is named in the protocol module's docstring."""
    missing = [k for k in summary if k not in module.__doc__]
    assert not missing, f"{module.__name__} does not document {missing}"


def test_mvm_runs_and_stores_its_data(formed, tmp_path):
    result = run(formed, tmp_path, "mvm", acceptance=0.02, batch=20)
    s = result.summary
    documented(mvm, s)
    for key in ("rmse_forward", "rmse_backward", "rmse_forward_board", "rmse_backward_board"):
        assert 0 < s[key] < 0.2, key
    assert s["t_after"] == 1.0 and (s["rows"], s["cols"], s["batch"]) == (4, 8, 20)
    assert s["success_rate"] > 0.9 and s["pulses_mean"] > 0
    assert s["i_range_forward"] == pytest.approx(0.2 * 80e-6 * 4)  # min(n, 4 sqrt(n / 3)) = n for n = 4
    data = load_run(result.file, result.run_id)["data"]
    np.testing.assert_allclose(data["y_forward_true"], data["x"] @ data["weights"])
    np.testing.assert_allclose(data["y_backward_true"], data["d"] @ data["weights"].T)
    for name, shape in (("weights", (4, 8)), ("g_programmed", (4, 8)), ("y_forward", (20, 8)),
                        ("y_backward_board", (20, 4)), ("i_forward", (20, 8))):
        assert data[name].shape == shape, name
    assert np.all(np.abs(data["weights"]) <= 1)
    assert run_figure(load_run(result.file, result.run_id)).axes

    ideal = run(formed, tmp_path, "mvm", acceptance=0.02, batch=5, periphery="ideal", rows=2, cols=3).summary
    assert ideal["rmse_forward"] > 0 and ideal["rmse_forward_board"] is None and (ideal["rows"], ideal["cols"]) == (2, 3)
    with pytest.raises(ParameterError, match="rows=5"):
        run_protocol(formed, "mvm", {"rows": 5}, out=tmp_path / "d.h5")
    with pytest.raises(ParameterError, match="g_lo"):
        run_protocol(formed, "mvm", {"g_lo": 50e-6, "g_hi": 40e-6}, out=tmp_path / "d.h5")


def test_mvm_error_on_16x16_grows_with_relaxation(station_16x16, tmp_path):
    """Ideal periphery, 2 % write-verify: small error 1 s after programming, larger after 10 years
    (relaxation: mean -1.74 uS, spread 1.23 uS). Same seed = same weights; the second
    write-verify starts near the targets."""
    common = {"acceptance": 0.02, "max_pulses": 40, "periphery": "ideal", "batch": 20, "seed": 3}
    early = run(station_16x16, tmp_path, "mvm", t_after=1.0, **common).summary
    late = run(station_16x16, tmp_path, "mvm", t_after=TEN_YEARS, **common).summary
    assert early["rmse_forward"] < 0.15 and early["rmse_backward"] < 0.15
    assert late["rmse_forward"] > 1.5 * early["rmse_forward"]
    assert late["rmse_backward"] > 1.5 * early["rmse_backward"]
    assert late["weight_rmse_at_t"] > early["weight_rmse_at_t"]


@pytest.fixture(scope="module")
def formed_64x64(tmp_path_factory):
    """A 64x64 chip formed once (~35 s: 4096 SMU ramps, ~8 ms each)."""
    return formed_chip_state(tmp_path_factory, 64, seed=7, v_start=2.95)


def test_mvm_on_64x64_reproduces_the_published_reference(formed_64x64, tmp_path):
    """0.2 % write-verify, one device per weight on 10-80 uS (scale 35 uS per unit weight), ideal
    periphery. An output sums 64 weight errors of spread s times inputs with E[x^2] = 1/3, so
    rmse ~ s sqrt(64 / 3). At 1 s s is the published measured spread 0.41 uS -> 0.054; at
    10 years the -1.74 uS shift and 1.23 uS spread -> ~0.28. The issue's band is +-25 %.
    The reference reads an array programmed all at once: over the modelled 921600-baud UART the
    64x64 write-verify itself lasts ~80 s of virtual time (its first cells are that much older,
    rmse ~0.087 at 1 s), so this test's link takes no time."""
    common = {"acceptance": 0.002, "periphery": "ideal", "batch": 100, "seed": 7}
    with Station.open("sim:64x64", sim_state=formed_64x64, seed=8) as station:
        station.lab.board.link_baud = None
        early = run(station, tmp_path, "mvm", t_after=1.0, **common).summary
        late = run(station, tmp_path, "mvm", t_after=TEN_YEARS, **common).summary
    for s in (early, late):
        assert s["success_rate"] > 0.99 and s["pulses_mean"] < 60
        # the MVM error is the per-weight error (read back at t_after) seen through 64 inputs
        assert s["rmse_forward"] == pytest.approx(s["weight_rmse_at_t"] * np.sqrt(64 / 3), rel=0.15)
    for key in ("rmse_forward", "rmse_backward"):
        assert 0.0375 <= early[key] <= 0.0625, key
        assert 0.1875 <= late[key] <= 0.3125, key


def test_weight_transfer_programs_a_matrix_from_a_file(formed, tmp_path):
    weights = np.linspace(-2.0, 2.0, 15).reshape(3, 5)
    np.save(tmp_path / "w.npy", weights)
    result = run(formed, tmp_path, "weight_transfer", weights=str(tmp_path / "w.npy"), acceptance=0.01)
    s = result.summary
    documented(weight_transfer, s)
    assert (s["rows"], s["cols"], s["w_max"]) == (3, 5, 2.0)
    assert s["success_rate"] == 1.0 and s["pulses_mean"] > 0
    # 1 % of G ~ 0.5 uS ~ 0.03 weight units at w_max 2; read noise and 1 s relaxation are smaller
    assert s["weight_rmse"] < 0.1 and s["weight_error_max"] < 0.3
    data = load_run(result.file, result.run_id)["data"]
    np.testing.assert_allclose(data["weights"], weights)
    np.testing.assert_allclose(data["g_target"], 45e-6 + 35e-6 * weights / 2.0)
    assert run_figure(load_run(result.file, result.run_id)).axes

    random = run(formed, tmp_path, "weight_transfer", rows=2, cols=2, acceptance=0.02).summary
    assert (random["rows"], random["cols"], random["w_max"]) == (2, 2, 1.0) and random["success_rate"] == 1.0
    np.save(tmp_path / "big.npy", np.zeros((5, 8)))
    for path, match in ((tmp_path / "missing.npy", "no such file"), (tmp_path / "big.npy", "the chip is 4x8")):
        with pytest.raises(ParameterError, match=match):
            run_protocol(formed, "weight_transfer", {"weights": str(path)}, out=tmp_path / "d.h5")


def test_parallel_update_follows_the_outer_product(formed, tmp_path):
    result = run(formed, tmp_path, "parallel_update", updates=20, seed=2)
    s = result.summary
    documented(parallel_update, s)
    assert s["updates"] == 20 and s["cells"] == 32 and s["pulses_total"] > 0
    assert s["slope"] > 0 and s["correlation"] > 0.5
    assert s["slope_set"] > 0 and s["slope_reset"] > 0
    assert s["dg_per_pulse_set"] > 0 > s["dg_per_pulse_reset"]
    assert s["residual_std"] > 0 and s["init_success_rate"] == 1.0
    table = load_run(result.file, result.run_id)["data"]["updates"]
    assert len(table) == 20 * 32
    np.testing.assert_allclose(table["expected"], 31 * 0.25 * table["x"] * table["d"])
    assert np.all(np.sign(table["count"]) * np.sign(table["x"] * table["d"]) >= 0)  # sign by phase
    assert run_figure(load_run(result.file, result.run_id)).axes
    assert board_is_released(formed)


def test_protocols_are_registered():
    for name in ("mvm", "weight_transfer", "parallel_update"):
        protocol = get_protocol(name)
        assert protocol.name == name and callable(getattr(protocol, "plot", None))
