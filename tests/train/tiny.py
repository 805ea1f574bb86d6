"""Tiny training configs and data: enough to exercise the code paths in a second or two."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from train.base import BaseConfig
from train.parity import ParityConfig

# Digits are flat: no augmentation; no warm-up so three epochs learn something.
TINY_BASE = BaseConfig(epochs=3, threads=1, warmup_epochs=0.0, batch_size=64)


def tiny_parity(k: int = 2, **overrides: Any) -> ParityConfig:
    """A parity config with two epochs and small estimation/evaluation samples."""
    settings: dict[str, Any] = {
        "k": k,
        "epochs": 2,
        "threads": 1,
        "warmup_epochs": 0.0,
        "preprocessing_groups": 500,
        "eval_rounds": 1,
        "val_rounds": 1,
    }
    return ParityConfig(**(settings | overrides))


def image_npz(
    path: Path, n_train: int = 96, n_test: int = 32, size: int = 12, seed: int = 0
) -> Path:
    """An npz of ``size`` x ``size`` greyscale images whose class is the bright quadrant."""
    rng = np.random.default_rng(seed)

    def images(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 4, n)
        x = rng.integers(0, 60, (n, size, size)).astype(np.uint8)
        half = size // 2
        for i, label in enumerate(y):
            r, c = divmod(int(label), 2)
            x[i, r * half : (r + 1) * half, c * half : (c + 1) * half] += 150
        return x, y.astype(np.uint8)

    x_train, y_train = images(n_train)
    x_test, y_test = images(n_test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path
