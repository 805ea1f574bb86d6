"""The load clients' inputs: real data set samples, or noise."""

from __future__ import annotations

import numpy as np
import pytest

from bench.inputs import query_inputs
from train.data import load_dataset

F32 = np.dtype("<f4")


def test_noise_is_seeded_and_shaped() -> None:
    a = query_inputs([1, 64], F32, 3, seed=1, data=None)
    b = query_inputs([1, 64], F32, 3, seed=1, data=None)
    assert [x.shape for x in a] == [(1, 64)] * 3 and all(x.dtype == F32 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert float(np.max(a[0])) < 1.0


def test_data_set_samples_are_its_test_inputs() -> None:
    test = load_dataset("digits", seed=2).x_test
    xs = query_inputs([1, 64], F32, 5, seed=2, data="digits")
    assert len(xs) == 5
    for x in xs:
        assert any(np.array_equal(x[0], row) for row in test.astype(F32))


def test_a_data_set_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match=r"data set 'digits': samples of shape \[64\]"):
        query_inputs([1, 784], F32, 1, seed=0, data="digits")
