"""inference: program trained weights with write-verify, then follow accuracy and MVM error.

Accuracy and MVM error are followed over time after programming, as the programmed
conductances relax (1 s to 10 years by default).

Weights. From a `train` run (`file`, `run_id`; an empty run_id takes the file's last completed
train run): its read-back digital weights weights_k / bias_k (`source` = "analog") or its
floating-point baseline fp_weights_k / fp_bias_k (`source` = "fp"), with the run's dataset,
input scaling and test split. Or from `weights`, a .npz holding weights_0, bias_0[, weights_1,
bias_1] (the train run's layout), or a .npy holding one layer as an (n_in + 1) x n_out matrix
whose last row is the bias; then `dataset` names the task and the split follows `seed` and
`test_fraction` as in `train`.

Mapping. The cell map of `train` with algorithm sgd (differential pairs, the bias pair stored
transposed, from `row0`, `col0`; see protocols/train.py), each weight onto a pair around the
middle of the window [g_lo, g_hi]:

    G+ = g_mid + g_scale w / 2,   G- = g_mid - g_scale w / 2,   g_mid = (g_lo + g_hi) / 2,

g_scale (S per unit weight) by default the largest that keeps every target in the window,
(g_hi - g_lo) / max |w| over all layers (targets beyond the window are clipped and counted).
Every pair is write-verified (labctl.writeverify, `acceptance`, `max_pulses`, `width`); t = 0
is the end of programming.

Evaluation. At each of `times` (s after programming, waited with RunContext.wait: virtual time
on a simulator) the network runs the whole test set with forward MVMs (biases by backward
MVM, as in `train`): test accuracy. MVM error: each layer's analog output z = x W + b against
the exact product with the intended weights for the same input x (the layer's input in the
analog run), divided by the layer's full-scale weight max |w| (weights and inputs at full scale
1, the units of the published 64x64 benchmark and of the mvm protocol); mvm_rmse pools all
layers' outputs. weight_rmse: read_map of the pairs, (G+ - G-) / g_scale - w, same units.

Summary: dataset, layers, source, times (s), test_accuracy, mvm_rmse, mvm_rmse_layers (per time,
per layer), weight_rmse (per time), fp_test_accuracy (the intended weights in floating point),
trained_test_accuracy (the train run's final analog accuracy, null for a file of weights),
g_scale (S), g_mid (S), clipped (targets clipped to the window), cells, success_rate,
pulses_mean, pulses_max (write-verify).

Data: table "cells" (per programmed cell, as write_verify), table "evaluation" (t, test_acc,
mvm_rmse, weight_rmse); arrays weights_k, bias_k (intended), g_target (targets on the used
block, 0 where unused), g_programmed (last verify reads), g_read_<i> (read_map at times[i]).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from labctl.aimc import (
    TASKS,
    AnalogMatrix,
    PulseSetup,
    cross_entropy,
    layout,
    prepare_data,
    scale_inputs,
    sigmoid,
    softmax,
    used_mask,
)
from labctl.engine import Protocol, RunContext
from labctl.live import LivePlot
from labctl.params import Parameter, ParameterError

from .common import V_GATE, V_READ
from .programming import MAX_PULSES, REFINE, TEN_YEARS, WIDTH, check_times, program_cells

DEFAULT_TIMES = [1.0, 3600.0, 86400.0, 3.15e7, TEN_YEARS]


class Model:
    """Intended weights with their task and test data."""

    def __init__(self, dataset: str, weights: list[np.ndarray], biases: list[np.ndarray],
                 x_test: np.ndarray, y_test: np.ndarray, trained_accuracy: float | None, origin: str):
        self.dataset, self.weights, self.biases = dataset, weights, biases
        self.x_test, self.y_test = x_test, y_test
        self.trained_accuracy, self.origin = trained_accuracy, origin

    @property
    def layers(self) -> tuple[int, ...]:
        return (self.weights[0].shape[0], *(w.shape[1] for w in self.weights))

    def forward(self, x: np.ndarray) -> np.ndarray:
        for k, (W, b) in enumerate(zip(self.weights, self.biases)):
            x = x @ W + b
            if k < len(self.weights) - 1:
                x = sigmoid(x)
        return x


def _last_train_run(path: str) -> str:
    from labctl.store import list_runs

    runs = [r["run_id"] for r in list_runs(path) if r["protocol"] == "train" and r["status"] == "completed"]
    if not runs:
        raise ParameterError(f"file={path!r} holds no completed train run")
    return runs[-1]


def load_model(params: dict) -> Model:
    """The weights, task and test data the parameters name (ParameterError if they do not)."""
    if params["file"]:
        return _from_train_run(params)
    if params["weights"]:
        return _from_weights_file(params)
    raise ParameterError("give file (and run_id) of a train run, or weights (.npz / .npy)")


def _from_train_run(params: dict) -> Model:
    from labctl.store import load_run

    path = params["file"]
    if not Path(path).expanduser().is_file():
        raise ParameterError(f"file={path!r}: no such file")
    run_id = params["run_id"] or _last_train_run(path)
    try:
        run = load_run(Path(path).expanduser(), run_id)
    except KeyError as exc:
        raise ParameterError(str(exc.args[0])) from None
    attrs, data = run["attrs"], run["data"]
    if attrs.get("protocol") != "train":
        raise ParameterError(f"run {run_id} is a {attrs.get('protocol')} run, not a train run")
    prefix = "fp_" if params["source"] == "fp" else ""
    weights, biases, k = [], [], 0
    while f"{prefix}weights_{k}" in data:
        weights.append(np.asarray(data[f"{prefix}weights_{k}"], dtype=float))
        biases.append(np.asarray(data[f"{prefix}bias_{k}"], dtype=float))
        k += 1
    if not weights:
        raise ParameterError(f"run {run_id} has no {prefix}weights_0 (status {attrs.get('status')})")
    train_params = attrs["parameters"]
    dataset = train_params["dataset"]
    if params["dataset"] and params["dataset"] != dataset:
        raise ParameterError(f"dataset={params['dataset']!r} but run {run_id} trained on {dataset!r}")
    from labctl.datasets import load_dataset

    X, y = load_dataset(dataset)
    test = np.asarray(data["test_index"], dtype=int)
    x_test = scale_inputs(X[test], data["x_offset"], data["x_scale"])
    trained = attrs.get("summary", {}).get("test_accuracy") if prefix == "" else \
        attrs.get("summary", {}).get("fp_test_accuracy")
    return Model(dataset, weights, biases, x_test, y[test], trained, f"{path}:{run_id}:{params['source']}")


def _from_weights_file(params: dict) -> Model:
    path = Path(params["weights"]).expanduser()
    if not path.is_file():
        raise ParameterError(f"weights={params['weights']!r}: no such file")
    if not params["dataset"]:
        raise ParameterError("weights from a file need dataset (iris or digits)")
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise ParameterError(f"weights={params['weights']!r} is not a numeric .npy/.npz file: {exc}") from None
    if isinstance(loaded, np.ndarray):
        if loaded.ndim != 2 or loaded.shape[0] < 2:
            raise ParameterError(f"weights={params['weights']!r}: a .npy must hold one (n_in + 1) x n_out "
                                 f"matrix (last row = bias), got shape {loaded.shape}")
        weights, biases = [loaded[:-1].astype(float)], [loaded[-1].astype(float)]
    else:
        with loaded:
            weights, biases, k = [], [], 0
            while f"weights_{k}" in loaded.files:
                weights.append(np.asarray(loaded[f"weights_{k}"], dtype=float))
                biases.append(np.asarray(loaded[f"bias_{k}"], dtype=float) if f"bias_{k}" in loaded.files
                              else np.zeros(weights[-1].shape[1]))
                k += 1
        if not weights:
            raise ParameterError(f"weights={params['weights']!r}: the .npz has no weights_0")
    data = prepare_data(params["dataset"], params["test_fraction"], params["seed"])
    return Model(params["dataset"], weights, biases, data.x_test, data.y_test, None, str(path))


def check_model(model: Model) -> None:
    task = TASKS[model.dataset]
    if model.layers != task.layers:
        raise ParameterError(f"the weights form a {'-'.join(map(str, model.layers))} network; {model.dataset} "
                             f"needs {'-'.join(map(str, task.layers))}")
    for k, (W, b) in enumerate(zip(model.weights, model.biases)):
        if b.shape != (W.shape[1],):
            raise ParameterError(f"bias_{k} has shape {b.shape}, expected ({W.shape[1]},)")
        if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
            raise ParameterError(f"layer {k} has NaN or infinite weights")
    if max(float(np.max(np.abs(np.concatenate([W.ravel(), b])))) for W, b in zip(model.weights, model.biases)) == 0:
        raise ParameterError("every weight is zero")


def pair_targets(w: np.ndarray, g_mid: float, g_scale: float) -> tuple[np.ndarray, np.ndarray]:
    return g_mid + g_scale * w / 2, g_mid - g_scale * w / 2


class Inference(Protocol):
    name = "inference"
    title = "Inference over time (write-verify, accuracy and MVM error to 10 years)"
    parameters = (
        Parameter("file", "str", "", doc="HDF5 file holding the train run"),
        Parameter("run_id", "str", "", doc="train run in `file` (empty: the last completed one)"),
        Parameter("source", "str", "analog", choices=("analog", "fp"),
                  doc="program the run's trained analog weights or its floating-point baseline's"),
        Parameter("weights", "str", "",
                  doc=".npz (weights_0, bias_0, ...) or .npy ((n_in + 1) x n_out, last row bias) instead of a run"),
        Parameter("dataset", "str", "", choices=("", "iris", "digits"),
                  doc="task of the weights (empty: the train run's)"),
        Parameter("seed", "int", 0, "", minimum=0, doc="split seed for weights from a file (as in train)"),
        Parameter("test_fraction", "float", 0.2, "", minimum=0.05, maximum=0.5,
                  doc="held-out fraction for weights from a file (as in train)"),
        Parameter("times", "floats", DEFAULT_TIMES, "s", minimum=0.0,
                  doc="evaluation times after programming (strictly increasing; default 1 s, 1 h, 1 day, "
                      "1 year, 10 years)"),
        Parameter("g_lo", "float", 10e-6, "S", minimum=1e-7, maximum=1e-3, doc="bottom of the mapped window"),
        Parameter("g_hi", "float", 80e-6, "S", minimum=1e-7, maximum=1e-3, doc="top of the mapped window"),
        Parameter("g_scale", "float", 0.0, "S", minimum=0.0, maximum=1e-3,
                  doc="G+ - G- per unit weight; 0 = (g_hi - g_lo) / max |w|"),
        Parameter("row0", "int", 0, "", minimum=0, doc="first row of the cell map"),
        Parameter("col0", "int", 0, "", minimum=0, doc="first column of the cell map"),
        Parameter("acceptance", "float", 0.02, "", minimum=1e-4, maximum=0.5,
                  doc="write-verify band half-width as a fraction of the target (0.02 = 2 %)"),
        MAX_PULSES,
        WIDTH,
        REFINE,
        Parameter("adc_bits", "int", 0, "", minimum=0, maximum=24, doc="MVM output ADC bits (0 = ideal)"),
        Parameter("dac_bits", "int", 0, "", minimum=0, maximum=16, doc="MVM input DAC bits (0 = ideal)"),
        V_READ,
        V_GATE,
    )
    live_plots = (LivePlot("evaluation", "t", "test_acc", "test accuracy after programming", log_x=True),
                  LivePlot("evaluation", "t", "mvm_rmse", "MVM error (full-scale units)", log_x=True))
    tables = {
        "evaluation": [("t", "f8", "s"), ("test_acc", "f8", ""), ("loss", "f8", ""), ("mvm_rmse", "f8", ""),
                       ("weight_rmse", "f8", "")],
    }

    def check(self, params: dict, config) -> None:
        check_times(params["times"])
        if params["times"][0] <= 0:
            raise ParameterError("times must be > 0 s (t = 0 is the end of programming)")
        if params["g_hi"] <= params["g_lo"]:
            raise ParameterError(f"g_hi={params['g_hi']:g} S must be above g_lo={params['g_lo']:g} S")
        model = load_model(params)
        check_model(model)
        _, _, (r0, c0, rows, cols) = layout(model.layers, False, params["row0"], params["col0"])
        if r0 + rows > config.chip.rows or c0 + cols > config.chip.cols:
            raise ParameterError(f"the {'-'.join(map(str, model.layers))} network needs {rows}x{cols} cells from "
                                 f"row {r0}, column {c0}; the chip has {config.chip.rows}x{config.chip.cols}")
        for bits, name in ((params["dac_bits"], "dac_bits"), (params["adc_bits"], "adc_bits")):
            if bits == 1:
                raise ParameterError(f"{name}=1 is not a converter resolution (0 = ideal, else >= 2)")

    def run(self, ctx: RunContext) -> dict[str, Any]:
        p, xbar = ctx.params, ctx.crossbar
        model = load_model(p)
        check_model(model)
        cells_map, _, block = layout(model.layers, False, p["row0"], p["col0"])
        w_max = [float(np.max(np.abs(np.concatenate([W.ravel(), b])))) for W, b in zip(model.weights, model.biases)]
        g_mid = (p["g_lo"] + p["g_hi"]) / 2
        g_scale = p["g_scale"] or (p["g_hi"] - p["g_lo"]) / max(w_max)
        for k, (W, b) in enumerate(zip(model.weights, model.biases)):
            ctx.save_array(f"weights_{k}", W, "")
            ctx.save_array(f"bias_{k}", b, "")

        # targets of every used cell of the block
        r0, c0, n_rows, n_cols = block
        targets = np.zeros((n_rows, n_cols))
        for m, W, b in zip(cells_map, model.weights, model.biases):
            plus, minus = pair_targets(W, g_mid, g_scale)
            br, bc = m.r0 - r0, m.c0 - c0
            targets[br:br + m.n_in, bc:bc + m.n_out] = plus
            targets[br:br + m.n_in, bc + m.n_out:bc + 2 * m.n_out] = minus
            plus, minus = pair_targets(b, g_mid, g_scale)
            targets[br:br + m.n_out, bc + 2 * m.n_out] = plus
            targets[br:br + m.n_out, bc + 2 * m.n_out + 1] = minus
        mask = used_mask(cells_map, block)
        wanted = targets[mask]
        slack = 1e-9 * (p["g_hi"] - p["g_lo"])  # rounding of the largest weight's targets is no clipping
        clipped = int(np.sum((wanted < p["g_lo"] - slack) | (wanted > p["g_hi"] + slack)))
        targets[mask] = np.clip(wanted, p["g_lo"], p["g_hi"])
        ctx.save_array("g_target", targets, "S")

        local = np.argwhere(mask)
        cells = local + np.array([r0, c0])
        ctx.progress(0, 1, f"write-verify of {len(cells)} cells")
        result = program_cells(ctx, cells, targets[mask])
        programmed = np.zeros((n_rows, n_cols))
        programmed[mask] = result.g
        ctx.save_array("g_programmed", programmed, "S")

        xbar.configure_mvm(v_read=p["v_read"], v_gate=p["v_gate"], t_int=1e-6, dac_bits=p["dac_bits"],
                           adc_bits=p["adc_bits"], i_range=max(m.n_in for m in cells_map) * p["v_read"] * 100e-6)
        setup = PulseSetup(p["v_read"], p["v_gate"], g_scale, 1.0, 1.0, 1e-9, 1)
        rng = np.random.default_rng(0)  # unused: inference applies no update
        layers = [AnalogMatrix(xbar, m, setup, rng, f"C{k + 1}") for k, m in enumerate(cells_map)]
        fp_accuracy = float(np.mean(np.argmax(model.forward(model.x_test), axis=1) == model.y_test))

        ctx.table("evaluation")
        times = p["times"]
        accuracy, mvm_rmse, mvm_layers, weight_rmse = [], [], [], []
        elapsed = 0.0
        for i, t in enumerate(times):
            ctx.progress(i, len(times), f"waiting until t = {t:g} s")
            ctx.wait(t - elapsed)
            elapsed = t
            # one pass: analog outputs of every layer, compared with the exact product on the same input
            x, errors = model.x_test, []
            for k, (layer, W, b) in enumerate(zip(layers, model.weights, model.biases)):
                z = layer.forward(x)
                errors.append((z - (x @ W + b)) / w_max[k])
                x = sigmoid(z) if k < len(layers) - 1 else z
            acc = float(np.mean(np.argmax(x, axis=1) == model.y_test))
            loss = cross_entropy(softmax(x), model.y_test)
            layer_rmse = [float(np.sqrt(np.mean(e ** 2))) for e in errors]
            pooled = float(np.sqrt(np.mean(np.concatenate([e.ravel() ** 2 for e in errors]))))
            g_map = xbar.read_map(p["v_read"], p["v_gate"], block=block)
            ctx.save_array(f"g_read_{i}", g_map, "S")
            w_err = []
            for k, (layer, W, b) in enumerate(zip(layers, model.weights, model.biases)):
                m = layer.cells
                br, bc = m.r0 - r0, m.c0 - c0
                g_w = g_map[br:br + m.n_in, bc:bc + 2 * m.n_out]
                g_b = g_map[br:br + m.n_out, bc + 2 * m.n_out:bc + 2 * m.n_out + 2]
                w_read = (g_w[:, :m.n_out] - g_w[:, m.n_out:]) / g_scale
                b_read = (g_b[:, 0] - g_b[:, 1]) / g_scale
                w_err.append(np.concatenate([(w_read - W).ravel(), b_read - b]) / w_max[k])
            w_rmse = float(np.sqrt(np.mean(np.concatenate(w_err) ** 2)))
            ctx.append("evaluation", t=t, test_acc=acc, loss=loss, mvm_rmse=pooled, weight_rmse=w_rmse)
            accuracy.append(acc)
            mvm_rmse.append(pooled)
            mvm_layers.append(layer_rmse)
            weight_rmse.append(w_rmse)
        ctx.progress(len(times), len(times), "done")
        return {
            "dataset": model.dataset,
            "layers": list(model.layers),
            "source": model.origin,
            "times": list(times),
            "test_accuracy": accuracy,
            "mvm_rmse": mvm_rmse,
            "mvm_rmse_layers": mvm_layers,
            "weight_rmse": weight_rmse,
            "fp_test_accuracy": fp_accuracy,
            "trained_test_accuracy": model.trained_accuracy,
            "g_scale": g_scale,
            "g_mid": g_mid,
            "w_max": w_max,
            "clipped": clipped,
            "cells": int(len(cells)),
            "success_rate": float(result.success.mean()),
            "pulses_mean": float(result.pulses.mean()),
            "pulses_max": int(result.pulses.max()),
        }

    @staticmethod
    def plot(run: dict[str, Any], fig) -> None:
        """Test accuracy against time after programming (log axis), MVM and weight error beside it.

        The accuracy plot also shows the floating-point accuracy of the same weights and the
        chance level."""
        from labctl.plots import no_data

        acc_ax, err_ax = fig.subplots(1, 2)
        for ax in (acc_ax, err_ax):
            ax.set_xlabel("time after programming (s)")
        acc_ax.set_ylabel("test accuracy")
        err_ax.set_ylabel("RMSE (full-scale weight units)")
        ev = run["data"].get("evaluation")
        if ev is None or not len(ev):
            no_data(acc_ax, "no evaluation recorded")
            no_data(err_ax, "no evaluation recorded")
            return
        summary = run["attrs"].get("summary", {})
        acc_ax.plot(ev["t"], ev["test_acc"], "o-", color="tab:blue", label="analog")
        if summary.get("fp_test_accuracy") is not None:
            acc_ax.axhline(summary["fp_test_accuracy"], color="tab:gray", linestyle="--",
                           label="same weights, floating point")
        dataset = summary.get("dataset") or run["attrs"].get("parameters", {}).get("dataset", "")
        if dataset in TASKS:
            acc_ax.axhline(1.0 / TASKS[dataset].layers[-1], color="tab:red", linestyle=":", label="chance")
        acc_ax.set_xscale("log")
        acc_ax.set_ylim(0, 1.02)
        acc_ax.grid(True, which="major", alpha=0.3)
        acc_ax.legend(fontsize="small", loc="lower left")
        acc_ax.set_title(f"{dataset}: {ev['test_acc'][-1]:.3f} at {ev['t'][-1]:.3g} s")
        err_ax.plot(ev["t"], ev["mvm_rmse"], "o-", color="tab:orange", label="MVM output")
        err_ax.plot(ev["t"], ev["weight_rmse"], "s-", color="tab:green", label="weights (read_map)")
        err_ax.set_xscale("log")
        err_ax.grid(True, which="major", alpha=0.3)
        err_ax.legend(fontsize="small")
