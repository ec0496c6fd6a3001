"""The classification tasks of in-situ training: datasets (labctl.datasets), their split and
scaling to MVM inputs, the model's layer sizes and the default learning rates per algorithm."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labctl.datasets import load_dataset, stratified_split


@dataclass(frozen=True)
class Task:
    """A dataset's model and default learning rates and weight scale (per algorithm)."""

    dataset: str
    layers: tuple[int, ...]
    lr: dict[str, float]
    fp_lr: float
    transfer_lr: dict[str, float]
    g_scale: dict[str, float]  # S per unit weight


# Defaults tuned on the simulated CMO/HfOx device (labctl/protocols/train.py; bench/training.py;
# the digits ttv2 sweep over 3 seeds is in protocols/train.py's docstring).
TASKS = {
    "iris": Task("iris", (4, 3), {"sgd": 0.1, "ttv2": 0.1, "agad": 0.1}, 0.1, {"ttv2": 0.03, "agad": 0.3},
                 {"sgd": 20e-6, "ttv2": 20e-6, "agad": 20e-6}),
    "digits": Task("digits", (64, 32, 10), {"sgd": 0.05, "ttv2": 0.1, "agad": 0.5}, 0.05,
                   {"ttv2": 0.03, "agad": 0.02}, {"sgd": 20e-6, "ttv2": 40e-6, "agad": 20e-6}),
}


@dataclass
class Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_index: np.ndarray
    test_index: np.ndarray
    x_offset: np.ndarray
    x_scale: np.ndarray
    n_classes: int


def scale_inputs(X: np.ndarray, offset: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Inputs as MVM inputs: (X - offset) / scale, clipped to [-1, 1]."""
    return np.clip((X - offset) / scale, -1.0, 1.0)


def prepare_data(dataset: str, test_fraction: float, seed: int) -> Data:
    """The dataset split (stratified, seeded) and scaled (Iris: the training set's range mapped
    onto [-1, 1]; digits: pixel / 16, in [0, 1])."""
    X, y = load_dataset(dataset)
    train, test = stratified_split(y, test_fraction, seed)
    if dataset == "digits":
        offset, scale = np.zeros(X.shape[1]), np.full(X.shape[1], 16.0)
    else:
        lo, hi = X[train].min(axis=0), X[train].max(axis=0)
        offset, scale = (lo + hi) / 2, np.maximum((hi - lo) / 2, 1e-12)
    Xs = scale_inputs(X, offset, scale)
    return Data(Xs[train], y[train], Xs[test], y[test], train, test, offset, scale, int(y.max()) + 1)
