"""Parity-model training (paradigm 2: targets from the frozen base, codes from frontend)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from common.bundle import ParityInfo, check_parity_for, file_sha256, read_manifest
from common.codes import make_code
from common.models import load_model, load_weights
from tests.train.tiny import tiny_parity
from train.base import BaseConfig, train_base
from train.data import Split
from train.parity import (
    parity_batch,
    parity_loss,
    parity_preprocessing,
    random_groups,
    train_parity,
)


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


@pytest.mark.parametrize(
    ("code_name", "k", "r", "index"),
    [("sum", 2, 1, 0), ("sum", 4, 1, 0), ("concat", 2, 1, 0), ("concat", 3, 1, 0),
     ("concat", 4, 1, 0), ("linear", 3, 2, 1)],
)  # fmt: skip
def test_training_encodes_exactly_like_the_serving_path(image_split: Split, code_name, k, r, index):
    # DESIGN principle 1: the frontend encodes NumPy arrays with common.codes; training must
    # produce the same parity queries (and targets) for the same inputs.
    code = make_code(code_name, k, r)
    x = torch.from_numpy(image_split.x_train)  # (N, 1, 12, 12)
    base_out = torch.randn(len(x), 4)
    groups = random_groups(len(x), k, 16, torch.Generator().manual_seed(0))
    parity_in, target = parity_batch(code, x, base_out, groups, index)
    served = make_code(code_name, k, r).encode_all(image_split.x_train[groups.numpy()])[index]
    np.testing.assert_allclose(parity_in.numpy(), served, rtol=1e-6, atol=1e-4)
    expected = code.combine(base_out[groups].numpy())[index]
    np.testing.assert_allclose(target.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_parity_preprocessing_is_measured_on_encoded_inputs(split: Split):
    x = torch.from_numpy(split.x_train)
    pre = parity_preprocessing(make_code("sum", 3), x, 20_000, seed=0)
    assert pre["mean"][0] == pytest.approx(3 * float(x.mean()), rel=0.01)
    # Independent images add variances, but pixel positions share a mean image, which adds
    # coherently: the spread lies between sqrt(k) and k times the single-image std.
    assert 3**0.5 * float(x.std()) < pre["std"][0] < 3 * float(x.std())


@pytest.mark.parametrize("loss", ["mse", "kl", "ce"])
def test_losses_of_a_perfect_parity_output(loss):
    code = make_code("sum", 3)
    outputs = torch.randn(3, 5, 4) * 5  # (k, B, classes)
    labels = torch.randint(0, 4, (3, 5), generator=torch.Generator().manual_seed(0))
    perfect = outputs.sum(0)  # decodes every slot to F's own output
    config = tiny_parity(3, loss=loss)
    value = float(parity_loss(config, code, perfect, outputs, labels))
    if loss == "ce":  # the reconstructions are F's outputs: F's own cross-entropy
        expected = sum(
            float(torch.nn.functional.cross_entropy(outputs[j], labels[j])) for j in range(3)
        )
        assert value == pytest.approx(expected / 3, rel=1e-5)
    else:
        assert value == pytest.approx(0.0, abs=1e-5)
        worse = parity_loss(config, code, perfect + torch.randn(5, 4) * 3, outputs, labels)
        assert float(worse) > 0.01


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
    assert metrics["config"] == json.loads(json.dumps(tiny_parity(3).to_json()))
    assert {"A_a", "A_d", "A_d_agreement", "recon_mse", "train_seconds", "A_o"} <= metrics.keys()
    assert metrics["A_a"] == pytest.approx(base.metrics["A_a"])
    assert 0.0 <= metrics["A_d"] <= 1.0
    run = json.loads((parity_dir / "metrics.json").read_text())
    assert len(run["history"]) == 2 and run["A_d"] == metrics["A_d"]


def test_parity_training_is_deterministic(parity_dir: Path, base_dir: Path, split: Split, tmp_path):
    train_parity(base_dir, split, tiny_parity(3), tmp_path / "again", name="digits-parity-k3")
    digest = file_sha256(tmp_path / "again" / "weights.safetensors")
    assert digest == read_manifest(parity_dir).weights_sha256


def test_init_from_base_starts_at_the_base_weights(base_dir: Path, split: Split, tmp_path: Path):
    train_parity(base_dir, split, tiny_parity(2, epochs=0), tmp_path / "p", name="p")
    parity, base = read_manifest(tmp_path / "p"), read_manifest(base_dir)
    start, base_weights = load_weights(tmp_path / "p", parity), load_weights(base_dir, base)
    assert all(torch.equal(start[name], base_weights[name]) for name in base_weights)


def test_another_architecture_for_the_parity_model(base_dir: Path, split: Split, tmp_path: Path):
    config = tiny_parity(2, epochs=1, architecture="mlp", arch_args={"hidden": [32]})
    manifest = train_parity(base_dir, split, config, tmp_path / "p", name="p")
    assert manifest.arch_args == {"in_features": 64, "num_classes": 10, "hidden": [32]}
    wider = tiny_parity(2, epochs=1, arch_args={"hidden": [300, 100]})  # same architecture
    manifest = train_parity(base_dir, split, wider, tmp_path / "w", name="w")
    assert manifest.arch_args["hidden"] == [300, 100]


@pytest.mark.parametrize("code", ["concat", "sum"])
def test_image_parity_models_with_augmentation(lenet_dir, image_split, tmp_path, code):
    config = tiny_parity(2, code=code, loss="kl", groups_per_epoch=64, batch_size=32)
    manifest = train_parity(lenet_dir, image_split, config, tmp_path / code, name=code)
    assert manifest.parity is not None and manifest.parity.code == code
    assert manifest.metrics["val_A_d"] is not None


def test_linear_code_parity_index(lenet_dir, image_split, tmp_path):
    config = tiny_parity(3, code="linear", r=2, index=1, groups_per_epoch=32, epochs=1)
    manifest = train_parity(lenet_dir, image_split, config, tmp_path / "p1", name="p1")
    assert manifest.parity is not None
    assert (manifest.parity.r, manifest.parity.index) == (2, 1)
    assert {"A_a", "A_d", "A_d_agreement"} <= manifest.metrics.keys()
    with pytest.raises(ValueError, match=r"parity index must be in \[0, 2\)"):
        train_parity(lenet_dir, image_split, tiny_parity(3, code="linear", r=2, index=2),
                     tmp_path / "bad", name="bad")  # fmt: skip


def test_bad_loss_is_refused(base_dir: Path, split: Split, tmp_path: Path):
    with pytest.raises(ValueError, match="loss must be one of"):
        train_parity(base_dir, split, tiny_parity(2, loss="l1"), tmp_path / "p", name="p")


def test_parity_model_learns_a_linear_base(split: Split, tmp_path: Path):
    # For a linear F the exact parity model F(P - k*mean) lies inside the architecture, so
    # the regression should drive the reconstruction error close to zero.
    linear = BaseConfig(arch_args={"hidden": [], "bias": False}, epochs=5, threads=1)
    train_base(split, linear, tmp_path / "base", name="linear")
    config = tiny_parity(2, epochs=50, val_fraction=0.0, lr=2e-3)
    manifest = train_parity(tmp_path / "base", split, config, tmp_path / "p", name="p")
    assert manifest.metrics["recon_mse"] < 0.01
    assert manifest.metrics["A_d_agreement"] > 0.9
    _, parity = load_model(tmp_path / "p")
    assert not parity.training
