"""Small helpers shared by base and parity training: seeding, threads, schedules, specs."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from model_container.bundle import TensorSpec
from model_container.models import build
from train.data import Split


def seeded_build(architecture: str, arch_args: dict[str, Any], seed: int) -> nn.Module:
    """`build` with weights initialised from ``seed``, leaving the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build(architecture, **arch_args)


def available_cpus() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def torch_threads(n: int | None = None) -> Iterator[None]:
    """Run torch's intra-op pool with ``n`` threads (default: the available cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n or available_cpus())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def scalar_preprocessing(x: torch.Tensor) -> dict[str, list[float]]:
    """One mean and std over all of ``x`` (flat or greyscale inputs)."""
    return {"mean": [float(x.mean())], "std": [float(x.std())]}


def cosine_lr(
    optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Cosine decay from the optimiser's learning rate to zero over ``total_steps``."""

    def factor(step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """``model(x)`` in eval mode, in batches; the caller's train/eval mode is restored."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def input_spec(split: Split) -> TensorSpec:
    """The wire input tensor of models trained on ``split``."""
    return TensorSpec("input", "FP32", split.sample_shape)


def output_spec(split: Split) -> TensorSpec:
    """The logits tensor of classifiers trained on ``split``."""
    return TensorSpec("logits", "FP32", (split.num_classes,))


def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose argmax equals the label."""
    return float((logits.argmax(-1) == labels).float().mean())
