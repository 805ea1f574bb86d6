"""Train a base model F (a plain classifier) and write it as a bundle.

The run folder is the bundle (``manifest.json``, ``weights.safetensors``) plus
``metrics.json`` (test accuracy, the per-epoch history, the config) and ``checkpoint.pt``.
Inputs are normalised with per-channel statistics of the training part, stored in the
manifest's ``preprocessing`` so that serving normalises exactly as training did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from math import prod
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common.bundle import Manifest
from common.models import Preprocess, save_bundle
from train.augment import augment, check_augmentation, resolve
from train.common import (
    METRICS_FILE,
    Run,
    input_spec,
    input_stats,
    json_bytes,
    output_spec,
    predict,
    seeded_build,
    top1,
)
from train.data import Split
from train.loop import TrainConfig, Trainer


@dataclass(frozen=True)
class BaseConfig(TrainConfig):
    """Hyperparameters of base-model training; saved in the bundle and its checkpoints.

    ``arch_args`` are the architecture's own arguments; the input shape and class count
    come from the data set (`arch_args_for`).
    """

    architecture: str = "mlp"
    arch_args: dict[str, Any] = field(default_factory=lambda: {"hidden": [200, 100]})
    label_smoothing: float = 0.0


def arch_args_for(architecture: str, arch_args: dict[str, Any], split: Split) -> dict[str, Any]:
    """Complete ``arch_args`` with what the data set fixes (input size, classes)."""
    if architecture == "mlp":
        fixed: dict[str, Any] = {"in_features": prod(split.sample_shape)}
    else:
        fixed = {"input_shape": list(image_shape(split.sample_shape))}
    return {**fixed, "num_classes": split.num_classes, **arch_args}


def image_shape(sample_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(C, H, W)`` of a sample: images as they are, square flat inputs as 1 x n x n."""
    if len(sample_shape) == 3:
        return sample_shape[0], sample_shape[1], sample_shape[2]
    side = round(prod(sample_shape) ** 0.5)
    if len(sample_shape) == 1 and side * side == sample_shape[0]:
        return 1, side, side
    raise ValueError(f"a convolutional network needs image inputs, got samples {sample_shape}")


def train_base(
    split: Split,
    config: BaseConfig,
    bundle_dir: str | Path,
    *,
    name: str,
    device: str = "cpu",
    checkpoint: bool = False,
    stop_after: int | None = None,
) -> Manifest:
    """Train a classifier on ``split`` and save it as base bundle ``name`` at ``bundle_dir``.

    With ``checkpoint``, ``bundle_dir/checkpoint.pt`` is written as training goes and a
    run with the same config continues from it.  ``stop_after`` ends the run after that
    epoch by raising `RunStopped` (the checkpoint can resume it), without a bundle.
    """
    run = Run.start(split, config, bundle_dir, device, checkpoint)
    x, y, x_val, y_val = run.x, run.y, run.x_val, run.y_val
    preprocessing = input_stats(x)
    arch_args = arch_args_for(config.architecture, config.arch_args, split)
    net = seeded_build(config.architecture, arch_args, config.seed)
    model = nn.Sequential(Preprocess(preprocessing["mean"], preprocessing["std"]), net)
    model = model.to(run.device)
    check_augmentation(config.augment, split.augmentation, x)
    with run.threads():
        trainer = run.trainer(model, len(x), config.seed)

        def validate() -> float | None:
            return top1(predict(model, x_val), y_val) if len(x_val) else None

        epoch = partial(classifier_epoch, x=x, y=y, config=config, dataset_aug=split.augmentation)
        run.train(trainer, epoch, validate, stop_after)
        test_logits = predict(model, torch.from_numpy(split.x_test).to(run.device))
    metrics = {
        "A_a": top1(test_logits, torch.from_numpy(split.y_test).to(run.device)),
        "val_accuracy": trainer.best_score if len(x_val) else None,
        **run.summary(trainer, split),
    }
    manifest = save_bundle(
        run.out,
        name=name,
        role="base",
        architecture=config.architecture,
        arch_args=arch_args,
        module=net,
        input_spec=input_spec(split),
        output_spec=output_spec(split),
        preprocessing=preprocessing,
        metrics=metrics,
        extra_files={METRICS_FILE: json_bytes(metrics | {"history": trainer.history})},
    )
    trainer.save()  # the bundle replaced the folder: keep the final checkpoint beside it
    return manifest


def classifier_epoch(
    trainer: Trainer, x: torch.Tensor, y: torch.Tensor, config: BaseConfig, dataset_aug: str
) -> float:
    """One epoch of cross-entropy training in a fresh random order; the mean loss."""
    how = resolve(config.augment, dataset_aug)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    order = torch.randperm(len(x), generator=trainer.generator).to(x.device)
    total = 0.0
    for i in range(0, len(x), config.batch_size):
        batch = order[i : i + config.batch_size]
        xb = augment(x[batch], how, trainer.generator)  # (B, *sample)
        loss = loss_fn(trainer.model(xb), y[batch])  # (B, classes) vs (B,)
        trainer.step(loss)
        total += loss.item() * len(batch)
    return total / len(x)
