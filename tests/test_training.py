"""In-situ training and inference: packaged datasets, the algorithm layer on an ideal numpy
crossbar (exact bookkeeping of MVMs and pulse coincidences), and the train / inference protocols
on the simulated 4x8 chip (fixed seeds)."""
import shutil

import numpy as np
import pytest

from labctl.aimc import (
    AGAD,
    AnalogMatrix,
    AnalogNetwork,
    MatrixCells,
    PulseQueue,
    PulseSetup,
    Settings,
    TikiTakaV2,
    bit_trains,
    layout,
    pack_segments,
    prepare_data,
    read_biases,
)
from labctl.datasets import DATASETS, load_dataset, stratified_split
from labctl.engine import run_protocol
from labctl.params import ParameterError
from labctl.registry import PROTOCOLS
from labctl.station import Station
from labctl.store import load_run


# -- datasets --------------------------------------------------------------------------------
def test_iris_loads_150_by_4_with_three_balanced_classes():
    X, y = load_dataset("iris")
    assert X.shape == (150, 4) and y.shape == (150,)
    assert np.array_equal(np.bincount(y), [50, 50, 50])
    assert DATASETS["iris"].classes == ("setosa", "versicolor", "virginica")
    assert X.min() == pytest.approx(0.1) and X.max() == pytest.approx(7.9)
    assert X[0] == pytest.approx([5.1, 3.5, 1.4, 0.2])


def test_digits_loads_1797_by_64_pixels_of_ten_classes():
    X, y = load_dataset("digits")
    assert X.shape == (1797, 64) and y.shape == (1797,)
    assert sorted(np.unique(y)) == list(range(10))
    assert np.bincount(y).min() >= 170
    assert X.min() == 0 and X.max() == 16 and np.all(X == np.round(X))


def test_unknown_dataset_is_refused():
    with pytest.raises(KeyError, match="unknown dataset"):
        load_dataset("mnist")


def test_split_is_deterministic_stratified_and_disjoint():
    _, y = load_dataset("digits")
    train, test = stratified_split(y, 0.2, seed=3)
    again_train, again_test = stratified_split(y, 0.2, seed=3)
    assert np.array_equal(train, again_train) and np.array_equal(test, again_test)
    assert not np.array_equal(test, stratified_split(y, 0.2, seed=4)[1])
    assert np.intersect1d(train, test).size == 0 and train.size + test.size == y.size
    for label in range(10):
        n = np.sum(y == label)
        assert np.sum(y[test] == label) == round(0.2 * n)
    _, y_iris = load_dataset("iris")
    assert np.array_equal(np.bincount(y_iris[stratified_split(y_iris, 0.2, 0)[1]]), [10, 10, 10])


def test_prepared_inputs_are_valid_mvm_inputs():
    iris = prepare_data("iris", 0.2, 0)
    assert iris.x_train.min() == -1 and iris.x_train.max() == 1
    digits = prepare_data("digits", 0.2, 0)
    assert digits.x_train.min() == 0 and digits.x_train.max() == 1
    assert np.all(np.abs(digits.x_test) <= 1)


# -- the algorithm layer on an ideal crossbar --------------------------------------------------
class IdealCrossbar:
    """The crossbar API on a conductance array: exact MVMs (I = G v_read) and a fixed step per
    coincidence (+step SET, -step RESET); records every train (calls) and every board request
    (requests)."""

    def __init__(self, rows, cols, g=30e-6, step=0.1e-6):
        self.shape, self.G, self.step, self.v_read = (rows, cols), np.full((rows, cols), g), step, 0.2
        self.calls, self.requests = [], 0

    def configure_mvm(self, v_read=0.2, **_):
        self.v_read = v_read

    def _block(self, block):
        r0, c0, n, m = block
        return self.G[r0:r0 + n, c0:c0 + m]

    def mvm_forward(self, x, block):
        return np.asarray(x) @ self._block(block) * self.v_read

    def mvm_backward(self, d, block):
        return np.asarray(d) @ self._block(block).T * self.v_read

    def read_map(self, v_read, v_gate, t_read=1e-6, block=None):
        return self._block(block or (0, 0, *self.shape)).copy()

    def parallel_update(self, row_trains, col_trains, train_length, polarity, amplitude, width, period=None,
                        v_gate=1.2, block=None):
        rows, cols = np.asarray(row_trains), np.asarray(col_trains)
        assert rows.dtype == np.uint32 and cols.dtype == np.uint32 and 1 <= train_length <= 32
        assert not np.any(rows.astype(np.int64) >> train_length) and not np.any(cols.astype(np.int64) >> train_length)
        counts = np.bitwise_count(rows[:, None] & cols[None, :])
        self._block(block)[...] += polarity * self.step * counts
        self.calls.append((block, polarity, train_length))
        self.requests += 1
        return int(counts.sum())

    def update_sequence(self, row_trains, col_trains, train_lengths, polarities, amplitudes, width, period=None,
                        v_gate=1.2, block=None):
        counts = [self.parallel_update(r, c, n, p, a, width, period, v_gate, block)
                  for r, c, n, p, a in zip(row_trains, col_trains, train_lengths, polarities, amplitudes)]
        self.requests -= len(counts) - 1
        return np.array(counts)


SETUP = PulseSetup(v_read=0.2, v_gate=1.2, g_scale=10e-6, v_set=1.2, v_reset=1.2, width=5e-9, train_length=31,
                   transfer_pulses=3)


def matrix(xbar, n_in=4, n_out=3, seed=0):
    m = AnalogMatrix(xbar, MatrixCells(0, 0, n_in, n_out), SETUP, np.random.default_rng(seed), "C1")
    m.dw = 2 * xbar.step / SETUP.g_scale  # one coincidence moves both devices of the pair
    return m


def set_weights(xbar, W, b, g0=30e-6):
    n_in, n_out = W.shape
    xbar.G[:n_in, :n_out] = g0 + W * SETUP.g_scale / 2
    xbar.G[:n_in, n_out:2 * n_out] = g0 - W * SETUP.g_scale / 2
    xbar.G[:n_out, 2 * n_out] = g0 + b * SETUP.g_scale / 2
    xbar.G[:n_out, 2 * n_out + 1] = g0 - b * SETUP.g_scale / 2


def test_forward_backward_and_row_reads_follow_the_cell_map():
    xbar = IdealCrossbar(4, 8)
    rng = np.random.default_rng(1)
    W, b = rng.uniform(-1, 1, (4, 3)), rng.uniform(-1, 1, 3)
    set_weights(xbar, W, b)
    m = matrix(xbar)
    x = rng.uniform(-1, 1, (5, 4))
    assert m.forward(x) == pytest.approx(x @ W + b)
    d = rng.normal(0, 3, (5, 3))  # any scale: normalised per vector for the MVM
    assert m.backward(d) == pytest.approx(d @ W.T)
    assert m.read_rows(np.array([2, 4, 0])) == pytest.approx(np.vstack([W[2], b, W[0]]))
    w_read, b_read, g_w, g_b = m.weights()
    assert w_read == pytest.approx(W) and b_read == pytest.approx(b)
    assert g_w.shape == (4, 6) and g_b.shape == (3, 2)


def test_stochastic_update_moves_weights_along_minus_x_d_on_average():
    xbar = IdealCrossbar(4, 8, step=0.02e-6)
    m = matrix(xbar)
    x = np.array([[1.0, -0.5, 0.0, 0.25]])
    d = np.array([[0.5, -1.0, 0.1]])
    lr, n = 0.05, 200
    for _ in range(n):
        m.update(x, d, lr)
    W, _, g_w, _ = m.weights()
    expected = -lr * n * np.outer(x[0], d[0])
    assert W == pytest.approx(expected, abs=0.15 * np.abs(expected).max())
    assert np.all(W[2] == 0)  # a zero input never fires its row
    # every coincidence moved both devices of its pair, in opposite directions
    assert (g_w[:, :3] - 30e-6) == pytest.approx(-(g_w[:, 3:] - 30e-6))
    # x has both signs: per sample one SET and one RESET train per sign of x, all queued until the
    # read, then sent in one request, SET trains first
    assert len(xbar.calls) == 4 * n and xbar.requests == 1
    assert [polarity for _, polarity, _ in xbar.calls] == [1] * 2 * n + [-1] * 2 * n


def test_bias_update_and_row_writes_give_exact_pulse_counts():
    xbar = IdealCrossbar(4, 8)
    m = matrix(xbar)
    m.write_rows(np.array([1, 4]), np.array([[2, -3, 0], [-1, 0, 3]]))
    W, b, _, _ = m.weights()
    unit = m.dw
    assert W[1] == pytest.approx(np.array([2, -3, 0]) * unit)
    assert b == pytest.approx(np.array([-1, 0, 3]) * unit)
    assert np.all(W[[0, 2, 3]] == 0)
    before = b.copy()
    m.update_bias(np.array([-1e3, 1e3, 0.0]), lr=1.0)  # saturates: one coincidence per slot
    b = m.weights()[1]
    assert b - before == pytest.approx(np.array([31, -31, 0]) * unit)


def test_short_segments_are_packed_into_one_train():
    xbar = IdealCrossbar(4, 8)
    one = np.uint64(0b11)
    rows = np.array([[one, 0, 0, 0], [0, one, 0, 0]], np.uint64)
    cols = np.array([np.full(8, one), [one, 0, 0, 0, 0, 0, 0, 0]], np.uint64)
    packed_rows, _, length = pack_segments(np.tile(rows, (16, 1)), np.tile(cols, (16, 1)), 2)
    assert length == 32 and packed_rows.shape == (2, 4)  # 16 segments of 2 slots per train
    assert packed_rows[0, 0] == 0b0011_0011_0011_0011_0011_0011_0011_0011
    pulses = PulseQueue(xbar, (0, 0, 4, 8), SETUP)
    owner = type("Owner", (), {"coincidences": 0})()
    pulses.add(owner, (0, 0, 4, 8), 1, rows, cols, 2)
    assert xbar.calls == [] and pulses.flush() == 2 * 8 + 2 and owner.coincidences == 2 * 8 + 2
    assert len(xbar.calls) == 1 and xbar.calls[0][2] == 4
    # row 1 only coincides with its own segment's column 0, not with row 0's columns
    assert np.count_nonzero(xbar.G[1] - 30e-6) == 1


def test_layout_places_weight_and_fast_arrays_side_by_side():
    C, A, block = layout((64, 32, 10), fast_arrays=True)
    assert [c.c0 for c in C] == [0, 132] and [a.c0 for a in A] == [66, 154]
    assert block == (0, 0, 64, 176)
    C, A, block = layout((4, 3), fast_arrays=False)
    assert A == [None] and block == (0, 0, 4, 8)
    assert C[0].bias_block == (0, 6, 3, 2)


def ttv2_on_one_matrix(lr: float):
    """TTv2 on a 4x3 matrix C with its fast array A beside it, prepared (A's reference: all zero)."""
    xbar = IdealCrossbar(4, 16)
    C = matrix(xbar)
    A = AnalogMatrix(xbar, MatrixCells(0, 8, 4, 3), SETUP, np.random.default_rng(0), "A1")
    A.dw = C.dw
    ttv2 = TikiTakaV2(AnalogNetwork([C]), [A], Settings(lr=lr, transfer_lr=1.1, transfer_every=1))
    ttv2.prepare()
    return C, A, ttv2


def test_ttv2_transfers_the_fast_array_through_its_buffer():
    C, A, ttv2 = ttv2_on_one_matrix(lr=0.1)
    A.write_rows(np.array([1]), np.array([[3, -2, 0]]))  # A row 1 = (3, -2, 0) steps
    ttv2.transfer(0, 2)  # reads rows 0 and 1
    W = C.weights()[0]
    # H = 1.1 A / dw_C = (3.3, -2.2, 0): trunc(H) pulses (at most transfer_pulses = 3), then H
    # keeps 10 % where it fired
    assert W[1] == pytest.approx(np.array([3, -2, 0]) * C.dw)
    assert np.all(W[0] == 0) and ttv2.H[0][1] == pytest.approx(np.array([0.33, -0.22, 0.0]))
    assert ttv2.transfers == 2 and ttv2.c_writes == 5


def test_one_request_reads_the_biases_of_several_matrices_and_rows_ride_with_the_forward_pass():
    xbar = IdealCrossbar(4, 24)
    rng = np.random.default_rng(3)
    xbar.G[:] = 30e-6 + rng.uniform(-5e-6, 5e-6, xbar.G.shape)
    C1, C2 = matrix(xbar), AnalogMatrix(xbar, MatrixCells(0, 8, 3, 2), SETUP, np.random.default_rng(0), "C2")
    A2 = AnalogMatrix(xbar, MatrixCells(0, 14, 3, 2), SETUP, np.random.default_rng(0), "A2")
    biases = read_biases([C1, C2, A2])
    for m, b in zip((C1, C2, A2), biases):
        assert b == pytest.approx(m.bias())
    net = AnalogNetwork([C1, C2])
    x = rng.uniform(0, 1, (5, 4))
    acts, z, values = net.forward_reading(x, [None, (A2, np.array([2, 3, 0]))])
    h = 0.5 * (1 + np.tanh(0.5 * (x @ C1.weights()[0] + C1.weights()[1])))
    assert acts[1] == pytest.approx(h) and z == pytest.approx(net.forward(x)[1])
    assert values[0] is None and values[1] == pytest.approx(A2.read_rows(np.array([2, 3, 0])))


def test_ttv2_step_transfers_the_rows_read_with_the_forward_pass():
    C, A, ttv2 = ttv2_on_one_matrix(lr=0.0)
    x, d = np.ones((2, 4)), np.zeros((2, 3))
    assert ttv2.row_reads() == [None]  # nothing due before the first step
    ttv2.step([x], [d], [None])
    A.write_rows(np.array([1]), np.array([[3, -2, 0]]))
    (read,) = ttv2.row_reads()  # the two samples of the step: rows 0 and 1
    assert read is not None and read[0] is A and list(read[1]) == [0, 1]
    _, _, values = ttv2.network.forward_reading(x, [read])
    ttv2.step([x], [d], values)
    assert C.weights()[0][1] == pytest.approx(np.array([3, -2, 0]) * C.dw) and ttv2.transfers == 2


def agad_on_one_matrix():
    """AGAD (chopper period 2, buffer gain 1) on a 4x3 matrix C with its fast array A beside it."""
    xbar = IdealCrossbar(4, 16)
    C = matrix(xbar)
    A = AnalogMatrix(xbar, MatrixCells(0, 8, 4, 3), SETUP, np.random.default_rng(0), "A1")
    A.dw = C.dw
    return C, A, AGAD(AnalogNetwork([C]), [A], Settings(lr=0.1, transfer_lr=1.0, transfer_every=1, chop_period=2))


def test_agad_chopper_flips_and_reference_tracks_the_fast_array():
    C, A, agad = agad_on_one_matrix()
    A.write_rows(np.arange(5), np.full((5, 3), 2))  # an offset on A: no gradient information
    for _ in range(4):  # two chopper periods of every row
        agad.transfer(0, 5)
    assert np.all(agad.chop[0] == 1)  # flipped twice
    assert np.all(agad.past[0] == pytest.approx(2 * A.dw))  # the reference is A's value
    assert np.all(C.weights()[0] == 0) and np.all(C.weights()[1] == 0)  # the offset never transfers
    # a change after the chopper switch transfers with the chopper's sign: H = 4 (at most
    # transfer_pulses = 3 written)
    agad.chop[0][1] = -1.0
    A.write_rows(np.array([1]), np.array([[-4, 0, 0]]))
    agad.transfer(0, 2)
    assert C.weights()[0][1] == pytest.approx(np.array([3, 0, 0]) * C.dw)


def test_agad_writes_c_only_where_its_buffer_reaches_the_threshold():
    C, A, agad = agad_on_one_matrix()
    for _ in range(2):  # one chopper period of every row: the reference is known, choppers at -1
        agad.transfer(0, 5)
    below = AGAD.threshold - 1
    A.write_rows(np.array([1]), np.array([[below, 0, 0]]))
    agad.transfer(0, 2)
    assert np.all(C.weights()[0] == 0)  # |H| = threshold - 1: kept in the buffer, nothing written
    assert agad.H[0][1] == pytest.approx([-below, 0, 0])
    A.write_rows(np.array([1]), np.array([[1, 0, 0]]))  # row 1's next read adds -(threshold) to H
    agad.transfer(0, 5)
    assert C.weights()[0][1] == pytest.approx(np.array([-SETUP.transfer_pulses, 0, 0]) * C.dw)
    assert np.all(agad.H[0][1] == 0)  # reset where it wrote


# -- protocols on the simulated 4x8 chip --------------------------------------------------------
@pytest.fixture(scope="module")
def formed_4x8(tmp_path_factory):
    """The packaged 4x8 chip formed once with the forming protocol; tests copy its state."""
    base = tmp_path_factory.mktemp("chip")
    with Station.open("sim", sim_state=base / "chip.npz", seed=5) as station:
        result = run_protocol(station, "forming", out=base / "forming.h5")
    assert result.summary["yield"] == 1.0
    return base / "chip.npz"


@pytest.fixture
def chip(formed_4x8, tmp_path):
    state = tmp_path / "chip.npz"
    shutil.copy(formed_4x8, state)
    with Station.open("sim", sim_state=state, seed=6) as station:
        yield station


@pytest.fixture(scope="module")
def iris_run(formed_4x8, tmp_path_factory):
    """Iris trained with analog SGD on the 4x8 chip: (station state, HDF5 file, result)."""
    base = tmp_path_factory.mktemp("iris")
    shutil.copy(formed_4x8, base / "chip.npz")
    with Station.open("sim", sim_state=base / "chip.npz", seed=6) as station:
        result = run_protocol(station, "train", {"dataset": "iris", "epochs": 20, "seed": 1}, out=base / "d.h5")
    assert result.status == "completed", result.error
    return base, result


def test_iris_trains_to_90_percent_on_the_4x8_chip(iris_run):
    s = iris_run[1].summary
    assert s["test_accuracy"] >= 0.90
    assert s["fp_test_accuracy"] >= 0.90  # the floating-point baseline of the same split and epochs
    assert s["algorithm"] == "sgd" and s["layers"] == [4, 3] and s["epochs"] == 20
    assert s["cells"] == {"row0": 0, "col0": 0, "rows": 4, "cols": 8}
    assert 0 < s["dw"]["C1"] < 0.1 and s["coincidences"] > 0


def test_train_stores_history_calibration_and_weights(iris_run):
    base, result = iris_run
    run = load_run(base / "d.h5", result.run_id)
    history = run["data"]["history"]
    assert list(history["epoch"]) == list(range(21))
    for column in ("loss", "train_acc", "test_acc", "fp_test_acc"):
        assert np.all(np.isfinite(history[column]))
    assert history["test_acc"][-1] == result.summary["test_accuracy"]
    assert history["fp_test_acc"][-1] == result.summary["fp_test_accuracy"]
    assert history["loss"][-1] < history["loss"][0]
    data = run["data"]
    assert data["weights_0"].shape == (4, 3) and data["bias_0"].shape == (3,)
    assert data["g_weights_0"].shape == (4, 6) and data["g_bias_0"].shape == (3, 2)
    assert data["fp_weights_0"].shape == (4, 3) and data["g_final"].shape == (4, 8)
    # the digital weights are what the read-back conductances represent
    g = data["g_weights_0"]
    assert data["weights_0"] == pytest.approx((g[:, :3] - g[:, 3:]) / result.summary["g_scale"])
    assert set(data["test_index"]).isdisjoint(data["train_index"]) and len(data["test_index"]) == 30
    assert run["units"]["g_final"] == "S"


def test_inference_reports_accuracy_and_mvm_error_at_each_time(iris_run, tmp_path):
    base, result = iris_run
    state = tmp_path / "chip.npz"
    shutil.copy(base / "chip.npz", state)
    times = [1.0, 3600.0, 86400.0, 3.15e7, 3.15e8]
    with Station.open("sim", sim_state=state, seed=7) as station:
        t0 = station.lab.physics.clock.now
        inf = run_protocol(station, "inference", {"file": str(base / "d.h5"), "run_id": result.run_id},
                           out=tmp_path / "inf.h5")
        assert station.lab.physics.clock.now - t0 >= 3.15e8  # virtual time passed
    assert inf.status == "completed", inf.error
    s = inf.summary
    assert s["times"] == times
    assert len(s["test_accuracy"]) == len(s["mvm_rmse"]) == len(s["weight_rmse"]) == 5
    assert all(0 <= a <= 1 for a in s["test_accuracy"])
    assert s["test_accuracy"][-1] >= 0.8  # no collapse toward chance (1/3) after 10 years
    assert all(0 < e < 0.2 for e in s["mvm_rmse"]) and all(0 < e < 0.2 for e in s["weight_rmse"])
    assert s["success_rate"] == 1.0 and s["cells"] == 30 and s["clipped"] == 0
    assert s["trained_test_accuracy"] == result.summary["test_accuracy"]
    ev = load_run(tmp_path / "inf.h5", inf.run_id)["data"]["evaluation"]
    assert list(ev["t"]) == times and list(ev["test_acc"]) == s["test_accuracy"]


def test_inference_programs_weights_from_a_npy_file(chip, tmp_path):
    rng = np.random.default_rng(0)
    layer = np.vstack([rng.normal(0, 1, (4, 3)), np.zeros(3)])  # 4 inputs + bias row
    np.save(tmp_path / "w.npy", layer)
    inf = run_protocol(chip, "inference", {"weights": str(tmp_path / "w.npy"), "dataset": "iris", "times": [1.0]},
                       out=tmp_path / "inf.h5")
    assert inf.status == "completed", inf.error
    assert inf.summary["source"].endswith("w.npy") and len(inf.summary["test_accuracy"]) == 1
    assert inf.summary["g_scale"] == pytest.approx(70e-6 / np.max(np.abs(layer)))


def test_parameters_are_checked_before_anything_runs(chip, tmp_path):
    with pytest.raises(ParameterError, match="needs 4x16 cells"):
        run_protocol(chip, "train", {"dataset": "iris", "algorithm": "ttv2"}, out=tmp_path / "d.h5")
    with pytest.raises(ParameterError, match="needs 64x88 cells"):
        run_protocol(chip, "inference", {"weights": str(_digits_npz(tmp_path)), "dataset": "digits"},
                     out=tmp_path / "d.h5")
    with pytest.raises(ParameterError, match="file .* or weights"):
        run_protocol(chip, "inference", {}, out=tmp_path / "d.h5")
    with pytest.raises(ParameterError, match="no such file"):
        run_protocol(chip, "inference", {"file": str(tmp_path / "missing.h5")}, out=tmp_path / "d.h5")


def _digits_npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "digits.npz"
    np.savez(path, weights_0=rng.normal(size=(64, 32)), bias_0=np.zeros(32), weights_1=rng.normal(size=(32, 10)),
             bias_1=np.zeros(10))
    return path


def test_digits_network_learns_through_its_hidden_layer_in_one_epoch(tmp_path):
    """64-32-10 with Tiki-Taka v2 on a virtual 64x256 array, one epoch (~10 s; the full runs
    against the floating-point baseline are in bench/training.py). The array is formed directly
    in the simulator: the SMU forming ramps of 16384 cells would take ~2 minutes."""
    with Station.open("sim:64x256", sim_state=tmp_path / "chip.npz", seed=2) as station:
        physics = station.lab.physics
        physics.formed[:] = True
        physics.g[:] = physics.g_formed
        result = run_protocol(station, "train", {"dataset": "digits", "algorithm": "ttv2", "epochs": 1},
                              out=tmp_path / "d.h5")
    assert result.status == "completed", result.error
    s = result.summary
    assert s["layers"] == [64, 32, 10] and s["cells"]["cols"] == 176
    # chance is 0.1 (binomial std 0.016 on the 359 test digits): 0.3 is learning, not luck
    assert s["test_accuracy"] > 0.3
    assert s["transfers"] > 0 and s["c_writes"] > 0 and set(s["dw"]) == {"C1", "A1", "C2", "A2"}
    data = load_run(tmp_path / "d.h5", result.run_id)["data"]
    assert data["weights_0"].shape == (64, 32) and data["weights_1"].shape == (32, 10)
    assert len(data["history"]) == 2


def test_training_an_unformed_chip_fails_with_a_clear_error(tmp_path):
    with Station.open("sim", sim_state=tmp_path / "pristine.npz", seed=1) as station:
        result = run_protocol(station, "train", {"dataset": "iris", "epochs": 1}, out=tmp_path / "d.h5")
    assert result.status == "failed" and "form the array first" in result.error


def test_plots_draw_from_the_stored_runs(iris_run, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    base, result = iris_run
    fig = Figure()
    PROTOCOLS["train"].plot(load_run(base / "d.h5", result.run_id), fig)
    assert len(fig.axes) == 2 and fig.axes[0].lines


def test_bit_trains_set_each_slot_independently_with_its_probability():
    """Every slot of a train is set with the entry's probability (within 5 standard errors over
    20000 trains, per slot), 0 and 1 exactly, nothing past the train's length; neighbouring
    slots (the two halves of one generator output) and neighbouring entries are uncorrelated;
    a generator in the same state gives the same trains."""
    p = np.array([0.0, 1e-3, 0.1, 0.5, 0.5, 0.9, 1.0])
    n, length = 20000, 31
    trains = bit_trains(np.tile(p, (n, 1)), length, np.random.default_rng(5))
    bits = (trains[..., None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)  # (n, entries, 64)
    assert not bits[..., length:].any()
    rate = bits[..., :length].mean(axis=0)
    assert np.all(np.abs(rate - p[:, None]) <= 5 * np.sqrt(p * (1 - p) / n)[:, None])
    half = bits[:, 3, :length].astype(float)
    for a, b in ((half[:, :-1], half[:, 1:]), (half, bits[:, 4, :length].astype(float))):
        assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 5 / np.sqrt(a.size)
    np.testing.assert_array_equal(bit_trains(np.tile(p, (n, 1)), length, np.random.default_rng(5)), trains)
