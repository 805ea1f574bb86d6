"""The training loop shared by base, parity and learned-code training.

`Trainer` owns the optimiser (Adam with weight decay), the learning-rate schedule (linear
warm-up, then cosine decay or constant), the data-order `torch.Generator`, the best model
on validation, and checkpoints.  A checkpoint holds everything a run needs to continue
bit-for-bit: the config, model, optimiser, schedule, both RNG states, the loop position,
the best weights so far and the history.  It is written to a temporary file and moved into
place (`os.replace`), so a crash never leaves a half-written one.  Checkpoints are torch
files read back with ``weights_only=True``: tensors and plain containers only, never
arbitrary pickled objects.

A run is driven by two callbacks: ``train_epoch(trainer)`` does one epoch with
`Trainer.step` and returns its mean loss; ``validate()`` returns the validation score
(higher is better) or ``None`` when there is no validation set.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger("train")

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = "parm-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint cannot be used to resume this run."""


class RunStopped(Exception):
    """Training stopped early on request (``stop_after``); the checkpoint can resume it."""


@dataclass(frozen=True)
class Schedule:
    """Optimiser settings: Adam, weight decay, warm-up then cosine decay (or constant)."""

    epochs: int
    steps_per_epoch: int
    lr: float
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_epochs: float = 0.0

    def factor(self, step: int) -> float:
        """The learning-rate multiplier at optimiser step ``step``."""
        total = max(self.epochs * self.steps_per_epoch, 1)
        warmup = self.warmup_epochs * self.steps_per_epoch
        if step < warmup:
            return (step + 1) / warmup
        if self.schedule == "constant":
            return 1.0
        progress = min(step - warmup, total - warmup) / max(total - warmup, 1)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """Settings every trainer shares; each trainer's config extends it.

    ``augment``: a preset of `train.augment` (``auto``: the data set's own).
    ``val_fraction``: held out from the training data (fixed by ``seed``) to pick the best
    epoch; 0 trains on everything and keeps the last epoch.  ``eval_every``: epochs between
    validations and checkpoints (0: only after the last).  ``threads``: torch intra-op
    threads on the CPU (None: the available cores).
    """

    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-5
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    augment: str = "auto"
    val_fraction: float = 0.1
    eval_every: int = 1
    seed: int = 0
    threads: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The config as a JSON object (what checkpoints and manifests record)."""
        return dataclasses.asdict(self)

    def optimisation(self, steps_per_epoch: int) -> Schedule:
        """The `Schedule` of this config for ``steps_per_epoch`` optimiser steps an epoch."""
        return Schedule(
            epochs=self.epochs,
            steps_per_epoch=steps_per_epoch,
            lr=self.lr,
            weight_decay=self.weight_decay,
            schedule=self.schedule,
            warmup_epochs=self.warmup_epochs,
        )


@dataclass
class Trainer:
    """Optimiser, schedule, RNG, best model and checkpoints of one training run."""

    model: nn.Module
    params: Iterable[nn.Parameter]
    schedule: Schedule
    seed: int
    config: dict[str, Any]
    checkpoint: Path | None = None
    epoch: int = 0
    best_score: float = -math.inf
    best_epoch: int = -1
    history: list[dict[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.schedule.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule.schedule!r}")
        self.optimizer = torch.optim.Adam(
            list(self.params), lr=self.schedule.lr, weight_decay=self.schedule.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.schedule.factor)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.best_state: dict[str, torch.Tensor] | None = None

    def step(self, loss: torch.Tensor) -> None:
        """One optimiser step on ``loss``, then one step of the schedule."""
        self.optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        self.optimizer.step()
        self.scheduler.step()

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def run(
        self,
        train_epoch: Callable[[Trainer], float],
        validate: Callable[[], float | None],
        *,
        eval_every: int = 1,
        stop_after: int | None = None,
    ) -> None:
        """Train until ``schedule.epochs`` (or epoch ``stop_after``), then keep the best.

        Every ``eval_every`` epochs (and after the last) the model is scored on validation;
        the best weights are kept and restored at the end.  A checkpoint is written after
        every scored epoch.
        """
        last = self.schedule.epochs if stop_after is None else min(stop_after, self.schedule.epochs)
        while self.epoch < last:
            began = time.perf_counter()
            self.model.train()
            loss = train_epoch(self)
            self.epoch += 1
            record = {"epoch": float(self.epoch), "loss": loss, "lr": self.lr}
            last_epoch = self.epoch == self.schedule.epochs
            scored = (eval_every and self.epoch % eval_every == 0) or last_epoch
            if scored:
                record |= self._score(validate)
            record["seconds"] = time.perf_counter() - began
            self.history.append(record)
            if scored:
                self.save()
            self._report(record)
        if self.epoch == self.schedule.epochs and self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        self.model.eval()

    def _score(self, validate: Callable[[], float | None]) -> dict[str, float]:
        score = validate()
        if score is None:
            return {}
        if score > self.best_score:
            self.best_score, self.best_epoch = score, self.epoch
            self.best_state = copy.deepcopy(self.model.state_dict())
        return {"val": score}

    def _report(self, record: dict[str, float]) -> None:
        if "val" not in record and self.epoch != self.schedule.epochs:
            return  # one line per validation, and one at the end
        val = f"  val {record['val']:.2%} (best {self.best_score:.2%})" if "val" in record else ""
        log.info(
            "epoch %d/%d  loss %.4g%s  lr %.2g  %.1fs",
            self.epoch,
            self.schedule.epochs,
            record["loss"],
            val,
            record["lr"],
            record["seconds"],
        )

    # -- checkpoints -----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly."""
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config,
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "best_model": self.best_state,
            "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (see `state_dict`); its config must equal this run's."""
        if state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"not a {CHECKPOINT_FORMAT} checkpoint")
        if state["config"] != self.config:
            raise CheckpointError(
                "the checkpoint was written by a run with another config; "
                f"checkpoint: {state['config']}, this run: {self.config}"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.epoch = int(state["epoch"])
        self.best_score, self.best_epoch = float(state["best_score"]), int(state["best_epoch"])
        self.best_state = state["best_model"]
        self.history = list(state["history"])

    def save(self) -> None:
        """Write the checkpoint atomically (no-op without a checkpoint path)."""
        if self.checkpoint is None:
            return
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint.with_name(f".{self.checkpoint.name}.tmp-{os.getpid()}")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, self.checkpoint)

    def resume(self) -> bool:
        """Load the checkpoint if there is one; True when the run continues from it."""
        if self.checkpoint is None or not self.checkpoint.exists():
            return False
        device = next(iter(self.model.parameters())).device
        state = read_checkpoint(self.checkpoint, device)
        self.load_state_dict(state)
        log.info("resuming from %s at epoch %d", self.checkpoint, self.epoch)
        return True


def read_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A checkpoint's contents, loaded with ``weights_only=True`` (no arbitrary objects)."""
    try:
        state: dict[str, Any] = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    return state


def checkpoint_config(path: Path) -> dict[str, Any]:
    """The config saved in a checkpoint: what a resumed run trains with."""
    config: dict[str, Any] = read_checkpoint(path)["config"]
    return config
