"""The offline digits data set."""

from __future__ import annotations

import numpy as np

from train.data import Split, load_digits


def test_shapes_and_dtypes(split: Split):
    assert split.x_train.shape == (1437, 64)
    assert split.x_test.shape == (360, 64)
    assert split.y_train.shape == (1437,)
    assert split.x_train.dtype == np.float32
    assert split.y_test.dtype == np.int64
    assert split.sample_shape == (64,)
    assert split.num_classes == 10


def test_pixel_range(split: Split):
    assert split.x_train.min() == 0.0
    assert split.x_train.max() == 16.0


def test_split_is_stratified(split: Split):
    counts = np.bincount(split.y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37


def test_split_is_fixed_by_the_seed(split: Split):
    again = load_digits(seed=0)
    assert np.array_equal(again.x_test, split.x_test)
    assert not np.array_equal(load_digits(seed=1).x_test, split.x_test)
