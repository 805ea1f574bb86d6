"""Data sets for training base and parity models, loaded offline.

A `Split` holds NumPy arrays: inputs ``(N, *sample_shape)`` float32 on the wire scale the
frontend receives (no normalisation here; the bundle's preprocessing does that) and int64
labels.  More data sets (MNIST, Fashion-MNIST, CIFAR-10) plug in as further loaders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import sklearn.datasets
from sklearn.model_selection import train_test_split

FloatArray = npt.NDArray[np.float32]
LabelArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Split:
    """A fixed train/test split of one data set."""

    name: str
    x_train: FloatArray  # (N_train, *sample_shape)
    y_train: LabelArray  # (N_train,)
    x_test: FloatArray  # (N_test, *sample_shape)
    y_test: LabelArray  # (N_test,)
    num_classes: int

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Per-sample input shape (no batch axis)."""
        return tuple(self.x_train.shape[1:])


def load_digits(seed: int = 0, test_fraction: float = 0.2) -> Split:
    """scikit-learn's bundled 8x8 digits: (N, 64) float32 pixels 0..16, stratified split."""
    bunch = sklearn.datasets.load_digits()
    x = np.asarray(bunch.data, dtype=np.float32)  # (1797, 64)
    y = np.asarray(bunch.target, dtype=np.int64)  # (1797,)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return Split(
        name="digits",
        x_train=np.ascontiguousarray(x_train),
        y_train=np.ascontiguousarray(y_train),
        x_test=np.ascontiguousarray(x_test),
        y_test=np.ascontiguousarray(y_test),
        num_classes=10,
    )
