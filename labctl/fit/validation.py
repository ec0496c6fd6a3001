"""`labctl sim fit --validate`: run the measured protocols again, with their recorded parameters,
on a simulated chip built from the fitted device file (labctl.study.point's station builder), and
compare per figure the measured and simulated distributions: mean, spread and the two-sample
Kolmogorov-Smirnov statistic (scipy.stats.ks_2samp), with one ECDF panel per figure overlaying
them (PNG)."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from labctl.engine import get_protocol
from labctl.station import StationError, load_station

from .estimators import RunData
from .model import FitError


@dataclass
class Comparison:
    run_id: str
    figure: str
    unit: str
    measured: np.ndarray
    simulated: np.ndarray
    independent: bool = True  # False: the values are correlated (a trace's reads); the p-value does not hold


    @property
    def ks(self) -> tuple[float, float]:
        """(KS statistic D, p-value) of the two samples."""
        if self.measured.size < 1 or self.simulated.size < 1:
            return float("nan"), float("nan")
        result = stats.ks_2samp(self.measured, self.simulated)
        return float(result.statistic), float(result.pvalue)

    def as_dict(self) -> dict:
        d, p = self.ks
        return {"run_id": self.run_id, "figure": self.figure, "unit": self.unit,
                "measured": {"n": int(self.measured.size), "mean": _stat(self.measured, np.mean),
                             "std": _stat(self.measured, np.std)},
                "simulated": {"n": int(self.simulated.size), "mean": _stat(self.simulated, np.mean),
                              "std": _stat(self.simulated, np.std)},
                "ks_statistic": d, "ks_pvalue": p if self.independent else None}


def _stat(x: np.ndarray, f) -> float | None:
    return float(f(x)) if x.size else None


# pulse-response values are per step or per read, and a cell's steps share its device-to-device
# draws (a trace's reads follow one another): not independent samples, so no KS p-value for them
CORRELATED = ("SET step dG", "RESET step dG", "G under identical pulses")


def figures_of(run: RunData) -> list[tuple[str, str, np.ndarray]]:
    """The distributions a run is compared on: (figure, unit, values)."""
    data = run.data
    out: list[tuple[str, str, np.ndarray]] = []
    if run.protocol == "forming":
        cells = data["cells"]
        status = np.char.strip(cells["status"].astype("S16")).astype(str)
        formed = (status == "formed") & np.isfinite(cells["v_form"])
        out += [("forming voltage", "V", cells["v_form"][formed]), ("G after forming", "S", cells["g_after"][formed])]
    elif run.protocol == "pulse_response":
        from labctl.protocols.pulse_response import trace_from_table

        _, trace = trace_from_table(data["trace"])
        dg = np.diff(trace, axis=-1)
        for d, name in ((0, "SET step dG"), (1, "RESET step dG")):
            values = dg[:, :, d].ravel()
            out.append((name, "S", values[np.isfinite(values)]))
        values = trace.ravel()
        out.append(("G under identical pulses", "S", values[np.isfinite(values)]))
    elif run.protocol == "read_noise":
        reads = data["reads"]
        for t in np.unique(reads["t"]):
            at = reads[reads["t"] == t]
            keys, index = np.unique(np.stack([at["row"], at["col"]], axis=1), axis=0, return_inverse=True)
            index = index.ravel()
            count = np.bincount(index)
            mean = np.bincount(index, at["g"]) / count
            sd = np.sqrt(np.bincount(index, (at["g"] - mean[index]) ** 2) / np.maximum(count - 1, 1))
            out.append((f"read noise sigma at {t:g} s", "S", sd[count > 1]))
    elif run.protocol == "retention":
        reads, cells = data["reads"], data["cells"]
        g0 = {(int(r), int(c)): g for r, c, g in zip(cells["row"], cells["col"], cells["g_final"])}
        for t in np.unique(reads["t"]):
            at = reads[reads["t"] == t]
            shift = np.array([g - g0.get((int(r), int(c)), np.nan) for r, c, g in zip(at["row"], at["col"], at["g"])])
            out.append((f"shift G(t) - G(0) at {t:g} s", "S", shift[np.isfinite(shift)]))
    elif run.protocol == "write_verify":
        cells = data["cells"]
        out += [("write-verify pulses per cell", "", cells["pulses"].astype(float)),
                ("G_final - target", "S", (cells["g_final"] - cells["target"]).astype(float))]
    return out


def rerun(runs: list[RunData], values: dict[str, float], base_doc: dict, seed: int = 0,
          out: str | Path | None = None) -> Path:
    """Run the protocols of `runs`, in their order and with their recorded parameters, on a
    fresh simulated chip of the runs' size with the device values `values`; returns the run file."""
    from labctl.study.point import PointTask, run_point

    shapes = {r.shape for r in runs if r.shape is not None}
    if len(shapes) > 1:
        raise FitError(f"the runs come from chips of different sizes {sorted(shapes)}; validate them separately "
                       f"(--runs)")
    rows, cols = shapes.pop() if shapes else (4, 8)
    try:
        config = load_station(f"sim:{rows}x{cols}")
    except StationError as exc:
        raise FitError(f"cannot simulate a {rows}x{cols} chip: {exc}") from None
    steps = []
    for run in sorted(runs, key=lambda r: r.run_id):
        declared = {p.name for p in get_protocol(run.protocol).parameters}
        steps.append((run.run_id, run.protocol, {k: v for k, v in run.parameters.items() if k in declared}, ""))
    formed = steps[0][1] != "forming"  # a chip the runs did not start by forming starts formed
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="labctl-fit-")) / "validate.h5"
    task = PointTask(0, {}, {}, config, values, tuple(steps), seed, formed, str(out))
    record = run_point(task, base_doc)
    if record["status"] != "completed":
        raise FitError(f"validation run on the fitted simulator failed: {record['error']}")
    return Path(out)


def compare(measured: list[RunData], simulated: list[RunData]) -> list[Comparison]:
    """Per run and figure, the measured against the simulated distribution (simulated runs matched
    to measured ones by order and protocol)."""
    out = []
    sims = {r.protocol: [s for s in simulated if s.protocol == r.protocol] for r in measured}
    used: dict[str, int] = {}
    for run in sorted(measured, key=lambda r: r.run_id):
        k = used.get(run.protocol, 0)
        used[run.protocol] = k + 1
        sim = sims[run.protocol][k] if k < len(sims[run.protocol]) else None
        if sim is None:
            continue
        sim_figures = {name: values for name, _, values in figures_of(sim)}
        for name, unit, values in figures_of(run):
            out.append(Comparison(run.run_id, name, unit, values, sim_figures.get(name, np.array([])),
                                  name not in CORRELATED))
    return out


def format_comparisons(comparisons: list[Comparison]) -> str:
    def fmt(x: np.ndarray, unit: str) -> str:
        if not x.size:
            return f"{'-':>24}"
        scale, shown = {"S": (1e6, "uS"), "V": (1.0, "V")}.get(unit, (1.0, unit))
        return f"{np.mean(x) * scale:>9.4g} +- {np.std(x) * scale:<8.3g}{shown:<3}".rjust(24)

    lines = [f"{'run':<22} {'figure':<30} {'measured mean +- sd':>24} {'simulated mean +- sd':>24} {'KS D':>6} {'p':>7}"]
    for c in comparisons:
        d, p = c.ks
        shown_p = f"{p:>7.3g}" if c.independent else f"{'-':>7}"  # correlated values: no p-value
        lines.append(f"{c.run_id:<22} {c.figure:<30} {fmt(c.measured, c.unit)} {fmt(c.simulated, c.unit)} "
                     f"{d:>6.3f} {shown_p}")
    return "\n".join(lines)


def plot_comparisons(comparisons: list[Comparison], path: str | Path, dpi: int = 100) -> Path:
    """One ECDF panel per figure, measured (solid) and simulated (dashed), as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    n = max(len(comparisons), 1)
    ncols = min(3, n)
    nrows = (n + ncols - 1) // ncols
    fig = Figure(figsize=(4.2 * ncols, 3.0 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for ax, c in zip(axes, comparisons):
        scale, shown = {"S": (1e6, "µS"), "V": (1.0, "V")}.get(c.unit, (1.0, c.unit))
        for values, style, label in ((c.measured, "-", "measured"), (c.simulated, "--", "fitted simulator")):
            if values.size:
                x = np.sort(values) * scale
                ax.step(x, np.arange(1, x.size + 1) / x.size, style, where="post", label=f"{label} (n={x.size})")
        d, _ = c.ks
        ax.set_title(f"{c.run_id}: {c.figure}\nKS D = {d:.3f}", fontsize="small")
        ax.set_xlabel(f"{c.figure} ({shown})" if shown else c.figure, fontsize="small")
        ax.set_ylabel("fraction of values")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small", loc="lower right")
    for ax in axes[len(comparisons):]:
        ax.set_visible(False)
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    return path
