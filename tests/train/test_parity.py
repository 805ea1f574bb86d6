"""Parity-model training (paradigm 2: same architecture, targets from the frozen base)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from frontend.codes import make_code
from model_container.bundle import ParityInfo, check_parity_for, file_sha256, read_manifest
from model_container.models import load_model, load_weights
from tests.train.tiny import tiny_parity
from train.base import BaseConfig, train_base
from train.data import Split
from train.parity import parity_batch, parity_preprocessing, random_groups, train_parity


@pytest.mark.parametrize("k", [2, 3, 4])
def test_random_groups_walk_a_permutation_per_slot(k):
    groups = random_groups(10, k, 10, torch.Generator().manual_seed(0))
    assert groups.shape == (k, 10)
    for slot in groups:
        assert sorted(slot.tolist()) == list(range(10))


def test_random_groups_longer_than_the_data():
    groups = random_groups(4, 2, 10, torch.Generator().manual_seed(0))
    assert groups.shape == (2, 10)
    assert sorted(groups[0, :4].tolist()) == [0, 1, 2, 3]
    assert sorted(groups[0, 4:8].tolist()) == [0, 1, 2, 3]


def test_random_groups_are_seeded():
    a = random_groups(50, 3, 50, torch.Generator().manual_seed(7))
    b = random_groups(50, 3, 50, torch.Generator().manual_seed(7))
    c = random_groups(50, 3, 50, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_training_encodes_exactly_like_the_serving_path(split: Split, k):
    # DESIGN principle 1: the frontend encodes NumPy arrays with frontend.codes; training must
    # produce bit-identical parity queries for the same inputs.
    code = make_code("sum", k)
    x = torch.from_numpy(split.x_train)
    base_out = torch.randn(len(x), 10)
    groups = random_groups(len(x), k, 64, torch.Generator().manual_seed(0))
    parity_in, target = parity_batch(code, x, base_out, groups)
    served = make_code("sum", k).encode(split.x_train[groups.numpy()])  # (k, B, 64) -> (B, 64)
    assert np.array_equal(parity_in.numpy(), served)
    torch.testing.assert_close(target, sum(base_out[groups[i]] for i in range(k)))


def test_parity_preprocessing_is_measured_on_encoded_inputs(split: Split):
    x = torch.from_numpy(split.x_train)
    pre = parity_preprocessing(make_code("sum", 3), x, 3, 20_000, seed=0)
    assert pre["mean"][0] == pytest.approx(3 * float(x.mean()), rel=0.01)
    # Independent images add variances, but pixel positions share a mean image, which adds
    # coherently: the spread lies between sqrt(k) and k times the single-image std.
    assert 3**0.5 * float(x.std()) < pre["std"][0] < 3 * float(x.std())


@pytest.fixture(scope="module")
def parity_dir(base_dir: Path, split: Split, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("parity") / "p"
    train_parity(base_dir, split, tiny_parity(3), path, name="digits-parity-k3")
    return path


def test_parity_bundle_manifest(parity_dir: Path, base_dir: Path):
    base, parity = read_manifest(base_dir), read_manifest(parity_dir)
    assert parity.role == "parity"
    assert parity.name == "digits-parity-k3"
    assert parity.parity == ParityInfo(3, "sum", base.weights_sha256, "digits")
    assert (parity.architecture, parity.arch_args) == (base.architecture, base.arch_args)
    check_parity_for(base, parity, k=3, code="sum")
    assert parity.preprocessing["mean"][0] == pytest.approx(3 * base.preprocessing["mean"][0], 0.05)
    metrics = parity.metrics
    assert metrics["config"] == tiny_parity(3).to_json()
    assert {"A_a", "A_d", "A_d_agreement", "recon_mse", "train_seconds"} <= metrics.keys()
    assert metrics["A_a"] == base.metrics["A_a"]
    assert 0.0 <= metrics["A_d"] <= 1.0


def test_parity_training_is_deterministic(parity_dir: Path, base_dir: Path, split: Split, tmp_path):
    train_parity(base_dir, split, tiny_parity(3), tmp_path / "again", name="digits-parity-k3")
    digest = file_sha256(tmp_path / "again" / "weights.safetensors")
    assert digest == read_manifest(parity_dir).weights_sha256


def test_init_from_base_starts_at_the_base_weights(base_dir: Path, split: Split, tmp_path: Path):
    train_parity(base_dir, split, tiny_parity(2, epochs=0), tmp_path / "p", name="p")
    parity, base = read_manifest(tmp_path / "p"), read_manifest(base_dir)
    start, base_weights = load_weights(tmp_path / "p", parity), load_weights(base_dir, base)
    assert all(torch.equal(start[name], base_weights[name]) for name in base_weights)


def test_parity_model_learns_a_linear_base(split: Split, tmp_path: Path):
    # For a linear F the exact parity model F(P - k*mean) lies inside the architecture, so
    # the regression should drive the reconstruction error close to zero.
    linear = BaseConfig(arch_args={"hidden": [], "bias": False}, epochs=5, threads=1)
    train_base(split, linear, tmp_path / "base", name="linear")
    config = tiny_parity(2, epochs=50)
    manifest = train_parity(tmp_path / "base", split, config, tmp_path / "p", name="p")
    assert manifest.metrics["recon_mse"] < 0.01
    assert manifest.metrics["A_d_agreement"] > 0.9
    _, parity = load_model(tmp_path / "p")
    assert not parity.training
