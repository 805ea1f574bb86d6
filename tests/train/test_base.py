"""Base-model training: bundles, preprocessing, determinism, image models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from common.bundle import TensorSpec, file_sha256
from common.models import load_model
from tests.train.tiny import TINY_BASE
from train.base import BaseConfig, arch_args_for, image_shape, train_base
from train.data import Split, hold_out


def test_base_bundle(base_dir: Path, split: Split):
    manifest, model = load_model(base_dir)
    assert manifest.role == "base"
    assert manifest.name == "digits"
    assert manifest.arch_args == {"in_features": 64, "num_classes": 10, "hidden": [200, 100]}
    assert manifest.inputs == (TensorSpec("input", "FP32", (64,)),)
    assert manifest.outputs == (TensorSpec("logits", "FP32", (10,)),)
    assert manifest.metrics["config"] == json.loads(json.dumps(TINY_BASE.to_json()))
    # Normalisation statistics come from the training part only (not the held-out part).
    train_idx, _ = hold_out(len(split.x_train), TINY_BASE.val_fraction, TINY_BASE.seed)
    x = torch.from_numpy(split.x_train[train_idx]).double()
    assert manifest.preprocessing["mean"] == pytest.approx([float(x.mean())])
    assert manifest.preprocessing["std"] == pytest.approx([float(x.std())])
    logits = model(torch.from_numpy(split.x_test))
    accuracy = float((logits.argmax(1) == torch.from_numpy(split.y_test)).float().mean())
    assert accuracy == pytest.approx(manifest.metrics["A_a"])
    assert accuracy > 0.8  # three epochs already learn most of the digits


def test_run_folder_has_metrics_and_checkpointless_bundle(base_dir: Path):
    metrics = json.loads((base_dir / "metrics.json").read_text())
    assert len(metrics["history"]) == TINY_BASE.epochs
    assert {"A_a", "val_accuracy", "best_epoch", "train_seconds"} <= metrics.keys()
    assert not (base_dir / "checkpoint.pt").exists()  # checkpoints only when asked for


def test_training_is_deterministic(base_dir: Path, split: Split, tmp_path: Path):
    train_base(split, TINY_BASE, tmp_path / "again", name="digits")
    assert file_sha256(tmp_path / "again" / "weights.safetensors") == file_sha256(
        base_dir / "weights.safetensors"
    )


def test_image_base_uses_per_channel_statistics(lenet_dir: Path, image_split: Split):
    manifest, model = load_model(lenet_dir)
    assert manifest.architecture == "lenet5"
    assert manifest.arch_args == {"input_shape": [1, 12, 12], "num_classes": 4}
    assert manifest.inputs == (TensorSpec("input", "FP32", (1, 12, 12)),)
    assert len(manifest.preprocessing["mean"]) == 1
    assert manifest.metrics["config"]["augment"] == "auto"  # the data set's: shifts
    out = model(torch.from_numpy(image_split.x_test))
    assert out.shape == (len(image_split.x_test), 4)


def test_colour_images_get_one_statistic_per_channel(tmp_path: Path):
    rng = torch.Generator().manual_seed(0)
    x = torch.rand(20, 3, 12, 12, generator=rng) * torch.tensor([1.0, 10.0, 100.0]).view(3, 1, 1)
    split = Split("rgb", x.numpy(), (torch.arange(20) % 2).numpy(), x[:6].numpy(),
                  (torch.arange(6) % 2).numpy(), 2, "crop-flip")  # fmt: skip
    config = BaseConfig(architecture="lenet5", arch_args={"channels": [2, 4]},
                                 epochs=1, threads=1, val_fraction=0.0)  # fmt: skip
    manifest = train_base(split, config, tmp_path / "rgb", name="rgb")
    mean = manifest.preprocessing["mean"]
    assert len(mean) == 3 and mean[0] < mean[1] < mean[2]


@pytest.mark.parametrize(
    ("shape", "expected"), [((64,), (1, 8, 8)), ((3, 32, 32), (3, 32, 32)), ((784,), (1, 28, 28))]
)
def test_image_shape(shape, expected):
    assert image_shape(shape) == expected


def test_flat_non_square_inputs_need_an_mlp(split: Split):
    with pytest.raises(ValueError, match="needs image inputs"):
        image_shape((10,))
    assert arch_args_for("vgg11", {}, split)["input_shape"] == [1, 8, 8]
