"""The trainers' shared prologue (`Run`) and helpers: devices, seeding, threads, statistics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from train.common import (
    Run,
    input_stats,
    predict,
    seeded_build,
    top1,
    torch_threads,
    write_json,
)
from train.data import Split
from train.loop import CHECKPOINT_FILE, RunStopped, TrainConfig, Trainer

CONFIG = TrainConfig(epochs=3, batch_size=4, val_fraction=0.25, warmup_epochs=0.0, threads=1)


def line_split(n: int = 16) -> Split:
    """A two-class toy set: the sign of one feature."""
    x = np.linspace(-1, 1, n, dtype=np.float32).reshape(n, 1)
    y = (x[:, 0] > 0).astype(np.int64)
    return Split("line", x, y, x, y, num_classes=2)


def epoch(trainer: Trainer, run: Run) -> float:
    loss = nn.functional.cross_entropy(trainer.model(run.x), run.y)
    trainer.step(loss)
    return loss.item()


def test_a_run_holds_out_the_validation_part_on_its_device(tmp_path: Path) -> None:
    run = Run.start(line_split(), CONFIG, tmp_path / "out", "cpu", checkpoint=True)
    assert (len(run.x), len(run.x_val)) == (12, 4)
    assert (run.device, run.x.device) == (torch.device("cpu"), torch.device("cpu"))
    assert run.checkpoint == tmp_path / "out" / CHECKPOINT_FILE
    no_checkpoint = Run.start(line_split(), CONFIG, tmp_path, "cpu", checkpoint=False)
    assert no_checkpoint.checkpoint is None


@pytest.mark.parametrize(("per_epoch", "steps"), [(12, 3), (13, 4), (1, 1)])
def test_the_trainer_takes_a_step_per_batch(tmp_path: Path, per_epoch: int, steps: int) -> None:
    run = Run.start(line_split(), CONFIG, tmp_path, "cpu", checkpoint=False)
    trainer = run.trainer(nn.Linear(1, 2), per_epoch, seed=7)
    assert (trainer.schedule.steps_per_epoch, trainer.seed) == (steps, 7)
    assert trainer.config == CONFIG.to_json()


def test_a_stopped_run_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    def train(stop_after: int | None) -> tuple[Run, Trainer, int]:
        run = Run.start(line_split(), CONFIG, tmp_path, "cpu", checkpoint=True)
        model = seeded_build("mlp", {"in_features": 1, "num_classes": 2, "hidden": [4]}, 0)
        trainer = run.trainer(model, len(run.x), CONFIG.seed)
        resumed_at = trainer.epoch
        run.train(trainer, lambda t: epoch(t, run), lambda: 0.5, stop_after)  # ties: first best
        return run, trainer, resumed_at

    with pytest.raises(RunStopped, match="stopped after epoch 1"):
        train(stop_after=1)
    assert (tmp_path / CHECKPOINT_FILE).exists()
    run, trainer, resumed_at = train(stop_after=None)
    assert resumed_at == 1
    assert [record["epoch"] for record in trainer.history] == [1, 2, 3]
    summary = run.summary(trainer, line_split())
    assert summary["dataset"] == "line" and summary["config"] == CONFIG.to_json()
    assert summary["best_epoch"] == 1 and summary["train_seconds"] >= 0  # carried over


def test_seeded_build_is_repeatable_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(1)
    before = torch.random.get_rng_state()
    a = seeded_build("mlp", {"in_features": 3, "num_classes": 2, "hidden": [5]}, seed=4)
    b = seeded_build("mlp", {"in_features": 3, "num_classes": 2, "hidden": [5]}, seed=4)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_torch_threads_restores_the_pool() -> None:
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    ("x", "mean", "std"),
    [
        (torch.tensor([[1.0], [3.0]]), [2.0], [2**0.5]),  # flat: one mean and std
        (torch.stack([torch.zeros(2, 1, 1), torch.ones(2, 1, 1)]), [0.5, 0.5], [2**-0.5] * 2),
        (torch.ones(4, 2), [1.0], [1e-6]),  # a constant input never divides by zero
    ],
)
def test_input_stats(x: torch.Tensor, mean: list[float], std: list[float]) -> None:
    stats = input_stats(x)
    assert stats["mean"] == pytest.approx(mean) and stats["std"] == pytest.approx(std)


def test_predict_batches_in_eval_mode_and_restores_training() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.9))
    model.train()
    x = torch.randn(5, 2)
    out = predict(model, x, batch_size=2)
    assert model.training and torch.equal(out, model.eval()(x))
    assert top1(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([1, 1])) == 0.5


def test_write_json_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "a" / "metrics.json"
    write_json(path, {"A_a": 0.5})
    assert json.loads(path.read_text()) == {"A_a": 0.5}
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]
