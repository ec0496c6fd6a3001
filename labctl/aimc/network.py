"""Layers of analog matrices as a network: sigmoid hidden layers, softmax output, backward MVM
for the hidden layers' errors."""
from __future__ import annotations

import numpy as np

from .floatnet import cross_entropy, sigmoid, softmax
from .tile import AnalogMatrix, read_biases

RowRead = tuple[AnalogMatrix, np.ndarray]  # (a matrix, rows of its [W; b] to read)


class AnalogNetwork:
    """Layers of AnalogMatrix (the weight arrays C): sigmoid hidden layers, softmax output."""

    def __init__(self, layers: list[AnalogMatrix]):
        self.layers = layers

    def forward(self, x: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        acts, z, _ = self.forward_reading(x, [None] * len(self.layers))
        return acts, z

    def forward_reading(self, x: np.ndarray, reads: list[RowRead | None]
                        ) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray | None]]:
        """The forward pass, with rows of other matrices (e.g. a layer's fast array) read along:
        reads[k] = (A, rows) reads rows of A's [W; b] after layer k's forward MVM. One backward
        MVM request reads every bias the pass needs (the layers' and the read matrices'), then
        per layer one forward MVM request, and one more for its rows read. (The rows could ride
        in the layer's request on the block spanning both matrices, ~10 % less wall time in the
        simulator, but the reply would carry every column of both for every vector: ~40 % more
        bytes, i.e. link time on the real UART.) Returns (acts, logits, rows read per layer or
        None)."""
        extra = [read[0] for read in reads if read is not None]
        biases = read_biases(self.layers + extra)
        extra_bias = dict(zip(map(id, extra), biases[len(self.layers):]))
        acts: list[np.ndarray] = [x]
        values: list[np.ndarray | None] = []
        for k, (layer, b, read) in enumerate(zip(self.layers, biases, reads)):
            z = layer.product(acts[-1]) + b
            if read is None:
                values.append(None)
            else:
                A, rows = read
                values.append(A.assemble_rows(rows, A.product(A.one_hot(rows[rows < A.cells.n_in])),
                                              extra_bias[id(A)]))
            if k == len(self.layers) - 1:
                return acts, z, values
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
