"""pulse_counts' compiled kernel (sim_backend/kernels.py) and its noise draws against their plain
float64 laws: exact where the law has no noise, in distribution (mean and sigma per cell within
their standard errors) where it has."""
from dataclasses import replace
from math import erf, sqrt

import numpy as np
import pytest
from labctl.sim import kernels
from labctl.sim.physics import ArrayPhysics
from numba import njit

from test_physics import assert_left_as_they_were, closed_form, formed_chip, pulse_with_and_without_noise


@pytest.mark.parametrize("gap", [1e-7, 1e-3, 30.0, None])
@pytest.mark.parametrize("cycles", [1.0, 1e5])
@pytest.mark.parametrize("v_cell", [1.35, -1.3])
def test_updates_in_a_row_follow_the_closed_form(gap, cycles, v_cell):
    """A dense update `gap` s after the previous one (its cells share one age; a few idle cells
    are older) starts from the relaxed conductance (None: ages spread over 0.1..10 s, one per
    cell): the float64 law to 1e-11 S, cycle-to-cycle noise of unit variance, and the idle cells
    left as they were. Cycling below and above 2^-6 n0 takes the window closing's series and its
    logarithm."""
    rng = np.random.default_rng(7)
    chip = formed_chip(64, 64, seed=7)
    chip.g[:] = rng.uniform(chip.g_lo, chip.g_hi)
    chip.cycles[:] = rng.uniform(0, cycles, chip.shape)
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
    before, exact, (expected, step, sigma, (lo, hi)) = pulse_with_and_without_noise(chip, counts, v_cell)
    assert_left_as_they_were(before, idle, chip, exact)
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


def random_chip(seed: int, cached: bool) -> tuple[ArrayPhysics, np.ndarray]:
    """A 23 x 37 chip (not a whole number of the kernel's blocks) with random conductances,
    cycling from none to 1e6 (log-uniform: the window closing's series and its logarithm),
    programming ages from 0.01 s to a year (some cells sharing one), relaxation draws, a few
    unformed and stuck cells; and random counts 0..40 (a fifth of the cells without one). With
    `cached`, a read has refreshed the read state, which the update then starts from."""
    rng = np.random.default_rng(seed)
    chip = formed_chip(23, 37, seed=seed)
    chip.g[:] = rng.uniform(chip.g_lo, chip.g_hi)
    chip.cycles[:] = np.where(rng.random(chip.shape) < 0.2, 0.0, 10 ** rng.uniform(-2, 6, chip.shape))
    chip.z_relax[:] = rng.standard_normal(chip.shape)
    chip.clock.advance(4e7)
    ages = np.where(rng.random(chip.shape) < 0.3, 5.0, 10 ** rng.uniform(-2, 7.5, chip.shape))
    chip.t_prog[:] = chip.clock.now - ages
    chip.formed[0, :4] = False
    chip.stuck[1, :4] = True
    counts = np.where(rng.random(chip.shape) < 0.2, 0, rng.integers(1, 41, chip.shape))
    if cached:
        chip.read_forward(np.arange(chip.rows), np.arange(chip.cols), np.ones((1, chip.rows)), 0.2, 1.2, 1e-6)
    return chip, counts


@pytest.mark.parametrize("seed, cached, v_cell", [(1, False, 1.35), (2, True, -1.3), (3, False, -1.2)])
def test_kernel_agrees_in_distribution_with_the_float64_law(seed, cached, v_cell):
    """The same update drawn 400 times from one state (the noise generator reseeded): per cell,
    the mean and sigma of the new conductance are the float64 law's (closed_form) within 5
    standard errors, the new relaxation draw is a standard normal, independent of the step's
    noise, and a cell that cannot step or has no coincidence keeps its state."""
    chip, counts = random_chip(seed, cached)
    expected, step, sigma, (lo, hi) = closed_form(chip, counts, v_cell, 100e-9)
    saved = {name: getattr(chip, "_" + name).copy() for name in ("g", "t_prog", "z_relax", "cycles")}
    now, reps = chip.clock.now, 400
    g, z_new = np.empty((reps,) + chip.shape), np.empty((reps,) + chip.shape)
    for r in range(reps):
        for name, value in saved.items():  # the private arrays: the read state's tables are kept
            getattr(chip, "_" + name)[...] = value
        chip.clock.now = now
        chip._read.programmed(...)
        if cached:
            chip.read_forward(np.arange(chip.rows), np.arange(chip.cols), np.ones((1, chip.rows)), 0.2, 1.2, 1e-6)
        chip.reseed(1000 * seed + r)
        chip.pulse_counts(counts, v_cell, 1.2, 100e-9, 200e-9)
        g[r], z_new[r] = chip._g, chip._z_relax
    active = (counts > 0) & chip._formed & ~chip._stuck
    for name, value in saved.items():
        np.testing.assert_array_equal(getattr(chip, "_" + name)[~active], value[~active])
    inside = active & (sigma > 1e-10) & (expected - 5 * sigma > lo) & (expected + 5 * sigma < hi)
    assert inside.sum() > 300
    mean, spread = g.mean(axis=0)[inside], g.std(axis=0, ddof=1)[inside]
    assert np.all(np.abs(mean - expected[inside]) < 5 * sigma[inside] / np.sqrt(reps))
    np.testing.assert_allclose(spread, sigma[inside], rtol=5 / np.sqrt(2 * (reps - 1)))
    draws = z_new[:, active]
    assert np.all(np.abs(draws.mean(axis=0)) < 5 / np.sqrt(reps))
    np.testing.assert_allclose(draws.std(axis=0, ddof=1), 1.0, rtol=5 / np.sqrt(2 * (reps - 1)))
    noise = (g[:, inside] - expected[inside]) / sigma[inside]
    assert abs(np.corrcoef(noise.ravel(), z_new[:, inside].ravel())[0, 1]) < 5 / np.sqrt(noise.size)


def test_a_cells_draws_depend_only_on_the_generator_and_the_cell():
    """The kernel's noise for a cell comes from the chip's generator state and the cell's flat
    index alone: an update of a few cells gives them what an update of all gives them, and the
    same state gives the same result."""
    chip, counts = random_chip(4, cached=False)
    subset = np.random.default_rng(4).random(chip.shape) < 0.1
    all_cells, few_cells, again = (ArrayPhysics.from_state(chip.state(), chip.p) for _ in range(3))
    all_cells.pulse_counts(counts, 1.35, 1.2, 100e-9, 200e-9)
    few_cells.pulse_counts(np.where(subset, counts, 0), 1.35, 1.2, 100e-9, 200e-9)
    again.pulse_counts(counts, 1.35, 1.2, 100e-9, 200e-9)
    moved = subset & (counts > 0)
    np.testing.assert_array_equal(few_cells.g[moved], all_cells.g[moved])
    np.testing.assert_array_equal(few_cells.z_relax[moved], all_cells.z_relax[moved])
    np.testing.assert_array_equal(again.g, all_cells.g)
    assert again.rng.bit_generator.state == all_cells.rng.bit_generator.state


def test_counts_beyond_255_take_the_wide_form():
    """More than 255 pulses in one call (not from the board, whose runs stop at 32): the same
    closed form, from the kernel's uint32 counts."""
    rng = np.random.default_rng(8)
    chip = formed_chip(8, 16, seed=8)
    chip.g[:] = rng.uniform(chip.g_lo, 0.5 * (chip.g_lo + chip.g_hi))
    counts = rng.integers(0, 2000, chip.shape)
    expected, *_ = closed_form(chip, counts, 1.2, 5e-9)
    exact = ArrayPhysics.from_state(chip.state(), replace(chip.p, c2c_noise=0.0))
    exact.pulse_counts(counts, 1.2, 1.2, 5e-9, 1e-8)
    np.testing.assert_allclose(exact.g, expected, rtol=0, atol=1e-11)
    assert exact.clock.now - chip.clock.now == pytest.approx(counts.max() * 1e-8)


@njit(cache=False)  # (not cached: numba would not see a change of the kernels it inlines)
def _elementary(x, log, expm1, rsqrt, constants):
    c = kernels._constants(constants)
    for i in range(x.size):
        log[i] = kernels._log(x[i], c)
        expm1[i] = kernels._expm1(-x[i], c)
        rsqrt[i] = kernels._rsqrt(x[i], c)


def test_float32_functions_are_accurate_to_a_few_ulp():
    """The kernels' own ln, expm1 and 1/sqrt (vectorizable polynomials) against numpy in float64,
    over the ranges they see and beyond: within 3 float32 ulp of the exact value."""
    rng = np.random.default_rng(10)
    x = np.concatenate([np.exp(rng.uniform(-80, 80, 200_000)), 1 + rng.uniform(0, 1e-3, 20_000),
                        rng.uniform(0, 0.35, 20_000), np.arange(1, 256), [1.0, 0.5, 2.0, 87.0, 1e30]]).astype(np.float32)
    log, expm1, rsqrt = (np.empty_like(x) for _ in range(3))
    _elementary(x, log, expm1, rsqrt, kernels.CONSTANTS)
    exact = x.astype(np.float64)

    def ulps(got, want):
        return np.abs(got - want) / np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)

    near_1 = np.abs(np.log(exact)) < 1e-3
    assert ulps(log, np.log(exact))[~near_1].max() < 3  # relative away from ln 1 = 0, absolute near it
    assert np.abs(log - np.log(exact))[near_1].max() < 1e-10
    small = exact < 87.0
    assert ulps(expm1[small], np.expm1(-exact[small])).max() < 3
    assert ulps(rsqrt, 1 / np.sqrt(exact)).max() < 3


@njit(cache=False)
def _logs64(x, out):
    for i in range(x.size):
        out[i] = kernels._log64(x[i])


def test_the_read_states_float64_log_is_within_one_ulp():
    """relax_cells' ln (fdlibm's, vectorizable) against numpy's over the conductances, ages and
    cycle counts it sees and far beyond, and around 1 (ln 1 = 0 exactly)."""
    rng = np.random.default_rng(11)
    x = np.concatenate([np.exp(rng.uniform(-700, 700, 200_000)), 1 + rng.uniform(-0.3, 0.4, 100_000),
                        [1.0, 0.5, 2.0, np.sqrt(0.5), 1e-300, 1e300]])
    log = np.empty_like(x)
    _logs64(x, log)
    exact = np.log(x)
    assert log[-6] == 0.0
    assert np.all(np.abs(log - exact) <= np.spacing(np.abs(exact)) + 1e-300)


def standard_normals(key: int, shape: tuple[int, int]) -> np.ndarray:
    """kernels.add_noise's draws themselves: mean 0, variance 1."""
    out = np.empty(shape)
    kernels.add_noise(np.uint64(key), np.zeros(shape), np.ones(shape), out, kernels.CONSTANTS)
    return out


def test_float32_box_muller_pairs_are_independent_standard_normals():
    n = 1 << 16
    z = np.concatenate([standard_normals(key, (2, n)).reshape(-1) for key in (1, 2, 3, 4)])
    assert z.size == 8 * n and np.array_equal(z, z.astype(np.float32))  # float32 draws
    assert abs(z.mean()) < 5 / np.sqrt(z.size)
    assert z.std() == pytest.approx(1.0, abs=5 * np.sqrt(0.5 / z.size))
    assert np.mean(z**4) == pytest.approx(3.0, abs=0.05)
    for q in (-3.0, -2.0, -1.0, -0.3, 0.0, 0.3, 1.0, 2.0, 3.0):  # the normal CDF, within 5 standard errors
        phi = 0.5 * (1 + erf(q / sqrt(2)))
        assert np.mean(z < q) == pytest.approx(phi, abs=5 * np.sqrt(phi * (1 - phi) / z.size) + 1e-6)
    assert np.isfinite(z).all() and np.abs(z).max() <= 6.8
    first, second = standard_normals(5, (2, n))  # the two draws of each pair: elements k and n + k
    assert abs(np.corrcoef(first, second)[0, 1]) < 5 / np.sqrt(n)
    assert abs(np.corrcoef(first**2, second**2)[0, 1]) < 5 / np.sqrt(n)  # independent, not only uncorrelated
    # consecutive cells' pairs (outputs k and k + 1 of one stream) are independent too
    assert abs(np.corrcoef(first[:-1], first[1:])[0, 1]) < 5 / np.sqrt(n)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_read_noise_is_the_mean_plus_sigma_times_the_draws_in_any_layout(dtype):
    """add_noise(mean, variance) = mean + sqrt(max(variance, 0)) z with the draws z of its key,
    whatever the inputs' layout (a backward MVM passes transposed products)."""
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(37, 11)).astype(dtype)
    variance = rng.normal(size=(37, 11)).astype(dtype)  # some negative: no noise there
    z = standard_normals(7, mean.shape)
    expected = mean + np.sqrt(np.maximum(variance, 0.0)).astype(np.float64) * z
    for m, v in ((mean, variance), (np.asfortranarray(mean), np.asfortranarray(variance))):
        out = np.empty(mean.shape)
        kernels.add_noise(np.uint64(7), m, v, out, kernels.CONSTANTS)
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-15)  # (one fused multiply-add: an ulp of the terms)
    assert np.array_equal(out[variance <= 0], mean[variance <= 0])


@njit(cache=False)  # (not cached: numba would not see a change of the kernels it inlines)
def _words(key, high, low):
    kernels._words(key, 0, high, low, high.size)


def test_the_generator_is_splitmix64():
    """The kernels' words are SplitMix64's: the reference algorithm here in Python, whose first
    outputs from seed 1234567 are the published ones (java.util.SplittableRandom's test vector)."""
    def splitmix64(seed, n):
        out, state, mask = [], seed, (1 << 64) - 1
        for _ in range(n):
            state = (state + 0x9E3779B97F4A7C15) & mask
            z = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & mask
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
            out.append(z ^ (z >> 31))
        return out

    assert splitmix64(1234567, 3) == [6457827717110365317, 3203168211198807973, 9817491932198370423]
    for key in (1234567, 2**64 - 1, 0):
        high, low = np.empty(1000, np.uint32), np.empty(1000, np.uint32)
        _words(np.uint64(key), high, low)
        assert [int(h) << 32 | int(lo) for h, lo in zip(high, low)] == splitmix64(key, 1000)


def test_a_nan_conductance_cannot_take_an_update_out_of_its_tables():
    """The kernels index their tables by a cell's conductance: a NaN there (no public path writes
    one; state files refuse it) keeps to that cell, the update and the reads run and the other
    cells step as on a chip without it."""
    chip, clean = (formed_chip(4, 4, seed=1) for _ in range(2))
    for c in (chip, clean):
        c.g[:] = 30e-6
    chip.g[0, 0] = np.nan
    counts = np.full((4, 4), 5, np.uint8)
    for c in (chip, clean):
        for _ in range(3):
            c.pulse_counts(counts, 1.35, 1.2, 100e-9, 200e-9)
            with np.errstate(invalid="ignore"):  # (numpy's cast of the NaN's grid position)
                c.read_forward(np.arange(4), np.arange(4), np.ones((1, 4)), 0.2, 1.2, 1e-6)
    np.testing.assert_array_equal(chip.g.reshape(-1)[1:], clean.g.reshape(-1)[1:])


def test_a_blocks_cell_scans_list_its_cells_row_by_row():
    """cells_below and take_marked (a read's scan for its block's stale and dirty cells) list the
    flat indices of exactly the block's cells that qualify, row by row as np.nonzero of the block
    would, for scattered as well as contiguous lines; take_marked clears the marks it takes and
    no other."""
    rng = np.random.default_rng(3)
    shape = (9, 13)
    values = rng.random(shape)
    marks = rng.random(shape) < 0.4
    for rows, cols in ((np.arange(2, 7), np.arange(13)), (np.array([8, 1, 4]), np.array([0, 12, 5, 6]))):
        block = np.ix_(rows, cols)
        flat = (rows[:, None] * shape[1] + cols[None, :])
        out = np.empty(flat.size, np.int64)
        n = kernels.cells_below(values.reshape(-1), shape[1], rows, cols, 0.3, out)
        np.testing.assert_array_equal(out[:n], flat[values[block] < 0.3])
        left = marks.copy()
        n = kernels.take_marked(left.reshape(-1), shape[1], rows, cols, out)
        np.testing.assert_array_equal(out[:n], flat[marks[block]])
        expected = marks.copy()
        expected[block] = False
        np.testing.assert_array_equal(left, expected)
