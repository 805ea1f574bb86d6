"""The demo models: an MLP on scikit-learn's digits and its parity model for one k.

`ensure_demo` trains them on first use (seconds on a laptop CPU) and caches the bundles;
later calls reuse a cached bundle when its manifest is valid, its weights match their
digest, it was trained with the same config, and (for the parity model) it was trained for
the cached base model's exact weights.  A file lock keeps concurrent callers (for example
several containers started at once) from training the same model twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.bundle import (
    WEIGHTS_FILE,
    BundleError,
    Manifest,
    check_parity_for,
    file_sha256,
    read_manifest,
)
from train.base import BaseConfig, train_base
from train.data import Split, load_digits
from train.parity import ParityConfig, train_parity

log = logging.getLogger(__name__)

BASE_NAME = "digits"
BASE_DIR = "digits-base"
# Tiny MLPs train fastest on one thread: more only adds synchronisation (measured 2-4x slower
# with 2 threads on a 2-core machine).
# The digits are flat 8x8 vectors: no augmentation; no validation split (every one of the
# 1,437 training digits counts), so the last epoch is kept.
_DEMO_RUN: dict[str, Any] = {
    "weight_decay": 0.0,
    "warmup_epochs": 0.0,
    "augment": "none",
    "val_fraction": 0.0,
    "eval_every": 0,
    "threads": 1,
}
DEMO_BASE_CONFIG = BaseConfig(epochs=80, batch_size=64, lr=1e-3, **_DEMO_RUN)


def demo_parity_config(k: int) -> ParityConfig:
    """The demo's parity training recipe for ``k`` (about 10-15 s on one CPU core)."""
    return ParityConfig(k=k, code="sum", epochs=1000, batch_size=256, lr=2e-3, **_DEMO_RUN)


def parity_name(k: int) -> str:
    """Manifest name (and cache folder name) of the demo parity model for ``k``."""
    return f"digits-parity-k{k}"


@dataclass(frozen=True)
class DemoBundles:
    """Where the demo bundles are, and the parity model's measured accuracy."""

    base_dir: Path
    parity_dir: Path
    metrics: dict[str, Any]


def ensure_demo(
    k: int,
    cache_dir: str | Path,
    *,
    base_config: BaseConfig | None = None,
    parity_config: ParityConfig | None = None,
) -> DemoBundles:
    """Train (or reuse from ``cache_dir``) the digits base model and its parity model for k."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    base_config = base_config or DEMO_BASE_CONFIG
    parity_config = parity_config or demo_parity_config(k)
    if parity_config.k != k:
        raise ValueError(f"parity_config.k={parity_config.k} does not match k={k}")
    base_dir, parity_dir = cache_dir / BASE_DIR, cache_dir / parity_name(k)
    with _locked(cache_dir / ".lock"):
        split = load_digits()
        base = _cached_base(base_dir, base_config) or _train_base(split, base_config, base_dir)
        parity = _cached_parity(parity_dir, base, parity_config) or _train_parity(
            split, parity_config, base_dir, parity_dir
        )
    keys = ("A_a", "A_d", "A_d_agreement", "recon_mse", "train_seconds")
    metrics = {key: parity.metrics[key] for key in keys if key in parity.metrics}
    return DemoBundles(base_dir=base_dir, parity_dir=parity_dir, metrics=metrics)


def _train_base(split: Split, config: BaseConfig, base_dir: Path) -> Manifest:
    log.info("training the demo base model into %s", base_dir)
    return train_base(split, config, base_dir, name=BASE_NAME)


def _train_parity(split: Split, config: ParityConfig, base_dir: Path, parity_dir: Path) -> Manifest:
    log.info("training the demo parity model (k=%d) into %s", config.k, parity_dir)
    return train_parity(base_dir, split, config, parity_dir, name=parity_name(config.k))


def _cached_base(base_dir: Path, config: BaseConfig) -> Manifest | None:
    manifest = _valid_manifest(base_dir, config.to_json())
    if manifest is None or manifest.role != "base" or manifest.name != BASE_NAME:
        return None
    return manifest


def _cached_parity(parity_dir: Path, base: Manifest, config: ParityConfig) -> Manifest | None:
    manifest = _valid_manifest(parity_dir, config.to_json())
    if manifest is None:
        return None
    try:
        check_parity_for(base, manifest, k=config.k, code=config.code)
    except BundleError as exc:
        log.info("retraining the cached parity model: %s", exc)
        return None
    return manifest


def _valid_manifest(bundle_dir: Path, config: dict[str, Any]) -> Manifest | None:
    """The bundle's manifest if it is intact and was trained with ``config``, else None."""
    if not bundle_dir.exists():
        return None
    try:
        manifest = read_manifest(bundle_dir)
        digest = file_sha256(bundle_dir / WEIGHTS_FILE)
    except (BundleError, OSError) as exc:
        log.info("ignoring cached bundle %s: %s", bundle_dir, exc)
        return None
    if digest != manifest.weights_sha256:
        log.info("ignoring cached bundle %s: weights do not match their digest", bundle_dir)
        return None
    if manifest.metrics.get("config") != _normalised(config):
        log.info("ignoring cached bundle %s: trained with another config", bundle_dir)
        return None
    return manifest


def _normalised(config: dict[str, Any]) -> Any:
    # Compare as JSON sees it: tuples become lists once a manifest is written and read back.
    return json.loads(json.dumps(config))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
