"""Train a base model F (a plain classifier) and write it as a bundle."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model_container.bundle import Manifest
from model_container.models import Preprocess, save_bundle
from train.common import (
    cosine_lr,
    input_spec,
    output_spec,
    predict,
    scalar_preprocessing,
    seeded_build,
    top1,
    torch_threads,
)
from train.data import Split


@dataclass(frozen=True)
class BaseConfig:
    """Hyperparameters of base-model training; saved in the bundle's ``metrics["config"]``.

    ``arch_args`` are the architecture's own arguments; the input size and class count come
    from the data set (`arch_args_for`).
    """

    architecture: str = "mlp"
    arch_args: dict[str, Any] = field(default_factory=lambda: {"hidden": [200, 100]})
    epochs: int = 80
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    threads: int | None = None  # torch intra-op threads; None: the available cores

    def to_json(self) -> dict[str, Any]:
        """The config as a JSON object."""
        return dataclasses.asdict(self)


def arch_args_for(architecture: str, arch_args: dict[str, Any], split: Split) -> dict[str, Any]:
    """Complete ``arch_args`` with what the data set fixes (input size, classes)."""
    if architecture == "mlp":
        return {
            "in_features": prod(split.sample_shape),
            "num_classes": split.num_classes,
            **arch_args,
        }
    return {"num_classes": split.num_classes, **arch_args}


def train_base(split: Split, config: BaseConfig, bundle_dir: str | Path, *, name: str) -> Manifest:
    """Train a classifier on ``split`` and save it as base bundle ``name`` at ``bundle_dir``."""
    start = time.perf_counter()
    x_train, y_train = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train)
    preprocessing = scalar_preprocessing(x_train)
    arch_args = arch_args_for(config.architecture, config.arch_args, split)
    net = seeded_build(config.architecture, arch_args, config.seed)
    model = nn.Sequential(Preprocess(preprocessing["mean"], preprocessing["std"]), net)
    with torch_threads(config.threads):
        fit_classifier(model, x_train, y_train, config)
        logits = predict(model, torch.from_numpy(split.x_test))
    seconds = time.perf_counter() - start
    metrics = {
        "A_a": top1(logits, torch.from_numpy(split.y_test)),
        "train_seconds": round(seconds, 3),
        "dataset": split.name,
        "config": config.to_json(),
    }
    return save_bundle(
        bundle_dir,
        name=name,
        role="base",
        architecture=config.architecture,
        arch_args=arch_args,
        module=net,
        input_spec=input_spec(split),
        output_spec=output_spec(split),
        preprocessing=preprocessing,
        metrics=metrics,
    )


def fit_classifier(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: BaseConfig
) -> list[float]:
    """Cross-entropy training with Adam and cosine decay; returns each epoch's mean loss."""
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(x) // config.batch_size)
    scheduler = cosine_lr(optimizer, config.epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    history = []
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for i in range(0, len(x), config.batch_size):
            batch = order[i : i + config.batch_size]
            loss = loss_fn(model(x[batch]), y[batch])  # (B, classes) vs (B,)
            optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(batch)
        history.append(total / len(x))
    model.eval()
    return history
