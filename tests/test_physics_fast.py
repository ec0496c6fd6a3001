"""The fast paths of pulse_counts and of the noise draws against their plain float64 laws."""
from dataclasses import replace
from math import erf, sqrt

import numpy as np
import pytest
from labctl.sim.physics import ArrayPhysics

from test_physics import closed_form, formed_chip


@pytest.mark.parametrize("gap, path", [(1e-7, "negligible"), (1e-3, "shared"), (30.0, "shared"),
                                       (None, "general")])
@pytest.mark.parametrize("cycles", [1.0, 1e5])
@pytest.mark.parametrize("v_cell", [1.35, -1.3])
def test_updates_in_a_row_follow_the_closed_form(monkeypatch, gap, path, cycles, v_cell):
    """A dense update `gap` s after the previous one (its cells share one age; a few idle cells
    are older) starts from the relaxed conductance: below 1 pS of relaxation it is not
    evaluated, with one age it is evaluated with that age's logs as numbers, with many ages
    (None: ages spread over 0.1..10 s) per cell. Every path gives the float64 law to 1e-11 S
    and cycle-to-cycle noise of unit variance, and leaves the idle cells as they were."""
    rng = np.random.default_rng(7)
    chip = formed_chip(64, 64, seed=7)
    chip.g[:] = rng.uniform(chip.g_lo, chip.g_hi)
    chip.cycles[:] = rng.uniform(0, cycles, chip.shape)  # linear (x < 1e-4) or log1p window closing
    chip.z_relax[:] = rng.standard_normal(chip.shape)
    chip.clock.advance(3600.0)
    idle = rng.random(chip.shape) < 0.03
    first = np.where(idle, 0, rng.integers(1, 8, chip.shape))
    chip.pulse_counts(first, 1.35, 1.2, 100e-9, 200e-9)
    if gap is None:
        chip.t_prog[:] = np.where(idle, chip.t_prog, chip.clock.now - rng.uniform(0.1, 10.0, chip.shape))
    else:
        chip.clock.advance(gap)
    counts = np.where(idle, 0, rng.integers(1, 8, chip.shape))
    calls = []
    shared = ArrayPhysics._shared_drift
    monkeypatch.setattr(ArrayPhysics, "_shared_drift", lambda *args: calls.append(1) or shared(*args))
    before = {name: getattr(chip, name).copy() for name in ("g", "t_prog", "z_relax", "cycles")}
    expected, step, sigma, (lo, hi) = closed_form(chip, counts, v_cell, 100e-9)
    exact = ArrayPhysics.from_state(chip.state(), replace(chip.p, c2c_noise=0.0))
    exact.pulse_counts(counts, v_cell, 1.2, 100e-9, 200e-9)
    chip.pulse_counts(counts, v_cell, 1.2, 100e-9, 200e-9)
    assert bool(calls) == (path == "shared")
    for after in (chip, exact):
        for name, value in before.items():
            np.testing.assert_array_equal(getattr(after, name)[idle], value[idle])
    active = ~idle
    np.testing.assert_allclose(exact.g[active], expected[active], rtol=0, atol=1e-11)
    np.testing.assert_allclose(chip.cycles - before["cycles"], np.where(active, np.abs(step) / (2 * (chip.g_hi - chip.g_lo)), 0.0),
                               rtol=1e-6, atol=1e-7)
    # away from the bounds, and noise above the float32 rounding of the bounds (< 1e-11 S: cells
    # the first update left at a bound take steps of ~1e-15 S there)
    inside = active & (sigma > 1e-10) & (expected - 4 * sigma > lo) & (expected + 4 * sigma < hi)
    z = (chip.g - expected)[inside] / sigma[inside]
    assert inside.sum() > 1000
    assert z.std() == pytest.approx(1.0, abs=5 / np.sqrt(2 * z.size))
    assert abs(z.mean()) < 5 / np.sqrt(z.size)


def test_float32_box_muller_pairs_are_independent_standard_normals():
    chip = ArrayPhysics(2, 2, seed=9)
    n = 1 << 16
    draws = [np.concatenate(chip._normal_pairs(n)) for _ in range(4)]
    z = np.concatenate(draws).astype(np.float64)
    assert z.dtype == np.float64 and z.size == 8 * n
    assert abs(z.mean()) < 5 / np.sqrt(z.size)
    assert z.std() == pytest.approx(1.0, abs=5 * np.sqrt(0.5 / z.size))
    assert np.mean(z**4) == pytest.approx(3.0, abs=0.05)
    for q in (-3.0, -2.0, -1.0, -0.3, 0.0, 0.3, 1.0, 2.0, 3.0):  # the normal CDF, within 5 standard errors
        phi = 0.5 * (1 + erf(q / sqrt(2)))
        assert np.mean(z < q) == pytest.approx(phi, abs=5 * np.sqrt(phi * (1 - phi) / z.size) + 1e-6)
    assert np.isfinite(z).all() and np.abs(z).max() <= 6.8
    first, second = chip._normal_pairs(n)
    assert abs(np.corrcoef(first, second)[0, 1]) < 5 / np.sqrt(n)
    assert abs(np.corrcoef(first**2, second**2)[0, 1]) < 5 / np.sqrt(n)  # independent, not only uncorrelated
