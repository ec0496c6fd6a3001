"""Layers of analog matrices as a network: sigmoid hidden layers, softmax output, backward MVM
for the hidden layers' errors."""
from __future__ import annotations

import numpy as np

from .floatnet import cross_entropy, sigmoid, softmax
from .tile import AnalogMatrix


class AnalogNetwork:
    """Layers of AnalogMatrix (the weight arrays C): sigmoid hidden layers, softmax output."""

    def __init__(self, layers: list[AnalogMatrix]):
        self.layers = layers

    def forward(self, x: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        acts = [x]
        for k, layer in enumerate(self.layers):
            z = layer.forward(acts[-1])
            if k == len(self.layers) - 1:
                return acts, z
            acts.append(sigmoid(z))
        raise AssertionError("unreachable")

    def backward(self, acts: list[np.ndarray], d_out: np.ndarray) -> list[np.ndarray]:
        """Errors dLoss/dz of every layer (backward MVM through the hidden layers)."""
        deltas = [d_out]
        for k in range(len(self.layers) - 1, 0, -1):
            e = self.layers[k].backward(deltas[0])
            deltas.insert(0, e * acts[k] * (1.0 - acts[k]))
        return deltas

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
        """(loss, accuracy, logits) on a dataset."""
        _, z = self.forward(x)
        return cross_entropy(softmax(z), y), float(np.mean(np.argmax(z, axis=1) == y)), z
