"""A station: instruments with their addresses, the chip map and the safe operating area.

Built from a TOML station file, or from the built-in simulated lab (`sim`, `sim:ROWSxCOLS`).
Resources `sim://NAME` reach the simulated lab in-process; device paths and pyserial URLs
(`socket://`, `loop://`) go through pyserial; anything else is a VISA resource string.
"""
from __future__ import annotations

import difflib
import json
import logging
import os
import re
import sys
import tomllib
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from labctl.instruments import DRIVERS, driver_class
from labctl.instruments.fpga import LINK_BAUD, FpgaBoard, LineMode
from labctl.instruments.fpga_wire import DAC_LIMIT
from labctl.instruments.smu import SourceMeter
from labctl.instruments.transport import (
    InProcessTransport,
    SerialTransport,
    Transport,
    VisaTransport,
    is_serial_resource,
)

from .clocks import Clock, RemoteSimulatedClock, SimulatedClock, WallClock
from .crossbar import Crossbar
from .lock import StationLock
from .record import Recorder, RecordingClock, RecordingTransport
from .safety import SafeOperatingArea
from .store import mark_interrupted

if TYPE_CHECKING:
    from labctl.sim.lab import SimLab

log = logging.getLogger(__name__)
ROLES = ("smu", "board", "pulse")
REQUIRED_ROLES = ("smu", "board")
_SIM_SPEC = re.compile(r"^sim(?::(\d+)x(\d+))?$")


class StationError(ValueError):
    """A station file is missing a key, has an unknown one, or a bad value; names key and file."""


@dataclass(frozen=True)
class ChipMap:
    """Array size and the board channel of every chip line; arrays are (rows, cols) = (WL, BL/SL)."""

    name: str
    rows: int
    cols: int
    wl_channels: tuple[int, ...]
    bl_channels: tuple[int, ...]
    sl_channels: tuple[int, ...]

    @classmethod
    def default_layout(cls, rows: int, cols: int, name: str = "") -> ChipMap:
        """WL on channels 0..rows-1, then the BLs, then the SLs."""
        return cls(name or f"virtual {rows}x{cols} 1T1R array", rows, cols, tuple(range(rows)),
                   tuple(range(rows, rows + cols)), tuple(range(rows + cols, rows + 2 * cols)))


@dataclass(frozen=True)
class InstrumentConfig:
    driver: str
    resource: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StationConfig:
    name: str
    source: str
    instruments: dict[str, InstrumentConfig]
    chip: ChipMap
    soa: SafeOperatingArea
    device_file: str = ""
    sim_control: str = ""  # HOST:PORT of a virtual lab's simulator-control port

    @property
    def simulated(self) -> bool:
        return any(i.resource.startswith("sim://") for i in self.instruments.values())

    def snapshot(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source,
                "instruments": {k: {"driver": v.driver, "resource": v.resource, **v.options}
                                for k, v in self.instruments.items()},
                "chip": {"name": self.chip.name, "rows": self.chip.rows, "cols": self.chip.cols,
                         "wl_channels": list(self.chip.wl_channels),
                         "bl_channels": list(self.chip.bl_channels),
                         "sl_channels": list(self.chip.sl_channels)},
                "safe_operating_area": self.soa.as_dict()}


def _table(doc: dict, key: str, where: str, required: AbstractSet[str],
           optional: AbstractSet[str] = frozenset()) -> dict:
    section = doc.get(key)
    if not isinstance(section, dict):
        raise StationError(f"{where}: missing section [{key}]")
    allowed = required | optional
    for name in sorted(section.keys() - allowed):
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"expected {', '.join(sorted(allowed))}"
        raise StationError(f"{where}: [{key}] has unknown key '{name}' ({hint})")
    for name in sorted(required - section.keys()):
        raise StationError(f"{where}: [{key}] is missing key '{name}'")
    return section


def _checked(value: Any, kind: str, where: str) -> Any:
    """`value` if it is a TOML value of `kind` (string, integer >= 0, integer >= 1, positive number),
    else a StationError naming the key (`where`: file, section and key)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = {"string": isinstance(value, str),
          "integer >= 0": number and isinstance(value, int) and value >= 0,
          "integer >= 1": number and isinstance(value, int) and value >= 1,
          "positive number": number and 0 < value <= sys.float_info.max}[kind]  # not NaN, inf nor 10**400
    if not ok:
        raise StationError(f"{where} must be a {kind}, got {value!r}")
    return value


def _channels(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise StationError(f"{where} must be a list of board channels (integers >= 0), got {value!r}")
    return tuple(_checked(c, "integer >= 0", f"{where} entry") for c in value)


def parse_station(doc: dict, where: str) -> StationConfig:
    """Validate a parsed station TOML document; errors name the key and the file."""
    for name in doc.keys() - {"station", "instruments", "chip", "safe_operating_area", "simulator"}:
        raise StationError(f"{where}: unknown section [{name}]")
    station = _table(doc, "station", where, {"name"})
    instruments_doc = doc.get("instruments")
    if not isinstance(instruments_doc, dict):
        raise StationError(f"{where}: missing section [instruments]")
    instruments = {}
    for role in ROLES:
        if role not in instruments_doc and role not in REQUIRED_ROLES:
            continue
        entry = _table(instruments_doc, role, f"{where}: [instruments]", {"driver", "resource"},
                       {"timeout", "baudrate", "channel"})
        known = [name for name, (_, _, kind) in DRIVERS.items() if kind == role]
        section = f"{where}: [instruments.{role}]"
        if not isinstance(entry["driver"], str) or entry["driver"] not in known:
            raise StationError(f"{where}: [instruments.{role}] driver '{entry['driver']}' is unknown "
                               f"(known: {', '.join(known)})")
        if not _checked(entry["resource"], "string", f"{section} resource"):
            raise StationError(f"{section} resource is empty")
        for key in ("timeout", "baudrate"):
            if key in entry:
                _checked(entry[key], "positive number", f"{section} {key}")
        if "channel" in entry and not isinstance(entry["channel"], str):
            _checked(entry["channel"], "integer >= 1", f"{section} channel")
        options = {k: v for k, v in entry.items() if k not in ("driver", "resource")}
        instruments[role] = InstrumentConfig(entry["driver"], entry["resource"], options)
    for role in instruments_doc.keys() - set(ROLES):
        raise StationError(f"{where}: unknown instrument [instruments.{role}] (roles: {', '.join(ROLES)})")
    chip_doc = _table(doc, "chip", where, {"rows", "cols", "wl_channels", "bl_channels", "sl_channels"},
                      {"name"})
    chip = ChipMap(_checked(chip_doc.get("name", ""), "string", f"{where}: [chip] name"),
                   *(_checked(chip_doc[k], "integer >= 1", f"{where}: [chip] {k}") for k in ("rows", "cols")),
                   *(_channels(chip_doc[k], f"{where}: [chip] {k}") for k in ("wl_channels", "bl_channels", "sl_channels")))
    for key, n in (("wl_channels", chip.rows), ("bl_channels", chip.cols), ("sl_channels", chip.cols)):
        if len(getattr(chip, key)) != n:
            raise StationError(f"{where}: [chip] {key} must list {n} channels, has {len(getattr(chip, key))}")
    used = chip.wl_channels + chip.bl_channels + chip.sl_channels
    if len(set(used)) != len(used):
        raise StationError(f"{where}: [chip] a board channel is assigned to two lines")
    soa_doc = _table(doc, "safe_operating_area", where, set(SafeOperatingArea.REQUIRED),
                     set(SafeOperatingArea.DESCRIPTIONS) - set(SafeOperatingArea.REQUIRED))
    soa = SafeOperatingArea(**{k: float(_checked(v, "positive number", f"{where}: [safe_operating_area] {k}"))
                               for k, v in soa_doc.items()})
    sim = _table(doc, "simulator", where, set(), {"device", "control"}) if "simulator" in doc else {}
    for key in sim:
        _checked(sim[key], "string", f"{where}: [simulator] {key}")
    return StationConfig(_checked(station["name"], "string", f"{where}: [station] name"), where, instruments, chip,
                         soa, sim.get("device", ""), sim.get("control", ""))


def load_station(spec: str) -> StationConfig:
    """`sim`, `sim:ROWSxCOLS` or the path of a station TOML file."""
    match = _SIM_SPEC.match(spec)
    if match:
        text = resources.files("labctl").joinpath("stations/sim.toml").read_text()
        config = parse_station(tomllib.loads(text), "built-in station 'sim'")
        if match.group(1):
            rows, cols = int(match.group(1)), int(match.group(2))
            if rows < 1 or cols < 1:
                raise StationError(f"station {spec}: rows and cols must be >= 1")
            config = replace(config, name=spec, chip=ChipMap.default_layout(rows, cols))
        return config
    path = Path(spec)
    if not path.is_file():
        raise StationError(f"station {spec!r}: no such file (use sim, sim:ROWSxCOLS or a .toml file)")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))  # TOML is UTF-8, whatever the locale
    except UnicodeDecodeError as exc:
        raise StationError(f"{path}: not a UTF-8 text file ({exc})") from exc
    except ValueError as exc:  # TOMLDecodeError, and tomllib's ValueError for an integer of > 4300 digits
        raise StationError(f"{path}: not valid TOML ({exc})") from exc
    return parse_station(doc, str(path))


def _state_dir() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "labctl"


def _tag(config: StationConfig) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", config.name)


def default_sim_state(config: StationConfig) -> Path:
    """Per-station chip state under the user's state directory."""
    return _state_dir() / f"{_tag(config)}-{config.chip.rows}x{config.chip.cols}.npz"


def lock_path(config: StationConfig, sim_state: str | os.PathLike | None = None) -> Path:
    """The station's lock file (labctl/lock.py): beside a simulated chip's state file, else under
    the user's state directory."""
    if config.simulated:
        state = Path(sim_state) if sim_state else default_sim_state(config)
        return state.with_name(state.name + ".lock")
    return _state_dir() / f"{_tag(config)}.lock"


def _make_driver(role: str, inst: InstrumentConfig, transport: Transport):
    """The driver of one station entry; `channel` (e.g. 2 on a B2902A, "b" on a 2602B) if given."""
    extra = {"channel": inst.options["channel"]} if "channel" in inst.options else {}
    return driver_class(inst.driver)(transport, name=role, **extra)


def _open_transport(inst: InstrumentConfig) -> Transport:
    timeout = float(inst.options.get("timeout", 5.0))
    if is_serial_resource(inst.resource):
        return SerialTransport(inst.resource, int(inst.options.get("baudrate", LINK_BAUD)), timeout)
    return VisaTransport(inst.resource, timeout)


class Station:
    """Connected instruments plus the crossbar built on them. Use as a context manager.

    `record`: a file that receives every byte exchanged with the instruments (labctl/record.py);
    `transports`: {role: Transport} to use instead of opening the configured resources (a replay)."""

    def __init__(self, config: StationConfig, sim_state: str | os.PathLike | None = None,
                 seed: int | None = None, record: str | os.PathLike | None = None,
                 transports: dict[str, Transport] | None = None):
        self.config = config
        self.recorder: Recorder | None = None
        self._given = transports
        self.lab: SimLab | None = None
        self.sim_state: Path | None = None
        self.seed = seed
        self.clock: Clock = RemoteSimulatedClock(config.sim_control) if config.sim_control else WallClock()
        self.drivers: dict[str, Any] = {}
        self.identities: dict[str, str] = {}
        self.lock = StationLock(lock_path(config, sim_state), config.name)
        self.lock.acquire()
        self.interrupted_run: dict[str, Any] | None = self._report_interrupted_run()
        try:
            if config.simulated and transports is None:
                self.lab, self.sim_state = open_sim_lab(config, sim_state, seed)
                self.clock = SimulatedClock(self.lab.physics.clock)
            if record is not None:
                self.recorder = Recorder(record, {"station_toml": config_toml(config),
                                                  "started": datetime.now(UTC).isoformat(timespec="seconds")})
                self.clock = RecordingClock(self.clock, self.recorder)
            for role, inst in config.instruments.items():
                transport = self._transport(role, inst)
                if self.recorder is not None:
                    transport = RecordingTransport(transport, role, self.recorder)
                driver = _make_driver(role, inst, transport)
                self.drivers[role] = driver
                self.identities[role] = driver.check_identity()
            chip = config.chip
            self.board.configure_map(chip.wl_channels, chip.bl_channels, chip.sl_channels)
            self.crossbar = Crossbar(self.smu, self.board, chip, config.soa, self.drivers.get("pulse"))
            self.found_live = self._live_outputs()
            if self.found_live:
                log.warning("station %s: found %s on opening; putting it in the safe state", config.name,
                            "; ".join(self.found_live))
                self.safe_state()
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(cls, spec: str = "sim", sim_state: str | os.PathLike | None = None,
             seed: int | None = None) -> Station:
        """Open a station by spec: `sim`, `sim:ROWSxCOLS` or a station file."""
        return cls(load_station(spec), sim_state, seed)

    @property
    def smu(self) -> SourceMeter:
        return self.drivers["smu"]

    @property
    def board(self) -> FpgaBoard:
        return self.drivers["board"]

    def _transport(self, role: str, inst: InstrumentConfig) -> Transport:
        if self._given is not None:
            return self._given[role]
        if inst.resource.startswith("sim://"):
            if self.lab is None:
                raise StationError(f"{inst.resource}: a sim:// instrument needs the simulated lab")
            return InProcessTransport(self.lab.instrument(inst.resource[len("sim://"):]), inst.resource)
        return _open_transport(inst)

    def wait(self, seconds: float, checkpoint=lambda: None) -> None:
        """Let `seconds` pass: on a simulated chip in virtual time (10 years cost nothing), on a
        bench in real time, calling `checkpoint` (pause/abort) at least once a second."""
        if seconds < 0:
            raise ValueError(f"wait: seconds must be >= 0, got {seconds}")
        self.clock.wait(seconds, checkpoint)
        checkpoint()

    def safe_state(self) -> None:
        """Every source of the station at 0 V with its output off, every board line grounded."""
        self.crossbar.safe_state()

    def run_started(self, protocol: str, file: str | os.PathLike, run_id: str, parameters: dict[str, Any]) -> None:
        """The engine's note of the run in progress (kept in the lock file until run_ended, and
        in the recording if there is one)."""
        self.lock.run_started(protocol, file, run_id)
        if self.recorder is not None:
            self.recorder.run(protocol, parameters)

    def run_ended(self, status: str, summary: dict[str, Any], error: str) -> None:
        self.lock.run_ended()
        if self.recorder is not None:
            self.recorder.result(status, summary, error)

    def _report_interrupted_run(self) -> dict[str, Any] | None:
        """The run a killed holder of this station left unfinished, marked `interrupted` in its file."""
        run = self.lock.left_behind.get("run")
        if not run:
            return None
        reason = (f"interrupted: process {self.lock.left_behind.get('pid', '?')} ended without closing the "
                  f"run (killed?); the rows flushed before are kept")
        try:
            marked = mark_interrupted(run["file"], run["run_id"], reason)
        except (OSError, KeyError) as exc:
            log.warning("station %s: run %s in %s was interrupted, and its file cannot be marked: %s",
                        self.config.name, run.get("run_id"), run.get("file"), exc)
            return run
        if marked:
            log.warning("station %s: run %s in %s was %s", self.config.name, run["run_id"], run["file"], reason)
        return run

    def _live_outputs(self) -> list[str]:
        """What is left on at opening (a killed process's outputs): the SMU's output, the pulse
        generator's outputs, routed lines."""
        found = []
        if self.smu.output_enabled:
            found.append(f"the SMU output on at {self.smu.source_voltage:g} V")
        pulse = self.drivers.get("pulse")
        if pulse is not None and (channels := pulse.outputs_on()):
            found.append(f"the pulse generator's output {', '.join(map(str, channels))} on")
        modes, dac = self.board.status()
        routed = int(np.count_nonzero(modes != LineMode.GROUND))
        if routed or np.any(dac != 0):
            found.append(f"{routed} board lines routed, DACs at up to {np.abs(dac).max():g} V")
        return found

    def snapshot(self) -> dict[str, Any]:
        """Station, chip map, SOA, instrument identities and (if simulated) the simulator's state."""
        snap = self.config.snapshot() | {"identities": dict(self.identities)}
        if self.lab is not None:
            physics = self.lab.physics
            snap["simulator"] = {"chip_seed": physics.seed, "run_seed": self.seed,
                                 "state_file": str(self.sim_state), "virtual_time_s": physics.clock.now,
                                 "device_file": self.config.device_file or "built-in"}
        return snap

    def close(self) -> None:
        """Close every instrument link, save the simulated chip's state, release the station."""
        try:
            for driver in self.drivers.values():
                driver.close()
            self.drivers.clear()
            if self.lab is not None and self.sim_state is not None:
                self.lab.save(self.sim_state)
        finally:
            if self.recorder is not None:
                self.recorder.close()
            self.lock.release()

    def __enter__(self) -> Station:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_sim_lab(config: StationConfig, sim_state: str | os.PathLike | None = None,
                 seed: int | None = None, smu: str | None = None, pulse: str | None = None
                 ) -> tuple[SimLab, Path]:
    """The simulated lab of a station: its chip from the state file (or new from `seed`), with the
    station's SMU and pulse-generator twins unless `smu` / `pulse` name others. Returns
    (lab, state path)."""
    from labctl.sim.lab import SimLab
    from labctl.sim.physics import ArrayPhysics, DeviceParams

    chip = config.chip
    try:
        params = DeviceParams.load(config.device_file or None)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise StationError(f"device file: {exc}") from exc
    path = Path(sim_state) if sim_state else default_sim_state(config)
    if path.exists():
        try:
            physics = SimLab.load_physics(path, params)
        except ValueError as exc:  # names the file and the entry
            raise StationError(f"simulator state {exc} (`labctl sim reset` makes the chip pristine)") from exc
        if (physics.rows, physics.cols) != (chip.rows, chip.cols):
            raise StationError(f"simulator state {path} holds a {physics.rows}x{physics.cols} "
                               f"chip, station {config.name} has {chip.rows}x{chip.cols}")
        if seed is not None:
            physics.reseed(seed)
    else:
        physics = ArrayPhysics(chip.rows, chip.cols, params, seed=seed or 0)
    configured = config.instruments.get("pulse")
    lab = SimLab(physics, chip.wl_channels, chip.bl_channels, chip.sl_channels,
                 smu=smu or config.instruments["smu"].driver,
                 pulse=pulse or (configured.driver if configured else None),
                 link_baud=float(config.instruments["board"].options.get("baudrate", LINK_BAUD)))
    return lab, path


def config_toml(config: StationConfig) -> str:
    """The whole station file of `config` (instruments with their options, chip, SOA)."""
    snap = config.snapshot()
    lines = [f"[station]\nname = {json.dumps(config.name)}\n"]
    for role, inst in snap["instruments"].items():
        lines.append(f"[instruments.{role}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in inst.items()))
    chip = snap["chip"]
    lines.append("[chip]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in chip.items()))
    lines.append("[safe_operating_area]\n" + "".join(f"{k} = {v!r}\n" for k, v in config.soa.as_dict().items()))
    return "\n".join(lines)


def station_toml(config: StationConfig, instruments: dict[str, tuple[str, str]], name: str,
                 sim_control: str = "") -> str:
    """A station file for `config`'s chip and SOA with the given {role: (driver, resource)}."""
    chip, lines = config.chip, [f'[station]\nname = "{name}"\n']
    for role, (driver, resource) in instruments.items():
        lines.append(f'[instruments.{role}]\ndriver = "{driver}"\nresource = "{resource}"\n')
    lines.append(f'[chip]\nname = "{chip.name}"\nrows = {chip.rows}\ncols = {chip.cols}\n'
                 f"wl_channels = {list(chip.wl_channels)}\nbl_channels = {list(chip.bl_channels)}\n"
                 f"sl_channels = {list(chip.sl_channels)}\n")
    lines.append("[safe_operating_area]\n" + "".join(f"{k} = {v!r}\n" for k, v in config.soa.as_dict().items()))
    if sim_control:
        lines.append(f'[simulator]\ncontrol = "{sim_control}"  # virtual time: `wait` advances it\n')
    return "\n".join(lines)


def check_station(config: StationConfig) -> list[dict[str, Any]]:
    """Check a station file against the bench, applying no voltage: per instrument, that it
    answers at its address with the declared model (*IDN?), that its error queue is empty; for
    the board, that the chip map fits its channels and that it accepts the map; that the safe
    operating area lies within what the instruments can source. One dict per check: role,
    driver, resource, check, ok, detail. A failed connection fails that instrument's checks only."""
    report: list[dict[str, Any]] = []

    def add(role: str, check: str, ok: bool, detail: str) -> None:
        inst = config.instruments[role]
        report.append({"role": role, "driver": inst.driver, "resource": inst.resource, "check": check,
                       "ok": ok, "detail": detail})

    soa = config.soa
    for role, inst in config.instruments.items():
        try:
            if inst.resource.startswith("sim://"):
                raise StationError("simulated instrument: use `labctl sim serve` to check over the network")
            driver = _make_driver(role, inst, _open_transport(inst))
        except Exception as exc:  # report every instrument, whatever failed
            add(role, "reachable", False, f"{type(exc).__name__}: {exc}")
            continue
        try:
            for check, run in _instrument_checks(role, driver, config):
                try:
                    add(role, check, True, run())
                except Exception as exc:
                    add(role, check, False, f"{type(exc).__name__}: {exc}")
        finally:
            driver.close()
    for limit in ("max_v_bl", "max_v_sl", "max_v_wl"):
        if "board" in config.instruments:
            value = getattr(soa, limit)
            add("board", f"SOA {limit}", value <= DAC_LIMIT,
                f"{value:g} V {'within' if value <= DAC_LIMIT else 'beyond'} the board's ±{DAC_LIMIT:g} V lines")
    return report


def _instrument_checks(role: str, driver, config: StationConfig):
    """(name, check) pairs for one connected instrument; a check returns its detail or raises."""
    yield "identity", driver.check_identity
    if hasattr(driver, "next_error"):
        def errors() -> str:
            queued = []
            for _ in range(64):
                code, message = driver.next_error()
                if code == 0:
                    break
                queued.append(f"{code}: {message}")
            if queued:
                raise StationError("error queue not empty: " + "; ".join(queued))
            return "error queue empty"
        yield "error queue", errors
    if role == "smu":
        def smu_range() -> str:
            soa = config.soa
            driver.check_settings(source_voltage=soa.max_v_bl, current_limit=soa.max_current)
            return f"sources the SOA's {soa.max_v_bl:g} V at up to {soa.max_current:g} A"
        yield "SOA max_v_bl, max_current", smu_range
    if role == "board":
        def chip_map() -> str:
            chip = config.chip
            modes, _ = driver.status()
            used = [*chip.wl_channels, *chip.bl_channels, *chip.sl_channels]
            beyond = sorted(c for c in used if c >= len(modes))
            if beyond:
                raise StationError(f"the chip map uses channels {beyond[:5]}; the board has {len(modes)}")
            driver.configure_map(chip.wl_channels, chip.bl_channels, chip.sl_channels)
            return f"{chip.rows} WL + {chip.cols} BL/SL pairs on {len(set(used))} of {len(modes)} channels"
        yield "chip map", chip_map


def reset_sim_state(config: StationConfig, sim_state: str | os.PathLike | None = None) -> Path:
    """Return the simulated chip to pristine by deleting its state file; returns the path."""
    path = Path(sim_state) if sim_state else default_sim_state(config)
    path.unlink(missing_ok=True)
    return path
