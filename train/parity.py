"""Train a parity model Fp for a frozen base model F (paradigm 2 of the ParM paper).

The parity model has the base model's architecture.  Each training example is a group of
k training inputs X1..Xk drawn at random, fresh every epoch; its input is the code's parity
query ``code.encode(X)`` and its target ``code.encode(F(X))``, the sum of the base model's
outputs (logits) for the sum code.  Because the targets come from F, not from labels, the
supply of examples is as large as the number of groups we care to draw.  Loss: MSE.

Encoding goes through `frontend.codes`: the exact arithmetic the frontend serves with.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from frontend.codes import Code, make_code
from model_container.bundle import Manifest, ParityInfo
from model_container.models import Preprocess, load_model, load_weights, save_bundle
from train.common import (
    cosine_lr,
    predict,
    scalar_preprocessing,
    seeded_build,
    torch_threads,
)
from train.data import Split
from train.evaluate import evaluate_models


@dataclass(frozen=True)
class ParityConfig:
    """Hyperparameters of parity-model training; saved in the bundle's ``metrics["config"]``."""

    k: int = 2
    code: str = "sum"
    epochs: int = 1000  # one epoch: as many random groups as there are training inputs
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.0
    seed: int = 0
    # Start from the base model's weights rather than a random draw: its features are a
    # better starting point (measured on digits: +0.6 to +1 point of A_d at equal epochs).
    init_from_base: bool = True
    preprocessing_groups: int = 20_000  # random groups to estimate the parity input mean/std
    eval_rounds: int = 10  # passes over the test set (random groups) when measuring A_d
    threads: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The config as a JSON object."""
        return dataclasses.asdict(self)


def random_groups(n: int, k: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``(k, count)`` indices into ``n`` inputs; column j is group j, row i its slot i.

    Each slot walks its own random permutations, so within ``n`` groups every input appears
    once per slot and the members of a group are independent draws.
    """
    rounds = -(-count // n)

    def slot() -> torch.Tensor:
        return torch.cat([torch.randperm(n, generator=generator) for _ in range(rounds)])

    return torch.stack([slot()[:count] for _ in range(k)])


def parity_batch(
    code: Code, x: torch.Tensor, base_out: torch.Tensor, groups: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Parity inputs and targets for ``groups`` ``(k, B)`` of indices into ``x``/``base_out``."""
    parity_in = code.encode(x[groups])  # (k, B, *sample) -> (B, *sample)
    target = code.encode(base_out[groups])  # (k, B, classes) -> (B, classes)
    return parity_in, target


def parity_preprocessing(
    code: Code, x: torch.Tensor, k: int, count: int, seed: int
) -> dict[str, list[float]]:
    """Mean and std of ``count`` encoded random groups: the parity model's own input scale."""
    generator = torch.Generator().manual_seed(seed)
    return scalar_preprocessing(code.encode(x[random_groups(len(x), k, count, generator)]))


def train_parity(
    base_dir: str | Path, split: Split, config: ParityConfig, bundle_dir: str | Path, *, name: str
) -> Manifest:
    """Train a parity model for the base bundle at ``base_dir``; save it at ``bundle_dir``."""
    start = time.perf_counter()
    base_manifest, base = load_model(base_dir)
    code = make_code(config.code, config.k)
    x_train = torch.from_numpy(split.x_train)
    preprocessing = parity_preprocessing(
        code, x_train, config.k, config.preprocessing_groups, config.seed
    )
    arch = base_manifest.architecture
    net = seeded_build(arch, base_manifest.arch_args, config.seed)
    if config.init_from_base:
        net.load_state_dict(load_weights(base_dir, base_manifest))
    parity = nn.Sequential(Preprocess(preprocessing["mean"], preprocessing["std"]), net)
    with torch_threads(config.threads):
        base_out = predict(base, x_train)  # (N, classes): F is frozen, so compute it once
        fit_parity(parity, code, x_train, base_out, config)
        seconds = time.perf_counter() - start
        metrics = evaluate_models(
            base, parity, split, config.k, code_name=config.code, rounds=config.eval_rounds
        )
    metrics |= {"train_seconds": round(seconds, 3), "config": config.to_json()}
    return save_bundle(
        bundle_dir,
        name=name,
        role="parity",
        architecture=arch,
        arch_args=base_manifest.arch_args,
        module=net,
        input_spec=base_manifest.inputs[0],  # parity queries look exactly like base queries
        output_spec=base_manifest.outputs[0],
        preprocessing=preprocessing,
        parity=ParityInfo(config.k, code.name, base_manifest.weights_sha256, base_manifest.name),
        metrics=metrics,
    )


def fit_parity(
    parity: nn.Module,
    code: Code,
    x: torch.Tensor,
    base_out: torch.Tensor,
    config: ParityConfig,
) -> list[float]:
    """MSE regression of ``parity(encode(X))`` on ``encode(F(X))``; returns epoch losses."""
    generator = torch.Generator().manual_seed(config.seed + 1)
    optimizer = torch.optim.Adam(
        parity.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    steps_per_epoch = -(-len(x) // config.batch_size)
    scheduler = cosine_lr(optimizer, config.epochs * steps_per_epoch)
    history = []
    parity.train()
    for _ in range(config.epochs):
        groups = random_groups(len(x), config.k, len(x), generator)  # (k, N), fresh each epoch
        total = 0.0
        for i in range(0, len(x), config.batch_size):
            parity_in, target = parity_batch(
                code, x, base_out, groups[:, i : i + config.batch_size]
            )
            loss = nn.functional.mse_loss(parity(parity_in), target)
            optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(target)
        history.append(total / len(x))
    parity.eval()
    return history
