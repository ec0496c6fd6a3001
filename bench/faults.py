"""Reliability under faults, measured: many runs per fault kind at random moments from a seed.

Prints one JSON object with, per fault kind:
  (a) kill      the server dies (connection reset, or closed, or dead mid-message)
  (b) freeze    the server hangs (no reply)
  (c) scpi      a garbage, truncated or duplicated SCPI reply (SMU or pulse generator)
  (d) board     a flipped bit, dropped, duplicated or truncated board frame (either way)
  (e) signal    SIGINT / SIGTERM / SIGKILL of `labctl run` against `labctl sim serve`
  (f) disk      the data file's disk fills (while rows are appended, or at the run's end)
the runs tried, how they ended (completed: the fault absorbed by the retry policy, with the
clean run's data; failed / aborted: with a clear error), whether the error names the faulted
instrument, the safe state reached (every instrument that still answers, asked on its own
port; a dead one named in the safe state's error, and made safe by the next open), rows lost
(rows in the file vs rows the run reported before it ended; rows that differ from a clean run's
count as corrupt), the status recorded in the file, and the time from the fault to the end of
the run (max, median) against the bound timeout + 1 s. (a)-(d) run real protocols (iv_sweep,
forming, read_map, pulse_response on the 4x8 chip) in this process through the proxies of
tests/faults/proxy.py; (e) runs `labctl` processes like tests/faults/test_run_signals.py; (f)
fails RunWriter like tests/faults/test_disk_faults.py. `--fuzz N` adds a randomized campaign of
N examples per property of tests/faults/test_board_fuzz.py.

Usage: python bench/faults.py [--runs 20] [--seed 0] [--timeout 1.0] [--kinds a,b,c,d,e,f] [--fuzz N]
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "faults"), str(ROOT / "tests")]
os.environ.setdefault("XDG_STATE_HOME", tempfile.mkdtemp(prefix="labctl-faults-state-"))

from proxy import ROLES, Fault, FaultLab, run_with_fault, unsafe_at  # noqa: E402

from labctl.engine import run_protocol  # noqa: E402
from labctl.station import Station, load_station  # noqa: E402
from labctl.store import RunWriter, list_runs, load_run  # noqa: E402

EXPERIMENTS = {
    "iv_sweep": {"cycles": 2},
    "forming": {"v_start": 2.9},
    "read_map": {},
    "pulse_response": {"n_pulses": 4, "cycles": 1, "n_cols": 2},
}
# which protocols exercise which instrument
USES = {"smu": ("iv_sweep", "forming"), "pulse": ("pulse_response",),
        "board": ("forming", "read_map", "pulse_response", "iv_sweep")}
LABCTL = [sys.executable, "-m", "labctl.cli"]


def same_rows(a, b) -> bool:
    """Equal arrays, NaN included (byte for byte: the same computation gives the same NaN)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class Harness:
    def __init__(self, folder: Path, timeout: float):
        self.folder, self.timeout, self.n = folder, timeout, 0
        self.clean: dict[str, tuple[dict, dict, dict]] = {}
        for protocol, params in EXPERIMENTS.items():
            lab_dir = self._next()
            with FaultLab(lab_dir, timeout=timeout) as lab:
                before = {role: dict(lab.proxies[role].messages) for role in ROLES}
                outcome = run_with_fault(lab, protocol, params, None, None, lab_dir / "clean.h5")
                assert outcome.status == "completed", outcome.error
                counts = {role: {d: lab.proxies[role].messages[d] - before[role][d] for d in ("request", "reply")}
                          for role in ROLES}
            data = load_run(lab_dir / "clean.h5", outcome.run_id)["data"]
            self.clean[protocol] = (data, outcome.summary, counts)

    def _next(self) -> Path:
        self.n += 1
        return self.folder / f"run{self.n:04d}"

    def one(self, protocol: str, role: str, fault: Fault) -> dict:
        folder = self._next()
        with FaultLab(folder, timeout=self.timeout) as lab:
            outcome = run_with_fault(lab, protocol, EXPERIMENTS[protocol], role, fault, folder / "run.h5")
            left_unsafe = lab.unsafe()
            next_open_safe = None
            if left_unsafe:  # what the run could not reach: the next open must put it right
                try:
                    with Station(load_station(str(lab.station_file_direct))):
                        pass
                    next_open_safe = not lab.unsafe()
                except Exception:  # noqa: BLE001 (recorded as not safe)
                    next_open_safe = False
        data = load_run(folder / "run.h5", outcome.run_id)["data"]
        reference, summary, _ = self.clean[protocol]
        corrupt = sum(int(not same_rows(data[t], reference[t][:n])) for t, n in outcome.rows_in_file.items())
        lost = sum(max(0, outcome.rows_reported.get(t, 0) - n) for t, n in outcome.rows_in_file.items())
        identical = outcome.status == "completed" and _json(outcome.summary) == _json(summary) and all(
            same_rows(data[k], v) for k, v in reference.items())
        faulted_named = f"{role} at " in outcome.error
        return {"protocol": protocol, "role": role, "fault": f"{fault.kind} {fault.direction} #{fault.at}",
                "fired": outcome.fired, "status": outcome.status, "error": outcome.error[:300],
                "names_instrument": faulted_named, "identical_to_clean": identical,
                "unsafe_after": left_unsafe, "others_safe": not (set(left_unsafe) - {role}),
                "dead_named_in_safe_state": (not left_unsafe) or f"safe state failed: {role}" in outcome.error
                or "went out unconfirmed" in outcome.error,
                "next_open_safe": next_open_safe, "rows_lost": lost, "tables_corrupt": corrupt,
                "status_recorded": outcome.status in ("completed", "failed", "aborted"),
                "after_fault_s": outcome.after_fault_s}

    def random_fault(self, rng: np.random.Generator, kind: str) -> tuple[str, str, Fault]:
        if kind == "scpi":
            role = str(rng.choice(["smu", "pulse"]))
        elif kind == "board":
            role = "board"
        else:
            role = str(rng.choice(list(ROLES)))
        protocol = str(rng.choice(USES[role]))
        if kind == "kill":
            variant = str(rng.choice(["kill", "close", "kill mid-message"]))
            direction = "request" if variant == "kill mid-message" else str(rng.choice(["request", "reply"]))
            fault_kind = "close" if variant == "close" else "kill"
            partial = float(rng.uniform(0.1, 0.9)) if variant == "kill mid-message" else 0.0
        elif kind == "freeze":
            fault_kind, direction, partial = "freeze", str(rng.choice(["request", "reply"])), 0.5
        elif kind == "scpi":
            fault_kind, direction, partial = str(rng.choice(["garbage", "truncate", "duplicate"])), "reply", 0.5
        else:
            fault_kind = str(rng.choice(["flip", "drop", "duplicate", "truncate"]))
            direction, partial = str(rng.choice(["request", "reply"])), float(rng.uniform(0.1, 0.9))
        n = self.clean[protocol][2][role][direction]
        fault = Fault(fault_kind, at=int(rng.integers(0, max(n, 1))), direction=direction, partial=partial,
                      seed=int(rng.integers(1 << 30)), count=1)
        return protocol, role, fault


def summarize(runs: list[dict], bound: float) -> dict:
    fired = [r for r in runs if r["fired"]]
    ended = {}
    for r in fired:
        ended[r["status"]] = ended.get(r["status"], 0) + 1
    failed = [r for r in fired if r["status"] != "completed"]
    times = [r["after_fault_s"] for r in fired if r["after_fault_s"] is not None]
    variants: dict[str, int] = {}
    for r in fired:
        key = r["fault"].rsplit(" #", 1)[0]
        variants[key] = variants.get(key, 0) + 1
    return {
        "runs_tried": len(runs), "fault_fired": len(fired), "variants": variants, "ended": ended,
        "completed_identical_to_clean": sum(r["identical_to_clean"] for r in fired),
        "completed_but_different": sum(r["status"] == "completed" and not r["identical_to_clean"] for r in fired),
        "failed_error_names_instrument": f"{sum(r['names_instrument'] for r in failed)}/{len(failed)}",
        "safe_state_reached": f"{sum(not r['unsafe_after'] for r in fired)}/{len(fired)}",
        "others_safe": f"{sum(r['others_safe'] for r in fired)}/{len(fired)}",
        "unreached_named_in_error": f"{sum(r['dead_named_in_safe_state'] for r in fired)}/{len(fired)}",
        "unreached_safe_after_next_open": f"{sum(bool(r['next_open_safe']) for r in fired if r['unsafe_after'])}"
                                          f"/{sum(bool(r['unsafe_after']) for r in fired)}",
        "rows_lost": sum(r["rows_lost"] for r in fired), "tables_corrupt": sum(r["tables_corrupt"] for r in fired),
        "status_recorded": f"{sum(r['status_recorded'] for r in fired)}/{len(fired)}",
        "after_fault_s": {"max": round(max(times), 3) if times else None,
                          "median": round(statistics.median(times), 3) if times else None,
                          "bound": bound, "over_bound": sum(t > bound for t in times)},
        "examples_of_errors": sorted({r["error"].split(": ", 1)[0] + ": " + r["error"].split(": ", 1)[-1][:140]
                                      for r in failed})[:4],
    }


# -- (e) signals against `labctl run` in its own process ------------------------------------------

def signals(folder: Path, runs: int, rng: np.random.Generator, bound: float) -> dict:
    env = {**os.environ, "XDG_STATE_HOME": str(folder / "state")}
    station = folder / "lab.toml"
    server = subprocess.Popen([*LABCTL, "sim", "serve", "--base-port", "0", "--json", "--seed", "3", "--sim-state",
                               str(folder / "served.npz"), "--station-out", str(station)], env=env,
                              stdout=subprocess.PIPE, text=True)
    results = []
    try:
        json.loads(server.stdout.readline())
        config = load_station(str(station))
        direct = {role: inst.resource for role, inst in config.instruments.items()}
        for k in range(3 * runs):  # `runs` of each signal
            signum = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL][k % 3]
            out = folder / f"signal{k:03d}.h5"
            run = subprocess.Popen([*LABCTL, "run", "pulse_response", "--station", str(station), "--out", str(out),
                                    "--set", "n_pulses=20000", "--set", "cycles=1"], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            rows = _wait_for_rows(out)
            time.sleep(float(rng.uniform(0.0, 0.5)))
            before = _rows(out)
            t0 = time.monotonic()
            run.send_signal(signum)
            run.communicate(timeout=60)
            exit_s = time.monotonic() - t0
            (record,) = list_runs(out)
            after = int(record["datasets"]["trace"][0])
            entry = {"signal": signal.Signals(signum).name, "exit_code": run.returncode, "rows_before": before or rows,
                     "rows_in_file": after, "status": record["status"], "error": record["error"][:120],
                     "exit_s": exit_s, "unsafe_after": unsafe_at(direct)}
            if signum == signal.SIGKILL:  # nothing could run: the next open finds and fixes it
                os.environ["XDG_STATE_HOME"] = env["XDG_STATE_HOME"]  # where the killed run left its lock
                with Station.open(str(station)) as opened:
                    entry["next_open_reports_run"] = (opened.interrupted_run or {}).get("run_id") == record["run_id"]
                entry["status_after_next_open"] = list_runs(out)[0]["status"]
                entry["unsafe_after_next_open"] = unsafe_at(direct)
            results.append(entry)
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
    per: dict[str, dict] = {}
    for name in ("SIGINT", "SIGTERM", "SIGKILL"):
        rs = [r for r in results if r["signal"] == name]
        if not rs:
            continue
        killed = name == "SIGKILL"
        times = [r["exit_s"] for r in rs]
        per[name] = {
            "runs_tried": len(rs),
            "safe_state_reached": f"{sum(not (r['unsafe_after_next_open'] if killed else r['unsafe_after']) for r in rs)}"
                                  f"/{len(rs)}" + (" (after the next open)" if killed else ""),
            "rows_lost": sum(max(0, r["rows_before"] - r["rows_in_file"]) for r in rs),
            "status_recorded": f"{sum(r['status_after_next_open' if killed else 'status'] in (('interrupted',) if killed else ('aborted',)) for r in rs)}/{len(rs)}",
            "statuses": sorted({r["status_after_next_open" if killed else "status"] for r in rs}),
            "exit_codes": sorted({r["exit_code"] for r in rs}),
            "signal_to_exit_s": {"max": round(max(times), 3), "median": round(statistics.median(times), 3)},
        }
        if killed:
            per[name]["next_open_reports_run"] = f"{sum(r['next_open_reports_run'] for r in rs)}/{len(rs)}"
    return {"runs_tried": len(results), "per_signal": per}


def _rows(out: Path) -> int:
    try:
        return max(int(r["datasets"].get("trace", [0])[0]) for r in list_runs(out))
    except (OSError, KeyError, ValueError, RuntimeError):
        return 0


def _wait_for_rows(out: Path, deadline: float = 60.0) -> int:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if out.exists() and (n := _rows(out)) > 0:
            return n
        time.sleep(0.02)
    raise RuntimeError(f"{out}: no rows within {deadline} s")


# -- (f) the disk fills ---------------------------------------------------------------------------

def disk_full(folder: Path, runs: int, rng: np.random.Generator) -> dict:
    protocols = ["iv_sweep", "forming", "pulse_response"]
    appends = {p: _disk_run(folder, 1000 + k, p, "append", 1 << 30)["appends"] for k, p in enumerate(protocols)}
    results = []
    for k in range(runs):
        protocol = str(rng.choice(protocols))
        where = "finish" if k % 4 == 3 else "append"  # the disk fills at a random append, or at the end
        results.append(_disk_run(folder, k, protocol, where, int(rng.integers(0, appends[protocol]))))
    times = [r["after_fault_s"] for r in results if r["after_fault_s"] is not None]
    return {"runs_tried": len(results), "appends_per_clean_run": appends,
            "variants": {w: sum(r["where"] == w for r in results) for w in ("append", "finish")},
            "ended": {s: sum(r["status"] == s for r in results) for s in sorted({r["status"] for r in results})},
            "error_names_the_file_or_disk": f"{sum('No space' in r['error'] for r in results)}/{len(results)}",
            "safe_state_reached": f"{sum(not r['unsafe_after'] for r in results)}/{len(results)}",
            "rows_lost": sum(max(0, r["rows_reported"] - r["rows_in_file"]) for r in results),
            "status_recorded": f"{sum(r['file_status'] in ('failed', 'interrupted', 'completed') for r in results)}"
                               f"/{len(results)}",
            "file_statuses": sorted({r["file_status"] for r in results}),
            "after_fault_s": {"max": round(max(times), 3) if times else None,
                              "median": round(statistics.median(times), 3) if times else None}}


def _disk_run(folder: Path, k: int, protocol: str, where: str, limit: int) -> dict:
    """One run whose RunWriter.append fails (ENOSPC) after `limit` calls, or whose finish does."""
    out, state = folder / f"disk{k:03d}.h5", folder / f"chip{k:03d}.npz"
    real_append, real_finish = RunWriter.append, RunWriter.finish
    calls, failed_at, reported = [0], [0.0], [0]

    def append(self, name, rows):
        calls[0] += 1
        if calls[0] > limit:
            failed_at[0] = failed_at[0] or time.monotonic()
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_append(self, name, rows)

    def finish(self, *args, **kwargs):
        failed_at[0] = time.monotonic()
        raise OSError(errno.ENOSPC, "No space left on device")

    def count(table, columns):
        if table not in ("g_map", "formed_map", "v_form_map"):
            reported[0] += max(len(np.atleast_1d(v)) for v in columns.values())

    entry: dict = {"protocol": protocol, "where": where}
    with Station.open("sim", sim_state=state, seed=1) as station:
        if where == "append":
            RunWriter.append = append  # type: ignore[method-assign]
        else:
            RunWriter.finish = finish  # type: ignore[method-assign]
        try:
            result = run_protocol(station, protocol, EXPERIMENTS[protocol], out=out, subscribers=[count])
            entry["status"], entry["error"] = result.status, result.error[:120]
        except OSError as exc:
            entry["status"], entry["error"] = "raised", str(exc)[:160]
        finally:
            RunWriter.append, RunWriter.finish = real_append, real_finish  # type: ignore[method-assign]
        ended = time.monotonic()
        entry["unsafe_after"] = _unsafe_in_process(station.lab)
    record = list_runs(out)[0]
    entry["rows_in_file"] = sum(int(v[0]) for v in record["datasets"].values() if len(v) == 1)
    entry["rows_reported"] = reported[0]
    entry["file_status"] = record["status"]
    if where == "finish":  # the next open marks it
        with Station.open("sim", sim_state=state, seed=1):
            pass
        entry["file_status"] = list_runs(out)[0]["status"]
    entry["after_fault_s"] = ended - failed_at[0] if failed_at[0] else None
    entry["appends"] = calls[0]
    return entry


def _unsafe_in_process(lab) -> list[str]:
    """The in-process twins asked over their own protocols: SCPI lines, a STATUS frame."""
    from labctl.instruments.fpga_wire import Command, FrameDecoder, LineMode, encode_frame

    unsafe = [name for name, query in (("smu", b":OUTP?\n"), ("pulse", b":OUTP1?\n"))
              if lab.instrument(name).handle(query).strip() not in (b"0", b"OFF")]
    (reply,) = FrameDecoder().feed(lab.board.handle(encode_frame(0, Command.STATUS)))
    n = int.from_bytes(reply.payload[1:3], "little")
    modes, dac = np.frombuffer(reply.payload, np.uint8, n, 3), np.frombuffer(reply.payload, "<f4", n, 3 + n)
    if (modes != LineMode.GROUND).any() or dac.any():
        unsafe.append("board")
    return unsafe


def fuzz(examples: int) -> dict:
    env = {**os.environ, "LABCTL_BOARD_FUZZ_EXAMPLES": str(examples)}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "tests" / "faults" / "test_board_fuzz.py")], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    return {"examples_per_property": examples, "result": proc.stdout.strip().splitlines()[-1],
            "ok": proc.returncode == 0, "wall_s": round(time.monotonic() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per fault kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=1.0, help="every instrument's timeout in the station file")
    parser.add_argument("--kinds", default="a,b,c,d,e,f")
    parser.add_argument("--fuzz", type=int, default=0, help="examples per property of the board fuzzing (0: none)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    kinds = set(args.kinds.split(","))
    bound = args.timeout + 1.0
    report: dict = {"runs_per_kind": args.runs, "seed": args.seed, "timeout_s": args.timeout, "kinds": {}}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="labctl-faults-") as tmp:
        folder = Path(tmp)
        names = {"a": "kill", "b": "freeze", "c": "scpi", "d": "board"}
        if kinds & set(names):
            import logging

            logging.disable(logging.CRITICAL)  # the engine logs each failed run's traceback
            harness = Harness(folder / "labs", args.timeout)
            for key, kind in names.items():
                if key in kinds:
                    runs = [harness.one(*harness.random_fault(rng, kind)) for _ in range(args.runs)]
                    report["kinds"][f"({key}) {kind}"] = summarize(runs, bound)
        if "e" in kinds:
            (folder / "signals").mkdir()
            report["kinds"]["(e) signal"] = signals(folder / "signals", args.runs, rng, bound)
        if "f" in kinds:
            (folder / "disk").mkdir()
            report["kinds"]["(f) disk full"] = disk_full(folder / "disk", args.runs, rng)
        if args.fuzz:
            report["board_fuzz"] = fuzz(args.fuzz)
    report["wall_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
