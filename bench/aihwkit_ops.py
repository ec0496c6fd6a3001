"""IBM aihwkit reference figures for the labctl ReRAM benchmarks: tile op timings and digits training.

Runs in the aihwkit venv made by bench/setup_aihwkit.sh (labctl is not installed there, so this
file only uses aihwkit, torch, numpy and the packaged digits file). Prints one JSON object on
stdout; logs go to stderr.

Usage:
  ~/.cache/labctl-aihwkit/venv/bin/python bench/aihwkit_ops.py [--sizes 64 256 512 4096]
      [--batch 64] [--repeats 3] [--threads 1] [--up-down -0.1]
  ~/.cache/labctl-aihwkit/venv/bin/python bench/aihwkit_ops.py --training [--epochs 1]
      [--algorithms sgd ttv2 agad] [--seeds 0] [--batch 10] [--threads 1]

Device (SoftBoundsDevice, weight units): weights in [-1, 1] stand for the 9-95 uS window
(sim_backend/device_cmo_hfox.toml); ~22 open-loop states across it give dw_min = 2/22 = 0.09;
dw_min_dtod 0.3, log-normal like the simulator's d2d_rate; dw_min_std 0.95 (multiplicative, as
c2c_noise); w_max / w_min +-1 with dtod 0.05 (d2d_window). up_down -0.1: RESET steps larger
than SET steps, as in labctl, but kept modest; the simulator's tau_set / tau_reset ratio would
put the soft-bounds symmetry point near w = -0.5 (up_down ~ -0.5, try --up-down -0.5).

Ops mode: per size n, an n x n AnalogTile with SingleRPUConfig(device), default IOParameters
(7-bit DAC, 9-bit ADC, out_noise 0.06, abs-max noise and iterative bound management) and
UpdateParameters (desired_bl 31, update_bl_management and update_management on), lr 0.05 (the
labctl digits lr). Weights start uniform in [-0.5, 0.5]; x and d are uniform in [-1, 1]. Timed
(best of --repeats after one warm-up call, perf_counter): forward = tile.joint_forward(x) (the
training-mode forward AnalogLinear calls, periphery included), backward = tile.backward(d)
(d W), update = tile.update(x, d) (one pulsed update of the batch, per-sample pulse trains),
update_per_sample = tile.update at batch 1; at n = 64 also update_sparse (x, d 90 % zeros).
A size is skipped when its estimated memory exceeds half the available RAM, or when one op
takes (or, scaled by n^2 from the previous size, would take) more than 60 s.

Training mode (as protocols/train.py, dataset digits): stratified split with 20 % test, inputs
pixel / 16 in [0, 1], 64-32-10 with biases, sigmoid hidden, softmax cross-entropy summed over
the batch, lr 0.05, batch 10, the same per-epoch sample order (numpy default_rng([seed, 1])).
Layers are AnalogLinear with analog biases (mapping.digital_bias False), trained by AnalogSGD;
rpu configs: sgd = SingleRPUConfig(device), ttv2 / agad = build_config("ttv2" / "agad", device)
(ChoppedTransferCompound without chopper / DynamicTransferCompound presets) with the gradient
update's desired_bl raised from the presets' 5 to labctl's 31. The floating-point baseline is
the same net of torch nn.Linear with the same initial weights (torch.manual_seed(seed)).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

import aihwkit
import numpy as np
import torch
from aihwkit.nn import AnalogLinear
from aihwkit.optim import AnalogSGD
from aihwkit.simulator.configs import SingleRPUConfig, SoftBoundsDevice, build_config
from aihwkit.simulator.tiles import AnalogTile

from timing import best

DIGITS = Path(__file__).resolve().parents[1] / "labctl" / "datasets" / "digits.csv.gz"
LR = 0.05
MAX_OP_S = 60.0
BYTES_PER_CELL = 64  # a SoftBounds tile measures ~48 B per cell (weights + per-device parameters)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def device_params(up_down: float) -> dict:
    return dict(dw_min=2 / 22, dw_min_dtod=0.3, dw_min_dtod_log_normal=True, dw_min_std=0.95,
                up_down=up_down, w_max=1.0, w_min=-1.0, w_max_dtod=0.05, w_min_dtod=0.05)


def rpu_config(algorithm: str, device: SoftBoundsDevice):
    """Training config: analog biases (as labctl), gradient updates with labctl's BL of 31."""
    config = SingleRPUConfig(device=device) if algorithm == "sgd" else build_config(algorithm, device)
    config.update.desired_bl = 31
    config.mapping.digital_bias = False
    return config


# -- ops ---------------------------------------------------------------------------------------
def time_size(n: int, batch: int, repeats: int, config) -> dict:
    tile = AnalogTile(n, n, config)
    tile.set_learning_rate(LR)
    tile.set_weights(torch.rand(n, n) - 0.5)
    x, d = torch.rand(batch, n) * 2 - 1, torch.rand(batch, n) * 2 - 1
    ops = {"forward_s": lambda: tile.joint_forward(x), "backward_s": lambda: tile.backward(d),
           "update_s": lambda: tile.update(x, d), "update_per_sample_s": lambda: tile.update(x[:1], d[:1])}
    if n == 64:
        xs, ds = x * (torch.rand_like(x) < 0.1), d * (torch.rand_like(d) < 0.1)
        ops["update_sparse_s"] = lambda: tile.update(xs, ds)
    result = {}
    for name, fn in ops.items():
        warm = best(fn, 1)
        if warm > MAX_OP_S:
            return {"skipped": f"{name[:-2]} took {warm:.0f} s > {MAX_OP_S:.0f} s", **result}
        result[name] = best(fn, repeats)
    return result


def run_ops(args) -> dict:
    params = device_params(args.up_down)
    config = SingleRPUConfig(device=SoftBoundsDevice(**params))
    batch = args.batch or 64
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    sizes, previous = {}, None
    for n in args.sizes:
        predicted = previous and max(previous[1].values()) * (n / previous[0]) ** 2
        if BYTES_PER_CELL * n * n > available / 2:
            sizes[str(n)] = {"skipped": f"needs ~{BYTES_PER_CELL * n * n / 1e9:.1f} GB, "
                                        f"{available / 1e9:.1f} GB available"}
        elif predicted and predicted > MAX_OP_S:
            sizes[str(n)] = {"skipped": f"predicted {predicted:.0f} s > {MAX_OP_S:.0f} s per op"}
        else:
            log(f"ops: {n} x {n}, batch {batch}")
            sizes[str(n)] = time_size(n, batch, args.repeats, config)
            if "skipped" not in sizes[str(n)]:
                previous = (n, sizes[str(n)])
    return {"mode": "ops", "sizes": sizes, "device": {"type": "SoftBoundsDevice", **params},
            "io": "IOParameters defaults", "update": {"desired_bl": config.update.desired_bl,
            "update_bl_management": config.update.update_bl_management,
            "update_management": config.update.update_management, "pulse_type": config.update.pulse_type.name},
            "lr": LR, "batch": batch, "repeats": args.repeats}


# -- training ----------------------------------------------------------------------------------
def load_digits(seed: int, test_fraction: float = 0.2):
    """Train / test tensors split as labctl.datasets.stratified_split, pixels / 16."""
    data = np.loadtxt(gzip.open(DIGITS, "rt"), delimiter=",")
    X, y = data[:, :-1] / 16.0, data[:, -1].astype(np.int64)
    rng, test = np.random.default_rng(seed), []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        n_test = min(max(int(round(test_fraction * members.size)), 1), members.size - 1)
        test.append(rng.permutation(members)[:n_test])
    test = np.sort(np.concatenate(test))
    train = np.setdiff1d(np.arange(y.size), test)
    def x32(a):
        return torch.tensor(a, dtype=torch.float32)

    return x32(X[train]), torch.tensor(y[train]), x32(X[test]), torch.tensor(y[test])


def network(config) -> torch.nn.Module:
    layer = (lambda i, o: AnalogLinear(i, o, bias=True, rpu_config=config)) if config else torch.nn.Linear
    return torch.nn.Sequential(layer(64, 32), torch.nn.Sigmoid(), layer(32, 10))


def train(config, seed: int, epochs: int, batch: int) -> dict:
    x_train, y_train, x_test, y_test = load_digits(seed)
    torch.manual_seed(seed)
    model = network(config)
    optimizer = AnalogSGD(model.parameters(), lr=LR) if config else torch.optim.SGD(model.parameters(), lr=LR)
    if config:
        optimizer.regroup_param_groups(model)
    loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")  # labctl sums the batch's gradients
    order_rng = np.random.default_rng([seed, 1])
    epoch_s, accuracy = [], []
    for _ in range(epochs):
        order = torch.from_numpy(order_rng.permutation(len(y_train)))
        model.train()
        start = time.perf_counter()
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            optimizer.zero_grad()
            loss_fn(model(x_train[idx]), y_train[idx]).backward()
            optimizer.step()
        epoch_s.append(time.perf_counter() - start)
        model.eval()
        with torch.no_grad():
            accuracy.append(float((model(x_test).argmax(1) == y_test).float().mean()))
    return {"epoch_s": epoch_s, "test_accuracy": accuracy}


def run_training(args) -> dict:
    params = device_params(args.up_down)
    batch = args.batch or 10
    report = {"mode": "training", "network": "64-32-10 sigmoid, softmax CE (sum)", "lr": LR, "batch": batch,
              "epochs": args.epochs, "seeds": args.seeds, "device": {"type": "SoftBoundsDevice", **params}}
    for name in [*args.algorithms, "fp"]:
        runs = []
        for seed in args.seeds:
            log(f"training: {name}, seed {seed}, {args.epochs} epochs")
            config = None if name == "fp" else rpu_config(name, SoftBoundsDevice(**params))
            runs.append(train(config, seed, args.epochs, batch))
        final = np.array([r["test_accuracy"][-1] for r in runs])
        report[name] = {"epoch_s_mean": float(np.mean([r["epoch_s"] for r in runs])),
                        "epoch_s_first": float(np.mean([r["epoch_s"][0] for r in runs])),
                        "test_accuracy": [r["test_accuracy"] for r in runs],
                        "final_test_accuracy": final.tolist(),
                        "final_mean": float(final.mean()), "final_std": float(final.std())}
        if config:
            report[name]["rpu_config"] = f"{type(config).__name__}({type(config.device).__name__})"
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 512])
    parser.add_argument("--batch", type=int, default=None, help="default 64 (ops), 10 (training)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--up-down", type=float, default=-0.1)
    parser.add_argument("--training", action="store_true")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--algorithms", nargs="+", default=["sgd", "ttv2", "agad"],
                        choices=["sgd", "ttv2", "agad"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything the libraries print goes to stderr; stdout carries the JSON only
    torch.set_num_threads(args.threads)
    report = run_training(args) if args.training else run_ops(args)
    report.update(threads=args.threads, aihwkit=aihwkit.__version__, torch=torch.__version__)
    out.write(json.dumps(report, indent=1) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
