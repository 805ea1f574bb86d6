"""What the trainers share: the run prologue (`Run`), devices, seeding, threads, statistics.

Every trainer (`train.base`, `train.parity`, `train.learned`) starts the same way: pick
the device, split off the validation part, run with the configured threads, build a
`Trainer` resumed from the run folder's checkpoint, train to the last epoch (or stop
early, resumable) and record the same metrics.  `Run` is that prologue, written once.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common import models
from common.bundle import TensorSpec
from common.models import build
from train.data import Split, training_parts
from train.loop import CHECKPOINT_FILE, RunStopped, TrainConfig, Trainer

METRICS_FILE = "metrics.json"


def resolve_device(name: str = "auto") -> torch.device:
    """`common.models.resolve_device` as a torch device, for the trainers."""
    return torch.device(models.resolve_device(name))


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


def input_stats(x: torch.Tensor) -> dict[str, list[float]]:
    """Mean and std per channel of images ``(N, C, H, W)``; one of each for flat inputs.

    This is the bundle's ``preprocessing``: serving normalises with exactly these numbers.
    """
    if x.dim() == 4:
        dims = (0, 2, 3)
        mean, std = x.double().mean(dims), x.double().std(dims)
        return {"mean": mean.tolist(), "std": [max(float(s), 1e-6) for s in std]}
    return {"mean": [float(x.double().mean())], "std": [max(float(x.double().std()), 1e-6)]}


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


def json_bytes(data: Any) -> bytes:
    """``data`` as indented JSON bytes, newline-terminated."""
    return (json.dumps(data, indent=2) + "\n").encode()


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically (temporary file, then `os.replace`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(json_bytes(data))
    os.replace(tmp, path)


@dataclass
class Run:
    """One training run's setup: its folder, device, data parts, checkpoint and clock.

    A trainer calls `start`, builds its model under `threads`, gets its `trainer`
    (resumed from the checkpoint when there is one), calls `train` and adds `summary`
    to its metrics.
    """

    config: TrainConfig
    out: Path
    device: torch.device
    x: torch.Tensor  # (N, *sample): the training part
    y: torch.Tensor  # (N,)
    x_val: torch.Tensor  # (V, *sample): the validation part (V may be 0)
    y_val: torch.Tensor  # (V,)
    checkpoint: Path | None
    started: float
    seconds: float = 0.0  # training time, set by `train`

    @classmethod
    def start(
        cls, split: Split, config: TrainConfig, out: str | Path, device: str, checkpoint: bool
    ) -> Run:
        """Start the clock, resolve ``device`` and split ``split``'s training data."""
        started, out, dev = time.perf_counter(), Path(out), resolve_device(device)
        (x, y), (x_val, y_val) = training_parts(split, config.val_fraction, config.seed, dev)
        ckpt = out / CHECKPOINT_FILE if checkpoint else None
        return cls(config, out, dev, x, y, x_val, y_val, ckpt, started)

    def threads(self) -> contextlib.AbstractContextManager[None]:
        """Torch's intra-op pool at the configured number of threads."""
        return torch_threads(self.config.threads)

    def trainer(self, model: nn.Module, per_epoch: int, seed: int) -> Trainer:
        """The `Trainer` of ``model`` over ``per_epoch`` examples an epoch, resumed."""
        steps = -(-per_epoch // self.config.batch_size)
        config = self.config
        trainer = Trainer(
            model, model.parameters(), config.optimisation(steps), seed, config.to_json(),
            self.checkpoint,
        )  # fmt: skip
        trainer.resume()
        return trainer

    def train(
        self,
        trainer: Trainer,
        epoch: Callable[[Trainer], float],
        validate: Callable[[], float | None],
        stop_after: int | None,
    ) -> None:
        """Train to the last epoch; `RunStopped` when ``stop_after`` ends it before."""
        trainer.run(epoch, validate, eval_every=self.config.eval_every, stop_after=stop_after)
        if trainer.epoch < self.config.epochs:
            raise RunStopped(f"stopped after epoch {trainer.epoch}; checkpoint in {self.out}")
        self.seconds = time.perf_counter() - self.started

    def summary(self, trainer: Trainer, split: Split) -> dict[str, Any]:
        """The metrics every run records: best epoch, training time, data set, config."""
        return {
            "best_epoch": trainer.best_epoch,
            "train_seconds": round(self.seconds, 3),
            "dataset": split.name,
            "config": self.config.to_json(),
        }
