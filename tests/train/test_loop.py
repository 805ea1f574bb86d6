"""The shared training loop: schedule, best-on-validation, checkpoints and exact resume."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from common.bundle import file_sha256, read_manifest
from tests.train.tiny import TINY_BASE, tiny_parity
from train.base import train_base
from train.data import Split
from train.loop import (
    CheckpointError,
    RunStopped,
    Schedule,
    Trainer,
    checkpoint_config,
    read_checkpoint,
)
from train.parity import train_parity


def test_warmup_then_cosine_to_zero():
    s = Schedule(epochs=10, steps_per_epoch=10, lr=1.0, warmup_epochs=1.0)
    assert s.factor(0) == pytest.approx(0.1)
    assert s.factor(9) == pytest.approx(1.0)
    assert s.factor(10) == pytest.approx(1.0)
    assert s.factor(55) == pytest.approx(0.5)
    assert s.factor(100) == pytest.approx(0.0)


def test_constant_schedule_and_unknown_names():
    assert Schedule(2, 5, 1.0, schedule="constant").factor(7) == 1.0
    with pytest.raises(ValueError, match="schedule must be one of"):
        Trainer(nn.Linear(1, 1), [], Schedule(1, 1, 1.0, schedule="step"), 0, {})


def quadratic_run(tmp_path: Path, scores: list[float], **kwargs):
    """A one-weight model whose validation scores are given; returns the trainer."""
    model = nn.Linear(1, 1, bias=False)
    trainer = Trainer(model, model.parameters(), Schedule(len(scores), 1, 0.1), 0, {"a": 1},
                      tmp_path / "ckpt.pt")  # fmt: skip
    it = iter(scores)

    def epoch(t: Trainer) -> float:
        loss = (t.model(torch.ones(1, 1)) - 3.0).pow(2).mean()
        t.step(loss)
        return float(loss.detach())

    trainer.run(epoch, lambda: next(it), **kwargs)
    return trainer


def test_best_epoch_weights_are_restored(tmp_path: Path):
    trainer = quadratic_run(tmp_path, [0.1, 0.9, 0.2])
    assert (trainer.best_epoch, trainer.best_score) == (2, 0.9)
    assert trainer.best_state is not None
    assert torch.equal(trainer.model.weight, trainer.best_state["weight"])
    assert [h["val"] for h in trainer.history] == [0.1, 0.9, 0.2]
    assert not trainer.model.training


def test_checkpoint_holds_the_whole_state(tmp_path: Path):
    trainer = quadratic_run(tmp_path, [0.5, 0.6])
    state = read_checkpoint(tmp_path / "ckpt.pt")
    assert state["epoch"] == 2 and state["config"] == {"a": 1}
    assert {"model", "optimizer", "scheduler", "generator", "torch_rng", "best_model"} <= set(state)
    assert checkpoint_config(tmp_path / "ckpt.pt") == {"a": 1}
    assert not list(tmp_path.glob(".ckpt.pt.tmp-*"))  # written atomically, nothing left over
    assert trainer.history == state["history"]


def test_resume_refuses_another_config(tmp_path: Path):
    quadratic_run(tmp_path, [0.5])
    model = nn.Linear(1, 1, bias=False)
    other = Trainer(
        model, model.parameters(), Schedule(1, 1, 0.1), 0, {"a": 2}, tmp_path / "ckpt.pt"
    )
    with pytest.raises(CheckpointError, match="another config"):
        other.resume()


def test_unreadable_checkpoint(tmp_path: Path):
    (tmp_path / "ckpt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_checkpoint(tmp_path / "ckpt.pt")


def test_base_resume_equals_an_uninterrupted_run(split: Split, tmp_path: Path):
    config = dataclasses.replace(TINY_BASE, epochs=3, val_fraction=0.1)
    train_base(split, config, tmp_path / "straight", name="d", checkpoint=True)
    with pytest.raises(RunStopped, match="stopped after epoch 1"):
        train_base(split, config, tmp_path / "split", name="d", checkpoint=True, stop_after=1)
    assert not (tmp_path / "split" / "manifest.json").exists()
    train_base(split, config, tmp_path / "split", name="d", checkpoint=True)
    a, b = read_manifest(tmp_path / "straight"), read_manifest(tmp_path / "split")
    assert a.weights_sha256 == b.weights_sha256
    assert a.metrics["A_a"] == b.metrics["A_a"]


def test_parity_resume_equals_an_uninterrupted_run(
    image_split: Split, lenet_dir: Path, tmp_path: Path
):
    # Augmentation, fresh random groups and validation all depend on saved RNG state.
    config = tiny_parity(2, code="concat", epochs=3, groups_per_epoch=64, batch_size=32)
    train_parity(lenet_dir, image_split, config, tmp_path / "straight", name="p", checkpoint=True)
    for stop in (1, 2):
        with pytest.raises(RunStopped):
            train_parity(lenet_dir, image_split, config, tmp_path / "split", name="p",
                         checkpoint=True, stop_after=stop)  # fmt: skip
    train_parity(lenet_dir, image_split, config, tmp_path / "split", name="p", checkpoint=True)
    assert file_sha256(tmp_path / "straight/weights.safetensors") == file_sha256(
        tmp_path / "split/weights.safetensors"
    )
    a, b = read_manifest(tmp_path / "straight"), read_manifest(tmp_path / "split")
    assert a.metrics["A_d"] == b.metrics["A_d"]
    assert read_checkpoint(tmp_path / "split/checkpoint.pt")["epoch"] == 3
