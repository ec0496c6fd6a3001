"""Fit the simulator's device file to a measured chip (`labctl sim fit`, docs/sim-fit.md).

`fit_runs(file, run_ids)` reads characterization runs (forming, pulse_response, read_noise,
retention, write_verify; from any station), runs one estimator per protocol
(labctl.fit.estimators) and returns a FitResult: an estimate with a standard uncertainty for every
parameter the runs constrain, the figures that are not parameters, and why a parameter was not
fitted. `device_file_text(result)` writes a complete device file (the base file's values where the
runs say nothing, and says so); `validate(result, ...)` (labctl.fit.validation) runs the same
protocols on the fitted simulator and compares.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from labctl.sim.physics import DEFAULT_DEVICE_FILE, DeviceParams
from labctl.store import load_run, read_runs

from .estimators import ESTIMATORS, ORDER, Outcome, RunData, fit_pulse_response, fit_retention
from .model import Circuit, Estimate, Figure, FitError, combine

__all__ = ["FitError", "FitResult", "Estimate", "Figure", "fit_runs", "device_file_text", "load_fit_runs"]


@dataclass
class FitResult:
    file: str
    runs: list[RunData]
    base_file: str
    base_doc: dict[str, dict[str, dict[str, Any]]]
    estimates: dict[str, Estimate]
    figures: list[Figure] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def values(self) -> dict[str, float]:
        """Every device parameter: fitted where estimated, the base file's otherwise."""
        out = {name: float(entry["value"]) for section in self.base_doc.values() for name, entry in section.items()}
        out.update({name: e.value for name, e in self.estimates.items()})
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "base": self.base_file,
                "runs": [{"run_id": r.run_id, "protocol": r.protocol} for r in self.runs],
                "estimates": {n: {"value": e.value, "uncertainty": e.uncertainty, "sources": e.sources,
                                  "basis": e.basis, "notes": e.notes} for n, e in self.estimates.items()},
                "figures": [f.__dict__ for f in self.figures], "not_fitted": self.messages}


def _base_doc(path: str | Path) -> dict:
    import tomllib

    try:
        DeviceParams.load(path)
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, ValueError) as exc:
        raise FitError(f"base device file {path}: {exc}") from None


def load_fit_runs(path: str | Path, run_ids: list[str] | None = None) -> list[RunData]:
    """The runs of `path` the fit can use: the given ones (each must exist, be completed and be of
    a protocol the fit knows), or every completed run of those protocols."""
    path = Path(path)
    if not path.is_file():
        raise FitError(f"{path}: no such file")
    try:
        infos = read_runs(path)
    except (OSError, KeyError, ValueError) as exc:
        raise FitError(f"{path}: not a readable labctl HDF5 file ({exc})") from None
    if not infos:
        raise FitError(f"{path}: holds no runs")
    by_id = {info.run_id: info for info in infos}
    if run_ids:
        chosen = []
        for run_id in run_ids:
            info = by_id.get(run_id)
            if info is None:
                raise FitError(f"{path}: no run {run_id!r} (runs: {', '.join(by_id)})")
            if info.protocol not in ESTIMATORS:
                raise FitError(f"{path} run {run_id}: protocol {info.protocol!r} has no estimator "
                               f"(the fit reads {', '.join(ORDER)})")
            if info.status != "completed":
                raise FitError(f"{path} run {run_id}: status {info.status!r}{': ' + info.error if info.error else ''}; "
                               f"only completed runs are fitted")
            chosen.append(info)
    else:
        chosen = [i for i in infos if i.protocol in ESTIMATORS and i.status == "completed"]
        if not chosen:
            raise FitError(f"{path}: no completed run of {', '.join(ORDER)} (found: "
                           f"{', '.join(f'{i.run_id} {i.status}' for i in infos)})")
    runs = []
    for info in chosen:
        try:
            run = load_run(path, info.run_id)
        except (OSError, KeyError, ValueError) as exc:
            raise FitError(f"{path} run {info.run_id}: cannot be read ({exc})") from None
        chip = run["attrs"].get("station", {}).get("chip", {}) if isinstance(run["attrs"].get("station"), dict) else {}
        shape = (int(chip["rows"]), int(chip["cols"])) if chip.get("rows") and chip.get("cols") else None
        params = run["attrs"].get("parameters", {})
        runs.append(RunData(path.name, info.run_id, info.protocol, params if isinstance(params, dict) else {},
                            run["data"], shape))
    return runs


def fit_runs(path: str | Path, run_ids: list[str] | None = None, base: str | Path | None = None) -> FitResult:
    """Estimate the device parameters the runs constrain (see the module doc)."""
    base_file = str(base or DEFAULT_DEVICE_FILE)
    doc = _base_doc(base_file)
    circuit = Circuit(DeviceParams.load(base_file))
    runs = load_fit_runs(path, run_ids)
    found: dict[str, list[Estimate]] = {}
    result = FitResult(str(path), runs, base_file, doc, {})
    refusals: list[str] = []
    read_noise: float | None = None
    for protocol in ORDER:
        for run in (r for r in runs if r.protocol == protocol):
            try:
                try:
                    if protocol == "pulse_response":
                        outcome: Outcome = fit_pulse_response(run, circuit, read_noise)
                    elif protocol == "retention":
                        outcome = fit_retention(run, circuit, read_noise)
                    else:
                        outcome = ESTIMATORS[protocol](run, circuit)
                except FitError:
                    raise
                except (ValueError, KeyError, IndexError, TypeError, ZeroDivisionError, np.linalg.LinAlgError) as exc:
                    # data no estimator expected (edited, truncated or foreign tables): name the run
                    raise FitError(f"{run.label} ({protocol}): its data cannot be fitted "
                                   f"({type(exc).__name__}: {exc})") from exc
            except FitError as exc:
                if run_ids:  # a run asked for by name must give something
                    raise
                refusals.append(str(exc))
                continue
            for est in outcome.estimates:
                found.setdefault(est.name, []).append(est)
            result.figures += outcome.figures
            result.messages += outcome.messages
        if protocol == "read_noise" and "read_noise" in found:
            read_noise = combine(found["read_noise"]).value
    result.messages += refusals
    result.estimates = {name: combine(ests) for name, ests in found.items()}
    if not result.estimates and not result.figures:
        raise FitError(f"{path}: no parameter could be fitted: " + "; ".join(result.messages or ["no usable run"]))
    return result


def _fmt(value: float, unit: str) -> str:
    scale = {"S": (1e6, "uS"), "s": (1e6, "us"), "V": (1.0, "V"), "A": (1e6, "uA")}.get(unit, (1.0, unit))
    return f"{value * scale[0]:.4g} {scale[1]}".strip()


def device_file_text(result: FitResult) -> str:
    """A complete device file: the fitted values with uncertainty and the run they came from, the
    base file's entries (and sources) where the runs do not constrain them."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    lines = [f"# Device parameters fitted by `labctl sim fit` ({now}) from {result.file}",
             f"# runs: {', '.join(f'{r.run_id} ({r.protocol})' for r in result.runs)}",
             f"# base (values the runs do not constrain): {result.base_file}",
             "# `uncertainty` is the standard uncertainty (1 sigma) of a fitted value; entries whose source",
             "# starts with 'default kept' are not constrained by these runs.",
             "#",
             "# measured figures that are not parameters of this file (labctl sim fit --validate compares them):"]
    for f in result.figures:
        unc = f" +- {_fmt(f.uncertainty, f.unit)}" if f.uncertainty == f.uncertainty else ""
        lines.append(f"#   {f.name}: {_fmt(f.value, f.unit)}{unc} ({f.source}, {f.basis})")
    if not result.figures:
        lines.append("#   none")
    if result.messages:
        lines.append("# not fitted:")
        lines += [f"#   {m}" for m in result.messages]
    for section, entries in result.base_doc.items():
        lines.append(f"\n[{section}]")
        for name, entry in entries.items():
            unit = str(entry.get("unit", ""))
            est = result.estimates.get(name)
            if est is None:
                lines.append(f"# {name}: not constrained by these runs, default kept")
                source = f"default kept (not constrained by the runs): {entry.get('source', '')}"
                lines.append(f"{name} = {{ value = {float(entry['value'])!r}, unit = {json.dumps(unit)}, "
                             f"source = {json.dumps(source)} }}")
                continue
            where = ", ".join(est.sources)
            lines.append(f"# {name}: fitted from {where}: {_fmt(est.value, unit)} +- {_fmt(est.uncertainty, unit)}"
                         f" ({est.basis}){'; ' + '; '.join(est.notes) if est.notes else ''}")
            source = (f"fit: {where} ({est.basis}); {_fmt(est.value, unit)} +- {_fmt(est.uncertainty, unit)}; "
                      f"was {float(entry['value']):.6g} {unit} ({entry.get('source', '')})")
            lines.append(f"{name} = {{ value = {est.value!r}, unit = {json.dumps(unit)}, "
                         f"uncertainty = {est.uncertainty!r}, source = {json.dumps(source)} }}")
    return "\n".join(lines) + "\n"


def format_estimates(result: FitResult) -> str:
    """The estimates as a plain-text table (for the CLI)."""
    units = {name: str(entry.get("unit", "")) for section in result.base_doc.values() for name, entry in section.items()}
    defaults = {name: float(entry["value"]) for section in result.base_doc.values() for name, entry in section.items()}
    rows = [f"{'parameter':<18} {'fitted':>12} {'+-':>11} {'default':>12}  from"]
    for name, est in result.estimates.items():
        unit = units.get(name, "")
        rows.append(f"{name:<18} {_fmt(est.value, unit):>12} {_fmt(est.uncertainty, unit):>11} "
                    f"{_fmt(defaults.get(name, float('nan')), unit):>12}  {', '.join(s.split(' run ')[-1] for s in est.sources)}"
                    f"{'  (' + '; '.join(est.notes[1:]) + ')' if len(est.notes) > 1 else ''}")
    for f in result.figures:
        unc = f" +- {_fmt(f.uncertainty, f.unit)}" if f.uncertainty == f.uncertainty else ""
        rows.append(f"figure: {f.name}: {_fmt(f.value, f.unit)}{unc} ({f.source.split(' run ')[-1]})")
    for m in result.messages:
        rows.append(f"not fitted: {m}")
    return "\n".join(rows)


def validate(result: FitResult, seed: int = 0, figure: str | Path | None = None,
             sim_out: str | Path | None = None) -> tuple[list, Path]:
    """Run the fitted runs' protocols again on the fitted simulator; returns the comparisons
    (labctl.fit.validation.Comparison) and the simulated run file; draws the overlay to `figure`."""
    from .validation import compare, plot_comparisons, rerun

    sim_file = rerun(result.runs, result.values(), result.base_doc, seed, sim_out)
    simulated = load_fit_runs(sim_file)
    comparisons = compare(result.runs, simulated)
    if figure is not None:
        plot_comparisons(comparisons, figure)
    return comparisons, sim_file


def fit_command(file: str, runs: list[str] | None = None, out: str | None = None, base: str | None = None,
                check: bool = False, figure: str | None = None, seed: int = 0, as_json: bool = False,
                sim_out: str | None = None) -> str:
    """What `labctl sim fit` prints: the estimates (and the device file written to `out`), then
    with `check` the measured-against-simulated table (and the overlay figure)."""
    from .validation import format_comparisons

    result = fit_runs(file, runs, base)
    text = [format_estimates(result)]
    if out:
        Path(out).write_text(device_file_text(result), encoding="utf-8")
        text.append(f"device file: {out}")
    report: dict[str, Any] = result.as_dict()
    if check:
        if figure is None:  # next to the fitted file, else next to the runs
            figure = str(Path(out or file).with_suffix(".validate.png"))
        comparisons, sim_file = validate(result, seed, figure, sim_out)
        text += ["", "validation: the same protocols on the fitted simulator (seed "
                 f"{seed}, runs in {sim_file})", format_comparisons(comparisons)]
        if figure:
            text.append(f"figure: {figure}")
        report["validation"] = {"comparisons": [c.as_dict() for c in comparisons], "sim_file": str(sim_file),
                                "figure": figure}
    if out:
        report["device_file"] = out
    return json.dumps(report, default=str) if as_json else "\n".join(text)
