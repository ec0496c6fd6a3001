"""Device studies (issue 14): a grid of simulated chips and protocols on Dask, results in one HDF5 file."""
import json
import re
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
from labctl.sim.physics import DEFAULT_DEVICE_FILE

from labctl.cli import main
from labctl.engine import Protocol, run_protocol
from labctl.lock import StationBusy, StationLock
from labctl.params import Parameter
from labctl.registry import PROTOCOLS
from labctl.station import Station, load_station
from labctl.store import list_runs
from labctl.study import (
    StudyError,
    load_study,
    read_points,
    resume_study,
    run_study,
    study_dataset,
    study_frame,
    study_status,
)

MVM_STUDY = """
[study]
name = "mvm4"
station = "sim:4x8"
formed = true

[[steps]]
protocol = "mvm"
params = { batch = 10 }

[grid]
seed = [3, 4]
device.c2c_noise = [0.5, 1.5]
"""


def write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    """The 4-point study on a LocalCluster of 2 worker processes (Dask's default path)."""
    tmp = tmp_path_factory.mktemp("study")
    result = run_study(write(tmp, MVM_STUDY), tmp / "mvm4.h5", workers=2)
    return tmp, result


def by_hand(tmp_path: Path, seed: int, c2c_noise: float) -> dict:
    """One point as a user writes it without labctl.study: its own device file, station, forming, run."""
    text = DEFAULT_DEVICE_FILE.read_text(encoding="utf-8")
    device = tmp_path / f"device_{seed}_{c2c_noise}.toml"
    device.write_text(re.sub(r"^c2c_noise = \{ value = [^,]+,", f"c2c_noise = {{ value = {c2c_noise!r},", text,
                             flags=re.MULTILINE), encoding="utf-8")
    config = replace(load_station("sim:4x8"), device_file=str(device))
    with Station(config, sim_state=tmp_path / f"chip_{seed}_{c2c_noise}.npz", seed=seed) as station:
        physics = station.lab.physics
        assert physics.p.c2c_noise == c2c_noise
        physics.formed[:] = True
        physics.g[:] = physics.g_formed
        result = run_protocol(station, "mvm", {"batch": 10, "seed": seed}, out=tmp_path / "by_hand.h5")
    assert result.status == "completed"
    return json.loads(json.dumps(result.summary))


def test_cluster_points_equal_the_points_run_one_by_one(cluster_run, tmp_path):
    tmp, result = cluster_run
    assert (result.total, result.completed, result.failed, result.ran) == (4, 4, 0, 4)
    assert result.scheduler == "LocalCluster(2 workers)"
    points = read_points(result.file)
    assert {p["worker"] for p in points} <= {"0", "1"}
    for point in points:
        coords = point["coords"]
        assert point["status"] == "completed", point["error"]
        assert point["summaries"]["mvm"] == by_hand(tmp_path, coords["seed"], coords["device.c2c_noise"])
        runs = list_runs(point["run_file"])  # the point's full run data, with the device file it ran on
        assert [r["run_id"] for r in runs] == [point["run_ids"]["mvm"]] and runs[0]["status"] == "completed"
        assert f"value = {coords['device.c2c_noise']!r}" in Path(point["run_file"]).with_suffix(
            ".device.toml").read_text()
    # the noise changes what the chip does: the points are not four copies of one
    assert len({json.dumps(p["summaries"]["mvm"]) for p in points}) == 4


def test_frame_and_dataset_have_the_axes_as_coordinates(cluster_run):
    _, result = cluster_run
    frame = study_frame(result.file)
    assert len(frame) == 4 and set(frame["status"]) == {"completed"}
    assert {"seed", "device.c2c_noise", "mvm.rmse_forward", "mvm.weight_rmse_at_t", "duration_s"} <= set(frame)
    dataset = study_dataset(result.file)
    assert dict(dataset.sizes) == {"seed": 2, "device.c2c_noise": 2}
    assert list(dataset["device.c2c_noise"].values) == [0.5, 1.5]
    row = frame[(frame["seed"] == 4) & (frame["device.c2c_noise"] == 0.5)].iloc[0]
    assert dataset["mvm.rmse_forward"].sel({"seed": 4, "device.c2c_noise": 0.5}).item() == row["mvm.rmse_forward"]
    assert json.loads(dataset.attrs["software"])["distributed"]


def test_plot_draws_a_metric_against_an_axis_with_the_spread_over_seeds(cluster_run, capsys):
    tmp, result = cluster_run
    out = tmp / "fig.png"
    assert main(["study", "plot", str(result.file), "--metric", "mvm.rmse_forward", "--x", "device.c2c_noise",
                 "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["study", "plot", str(result.file), "--metric", "mvm.rmse_forwrd", "--x", "device.c2c_noise",
                 "--out", str(out)]) == 2
    assert "did you mean mvm.rmse_forward" in capsys.readouterr().err


READ_STUDY = """
[study]
station = "sim:4x8"
formed = true

[[steps]]
protocol = "read_map"

[grid]
seed = [0, 1, 2, 3]
"""


class StopAfter:
    """A progress callback that interrupts the study (as Ctrl-C does) once `n` points are finished."""

    def __init__(self, n: int):
        self.n = n

    def __call__(self, progress) -> None:
        if progress.completed + progress.failed >= self.n:
            raise KeyboardInterrupt


def test_resume_after_an_interruption_runs_only_the_missing_points(tmp_path, capsys):
    study, out = write(tmp_path, READ_STUDY), tmp_path / "read.h5"
    with pytest.raises(KeyboardInterrupt):
        run_study(study, out, serial=True, progress=StopAfter(2))
    before = {p["index"]: p for p in read_points(out)}
    assert [p["status"] for p in before.values()] == ["completed", "completed", "pending", "pending"]
    # a point whose record a crash cut short (no status written) counts as not run
    with h5py.File(out, "a") as f:
        f["points"].create_group("000002").attrs["index"] = 2
    assert study_status(out)["pending"] == 2
    with pytest.raises(StudyError, match="exists"):
        run_study(study, out, serial=True)
    holder = StationLock(tmp_path / "read.h5.lock", "another study")  # as a second `labctl study` holds it
    holder.acquire()
    with pytest.raises(StationBusy, match="in use by process"):
        resume_study(out, serial=True)
    holder.release()
    assert main(["study", "resume", str(out), "--serial", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["ran"], result["skipped"], result["completed"]) == (2, 2, 4)
    after = {p["index"]: p for p in read_points(out)}
    for index in (0, 1):  # the finished points were left as they were
        assert after[index]["ended"] == before[index]["ended"]
    assert all(p["status"] == "completed" for p in after.values())
    assert np.array(after[3]["summaries"]["read_map"]["g_map"]).shape == (4, 8)
    assert resume_study(out, serial=True).ran == 0


class Fails(Protocol):
    name = "study_fails"
    title = "test protocol that fails when told to"
    parameters = (Parameter("fail", "bool", False), Parameter("seed", "int", 0, minimum=0))

    def run(self, ctx):
        if ctx.params["fail"]:
            raise RuntimeError(f"told to fail (seed {ctx.params['seed']})")
        return {"seed": ctx.params["seed"]}


@pytest.fixture
def failing_protocol():
    PROTOCOLS["study_fails"] = Fails()
    yield
    del PROTOCOLS["study_fails"]


def test_a_failing_point_is_recorded_and_the_others_complete(tmp_path, capsys, failing_protocol):
    study = write(tmp_path, """
[study]
station = "sim:4x8"
[[steps]]
protocol = "study_fails"
name = "first"
[[steps]]
protocol = "study_fails"
name = "second"
[grid]
seed = [0, 1]
second.fail = [false, true]
""")
    out = tmp_path / "fails.h5"
    # an existing cluster, by its scheduler's address; its workers are threads of this process, where
    # the test protocol is registered
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        assert main(["study", "run", str(study), "--out", str(out), "--scheduler", cluster.scheduler_address]) == 1
    assert "2 of 4 points failed" in capsys.readouterr().err
    status = study_status(out)
    assert (status["completed"], status["failed"], status["pending"]) == (2, 2, 0)
    for point in read_points(out):
        assert point["summaries"]["first"] == {"seed": point["coords"]["seed"]}  # the step before the failure
        if point["coords"]["second.fail"]:
            assert point["status"] == "failed"
            assert point["error"] == (f"step second (study_fails) failed: RuntimeError: told to fail "
                                      f"(seed {point['coords']['seed']})")
        else:
            assert point["status"] == "completed" and point["summaries"]["second"] == {"seed": point["coords"]["seed"]}
    assert main(["study", "status", str(out)]) == 0
    assert "told to fail (seed 1)" in capsys.readouterr().out


@pytest.mark.parametrize("grid, message", [
    ('"device.c2c_nois" = [0.5]', "no device parameter 'c2c_nois'"),
    ('device.c2c_nois = [0.5]', "did you mean 'device.c2c_noise'?"),
    ("device.p_stuck = [0.0, 1.5]", "axis 'device.p_stuck': device.p_stuck=1.5 is outside its allowed range [0, 1]"),
    ("device.g_min = [1e-4]", "device.g_min=0.0001 must be below device.g_max=9.49e-05"),
    ("mvm.acceptance = [0.01, 0.9]", "axis 'mvm.acceptance': acceptance=0.9 is above its maximum 0.5 (allowed: "
                                     "[0.0001, 0.5])"),
    ("mvm.accept = [0.01]", "did you mean 'mvm.acceptance'?"),
    ('"mvx.batch" = [1]', "'mvx.batch' names no parameter (axes: seed, device.NAME, mvm.PARAM)"),
    ("mvx.batch = [1]", "axis 'mvx.batch': 'mvx' is neither device nor a step (steps: mvm)"),
    ("seed = [-1]", "a seed is an integer >= 0"),
    ("mvm.rows = [4, 16]", "step mvm (mvm): rows=16 is above its maximum 4"),
    ("mvm.batch = { start = 1, stop = 3 }", "a range needs start, stop and num"),
    ("device.g_max = [5e-5]\n[grid.w]\ndevice.g_max = [6e-5]", "device.g_max is set by two axes (device.g_max, w)"),
])
def test_a_bad_axis_is_a_clear_error_before_anything_runs(tmp_path, capsys, grid, message):
    study = write(tmp_path, f'[study]\nstation = "sim:4x8"\n[[steps]]\nprotocol = "mvm"\n[grid]\n{grid}\n')
    with pytest.raises(StudyError) as info:
        run_study(study, tmp_path / "never.h5", serial=True)
    assert message in str(info.value)
    assert main(["study", "run", str(study), "--out", str(tmp_path / "never.h5")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "never.h5").exists()


def test_zipped_axes_and_listed_points_cross(tmp_path, capsys):
    path = write(tmp_path, """
[study]
station = "sim:8x8"
[[steps]]
protocol = "mvm"
[grid.window]
values = [50, 90]
device = { g_max = [55e-6, 94.9e-6] }
mvm = { g_hi = [45e-6, 80e-6] }
[[points]]
device.c2c_noise = 0.5
[[points]]
device.c2c_noise = 1.5
""")
    assert main(["study", "check", str(path)]) == 0
    assert "window: 50, 90 (sets device.g_max, mvm.g_hi)" in capsys.readouterr().out
    study = load_study(path)
    assert study.coordinates == ["window", "device.c2c_noise"]
    assert [p.coords for p in study.points] == [{"window": 50, "device.c2c_noise": 0.5},
                                                {"window": 50, "device.c2c_noise": 1.5},
                                                {"window": 90, "device.c2c_noise": 0.5},
                                                {"window": 90, "device.c2c_noise": 1.5}]
    assert study.points[1].overrides == {"device.g_max": 55e-6, "mvm.g_hi": 45e-6, "device.c2c_noise": 1.5}
    (_, params), = study.step_values(study.points[1])
    assert params == {"g_hi": 45e-6, "seed": 0}
    assert study.device_values(study.points[1])["g_max"] == 55e-6
