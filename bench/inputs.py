"""What the load clients send: real samples of a data set, or uniform noise.

A parity model is trained on its data set's distribution; on uniform noise its
reconstructions are far from the base model's outputs (the frontend's live check of
reconstructions measured about 5% top-1 agreement on noise for the digits demo, 97-99%
on digits).  Benchmarks of the demo therefore send real digits, so that the
reconstructed answers they count are the ones users would get.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt


def query_inputs(
    shape: Sequence[int], dtype: np.dtype[Any], count: int, seed: int, data: str | None
) -> list[npt.NDArray[Any]]:
    """``count`` single-row inputs of ``shape`` (batch axis first, of size 1).

    ``data``: a data set spec of ``train.data.load_dataset`` (e.g. ``digits``) whose test
    samples are sent in a seeded order; None: uniform noise in [0, 1).
    """
    rng = np.random.default_rng(seed)
    if data is None:
        return [rng.random(shape).astype(dtype) for _ in range(count)]
    from train.data import load_dataset  # only when asked: it imports scikit-learn

    x = load_dataset(data, seed=seed).x_test
    if tuple(x.shape[1:]) != tuple(shape[1:]):
        raise ValueError(
            f"data set {data!r}: samples of shape {list(x.shape[1:])}, the model takes "
            f"{list(shape[1:])}"
        )
    picks = rng.choice(len(x), size=count, replace=count > len(x))
    return [np.asarray(x[i : i + 1], dtype) for i in picks]
