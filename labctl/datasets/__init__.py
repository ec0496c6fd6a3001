"""Small classification datasets shipped inside the package (no download at run time).

- ``iris``: Fisher's Iris plants, 150 samples x 4 features (sepal length, sepal width, petal
  length, petal width, cm), 3 classes of 50 (setosa, versicolor, virginica).
- ``digits``: optical recognition of handwritten digits, 1797 samples x 64 features (8x8
  images, pixel counts 0..16, row-major), 10 classes (0..9).

Both files are the copies scikit-learn ships (``sklearn/datasets/data``), which come from the
UCI Machine Learning Repository; see README.md in this package for attribution and licences.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from importlib import resources

import numpy as np

__all__ = ["DATASETS", "DatasetInfo", "load_dataset", "dataset_info", "stratified_split"]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    file: str
    n_samples: int
    n_features: int
    classes: tuple[str, ...]
    feature_range: tuple[float, float]  # range of the raw feature values (for scaling)
    description: str


DATASETS: dict[str, DatasetInfo] = {
    "iris": DatasetInfo("iris", "iris.csv", 150, 4, ("setosa", "versicolor", "virginica"), (0.1, 7.9),
                        "Fisher's Iris plants: sepal length, sepal width, petal length, petal width (cm)"),
    "digits": DatasetInfo("digits", "digits.csv.gz", 1797, 64, tuple(str(d) for d in range(10)), (0.0, 16.0),
                          "UCI optical handwritten digits (test set): 8x8 images, pixel counts 0..16"),
}


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r} (datasets: {', '.join(DATASETS)})")
    return DATASETS[name]


def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of a packaged dataset: X float64 (n_samples, n_features) with the raw values,
    y int64 class indices (n_samples,); class names in ``DATASETS[name].classes``."""
    info = dataset_info(name)
    raw = resources.files(__name__).joinpath(info.file).read_bytes()
    if info.file.endswith(".gz"):
        raw = gzip.decompress(raw)
    lines = raw.decode("ascii").splitlines()
    if name == "iris":  # first line: n_samples, n_features, class names
        lines = lines[1:]
    data = np.array([[float(v) for v in line.split(",")] for line in lines if line.strip()])
    X, y = data[:, :-1], data[:, -1].astype(np.int64)
    if X.shape != (info.n_samples, info.n_features):
        raise ValueError(f"dataset {name}: file holds {X.shape}, expected {(info.n_samples, info.n_features)}")
    return X, y


def stratified_split(y: np.ndarray, test_fraction: float = 0.2, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split: (train_index, test_index), each sorted.

    Per class, round(test_fraction * n_class) samples (at least one when the class has two or
    more) go to the test set, chosen by a permutation from ``numpy.random.default_rng(seed)``;
    the same y, fraction and seed always give the same split.
    """
    y = np.asarray(y)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction} must be in (0, 1)")
    rng = np.random.default_rng(seed)
    test = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        n_test = int(round(test_fraction * members.size))
        if members.size >= 2:
            n_test = min(max(n_test, 1), members.size - 1)
        test.append(rng.permutation(members)[:n_test])
    test_index = np.sort(np.concatenate(test))
    train_index = np.setdiff1d(np.arange(y.size), test_index)
    return train_index, test_index
