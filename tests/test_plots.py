"""`labctl data plot`: each protocol's standard figure, drawn headless to PNG."""
import threading

import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread

from labctl.cli import main
from labctl.engine import Protocol, get_protocol, run_protocol
from labctl.plots import plot_run, run_figure
from labctl.store import DataStore, load_run

RUNS = {"forming": {"v_start": 2.9}, "iv_sweep": {"cycles": 2, "v_step": 0.05}, "read_map": {}}


@pytest.fixture
def runs(sim_station, tmp_path):
    """forming, iv_sweep and read_map recorded on the simulator into one file: (file, {protocol: run_id})."""
    out = tmp_path / "runs.h5"
    ids = {}
    for name, values in RUNS.items():
        result = run_protocol(sim_station, name, values, out=out)
        assert result.status == "completed", result.error
        ids[name] = result.run_id
    return out, ids


def _png(file, run_id: str, target, capsys) -> None:
    """`labctl data plot` writes a real image of plausible size and prints its path."""
    assert main(["data", "plot", str(file), run_id, "--out", str(target)]) == 0
    assert capsys.readouterr().out.strip() == str(target)
    image = imread(target)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 300
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_forming_png_histogram_and_map_with_colour_bar(runs, tmp_path, capsys):
    file, ids = runs
    _png(file, ids["forming"], tmp_path / "figs" / "forming.png", capsys)
    fig = Figure()
    get_protocol("forming").plot(load_run(file, ids["forming"]), fig)
    hist, cell_map, colour_bar = fig.axes
    assert "(V)" in hist.get_xlabel() and hist.get_ylabel() == "cells"
    assert sum(p.get_height() for p in hist.patches) == 32  # every cell of the 4x8 chip formed here
    assert "row" in cell_map.get_ylabel() and "column" in cell_map.get_xlabel()
    assert cell_map.images[0].get_array().shape == (4, 8)
    assert "(V)" in colour_bar.get_ylabel()
    assert len(cell_map.texts) == 32  # small array: values written in


def test_iv_png_one_line_per_cycle_and_log_axis(runs, tmp_path, capsys):
    file, ids = runs
    _png(file, ids["iv_sweep"], tmp_path / "iv.png", capsys)
    fig = Figure()
    get_protocol("iv_sweep").plot(load_run(file, ids["iv_sweep"]), fig)
    linear, log = fig.axes
    assert "(V)" in linear.get_xlabel() and "(µA)" in linear.get_ylabel()
    assert log.get_yscale() == "log" and "(A)" in log.get_ylabel()
    assert [t.get_text() for t in linear.get_legend().get_texts()] == ["cycle 1", "cycle 2"]
    assert max(abs(line.get_ydata()).max() for line in linear.get_lines()[:2]) > 10  # in uA


def test_read_map_png_heat_map_in_microsiemens(runs, tmp_path, capsys):
    file, ids = runs
    _png(file, ids["read_map"], tmp_path / "map.png", capsys)
    fig = Figure()
    get_protocol("read_map").plot(load_run(file, ids["read_map"]), fig)
    heat, colour_bar = fig.axes
    data = heat.images[0].get_array()
    assert data.shape == (4, 8) and data.min() > 5 and data.max() < 100  # uS, not S
    assert "(µS)" in colour_bar.get_ylabel()
    assert heat.get_ylabel() == "row (WL)" and "BL/SL" in heat.get_xlabel()
    assert len(heat.texts) == 32


def test_title_threads_and_unknown_run(runs, tmp_path, capsys):
    file, ids = runs
    title = run_figure(load_run(file, ids["read_map"])).get_suptitle()
    assert ids["read_map"] in title and "read_map" in title and "completed" in title and "UTC" in title

    errors = []

    def draw(name: str) -> None:
        try:
            plot_run(file, ids[name], tmp_path / f"t_{name}.png")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=draw, args=(name,)) for name in RUNS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all((tmp_path / f"t_{name}.png").stat().st_size > 10_000 for name in RUNS)

    assert main(["data", "plot", str(file), "999_nothing", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "999_nothing" in err and ids["forming"] in err
    assert not (tmp_path / "x.png").exists()


def test_protocol_without_plot_and_wrong_suffix_are_usage_errors(tmp_path, capsys, monkeypatch):
    from labctl.registry import PROTOCOLS

    class Bare(Protocol):
        name = "bare"

    monkeypatch.setitem(PROTOCOLS, "bare", Bare())
    file = tmp_path / "bare.h5"
    with DataStore(file) as store:
        store.begin_run("bare", {}, {}).finish("completed")
    assert main(["data", "plot", str(file), "001_bare", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bare" in err and "plot" in err
    assert main(["data", "plot", str(file), "001_bare", "--out", str(tmp_path / "x.pdf")]) == 2
    assert ".png" in capsys.readouterr().err


def test_failed_run_without_data_still_plots(tmp_path):
    file = tmp_path / "failed.h5"
    with DataStore(file) as store:
        store.begin_run("read_map", {"v_read": 0.2, "v_gate": 1.2}, {}).finish("failed", error="RuntimeError: boom")
        store.begin_run("iv_sweep", {}, {}).finish("failed", error="RuntimeError: boom")
        store.begin_run("forming", {}, {}).finish("aborted", error="aborted by user")
    for run_id in ("001_read_map", "002_iv_sweep", "003_forming"):
        fig = run_figure(load_run(file, run_id))
        assert "boom" in fig.get_suptitle() or "aborted" in fig.get_suptitle()
        assert plot_run(file, run_id, tmp_path / f"{run_id}.png").stat().st_size > 0
