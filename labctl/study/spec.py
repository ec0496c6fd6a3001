"""A study file: the base simulated station, a sequence of protocols and the axes to sweep.

A study file is TOML (the format is in docs/studies/README.md)::

    [study]
    name = "mvm-noise-window"        # default: the file's stem
    station = "sim:8x8"              # a simulated station: sim, sim:ROWSxCOLS or a sim:// station file
    device = "my_device.toml"        # base device file (default: the station's, else device_cmo_hfox.toml)
    formed = true                    # start every chip formed (default false: add a forming step)
    seed = 0                         # the seed of every point when no axis is named `seed`
    run_data = true                  # keep each point's full run data (default true)

    [[steps]]                        # run in this order on each point's fresh chip
    protocol = "mvm"
    name = "mvm_1s"                  # default: the protocol's name; names are unique
    params = { t_after = 1.0 }
    input = "train"                  # (a protocol with file/run_id parameters) read this earlier step's run

    [grid]                           # every combination of these axes
    seed = [0, 1, 2]
    "device.c2c_noise" = [0.5, 0.95, 1.5]              # a device parameter, by its name in the device file
    mvm_1s.acceptance = { start = 1e-3, stop = 1e-1, num = 3, log = true }   # a protocol parameter
    [grid.asymmetry]                 # a zipped axis: its parameters move together
    values = [1, 2, 4]               # its coordinate (default: its first parameter's values)
    device = { tau_set = [...], tau_reset = [...] }

    [[points]]                       # an explicit list (crossed with the grid when both are given)
    device = { g_min = 5e-6, g_max = 60e-6 }

An axis's parameter is `seed` (the chip seed, and the `seed` parameter of every step that does
not set its own), `device.NAME` (any parameter of the device file) or `STEP.PARAM` (a parameter
of a step, by the step's name). Everything is checked when the file is loaded, before anything
runs: unknown keys and names (with the names allowed), every axis value against its allowed range
(a device parameter's range below, a protocol parameter's declared limits), and every point's
steps against the station (its chip size and safe operating area), as `labctl run` checks one run.
"""
from __future__ import annotations

import copy
import difflib
import itertools
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labctl.engine import get_protocol, prepare
from labctl.params import Parameter, ParameterError, resolve
from labctl.safety import SafetyError
from labctl.station import StationConfig, StationError, load_station

SEED = "seed"
DEVICE = "device"
RANGE_KEYS = {"start", "stop", "num", "log"}


class StudyError(ValueError):
    """A study file (or a study's results file) is wrong; the message names the key or axis."""


# -- device parameters: the allowed range of each ------------------------------------------------

@dataclass(frozen=True)
class Range:
    low: float
    high: float = math.inf
    low_open: bool = True  # (low, high] rather than [low, high]

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return math.isfinite(value) and above and value <= self.high

    def __str__(self) -> str:
        high = "inf)" if math.isinf(self.high) else f"{self.high:g}]"
        return f"{'(' if self.low_open else '['}{self.low:g}, {high}"


POSITIVE, NONNEGATIVE, FRACTION = Range(0.0), Range(0.0, low_open=False), Range(0.0, 1.0, low_open=False)
#: parameters that may be 0 (spreads, noises, drifts, thresholds) or are probabilities; every other is > 0
DEVICE_RANGES = {
    **dict.fromkeys(("d2d_window", "v_form_std", "g_formed_std", "d2d_rate", "c2c_noise", "drift_mean",
                     "drift_sigma_slope", "drift_sigma_0", "read_noise", "v_th", "v_set_th", "v_reset_th"),
                    NONNEGATIVE),
    **dict.fromkeys(("p_unformable", "p_stuck", "endurance_closing"), FRACTION),
}
#: (lower, upper): the device model needs lower < upper
DEVICE_ORDER = (("g_min", "g_max"), ("v_th", "v_gate_ref"), ("v_set_th", "v_set_ref"), ("v_reset_th", "v_reset_ref"))


def device_range(name: str) -> Range:
    return DEVICE_RANGES.get(name, POSITIVE)


def read_device_file(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """The device file's sections ({section: {name: {value, unit, source}}}), checked by DeviceParams."""
    from labctl.sim.physics import DeviceParams

    try:
        DeviceParams.load(path)
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StudyError(f"device file {path}: {exc}") from exc


def device_entries(doc: dict) -> dict[str, dict[str, Any]]:
    """name -> {value, unit, source} over every section of a device file."""
    return {name: entry for section in doc.values() for name, entry in section.items()}


def device_doc_with(doc: dict, values: dict[str, float]) -> dict:
    """A copy of the device file's sections with `values` replacing theirs."""
    out = copy.deepcopy(doc)
    for section in out.values():
        for name, entry in section.items():
            if name in values:
                entry["value"] = values[name]
    return out


# -- the study ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    name: str
    protocol: str
    params: dict[str, Any]
    input: str = ""  # the earlier step whose run this one reads (its file and run_id parameters)


@dataclass(frozen=True)
class Axis:
    """A coordinate and the parameters it sets: {name: values} for a plain axis, several for a zipped one."""

    name: str
    values: tuple[Any, ...]
    members: dict[str, tuple[Any, ...]]


@dataclass(frozen=True)
class Point:
    index: int
    coords: dict[str, Any]     # axis (or listed parameter) -> coordinate
    overrides: dict[str, Any]  # parameter (seed, device.NAME, STEP.PARAM) -> value


@dataclass
class Study:
    name: str
    description: str
    source: str  # the study file (absolute), or where the text came from
    text: str    # the study file's text, stored with the results
    station: str
    config: StationConfig
    device_file: Path
    device_doc: dict
    steps: list[Step]
    axes: list[Axis]       # the grid's
    listed: list[str]      # the parameters of the explicit points, in order
    formed: bool = False
    seed: int = 0
    run_data: bool = True
    points: list[Point] = field(default_factory=list)

    @property
    def coordinates(self) -> list[str]:
        """Every coordinate of a point: the grid's axes, then the listed parameters."""
        return [axis.name for axis in self.axes] + self.listed

    def device_values(self, point: Point) -> dict[str, float]:
        values = {name: float(entry["value"]) for name, entry in device_entries(self.device_doc).items()}
        values.update({k.partition(".")[2]: v for k, v in point.overrides.items() if k.startswith(DEVICE + ".")})
        return values

    def step_values(self, point: Point) -> list[tuple[Step, dict[str, Any]]]:
        """Each step with its parameter values at `point`: its own, the point's, the point's seed."""
        out = []
        seed = point.overrides.get(SEED, self.seed)
        for step in self.steps:
            values = dict(step.params)
            values.update({k.partition(".")[2]: v for k, v in point.overrides.items()
                           if k.partition(".")[0] == step.name})
            if "seed" not in values and any(p.name == "seed" for p in get_protocol(step.protocol).parameters):
                values["seed"] = seed
            out.append((step, values))
        return out

    def point_seed(self, point: Point) -> int:
        return int(point.overrides.get(SEED, self.seed))


def load_study(path: str | Path) -> Study:
    """Read and check a study file (StudyError names what is wrong); nothing runs."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"study {str(path)!r}: no such file")
    return parse_study(path.read_text(encoding="utf-8"), str(path.resolve()))


def parse_study(text: str, source: str) -> Study:
    """Check a study file's text; relative paths in it are relative to `source`'s folder."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"{source}: not valid TOML ({exc})") from exc
    where, base = source, Path(source).parent
    _keys(doc, where, "the file", set(), {"study", "steps", "grid", "points"})
    head = doc.get("study")
    if not isinstance(head, dict):
        raise StudyError(f"{where}: missing section [study]")
    _keys(head, where, "[study]", {"station"}, {"name", "description", "device", "formed", "seed", "run_data"})
    station = str(head["station"])
    config = _station(station, base, where)
    device_file = _device_file(head.get("device", ""), config, base, where)
    study = Study(name=str(head.get("name") or Path(source).stem), description=str(head.get("description", "")),
                  source=source, text=text, station=station, config=config, device_file=device_file,
                  device_doc=read_device_file(device_file), steps=_steps(doc.get("steps"), where),
                  axes=[], listed=[], formed=_bool(head, "formed", False, where),
                  seed=_seed(head.get("seed", 0), f"{where}: [study] seed"),
                  run_data=_bool(head, "run_data", True, where))
    grid = doc.get("grid", {})
    if not isinstance(grid, dict):
        raise StudyError(f"{where}: [grid] must be a table of axes")
    study.axes = [_axis(study, name, spec, where) for name, spec in _namespaced(study, grid)]
    listed = _listed(study, doc.get("points", []), where)
    study.listed = list(listed[0]) if listed else []
    setters: dict[str, str] = {}
    for axis in study.axes:
        for name in {axis.name, *axis.members}:
            if name in setters:
                raise StudyError(f"{where}: [grid] {name} is set by two axes ({setters[name]}, {axis.name})")
            setters[name] = axis.name
    for name in study.listed:
        if name in setters:
            raise StudyError(f"{where}: {name} is both set by [grid] axis {setters[name]} and by [[points]]")
    study.points = _expand(study, listed or [{}])
    for point in study.points:
        check_point(study, point, where)
    return study


def _keys(table: dict, where: str, what: str, required: set[str], optional: set[str]) -> None:
    allowed = required | optional
    for name in sorted(table.keys() - allowed):
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"expected {', '.join(sorted(allowed))}"
        raise StudyError(f"{where}: {what} has unknown key '{name}' ({hint})")
    for name in sorted(required - table.keys()):
        raise StudyError(f"{where}: {what} is missing key '{name}'")


def _bool(table: dict, key: str, default: bool, where: str) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise StudyError(f"{where}: [study] {key} must be true or false, got {value!r}")
    return value


def _seed(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StudyError(f"{where}: a seed is an integer >= 0, got {value!r}")
    return value


def _station(spec: str, base: Path, where: str) -> StationConfig:
    if not re.fullmatch(r"sim(:\d+x\d+)?", spec) and not Path(spec).is_absolute():
        spec = str(base / spec)
    try:
        config = load_station(spec)
    except StationError as exc:
        raise StudyError(f"{where}: [study] station: {exc}") from exc
    if not all(inst.resource.startswith("sim://") for inst in config.instruments.values()) or config.sim_control:
        raise StudyError(f"{where}: [study] station {spec!r} is not an in-process simulated station (sim, "
                         f"sim:ROWSxCOLS or a station file with sim:// resources): each point builds its own chip")
    return config


def _device_file(name: str, config: StationConfig, base: Path, where: str) -> Path:
    from labctl.sim.physics import DEFAULT_DEVICE_FILE

    if not name:
        return Path(config.device_file).resolve() if config.device_file else DEFAULT_DEVICE_FILE
    path = Path(name) if Path(name).is_absolute() else base / name
    if not path.is_file():
        raise StudyError(f"{where}: [study] device {name!r}: no such file")
    return path.resolve()


def _steps(entries: Any, where: str) -> list[Step]:
    if not isinstance(entries, list) or not entries:
        raise StudyError(f"{where}: no [[steps]]: give at least one protocol to run")
    steps: list[Step] = []
    for k, entry in enumerate(entries, 1):
        what = f"[[steps]] {k}"
        _keys(entry, where, what, {"protocol"}, {"name", "params", "input"})
        try:
            protocol = get_protocol(str(entry["protocol"]))
        except ParameterError as exc:
            raise StudyError(f"{where}: {what}: {exc}") from None
        name = str(entry.get("name") or protocol.name)
        if name in {s.name for s in steps} or name in (SEED, DEVICE) or "." in name:
            raise StudyError(f"{where}: {what}: step name {name!r} is taken or reserved (names are unique, "
                             f"not seed or device, without '.'); give each step its own `name`")
        params = entry.get("params", {})
        if not isinstance(params, dict):
            raise StudyError(f"{where}: {what} ({name}): params must be a table")
        source = str(entry.get("input", ""))
        if source:
            declared = {p.name for p in protocol.parameters}
            if not {"file", "run_id"} <= declared:
                raise StudyError(f"{where}: {what} ({name}): input needs a protocol with file and run_id "
                                 f"parameters; {protocol.name} has none")
            if source not in {s.name for s in steps}:
                raise StudyError(f"{where}: {what} ({name}): input {source!r} is not an earlier step "
                                 f"(earlier: {', '.join(s.name for s in steps) or 'none'})")
            if {"file", "run_id"} & params.keys():
                raise StudyError(f"{where}: {what} ({name}): input sets file and run_id; do not give them")
        try:
            resolve(protocol.parameters, params, f"step {name} ({protocol.name})")
        except ParameterError as exc:
            raise StudyError(f"{where}: {what}: {exc}") from None
        steps.append(Step(name, protocol.name, dict(params), source))
    return steps


def _namespaced(study: Study, table: dict) -> list[tuple[str, Any]]:
    """(name, value) pairs of a table of axes or parameters, its `device = {..}` and `STEP = {..}`
    tables spelled out (TOML reads an unquoted key device.g_max as such a table); in a grid, any
    other name holding a table is a zipped axis."""
    out: list[tuple[str, Any]] = []
    for key, value in table.items():
        if key in (DEVICE, *(s.name for s in study.steps)) and isinstance(value, dict) \
                and not (value.keys() and value.keys() <= RANGE_KEYS):
            out.extend((f"{key}.{sub}", v) for sub, v in value.items())
        else:
            out.append((key, value))
    return out


def _parameter(study: Study, name: str, what: str) -> Parameter | None:
    """The declaration behind an axis name: a protocol Parameter, None for seed and device
    parameters (checked by _value); StudyError naming the names allowed."""
    if name == SEED:
        return None
    prefix, _, rest = name.partition(".")
    if prefix == DEVICE:
        names = list(device_entries(study.device_doc))
        if rest not in names:
            close = difflib.get_close_matches(rest, names, n=1)
            hint = f"did you mean 'device.{close[0]}'? " if close else ""
            raise StudyError(f"{what}: no device parameter {rest!r} in {study.device_file} ({hint}parameters: "
                             f"{', '.join(names)})")
        return None
    steps = {s.name: s for s in study.steps}
    if prefix not in steps or not rest:
        allowed = ", ".join(["seed", "device.NAME", *(f"{s}.PARAM" for s in steps)])
        raise StudyError(f"{what}: {name!r} names no parameter (axes: {allowed})")
    declared = {p.name: p for p in get_protocol(steps[prefix].protocol).parameters}
    if rest not in declared:
        close = difflib.get_close_matches(rest, declared, n=1)
        hint = f"did you mean '{prefix}.{close[0]}'? " if close else ""
        raise StudyError(f"{what}: step {prefix} ({steps[prefix].protocol}) has no parameter {rest!r} "
                         f"({hint}parameters: {', '.join(declared)})")
    if steps[prefix].input and rest in ("file", "run_id"):
        raise StudyError(f"{what}: {name} comes from the step's input {steps[prefix].input!r}")
    return declared[rest]


def allowed(parameter: Parameter) -> str:
    """The allowed values of a protocol parameter, as the error messages state them."""
    if parameter.choices:
        return "one of " + ", ".join(map(repr, parameter.choices))
    if parameter.kind in ("float", "int", "floats"):
        low = "-inf" if parameter.minimum is None else f"{parameter.minimum:g}"
        high = "inf" if parameter.maximum is None else f"{parameter.maximum:g}"
        unit = f" {parameter.unit}" if parameter.unit else ""
        return f"{'integers in ' if parameter.kind == 'int' else ''}[{low}, {high}]{unit}"
    return {"bool": "true or false", "str": "a string"}.get(parameter.kind, parameter.kind)


def _value(study: Study, name: str, value: Any, what: str) -> Any:
    """One value of parameter `name`, checked against its allowed range and coerced."""
    parameter = _parameter(study, name, what)
    if name == SEED:
        return _seed(value, f"{what}: seed")
    if parameter is None:
        rest = name.partition(".")[2]
        entry = device_entries(study.device_doc)[rest]
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and float(value) in device_range(rest)
        if not ok:
            raise StudyError(f"{what}: {name}={value!r} is outside its allowed range {device_range(rest)} "
                             f"{entry.get('unit', '')} (device file value {entry['value']:g})")
        return float(value)
    try:
        return parameter.validate(value)
    except ParameterError as exc:
        raise StudyError(f"{what}: {exc} (allowed: {allowed(parameter)})") from None


def _values(spec: Any, what: str) -> tuple[Any, ...]:
    """An axis's values: a non-empty list, or {start, stop, num[, log]}."""
    if isinstance(spec, list):
        if not spec:
            raise StudyError(f"{what}: no values")
        return tuple(spec)
    if isinstance(spec, dict) and spec.keys() <= RANGE_KEYS:
        if not {"start", "stop", "num"} <= spec.keys():
            raise StudyError(f"{what}: a range needs start, stop and num (and log = true for a geometric one)")
        start, stop, num, log = spec["start"], spec["stop"], spec["num"], spec.get("log", False)
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise StudyError(f"{what}: num must be an integer >= 1, got {num!r}")
        if log and not (start > 0 and stop > 0):
            raise StudyError(f"{what}: a log range needs start and stop > 0")
        return tuple(float(v) for v in (np.geomspace if log else np.linspace)(start, stop, num))
    raise StudyError(f"{what}: give a list of values or a range {{start, stop, num[, log]}}, got {spec!r}")


def _axis(study: Study, name: str, spec: Any, where: str) -> Axis:
    what = f"{where}: [grid] axis {name!r}"
    if name == SEED or "." in name or not isinstance(spec, dict) or spec.keys() <= RANGE_KEYS:
        values = tuple(_value(study, name, v, what) for v in _values(spec, what))
        return Axis(name, values, {name: values})
    members = {}
    for member, value in _namespaced(study, {k: v for k, v in spec.items() if k != "values"}):
        if member != SEED and "." not in member:
            raise StudyError(f"{where}: [grid] axis '{name}.{member}': {name!r} is neither device nor a step "
                             f"(steps: {', '.join(s.name for s in study.steps)}); a zipped axis [grid.{name}] sets "
                             f"parameters such as device.NAME and STEP.PARAM")
        members[member] = tuple(_value(study, member, v, f"{what} ({member})")
                                for v in _values(value, f"{what} ({member})"))
    if not members:
        raise StudyError(f"{what}: a zipped axis needs parameters (e.g. device.tau_set = [...])")
    sizes = {len(v) for v in members.values()}
    coordinate = tuple(spec["values"]) if "values" in spec else next(iter(members.values()))
    if len(sizes) != 1 or len(coordinate) not in sizes:
        raise StudyError(f"{what}: its values and parameters must have equal lengths, got "
                         f"{ {'values': len(coordinate), **{k: len(v) for k, v in members.items()}} }")
    return Axis(name, coordinate, members)


def _listed(study: Study, entries: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(entries, list):
        raise StudyError(f"{where}: points must be an array of tables ([[points]])")
    points: list[dict[str, Any]] = []
    for k, entry in enumerate(entries, 1):
        what = f"{where}: [[points]] {k}"
        point = {name: _value(study, name, value, f"{what} ({name})")
                 for name, value in _namespaced(study, entry)}
        if points and point.keys() != points[0].keys():
            raise StudyError(f"{what} sets {', '.join(point) or 'nothing'}; [[points]] 1 sets "
                             f"{', '.join(points[0])}: every listed point sets the same parameters")
        points.append(point)
    return points


def _expand(study: Study, listed: list[dict[str, Any]]) -> list[Point]:
    points: list[Point] = []
    seen: dict[str, int] = {}
    for picks in itertools.product(*(range(len(a.values)) for a in study.axes)):
        chosen = list(zip(study.axes, picks))
        for extra in listed:
            coords = {axis.name: axis.values[i] for axis, i in chosen} | extra
            overrides = {member: values[i] for axis, i in chosen for member, values in axis.members.items()} | extra
            key = repr(sorted(coords.items()))
            if key in seen:
                raise StudyError(f"{study.source}: points {seen[key]} and {len(points)} have the same coordinates "
                                 f"{coords}")
            seen[key] = len(points)
            points.append(Point(len(points), coords, overrides))
    return points


def check_point(study: Study, point: Point, where: str) -> None:
    """A point's device values and every step's parameters against the station, before it runs."""
    what = f"{where}: point {point.index} {point.coords}"
    values = study.device_values(point)
    for lower, upper in DEVICE_ORDER:
        if not values[lower] < values[upper]:
            raise StudyError(f"{what}: device.{lower}={values[lower]:g} must be below device.{upper}="
                             f"{values[upper]:g}")
    for step, params in study.step_values(point):
        protocol = get_protocol(step.protocol)
        try:
            if step.input:  # its input is made when the point runs: its remaining checks run then
                resolve(protocol.parameters, params, step.name)
            else:
                prepare(protocol, params, study.config)
        except (ParameterError, SafetyError) as exc:
            raise StudyError(f"{what}: step {step.name} ({step.protocol}): {exc}") from None
