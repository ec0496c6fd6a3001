"""The `labctl` command line."""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

from labctl.instruments.fpga import LineMode
from labctl.sim.lab import PULSE_TWINS, SMU_TWINS

from . import __version__
from .docgen import parameter_table, update_markdown
from .engine import RunControl, Terminated, get_protocol, prepare, run_protocol
from .params import ParameterError, parse_settings
from .registry import PROTOCOLS
from .safety import SafetyError
from .station import (
    Station,
    StationConfig,
    StationError,
    check_station,
    load_station,
    open_sim_lab,
    reset_sim_state,
    station_toml,
)
from .store import export_csv, list_runs

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 130, 143
BAD_INPUT = (ParameterError, SafetyError, StationError)


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


def _progress(label: str):
    """A one-line progress display on an interactive terminal; silent otherwise."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int, message: str) -> None:
        end = "\n" if done >= total else ""
        sys.stderr.write(f"\r\033[K[{label}] {done}/{total} {message}{end}")
        sys.stderr.flush()

    return show


def cmd_protocols(args) -> int:
    if args.update_docs:
        text = args.update_docs.read_text(encoding="utf-8")
        try:
            new = update_markdown(text, PROTOCOLS)
        except KeyError as exc:
            raise CliError(f"{args.update_docs}: a parameter block names no registered protocol: {exc}",
                           EXIT_USAGE) from None
        if new != text:
            args.update_docs.write_text(new, encoding="utf-8")
        print(f"{args.update_docs}: {'updated' if new != text else 'up to date'}")
        return 0
    if args.markdown:
        for protocol in PROTOCOLS.values():
            print(f"## `{protocol.name}` — {protocol.title}\n\n{parameter_table(protocol.parameters)}")
        return 0
    table: list[dict[str, Any]] = [
        {"name": p.name, "title": p.title, "parameters": [q.describe() for q in p.parameters]}
        for p in PROTOCOLS.values()]
    if args.json:
        print(json.dumps(table))
        return 0
    for proto in table:
        print(f"{proto['name']}: {proto['title']}")
        for q in proto["parameters"]:
            limits = "".join([f" min {q['min']:g}" if q["min"] is not None else "",
                              f" max {q['max']:g}" if q["max"] is not None else "",
                              f" (station limit {q['soa']})" if q["soa"] else ""])
            unit = f" {q['unit']}" if q["unit"] else ""
            print(f"  {q['name']:<14} {q['type']:<6} default {q['default']}{unit}{limits}  {q['doc']}")
    return 0


def cmd_run(args) -> int:
    protocol = get_protocol(args.protocol)
    values = parse_settings(args.set or [])
    out = args.out or Path("labctl_data") / f"{date.today():%Y%m%d}.h5"
    config = _station_config(args)
    prepare(protocol, values, config)  # bad input fails here, before any instrument is touched
    control, signals = RunControl(), list[int]()

    def stop(signum, frame) -> None:
        """The first Ctrl-C / SIGTERM ends the run at its next checkpoint (a KeyboardInterrupt
        raised at any bytecode can land where Python ignores it, e.g. a weakref callback); a
        second one raises at once."""
        if signals:
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        signals.append(signum)
        control.abort("terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted (Ctrl-C)")

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Station(config, sim_state=args.sim_state, seed=args.seed, record=args.record) as station:
            result = run_protocol(station, protocol, values, out=out, progress=_progress(protocol.name),
                                  control=control)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if signals:
        raise Terminated if signals[0] == signal.SIGTERM else KeyboardInterrupt
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        print(f"{result.protocol} {result.status}: run {result.run_id} in {result.file}")
        for key, value in result.summary.items():
            if not isinstance(value, list):
                print(f"  {key} = {value}")
    if result.status != "completed":
        raise CliError(f"run {result.run_id} {result.status}: {result.error} (data kept in {result.file})")
    return 0


def cmd_replay(args) -> int:
    import tempfile

    from .record import ReplayMismatch, replay

    with tempfile.TemporaryDirectory() as tmp:
        try:
            result = replay(args.recording, args.out or Path(tmp) / "replay.h5")
        except ReplayMismatch as exc:
            raise CliError(f"replay of {args.recording} differs: {exc}") from None
        except ValueError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
    print(f"{args.recording}: {result.protocol} replayed, the same bytes and result ({result.status})")
    return 0


def cmd_demo(args) -> int:
    from .demo import describe, run_demo

    results = run_demo(args.out, args.seed, progress=_progress("demo"))
    if args.json:
        print(json.dumps({"file": results[0].file, "runs": [r.as_dict() for r in results]}))
    else:
        print(describe(results))
    failed = [r for r in results if r.status != "completed"]
    if failed:
        raise CliError(f"demo step {failed[0].protocol} {failed[0].status}: {failed[0].error}")
    return 0


def cmd_data_ls(args) -> int:
    runs = list_runs(args.file)
    if args.json:
        print(json.dumps(runs))
        return 0
    for run in runs:
        sets = ", ".join(f"{k}{tuple(v)}" for k, v in run["datasets"].items())
        error = f"  error: {run['error']}" if run["error"] else ""
        print(f"{run['run_id']:<20} {run['status']:<10} {run['started']}  {sets}{error}")
    return 0


def cmd_data_export(args) -> int:
    if not (args.csv or args.netcdf):
        raise CliError("data export: give --csv DIR and/or --netcdf FILE.nc", EXIT_USAGE)
    if args.csv:
        for path in export_csv(args.file, args.run_id, args.csv):
            print(path)
    if args.netcdf:
        try:
            from .analysis import export_netcdf
            print(export_netcdf(args.file, args.run_id, args.netcdf))
        except ImportError as exc:
            raise CliError(f"--netcdf needs xarray and h5netcdf (pip install 'labctl[analysis]'): {exc}") from None
    return 0


def cmd_data_plot(args) -> int:
    from .plots import plot_run  # matplotlib is imported only by this command

    print(plot_run(args.file, args.run_id, args.out))
    return 0


def cmd_sim_reset(args) -> int:
    config = _station_config(args)
    if not config.simulated:
        raise CliError(f"station {args.station} is not simulated", EXIT_USAGE)
    print(f"simulated chip reset to pristine: {reset_sim_state(config, args.sim_state)}")
    return 0


def cmd_sim_serve(args) -> int:
    import tempfile

    from labctl.sim.virtual_lab import VirtualLabServer

    config = _station_config(args)
    if not config.simulated:
        raise CliError(f"station {args.station} is not simulated", EXIT_USAGE)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"labctl: warning: serving the virtual lab on {args.host}: anyone who can reach it there can "
              f"drive its instruments (there is no authentication)", file=sys.stderr)
    lab, state = open_sim_lab(config, args.sim_state, args.seed, args.smu, args.pulse)
    server = VirtualLabServer(lab, args.host, args.base_port, state)
    try:
        out = Path(args.station_out) if args.station_out else Path(tempfile.mkstemp(suffix=".toml")[1])
        roles = {e.name: (e.model, e.resource) for e in server.endpoints if e.name != "control"}
        out.write_text(station_toml(config, roles, f"virtual lab ({config.name})", server.resource("control")))
        if args.json:
            print(json.dumps({"instruments": [e.__dict__ for e in server.endpoints],
                              "station_file": str(out.resolve())}), flush=True)
        else:
            for e in server.endpoints:
                print(f"{e.name} {e.model} {e.resource}")
            print(f"station file: {out.resolve()}\nCtrl-C stops the virtual lab.", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (Terminated)
        pass
    finally:
        server.close()
    return 0


def cmd_sim_fit(args) -> int:
    from .fit import FitError, fit_command

    try:
        print(fit_command(args.file, args.runs, args.out, args.base, args.validate, args.figure, args.seed,
                          args.json, args.sim_out))
    except FitError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    return 0


def cmd_gui(args) -> int:
    """The Qt GUI; imported only here, so every other command works without Qt installed."""
    config = _station_config(args)
    try:
        import PyQt6.QtWidgets  # noqa: F401
        import pyqtgraph  # noqa: F401

        from labctl.gui.app import main as gui_main
    except ImportError as exc:
        raise CliError(f"the GUI needs PyQt6 and pyqtgraph (pip install 'labctl[gui]'): {exc}") from None
    return gui_main(args, config)


def _station_config(args) -> StationConfig:
    """The station named by --station, with --device swapping the simulator's device file."""
    config = load_station(args.station)
    if getattr(args, "device", None):
        if not Path(args.device).is_file():
            raise StationError(f"--device {args.device}: no such file")
        config = replace(config, device_file=args.device)
    return config


def _terminate(*_) -> None:
    raise Terminated


def cmd_board(args) -> int:
    with Station.open(args.station, sim_state=args.sim_state) as station:
        if args.board_command == "route":
            row, col = _cell(args.cell)
            station.crossbar.connect_cell(row, col, args.gate)
        elif args.board_command == "release":
            station.safe_state()
        chip = station.config.chip
        modes, dac = station.board.status()
        for kind, channels in (("WL", chip.wl_channels), ("BL", chip.bl_channels), ("SL", chip.sl_channels)):
            for index, ch in enumerate(channels):
                mode = LineMode(int(modes[ch])).name
                level = f" {dac[ch]:+.3f} V" if mode == "DAC" else ""
                print(f"{kind}{index + 1:<4} channel {ch:<4} {mode}{level}")
    return 0


def _cell(text: str) -> tuple[int, int]:
    try:
        row, col = (int(x) for x in text.split(","))
    except ValueError:
        raise CliError(f"--cell expects ROW,COL (0-based), got {text!r}", EXIT_USAGE) from None
    return row, col


def cmd_station_check(args) -> int:
    report = check_station(load_station(args.file))
    if args.json:
        print(json.dumps(report))
    else:
        color = sys.stdout.isatty()
        mark = {True: "\033[32mok\033[0m" if color else "ok", False: "\033[31mFAIL\033[0m" if color else "FAIL"}
        width = max(len(e["check"]) for e in report)
        for e in report:
            print(f"{mark[e['ok']]:<4} {e['role']:<6} {e['driver']:<16} {e['check']:<{width}}  {e['resource']}  "
                  f"{e['detail']}")
    failed = sorted({e["role"] for e in report if not e["ok"]})
    if failed:
        raise CliError(f"station check failed for: {', '.join(failed)}")
    return 0


def _study_progress():
    """The study's progress: one refreshed line on a terminal, a line per finished point otherwise;
    the Dask dashboard's address once, when there is one."""
    shown = {"dashboard": False, "finished": -1}
    tty = sys.stderr.isatty()
    clear = "\r\033[K" if tty else ""

    def show(progress) -> None:
        if progress.dashboard and not shown["dashboard"]:
            shown["dashboard"] = True
            sys.stderr.write(f"{clear}Dask dashboard: {progress.dashboard}\n")
        finished = progress.completed + progress.failed
        if tty:
            sys.stderr.write(f"{clear}[study] {progress.line()}")
        elif finished != shown["finished"]:
            sys.stderr.write(f"[study] {progress.line()}\n")
        shown["finished"] = finished
        sys.stderr.flush()

    return show


def _study_call(run, args, out) -> int:
    """Run a study into results file `out` (`run` calls run_study or resume_study) and report it;
    the exit code is 1 when a point failed, 130 / 143 when interrupted (what finished is kept)."""
    from .study import StudyError

    try:  # Dask's own INFO lines (cluster start and stop) only with -v
        import distributed  # noqa: F401

        logging.getLogger("distributed").setLevel(logging.INFO if args.verbose else logging.WARNING)
    except ImportError:
        pass
    try:
        result = run(scheduler=args.scheduler, workers=args.workers, serial=args.serial,
                     processes=not args.threads, progress=_study_progress())
    except StudyError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except KeyboardInterrupt as exc:
        if sys.stderr.isatty():
            sys.stderr.write("\n")
        code = EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
        raise CliError(f"study interrupted; the points that finished are kept in {out}: `labctl study "
                       f"resume {out}` runs the rest", code) from None
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        print(f"study {result.name}: {result.total} points, {result.completed} completed, {result.failed} failed, "
              f"{result.pending} pending ({result.ran} run now on {result.scheduler}, {result.skipped} finished "
              f"before) in {result.wall_s:.1f} s: {result.file}")
    if result.failed:
        raise CliError(f"{result.failed} of {result.total} points failed (labctl study status {result.file})")
    return 0


def cmd_study_run(args) -> int:
    from .study import StudyError, load_study, run_study
    from .study.runner import default_out

    try:
        study = load_study(args.study)
    except StudyError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    out = Path(args.out) if args.out else default_out(study)
    return _study_call(lambda **kw: run_study(study, out, overwrite=args.overwrite, data_dir=args.data_dir, **kw),
                       args, out)


def cmd_study_resume(args) -> int:
    from .study import resume_study

    return _study_call(lambda **kw: resume_study(args.file, retry_failed=args.retry_failed, **kw), args, args.file)


def cmd_study_check(args) -> int:
    from .study import StudyError, load_study

    try:
        study = load_study(args.study)
    except StudyError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    axes = {axis.name: list(axis.values) for axis in study.axes}
    if args.json:
        print(json.dumps({"name": study.name, "station": study.station, "points": len(study.points),
                          "steps": [s.name for s in study.steps], "axes": axes, "listed": study.listed}))
        return 0
    print(f"study {study.name}: {len(study.points)} points on {study.station}, steps "
          f"{' -> '.join(s.name for s in study.steps)}")
    for axis in study.axes:
        sets = ", ".join(m for m in axis.members if m != axis.name)
        print(f"  {axis.name}: {', '.join(map(str, axis.values))}" + (f" (sets {sets})" if sets else ""))
    if study.listed:
        print(f"  listed points set: {', '.join(study.listed)}")
    return 0


def cmd_study_status(args) -> int:
    from .study import StudyError, study_status

    try:
        status = study_status(args.file)
    except StudyError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if args.json:
        print(json.dumps(status))
        return 0
    print(f"study {status['name']} ({status['file']}, started {status['created']}): {status['total']} points, "
          f"{status['completed']} completed, {status['failed']} failed, {status['pending']} pending")
    for failure in status["failures"]:
        print(f"  point {failure['index']} {failure['coords']}: {failure['error']}")
    if status["pending"] or status["failed"]:
        print(f"`labctl study resume {args.file}` runs the pending points"
              f"{' (--retry-failed: the failed ones too)' if status['failed'] else ''}")
    return 0


def cmd_study_plot(args) -> int:
    from .params import parse_cli_value
    from .study import StudyError
    from .study.plots import plot_study

    try:
        select = {name: parse_cli_value(text) for name, _, text in (pair.partition("=") for pair in args.sel or [])}
        print(plot_study(args.file, args.out, args.metric, args.x, args.hue, select, "map" if args.map else "lines"))
    except StudyError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labctl", description="Control suite for an analog ReRAM AI chip "
                                     "(1T1R CMO/HfOx array on an FPGA board), on a bench or simulated.")
    parser.add_argument("--version", action="version", version=f"labctl {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def station_options(p, state=True):
        p.add_argument("--station", default="sim", help="sim, sim:ROWSxCOLS or a station .toml file (default sim)")
        if state:
            p.add_argument("--sim-state", metavar="FILE", help="simulated chip state file (default: per station "
                           "under the user's state directory)")
            p.add_argument("--device", metavar="FILE", help="simulator device-parameter file (TOML, like "
                           "sim_backend/device_cmo_hfox.toml)")

    p = sub.add_parser("protocols", help="list protocols and their parameters")
    p.add_argument("--json", action="store_true")
    p.add_argument("--markdown", action="store_true", help="each protocol's parameter table in Markdown")
    p.add_argument("--update-docs", metavar="FILE.md", type=Path,
                   help="regenerate the parameter tables between <!-- parameters NAME --> markers in FILE.md")
    p.set_defaults(func=cmd_protocols)

    p = sub.add_parser("run", help="run one protocol")
    p.add_argument("protocol")
    station_options(p)
    p.add_argument("--out", metavar="FILE.h5", help="HDF5 file (default labctl_data/YYYYMMDD.h5)")
    p.add_argument("--seed", type=int, help="simulator seed (deterministic runs)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE", help="parameter value (JSON or text)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    p.add_argument("--record", metavar="FILE.jsonl", help="record every byte exchanged with the instruments "
                   "(labctl/record.py); `labctl replay FILE` turns it into a test")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("replay", help="run a recorded protocol again on its recording: same bytes out, same result")
    p.add_argument("recording", type=Path)
    p.add_argument("--out", metavar="FILE.h5", type=Path, help="HDF5 file of the replayed run (default: a temp file)")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("gui", help="the Qt GUI: station, protocols with live plots, chip map, data browser")
    station_options(p)
    p.add_argument("--out", metavar="FILE.h5", help="session HDF5 file (default labctl_data/YYYYMMDD.h5)")
    p.add_argument("--seed", type=int, help="simulator seed (deterministic runs)")
    p.add_argument("--run", metavar="PROTOCOL", help="start this protocol once the window is up")
    p.add_argument("--set", action="append", metavar="NAME=VALUE", help="parameter value for --run (JSON or text)")
    p.add_argument("--screenshot", metavar="FILE.png", help="save the window as PNG after the run ends")
    p.add_argument("--exit", action="store_true", help="exit after the run (and screenshot) with the run's "
                   "status code: 0 completed, 1 aborted or failed, 2 refused input")
    p.set_defaults(func=cmd_gui)

    p = sub.add_parser("demo", help="form, map and I-V a fresh simulated chip into one file")
    p.add_argument("--out", default="labctl_demo", metavar="DIR", help="output folder (default labctl_demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_demo)

    data = sub.add_parser("data", help="look into HDF5 files").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("ls", help="list the runs in a file")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data_ls)
    p = data.add_parser("export", help="export a run's datasets as CSV files and/or one netCDF file")
    p.add_argument("file")
    p.add_argument("run_id")
    p.add_argument("--csv", metavar="DIR", help="one CSV per dataset (header `name [unit]`) and run.json")
    p.add_argument("--netcdf", metavar="FILE.nc", help="the run as an xarray Dataset in netCDF-4 (labctl.analysis)")
    p.set_defaults(func=cmd_data_export)
    p = data.add_parser("plot", help="draw a run's standard figure as PNG")
    p.add_argument("file")
    p.add_argument("run_id")
    p.add_argument("--out", required=True, metavar="FIG.png")
    p.set_defaults(func=cmd_data_plot)

    sim = sub.add_parser("sim", help="the simulated lab").add_subparsers(dest="sim_command", required=True)
    p = sim.add_parser("reset", help="return the simulated chip to pristine")
    station_options(p)
    p.set_defaults(func=cmd_sim_reset)
    p = sim.add_parser("serve", help="serve the simulated bench on loopback TCP (VISA sockets, socket://)")
    station_options(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default loopback only; another address is reachable from the network)")
    p.add_argument("--base-port", type=int, default=5025,
                   help="smu, pulse, board, control on consecutive ports (0: any free ports)")
    p.add_argument("--seed", type=int)
    p.add_argument("--smu", choices=sorted(SMU_TWINS), help="SMU twin (default: the station's)")
    p.add_argument("--pulse", choices=sorted(PULSE_TWINS), help="pulse-generator twin (default: the station's)")
    p.add_argument("--station-out", metavar="FILE", help="where to write the station file (default: a temp file)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sim_serve)
    p = sim.add_parser("fit", help="fit the simulator's device file to characterization runs (docs/sim-fit.md)")
    p.add_argument("file", metavar="RUNS.h5")
    p.add_argument("--runs", nargs="+", metavar="RUN_ID", help="the runs to fit (default: every completed forming, "
                   "pulse_response, read_noise, retention and write_verify run)")
    p.add_argument("--out", metavar="DEVICE.toml", help="write the fitted device file here")
    p.add_argument("--base", metavar="DEVICE.toml", help="device file whose values the runs do not constrain "
                   "are kept (default: the packaged one)")
    p.add_argument("--validate", action="store_true", help="run the same protocols on the fitted simulator and "
                   "compare them with the measured runs")
    p.add_argument("--figure", metavar="FIG.png", help="the validation's overlay figure (default: next to --out, else to RUNS.h5)")
    p.add_argument("--sim-out", metavar="FILE.h5", help="keep the validation's simulated runs here")
    p.add_argument("--seed", type=int, default=0, help="the validation chip's seed")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sim_fit)

    board = sub.add_parser("board", help="manual routing on the FPGA board").add_subparsers(
        dest="board_command", required=True)
    p = board.add_parser("route", help="connect one cell between the SMU input and ground, gate on")
    station_options(p)
    p.add_argument("--cell", required=True, metavar="ROW,COL")
    p.add_argument("--gate", type=float, default=1.2, metavar="VOLTS")
    p.set_defaults(func=cmd_board)
    for name, text in (("release", "every line to the safe state"), ("status", "print the routing")):
        p = board.add_parser(name, help=text)
        station_options(p)
        p.set_defaults(func=cmd_board)

    st = sub.add_parser("station", help="station files").add_subparsers(dest="station_command", required=True)
    p = st.add_parser("check", help="connect to every instrument and print its identity (no voltage applied)")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_station_check)
    study = sub.add_parser("study", help="device studies: a grid of simulated chips and protocols, on Dask "
                           "(docs/studies/README.md)").add_subparsers(dest="study_command", required=True)

    def dask_options(p):
        p.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="an existing Dask cluster's scheduler "
                       "(default: a LocalCluster on this machine)")
        p.add_argument("--workers", type=int, metavar="N", help="LocalCluster workers (default: the cores)")
        p.add_argument("--threads", action="store_true", help="LocalCluster workers as threads of this process")
        p.add_argument("--serial", action="store_true", help="run the points one after another here, without Dask")
        p.add_argument("--json", action="store_true", help="print the result as one JSON line")

    p = study.add_parser("run", help="run every point of a study file into one HDF5 results file")
    p.add_argument("study", metavar="STUDY.toml")
    p.add_argument("--out", metavar="FILE.h5", help="results file (default labctl_data/<study>.h5)")
    p.add_argument("--data-dir", metavar="DIR", help="each point's run data (default: the results file's name "
                   "with .runs; on a cluster, a folder every worker can write)")
    p.add_argument("--overwrite", action="store_true", help="start again over an existing results file")
    dask_options(p)
    p.set_defaults(func=cmd_study_run)
    p = study.add_parser("resume", help="run the points a results file lacks (after an interruption)")
    p.add_argument("file", metavar="FILE.h5")
    p.add_argument("--retry-failed", action="store_true", help="run the failed points again too")
    dask_options(p)
    p.set_defaults(func=cmd_study_resume)
    p = study.add_parser("check", help="check a study file and count its points; nothing runs")
    p.add_argument("study", metavar="STUDY.toml")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_study_check)
    p = study.add_parser("status", help="points completed, failed and pending in a results file")
    p.add_argument("file", metavar="FILE.h5")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_study_status)
    p = study.add_parser("plot", help="a metric against one or two axes, mean and spread over seeds, as PNG")
    p.add_argument("file", metavar="FILE.h5")
    p.add_argument("--metric", action="append", required=True, help="a summary column, e.g. mvm_1s.rmse_forward "
                   "(repeat for one panel each)")
    p.add_argument("--x", required=True, metavar="AXIS", help="the axis along x")
    p.add_argument("--hue", metavar="AXIS", help="one line per value of this axis")
    p.add_argument("--map", action="store_true", help="a map over --x and --hue instead of lines")
    p.add_argument("--sel", action="append", metavar="AXIS=VALUE", help="fix another axis at one value")
    p.add_argument("--out", required=True, metavar="FIG.png")
    p.set_defaults(func=cmd_study_plot)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return args.func(args)
    except BAD_INPUT as exc:
        code, message = EXIT_USAGE, str(exc)
    except CliError as exc:
        code, message = exc.code, str(exc)
    except Terminated:
        code, message = EXIT_TERMINATED, "terminated (SIGTERM); the station was put in its safe state"
    except KeyboardInterrupt:
        code, message = EXIT_INTERRUPTED, "interrupted; the station was put in its safe state"
    except (OSError, KeyError, RuntimeError, IndexError) as exc:
        code, message = EXIT_FAILED, f"{type(exc).__name__}: {exc}"
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print(f"labctl: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
