"""Shared fixtures: the digits split, tiny image data, and tiny base bundles trained once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.train.tiny import TINY_BASE, image_npz
from train.base import BaseConfig, train_base
from train.data import Split, load_dataset, load_digits


@pytest.fixture(scope="session")
def split() -> Split:
    return load_digits()


@pytest.fixture(scope="session")
def base_dir(split: Split, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("base") / "digits-base"
    train_base(split, TINY_BASE, path, name="digits")
    return path


@pytest.fixture(scope="session")
def image_spec(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``npz:PATH`` of a tiny 12x12 greyscale image data set (4 classes)."""
    return "npz:" + str(image_npz(tmp_path_factory.mktemp("images") / "quadrants.npz"))


@pytest.fixture(scope="session")
def image_split(image_spec: str) -> Split:
    return load_dataset(image_spec)


@pytest.fixture(scope="session")
def lenet_dir(image_split: Split, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LeNet-5 base bundle for the tiny images (one epoch, with augmentation)."""
    path = tmp_path_factory.mktemp("lenet") / "lenet-base"
    config = BaseConfig(
        architecture="lenet5", arch_args={}, epochs=2, batch_size=32, threads=1, lr=3e-3
    )
    train_base(image_split, config, path, name="quadrants")
    return path
