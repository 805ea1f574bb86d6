"""Base-model training."""

from __future__ import annotations

from pathlib import Path

import torch

from model_container.bundle import TensorSpec, file_sha256, read_manifest
from model_container.models import load_model
from tests.train.tiny import TINY_BASE
from train.base import BaseConfig, fit_classifier, train_base
from train.common import seeded_build
from train.data import Split


def test_base_bundle(base_dir: Path, split: Split):
    manifest, model = load_model(base_dir)
    assert manifest.role == "base"
    assert manifest.name == "digits"
    assert manifest.arch_args == {"in_features": 64, "num_classes": 10, "hidden": [200, 100]}
    assert manifest.inputs == (TensorSpec("input", "FP32", (64,)),)
    assert manifest.outputs == (TensorSpec("logits", "FP32", (10,)),)
    assert manifest.metrics["config"] == TINY_BASE.to_json()
    x = torch.from_numpy(split.x_train)
    assert manifest.preprocessing["mean"] == [float(x.mean())]
    assert manifest.preprocessing["std"] == [float(x.std())]
    logits = model(torch.from_numpy(split.x_test))
    accuracy = float((logits.argmax(1) == torch.from_numpy(split.y_test)).float().mean())
    assert accuracy == manifest.metrics["A_a"]
    assert accuracy > 0.8  # three epochs already learn most of the digits


def test_training_is_deterministic(base_dir: Path, split: Split, tmp_path: Path):
    train_base(split, TINY_BASE, tmp_path / "again", name="digits")
    assert file_sha256(tmp_path / "again" / "weights.safetensors") == file_sha256(
        base_dir / "weights.safetensors"
    )
    assert (
        read_manifest(tmp_path / "again").weights_sha256 == read_manifest(base_dir).weights_sha256
    )


def test_loss_decreases(split: Split):
    config = BaseConfig(epochs=3, threads=1)
    net = seeded_build("mlp", {"in_features": 64, "num_classes": 10}, seed=0)
    x = torch.from_numpy(split.x_train) / 16.0
    history = fit_classifier(net, x, torch.from_numpy(split.y_train), config)
    assert len(history) == 3
    assert history[-1] < history[0]
    assert not net.training


def test_seeded_build_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a = seeded_build("mlp", {"in_features": 4, "num_classes": 2}, seed=3)
    b = seeded_build("mlp", {"in_features": 4, "num_classes": 2}, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
