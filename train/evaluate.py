"""Accuracy of a base model and of a parity model's reconstructions (degraded mode).

- ``A_a``: top-1 accuracy of the base model F on the test set (all outputs available).
- ``A_d``: top-1 accuracy of *reconstructed* outputs: test inputs are put in random groups
  of k, one data output is erased, and it is decoded from the parity model's output and the
  k-1 others with ``code.decode``; averaged over every erasure position of every group.
- ``A_d_agreement``: how often the reconstruction's argmax equals F's own argmax.
- ``recon_mse``: mean squared error between reconstructed and true outputs of F.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from frontend.codes import make_code
from model_container.bundle import check_parity_for
from model_container.models import load_model
from train.common import predict, top1
from train.data import Split


def evaluate(
    base_dir: str | Path,
    parity_dir: str | Path,
    split: Split,
    k: int,
    *,
    code: str = "sum",
    rounds: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """A_a, A_d, A_d_agreement and recon_mse of two bundles on ``split``'s test set."""
    base_manifest, base = load_model(base_dir)
    parity_manifest, parity = load_model(parity_dir)
    check_parity_for(base_manifest, parity_manifest, k=k, code=code)
    return evaluate_models(base, parity, split, k, code_name=code, rounds=rounds, seed=seed)


@torch.no_grad()
def evaluate_models(
    base: nn.Module,
    parity: nn.Module,
    split: Split,
    k: int,
    *,
    code_name: str = "sum",
    rounds: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Like `evaluate`, for models in memory (each including its preprocessing)."""
    x = torch.from_numpy(split.x_test)
    y = torch.from_numpy(split.y_test)
    code = make_code(code_name, k)
    base_out = predict(base, x)  # (N, classes)
    groups = eval_groups(len(x), k, rounds, seed)  # (k, G)
    parity_out = predict(parity, code.encode(x[groups]))  # (G, classes)
    outputs = base_out[groups]  # (k, G, classes)
    correct = agree = 0.0
    sq_error = 0.0
    for missing in range(k):
        erased = outputs.clone()
        erased[missing] = 0  # the decoder must not read the erased slot
        rebuilt = code.decode(parity_out, erased, missing)  # (G, classes)
        correct += top1(rebuilt, y[groups[missing]])
        agree += top1(rebuilt, outputs[missing].argmax(-1))
        sq_error += float(((rebuilt - outputs[missing]) ** 2).mean())
    return {
        "A_a": top1(base_out, y),
        "A_d": correct / k,
        "A_d_agreement": agree / k,
        "recon_mse": sq_error / k,
        "k": k,
        "code": code.name,
        "groups": groups.shape[1],
    }


def eval_groups(n: int, k: int, rounds: int, seed: int) -> torch.Tensor:
    """``(k, rounds * (n // k))`` indices: each round splits a fresh permutation into groups."""
    generator = torch.Generator().manual_seed(seed)
    perms = [torch.randperm(n, generator=generator)[: n - n % k] for _ in range(rounds)]
    return torch.cat(perms).view(-1, k).T  # (k, G)
