"""The floating-point baseline: the same model in numpy float64 (sigmoid hidden layers, softmax
output, plain SGD), and the activation and loss functions the analog network shares."""
from __future__ import annotations

import numpy as np

from .data import Data, Task


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def cross_entropy(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-12))))


def output_error(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(softmax probabilities, dLoss/dz) of a batch of logits for labels y."""
    p = softmax(z)
    d = p.copy()
    d[np.arange(len(y)), y] -= 1.0
    return p, d


class FloatMLP:
    """The same model in numpy float64: sigmoid hidden layers, softmax output, plain SGD."""

    def __init__(self, layers: tuple[int, ...], rng: np.random.Generator):
        self.W = [rng.normal(0.0, 1.0 / np.sqrt(n_in), (n_in, n_out))
                  for n_in, n_out in zip(layers[:-1], layers[1:])]
        self.b = [np.zeros(n_out) for n_out in layers[1:]]

    def forward(self, x: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        acts = [x]
        for k, (W, b) in enumerate(zip(self.W, self.b)):
            z = acts[-1] @ W + b
            if k == len(self.W) - 1:
                return acts, z
            acts.append(sigmoid(z))
        raise AssertionError("unreachable")

    def step(self, x: np.ndarray, y: np.ndarray, lr: float) -> None:
        acts, z = self.forward(x)
        _, d = output_error(z, y)
        for k in range(len(self.W) - 1, -1, -1):
            grad_w, grad_b = acts[k].T @ d, d.sum(axis=0)
            if k:
                d = (d @ self.W[k].T) * acts[k] * (1.0 - acts[k])
            self.W[k] -= lr * grad_w
            self.b[k] -= lr * grad_b

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """(loss, accuracy)."""
        _, z = self.forward(x)
        return cross_entropy(softmax(z), y), float(np.mean(np.argmax(z, axis=1) == y))


def run_fp_baseline(task: Task, data: Data, epochs: int, batch: int, lr: float, seed: int,
                    orders: list[np.ndarray]) -> tuple[FloatMLP, list[tuple[float, float, float, float]]]:
    """Train the float model; per epoch (0 = initial) (loss, train_acc, test_loss, test_acc)."""
    model = FloatMLP(task.layers, np.random.default_rng([seed, 7]))
    history = [(*model.evaluate(data.x_train, data.y_train), *model.evaluate(data.x_test, data.y_test))]
    for order in orders[:epochs]:
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            model.step(data.x_train[idx], data.y_train[idx], lr)
        history.append((*model.evaluate(data.x_train, data.y_train), *model.evaluate(data.x_test, data.y_test)))
    return model, history
