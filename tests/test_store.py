import csv
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from labctl.store import DataStore, TableBuffer, export_csv, list_runs, load_run


def test_run_group_holds_provenance_tables_and_arrays(tmp_path):
    path = tmp_path / "d.h5"
    with DataStore(path) as store:
        w = store.begin_run("proto", {"v": 1.0}, {"name": "sim"})
        w.create_table("iv", [("v", "f8", "V"), ("i", "f8", "A")])
        w.append("iv", {"v": [0.1, 0.2], "i": [1e-6, 2e-6]})
        w.append("iv", {"v": 0.3, "i": 3e-6})
        w.write_array("g_map", np.ones((2, 3)), "S")
        w.finish("completed", {"n": 3})
    run = load_run(path, w.run_id)
    assert run["attrs"]["status"] == "completed"
    assert run["attrs"]["parameters"] == {"v": 1.0}
    assert run["attrs"]["station"] == {"name": "sim"}
    assert run["attrs"]["software"]["labctl"]
    assert run["attrs"]["started"] <= run["attrs"]["ended"]
    np.testing.assert_array_equal(run["data"]["iv"]["v"], [0.1, 0.2, 0.3])
    assert run["units"]["iv"] == {"v": "V", "i": "A"}
    assert run["data"]["g_map"].shape == (2, 3)


def test_runs_append_to_one_file_with_increasing_ids(tmp_path):
    path = tmp_path / "d.h5"
    for _ in range(2):
        with DataStore(path) as store:
            store.begin_run("p", {}, {}).finish("completed")
    assert [r["run_id"] for r in list_runs(path)] == ["001_p", "002_p"]


def test_rows_survive_a_crash_of_the_writer(tmp_path):
    """The writer process dies without closing the file: every appended row is still there."""
    path = tmp_path / "crash.h5"
    script = textwrap.dedent(f"""
        import os
        from labctl.store import DataStore
        store = DataStore({str(path)!r})
        w = store.begin_run("p", {{}}, {{}})
        w.create_table("t", [("x", "f8", "")])
        for k in range(5):
            w.append("t", {{"x": k}})
        os._exit(1)
    """)
    assert subprocess.run([sys.executable, "-c", script]).returncode == 1
    run = load_run(path, "001_p")
    assert run["attrs"]["status"] == "running"
    np.testing.assert_array_equal(run["data"]["t"]["x"], np.arange(5))


def test_csv_export_has_units_in_header(tmp_path):
    path = tmp_path / "d.h5"
    with DataStore(path) as store:
        w = store.begin_run("p", {}, {})
        w.create_table("iv", [("v", "f8", "V"), ("status", "S8", "")])
        w.append("iv", {"v": [0.5], "status": [b"ok"]})
        w.write_array("g_map", np.arange(6.0).reshape(2, 3), "S")
        w.finish("completed")
    files = {p.name: p for p in export_csv(path, "001_p", tmp_path / "csv")}
    rows = list(csv.reader(open(files["001_p_iv.csv"])))
    assert rows == [["v [V]", "status"], ["0.5", "ok"]]
    grid = list(csv.reader(open(files["001_p_g_map.csv"])))
    assert [[float(x) for x in r] for r in grid] == [[0, 1, 2], [3, 4, 5]]
    assert "001_p_run.json" in files


def test_unknown_run_is_a_clear_error(tmp_path):
    path = tmp_path / "d.h5"
    DataStore(path).close()
    with pytest.raises(KeyError, match="no run 'nope'"):
        load_run(path, "nope")


def test_table_buffer_writes_blocks_per_table_at_checkpoints_age_and_exit(tmp_path):
    now = [0.0]
    path = tmp_path / "d.h5"
    with DataStore(path) as store:
        w = store.begin_run("p", {}, {})
        w.create_table("ramp", [("cell", "i4", ""), ("v", "f8", "V")])
        w.create_table("cells", [("cell", "i4", ""), ("status", "S8", "")])
        appends = []

        def append(table, **columns):
            appends.append(table)
            w.append(table, columns)

        with pytest.raises(RuntimeError, match="instrument fault"):
            with TableBuffer(append, max_age=1.0, clock=lambda: now[0]) as buffer:
                buffer.add("ramp", cell=0, v=[0.1, 0.2])
                buffer.add("cells", cell=0, status=b"formed")
                buffer.add("ramp", cell=1, v=[0.3])
                assert appends == []  # nothing written yet
                buffer.flush()  # a checkpoint: one block per table
                assert sorted(appends) == ["cells", "ramp"]
                buffer.add("ramp", cell=2, v=[0.4, 0.5, 0.6])
                now[0] = 1.5
                buffer.add("cells", cell=2, status=b"formed")  # the oldest row is 1.5 s old
                assert len(appends) == 4
                buffer.add("cells", cell=3, status=b"failed")
                raise RuntimeError("instrument fault")  # the row still reaches the file
        assert len(appends) == 5
    ramp, cells = (load_run(path, w.run_id)["data"][t] for t in ("ramp", "cells"))
    assert ramp["cell"].tolist() == [0, 0, 1, 2, 2, 2]
    np.testing.assert_array_equal(ramp["v"], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert cells["cell"].tolist() == [0, 2, 3] and cells["status"].tolist() == [b"formed", b"formed", b"failed"]


def test_readers_see_the_flushed_rows_while_another_process_writes(tmp_path):
    """The writer holds HDF5's file lock for its whole run; list_runs and load_run still read."""
    path = tmp_path / "live.h5"
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from labctl.store import DataStore
        with DataStore({str(path)!r}) as store:
            w = store.begin_run("proto", {{}}, {{}})
            w.create_table("t", [("x", "f8", "V")])
            w.append("t", {{"x": [1.0, 2.0]}})
            print("ready", flush=True)
            sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        (run,) = list_runs(path)
        assert run["status"] == "running" and run["datasets"] == {"t": [2]}
        np.testing.assert_array_equal(load_run(path, run["run_id"])["data"]["t"]["x"], [1.0, 2.0])
    finally:
        writer.communicate("\n", timeout=30)
    assert writer.returncode == 0
