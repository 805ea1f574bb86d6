"""Tiny training configs: enough to exercise the code paths in a second or two."""

from __future__ import annotations

from typing import Any

from train.base import BaseConfig
from train.parity import ParityConfig

TINY_BASE = BaseConfig(epochs=3, threads=1)


def tiny_parity(k: int = 2, **overrides: Any) -> ParityConfig:
    """A parity config with two epochs and small estimation/evaluation samples."""
    settings: dict[str, Any] = {
        "k": k,
        "epochs": 2,
        "threads": 1,
        "preprocessing_groups": 500,
        "eval_rounds": 1,
    }
    return ParityConfig(**(settings | overrides))
