"""Write-verify (algorithm and protocol), retention and read-noise protocols.

The simulator's calibration (pulses per weight, programming noise, relaxation, read noise) is
checked elsewhere; these tests check the algorithm's logic, the protocols' data and summaries.
"""
import numpy as np
import pytest

from labctl.engine import run_protocol
from labctl.params import ParameterError
from labctl.store import load_run
from labctl.writeverify import AMPLITUDE_TABLE, amplitudes, assign_targets, write_verify

uS = 1e-6  # S


# -- the amplitude table --------------------------------------------------------------------------
def test_amplitude_table_is_the_published_one():
    assert AMPLITUDE_TABLE == {(10e-6, 30e-6): (1.35, -1.5), (30e-6, 60e-6): (1.35, -1.3),
                               (60e-6, 90e-6): (1.5, -1.3)}


@pytest.mark.parametrize("target, expected", [
    (10e-6, (1.35, -1.5)), (29.99e-6, (1.35, -1.5)),   # 10-30 uS
    (30e-6, (1.35, -1.3)), (59.99e-6, (1.35, -1.3)),   # 30-60 uS: an edge belongs to the upper range
    (60e-6, (1.5, -1.3)), (90e-6, (1.5, -1.3)),        # 60-90 uS, upper edge included
    (5e-6, (1.35, -1.5)), (120e-6, (1.5, -1.3)),       # outside the table: nearest range
])
def test_amplitudes_at_the_range_edges(target, expected):
    v_set, v_reset = amplitudes([target])
    assert (v_set[0], v_reset[0]) == expected


def test_assign_targets_interleaves_levels_and_fills_the_array():
    cells, targets = assign_targets((4, 8), [1.0, 2.0, 3.0], 0)
    assert len(cells) == 30 and len({tuple(c) for c in cells}) == 30
    assert list(targets[:4]) == [1.0, 2.0, 3.0, 1.0]
    assert tuple(cells[9]) == (1, 1)
    with pytest.raises(ValueError, match="need 33 cells"):
        assign_targets((4, 8), [1.0, 2.0, 3.0], 11)


# -- the lockstep algorithm on a deterministic fake device ----------------------------------------
class FakeCrossbar:
    """Cells whose conductance moves by a fixed step per pulse of 50 ns (in proportion for other
    widths): +up[r, c] per SET pulse (amplitude > 0), -down[r, c] per RESET pulse; reads are
    exact. Records every call."""

    def __init__(self, g: np.ndarray, up: np.ndarray, down: np.ndarray):
        self.g, self.up, self.down = g.astype(float), up, down
        self.shape = g.shape
        self.calls: list[tuple] = []

    def read_map(self, v_read, v_gate, t_read=1e-6, block=None):
        r0, c0, nr, nc = block or (0, 0, *self.shape)
        self.calls.append(("read", block))
        return self.g[r0:r0 + nr, c0:c0 + nc].copy()

    def pulse_cells(self, cells, amplitudes, widths, v_gate=1.2, period=None):
        cells = np.asarray(cells)
        amplitudes, widths = (np.broadcast_to(a, (len(cells),)) for a in (amplitudes, widths))
        self.calls.append(("pulses", [int(c) for _, c in cells], list(amplitudes), list(widths), v_gate))
        for (row, col), amplitude, width in zip(cells, amplitudes, widths):
            step = self.up[row, col] if amplitude > 0 else -self.down[row, col]
            self.g[row, col] += step * width / 50e-9


def test_write_verify_programs_cells_in_lockstep():
    #            SET from below    RESET from above    overshoot then RESET   stuck cell
    g0 = np.array([[30.0, 50.0, 60.0, 70.0]]) * uS
    up = np.array([[1.0, 1.0, 2.0, 0.0]]) * uS
    down = np.array([[1.0, 2.0, 1.5, 0.0]]) * uS
    xbar = FakeCrossbar(g0, up, down)
    cells = [(0, 0), (0, 1), (0, 2), (0, 3)]
    targets = np.array([35.0, 20.0, 65.0, 80.0]) * uS
    reads, progress = [], []
    result = write_verify(xbar, cells, targets, acceptance=0.01, max_pulses=12, width=50e-9, v_gate=1.1,
                          v_read=0.2, checkpoint=lambda *a: progress.append(a), refine=0,
                          on_read=lambda i, n, g: reads.append((i.copy(), n.copy(), g.copy())))

    # 30 -> 35 in +1 steps; 50 -> 20 in -2 steps; 60 -> 66 (3 SET) -> 64.5 (1 RESET, in band)
    np.testing.assert_array_equal(result.pulses, [5, 12, 4, 12])
    np.testing.assert_array_equal(result.success, [True, False, True, False])
    np.testing.assert_allclose(result.g, np.array([35.0, 26.0, 64.5, 70.0]) * uS)
    np.testing.assert_allclose(result.g_initial, g0[0])
    np.testing.assert_allclose(result.g, xbar.g[0])  # final g is the last verify read
    assert result.rounds == 12

    # lockstep: each round = one board transaction pulsing every active cell, then one read of
    # the active cells' block
    assert [c[0] for c in xbar.calls] == ["read"] + ["pulses", "read"] * 12
    rounds = xbar.calls[1::2]
    assert all(c[4] == 1.1 and set(c[3]) == {50e-9} for c in rounds)
    by_cell = {col: [a for c in rounds for k, a in zip(c[1], c[2]) if k == col] for col in range(4)}
    assert by_cell[0] == [1.35] * 5                    # 30-60 uS target: SET +1.35 V
    assert by_cell[1] == [-1.5] * 12                   # 10-30 uS target: RESET -1.5 V
    assert by_cell[2] == [1.5, 1.5, 1.5, -1.3]         # 60-90 uS target: +1.5 V, then -1.3 V
    assert by_cell[3] == [1.5] * 12
    assert sorted(rounds[0][1]) == [0, 1, 2, 3] and xbar.calls[0] == xbar.calls[2] == ("read", (0, 0, 1, 4))
    assert sorted(rounds[4][1]) == [0, 1, 3] and xbar.calls[10] == ("read", (0, 0, 1, 4))  # cell 2 done
    assert sorted(rounds[5][1]) == [1, 3] and xbar.calls[12] == ("read", (0, 1, 1, 3))     # block shrinks

    assert len(reads) == 13 and list(reads[0][1]) == [0, 0, 0, 0]
    # progress: cells settled (in band or out of pulses) before each round, and all at the end
    assert [p[0] for p in progress] == [0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 2, 2, 4]
    assert {p[1] for p in progress} == {4}


def test_write_verify_halves_the_width_after_each_overshoot():
    # steps of 2 uS around a 65 uS target with a +-0.65 uS band: fixed-width pulses bounce
    # 64 <-> 66 for ever; halving the width at the first overshoot lands the cell at 65
    def program(refine):
        xbar = FakeCrossbar(np.array([[60.0]]) * uS, np.array([[2.0]]) * uS, np.array([[2.0]]) * uS)
        result = write_verify(xbar, [(0, 0)], 65e-6, 0.01, 20, 50e-9, 1.2, 0.2, refine=refine)
        return result, [c[3][0] for c in xbar.calls if c[0] == "pulses"]

    fixed, widths = program(0)
    assert not fixed.success[0] and fixed.pulses[0] == 20 and set(widths) == {50e-9}
    refined, widths = program(2)
    assert refined.success[0] and refined.g[0] == pytest.approx(65e-6)
    assert widths == [50e-9] * 3 + [25e-9]  # 62, 64, 66 (overshoot), then a half-width RESET
    # the width never goes below width / 2**refine however often the cell overshoots
    xbar = FakeCrossbar(np.array([[60.0]]) * uS, np.array([[2.0]]) * uS, np.array([[2.0]]) * uS)
    write_verify(xbar, [(0, 0)], 65e-6, 0.001, 30, 50e-9, 1.2, 0.2, refine=1)
    assert min(c[3][0] for c in xbar.calls if c[0] == "pulses") == 25e-9
    with pytest.raises(ValueError, match="refine"):
        write_verify(xbar, [(0, 0)], 65e-6, 0.01, 20, 50e-9, 1.2, 0.2, refine=-1)


def test_write_verify_leaves_cells_already_in_band_alone():
    xbar = FakeCrossbar(np.array([[20.0, 40.0]]) * uS, np.ones((1, 2)) * uS, np.ones((1, 2)) * uS)
    result = write_verify(xbar, [(0, 1), (0, 0)], [40e-6, 20e-6], 0.01, 10, 1e-7, 1.2, 0.2)
    assert result.rounds == 0 and result.success.all() and not result.pulses.any()
    assert [c[0] for c in xbar.calls] == ["read"]
    with pytest.raises(ValueError, match="distinct"):
        write_verify(xbar, [(0, 1), (0, 1)], 20e-6, 0.01, 10, 1e-7, 1.2, 0.2)


# -- the protocols on the simulated chip ----------------------------------------------------------
@pytest.fixture
def formed(sim_station, tmp_path):
    out = tmp_path / "d.h5"
    assert run_protocol(sim_station, "forming", {"v_start": 2.9}, out=out).status == "completed"
    return sim_station, out


def _figure(run):
    from labctl.plots import run_figure

    return run_figure(run)


def test_write_verify_reaches_its_targets(formed):
    station, out = formed
    targets, acceptance = [20e-6, 50e-6, 80e-6], 0.05
    result = run_protocol(station, "write_verify", {"targets": targets, "acceptance": acceptance, "repeats": 2,
                                                    "reread_after": 1.0}, out=out)
    assert result.status == "completed", result.error
    s = result.summary
    for key in ("targets", "sigma", "pulses_mean", "success_rate", "error_mean", "pulses_mean_all",
                "success_by_target", "sigma_reread"):
        assert key in s
    assert s["targets"] == targets and s["success_rate"] == 1.0 and s["cells"] == 6
    assert len(s["sigma"]) == len(s["pulses_mean"]) == 3
    assert all(sigma is not None and sigma >= 0 for sigma in s["sigma"])
    run = load_run(out, result.run_id)
    cells = run["data"]["cells"]
    assert len(cells) == 6 and cells["success"].all()
    assert np.all(np.abs(cells["g_final"] - cells["target"]) <= acceptance * cells["target"])
    assert s["pulses_mean_all"] == pytest.approx(cells["pulses"].mean())
    trace = run["data"]["trace"]
    assert len(trace) == 6 + cells["pulses"].sum()  # the initial read plus one read per pulse
    last = {int(c): g for c, g in zip(trace["cell"], trace["g"])}
    np.testing.assert_array_equal([last[k] for k in range(6)], cells["g_final"])
    assert len(run["data"]["reread"]) == 6
    assert len(_figure(run).axes) == 2


def test_retention_runs_ten_years_on_the_virtual_clock(formed):
    station, out = formed
    t0 = station.lab.physics.clock.now
    result = run_protocol(station, "retention", {"levels": [20e-6, 60e-6], "repeats": 2, "acceptance": 0.05},
                          out=out)
    assert result.status == "completed", result.error
    s = result.summary
    times = s["times"]
    assert times[0] == 1.0 and times[-1] >= 3.15e8 and np.all(np.diff(times) > 0)
    assert len(s["shift_mean"]) == len(s["shift_std"]) == len(times)
    assert len(s["shift_mean_by_level"]) == 2 and len(s["shift_mean_by_level"][0]) == len(times)
    assert station.lab.physics.clock.now - t0 >= 3.15e8
    run = load_run(out, result.run_id)
    reads, cells = run["data"]["reads"], run["data"]["cells"]
    assert len(reads) == 4 * len(times) and len(cells) == 4
    first = reads[reads["t"] == times[0]]
    np.testing.assert_allclose(s["shift_mean"][0], np.mean(first["g"] - cells["g_final"]))
    assert len(_figure(run).axes) == 1


def test_read_noise_repeated_reads(formed):
    station, out = formed
    times = [1.0, 100.0, 1e4]
    result = run_protocol(station, "read_noise", {"levels": [20e-6, 80e-6], "repeats": 2, "acceptance": 0.05,
                                                  "times": times, "n_reads": 20}, out=out)
    assert result.status == "completed", result.error
    s = result.summary
    assert s["times"] == times and len(s["sigma"]) == 3 and all(x >= 0 for x in s["sigma"])
    assert np.array(s["sigma_by_level"]).shape == (2, 3) and np.array(s["g_by_level"]).shape == (2, 3)
    run = load_run(out, result.run_id)
    reads = run["data"]["reads"]
    assert len(reads) == 4 * 20 * 3
    at = reads[(reads["t"] == 100.0) & (reads["row"] == 0) & (reads["col"] == 0)]
    assert len(at) == 20
    assert len(_figure(run).axes) == 2


def test_programming_parameters_are_checked_before_anything_runs(sim_station, tmp_path):
    out = tmp_path / "d.h5"
    with pytest.raises(ParameterError, match="strictly increasing"):
        run_protocol(sim_station, "retention", {"times": [1.0, 10.0, 5.0]}, out=out)
    with pytest.raises(ParameterError, match="chip has 32"):
        run_protocol(sim_station, "write_verify", {"targets": [20e-6, 50e-6, 80e-6], "repeats": 11}, out=out)
    with pytest.raises(ParameterError, match="distinct"):
        run_protocol(sim_station, "read_noise", {"levels": [20e-6, 20e-6]}, out=out)
    assert not out.exists()


def test_forming_stores_a_block_per_array_row_and_sends_the_ramp_once(sim_station, tmp_path):
    """The SMU keeps the ramp between cells (re-armed only); rows reach the file per array row."""
    lab, blocks, sent = sim_station.lab, [], []
    handle = lab.smu.handle
    lab.smu.handle = lambda data: sent.append(data) or handle(data)
    result = run_protocol(sim_station, "forming", {"v_start": 2.9}, out=tmp_path / "d.h5",
                          subscribers=[lambda table, columns: blocks.append((table, np.size(columns.get("row", []))))])
    assert result.status == "completed" and result.summary["formed_now"] == 32
    assert [b for b in blocks if b[0] == "cells"] == [("cells", 8)] * 4
    assert sum(d.startswith(b":SOUR:LIST:VOLT ") for d in sent) == 1
    assert sum(d.startswith(b":SOUR:VOLT:ILIM ") for d in sent) == 1
    assert sum(d == b":INIT\n" for d in sent) == 32
    ramp = load_run(tmp_path / "d.h5", result.run_id)["data"]["ramp"]
    assert sorted(set(zip(ramp["row"].tolist(), ramp["col"].tolist()))) == [(r, c) for r in range(4) for c in range(8)]
    assert (lab.smu.output_on, lab.smu.source_level) == (False, 0.0)
