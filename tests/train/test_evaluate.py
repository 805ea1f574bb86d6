"""Degraded-mode evaluation through code.decode."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model_container.bundle import BundleMismatchError, ParityInfo, read_manifest
from model_container.models import build, load_weights, save_bundle
from train.base import BaseConfig, train_base
from train.data import Split
from train.evaluate import eval_groups, evaluate


@pytest.fixture(scope="module")
def linear_base(split: Split, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("linear") / "base"
    config = BaseConfig(arch_args={"hidden": [], "bias": False}, epochs=5, threads=1)
    train_base(split, config, path, name="linear")
    return path


def exact_parity(base_dir: Path, k: int, path: Path) -> Path:
    """For linear F(x) = W (x - m) / s, the parity model W (P - k m) / s is exact."""
    base = read_manifest(base_dir)
    net = build(base.architecture, **base.arch_args)
    net.load_state_dict(load_weights(base_dir, base))
    pre = base.preprocessing
    save_bundle(
        path,
        name="exact",
        role="parity",
        architecture=base.architecture,
        arch_args=base.arch_args,
        module=net,
        input_spec=base.inputs[0],
        output_spec=base.outputs[0],
        preprocessing={"mean": [k * pre["mean"][0]], "std": pre["std"]},
        parity=ParityInfo(k, "sum", base.weights_sha256, base.name),
    )
    return path


@pytest.mark.parametrize("k", [2, 3, 4])
def test_exact_parity_reconstructs_exactly(linear_base: Path, split: Split, tmp_path: Path, k):
    parity = exact_parity(linear_base, k, tmp_path / "parity")
    metrics = evaluate(linear_base, parity, split, k, rounds=3)
    assert metrics["recon_mse"] < 1e-8
    assert metrics["A_d_agreement"] == 1.0
    assert metrics["A_d"] == pytest.approx(metrics["A_a"])
    assert metrics["groups"] == 3 * (len(split.x_test) // k)


def test_evaluate_refuses_a_parity_model_for_another_k(linear_base: Path, split, tmp_path):
    parity = exact_parity(linear_base, 2, tmp_path / "parity")
    with pytest.raises(BundleMismatchError, match="trained for k=2, but k=3"):
        evaluate(linear_base, parity, split, 3)


def test_evaluate_refuses_a_parity_model_for_another_base(linear_base, base_dir, split, tmp_path):
    parity = exact_parity(linear_base, 2, tmp_path / "parity")
    with pytest.raises(BundleMismatchError, match="trained for base weights"):
        evaluate(base_dir, parity, split, 2)


@pytest.mark.parametrize(("n", "k"), [(10, 2), (10, 3), (360, 4)])
def test_eval_groups_cover_each_round_once(n, k):
    groups = eval_groups(n, k, rounds=2, seed=0)
    per_round = n // k
    assert groups.shape == (k, 2 * per_round)
    for r in range(2):
        members = groups[:, r * per_round : (r + 1) * per_round].flatten()
        assert len(torch.unique(members)) == per_round * k
    assert torch.equal(groups, eval_groups(n, k, rounds=2, seed=0))
