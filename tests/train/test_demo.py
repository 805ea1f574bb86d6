"""The demo bundles: training once, caching, invalidation, and real accuracy."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import train.demo
from common.bundle import WEIGHTS_FILE, read_manifest
from tests.train.tiny import TINY_BASE, tiny_parity
from train.data import load_digits
from train.demo import DemoBundles, ensure_demo
from train.evaluate import evaluate


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts the models ensure_demo trains."""
    counts: Counter[str] = Counter()
    for name in ("train_base", "train_parity"):
        real = getattr(train.demo, name)

        def counting(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            counts[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(train.demo, name, counting)
    return counts


def tiny_demo(k: int, cache: Path, **base_changes: Any) -> DemoBundles:
    base = dataclasses.replace(TINY_BASE, **base_changes)
    return ensure_demo(k, cache, base_config=base, parity_config=tiny_parity(k))


def mtimes(*dirs: Path) -> list[int]:
    return [(d / WEIGHTS_FILE).stat().st_mtime_ns for d in dirs]


def test_first_call_trains_second_reuses(tmp_path: Path, trained: Counter[str]):
    first = tiny_demo(2, tmp_path)
    assert trained == {"train_base": 1, "train_parity": 1}
    assert first.base_dir == tmp_path / "digits-base"
    assert first.parity_dir == tmp_path / "digits-parity-k2"
    assert read_manifest(first.base_dir).name == "digits"
    assert read_manifest(first.parity_dir).name == "digits-parity-k2"
    before = mtimes(first.base_dir, first.parity_dir)
    second = tiny_demo(2, tmp_path)
    assert trained == {"train_base": 1, "train_parity": 1}
    assert second == first
    assert mtimes(second.base_dir, second.parity_dir) == before


def test_another_k_reuses_the_base(tmp_path: Path, trained: Counter[str]):
    tiny_demo(2, tmp_path)
    bundles = tiny_demo(3, tmp_path)
    assert trained == {"train_base": 1, "train_parity": 2}
    assert read_manifest(bundles.parity_dir).parity.k == 3  # type: ignore[union-attr]


def test_changed_base_retrains_the_parity_model(tmp_path: Path, trained: Counter[str]):
    first = tiny_demo(2, tmp_path)
    old_base = read_manifest(first.base_dir).weights_sha256
    second = tiny_demo(2, tmp_path, seed=1)  # another base model; same parity config
    assert trained == {"train_base": 2, "train_parity": 2}
    new_base = read_manifest(second.base_dir).weights_sha256
    assert new_base != old_base
    assert read_manifest(second.parity_dir).parity.base_sha256 == new_base  # type: ignore[union-attr]


def test_identical_retrained_base_keeps_the_parity_model(tmp_path: Path, trained: Counter[str]):
    # Training is deterministic: a rebuilt base has the same digest, so the parity still fits.
    first = tiny_demo(2, tmp_path)
    (first.base_dir / WEIGHTS_FILE).write_bytes(b"corrupt")
    tiny_demo(2, tmp_path)
    assert trained == {"train_base": 2, "train_parity": 1}


def test_corrupt_parity_weights_are_retrained(tmp_path: Path, trained: Counter[str]):
    first = tiny_demo(2, tmp_path)
    (first.parity_dir / WEIGHTS_FILE).write_bytes(b"corrupt")
    tiny_demo(2, tmp_path)
    assert trained == {"train_base": 1, "train_parity": 2}


def test_changed_parity_config_retrains_only_the_parity(tmp_path: Path, trained: Counter[str]):
    tiny_demo(2, tmp_path)
    ensure_demo(2, tmp_path, base_config=TINY_BASE, parity_config=tiny_parity(2, epochs=3))
    assert trained == {"train_base": 1, "train_parity": 2}


def test_unreadable_manifest_is_retrained(tmp_path: Path, trained: Counter[str]):
    first = tiny_demo(2, tmp_path)
    (first.parity_dir / "manifest.json").write_text("{")
    tiny_demo(2, tmp_path)
    assert trained == {"train_base": 1, "train_parity": 2}


def test_parity_config_must_match_k(tmp_path: Path):
    with pytest.raises(ValueError, match=r"parity_config.k=3 does not match k=2"):
        ensure_demo(2, tmp_path, base_config=TINY_BASE, parity_config=tiny_parity(3))


def test_real_demo_reaches_sane_accuracy(tmp_path: Path):
    # The recipe `parm up` uses.
    bundles = ensure_demo(2, tmp_path)
    m = bundles.metrics
    assert m["A_a"] > 0.95
    assert m["A_d"] > 0.92  # measured 0.969 at k=2
    assert m["A_d_agreement"] > 0.95
    assert m["train_seconds"] > 0  # its speed is a benchmark figure (bench/RESULTS.md), not a test
    # The saved bundles, loaded back, give the numbers recorded at training time.
    again = evaluate(bundles.base_dir, bundles.parity_dir, load_digits(), 2)
    assert again["A_d"] == pytest.approx(m["A_d"])
    assert again["A_a"] == pytest.approx(m["A_a"])
