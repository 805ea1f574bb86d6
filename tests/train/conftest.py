"""Shared fixtures: the digits split and a tiny base bundle trained once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.train.tiny import TINY_BASE
from train.base import train_base
from train.data import Split, load_digits


@pytest.fixture(scope="session")
def split() -> Split:
    return load_digits()


@pytest.fixture(scope="session")
def base_dir(split: Split, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("base") / "digits-base"
    train_base(split, TINY_BASE, path, name="digits")
    return path
