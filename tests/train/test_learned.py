"""Learned codes: masked erasures, training runs, bundles the registry can load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from common.bundle import read_manifest
from common.learned import load_learned_code
from common.models import load_model
from train.common import predict
from train.data import Split, training_parts
from train.learned import (
    LearnedConfig,
    _networks,
    learned_loss,
    random_erasures,
    random_parity_erasures,
    train_learned,
)
from train.loop import CHECKPOINT_FILE, read_checkpoint
from train.parity import frozen_model


def tiny_learned(**overrides) -> LearnedConfig:
    settings = {"epochs": 1, "threads": 1, "warmup_epochs": 0.0, "groups_per_epoch": 64,
                "batch_size": 32, "eval_rounds": 1, "val_rounds": 1}  # fmt: skip
    return LearnedConfig(**(settings | overrides))


@pytest.mark.parametrize(("k", "r"), [(2, 1), (3, 2), (2, 3)])
def test_random_erasures_erase_between_one_and_r_data_slots(k, r):
    masks = random_erasures(k, r, 500, torch.Generator().manual_seed(0))
    assert masks.shape == (k, 500) and masks.dtype == torch.bool
    counts = masks.sum(0)
    assert counts.min() == 1 and counts.max() == min(r, k)


def test_loss_counts_only_erased_slots():
    outputs = torch.randn(2, 4, 3)
    decoded = outputs.clone()
    erased = torch.zeros(2, 4, dtype=torch.bool)
    erased[0, :2] = True
    decoded[1] += 100.0  # wrong, but never erased: ignored
    mse = tiny_learned(loss="mse")
    assert float(learned_loss(mse, decoded, outputs, erased)) == 0.0
    decoded[0, 0] += 1.0
    assert float(learned_loss(mse, decoded, outputs, erased)) == pytest.approx(0.5)
    assert float(learned_loss(tiny_learned(loss="kl"), outputs, outputs, erased)) == pytest.approx(
        0.0, abs=1e-6
    )


@pytest.mark.parametrize("encoder", ["mlp", "conv"])
def test_learned_code_bundles(lenet_dir: Path, image_split: Split, tmp_path: Path, encoder):
    config = tiny_learned(
        encoder=encoder, encoder_args={"channels_per_input": 2} if encoder == "conv" else {}
    )
    metrics = train_learned(lenet_dir, image_split, config, tmp_path, name="q", checkpoint=True)
    assert {"A_a", "A_d", "A_d_agreement", "train_seconds"} <= metrics.keys()
    assert metrics["code"] == f"learned-{encoder}"
    assert json.loads((tmp_path / "metrics.json").read_text())["A_d"] == metrics["A_d"]
    base = read_manifest(lenet_dir)
    for role in ("encoder", "decoder"):
        manifest, _ = load_model(tmp_path / role)
        assert manifest.role == role
        assert manifest.parity is not None
        assert manifest.parity.base_sha256 == base.weights_sha256
        assert manifest.parity.code == f"learned-{encoder}"
    _, enc = load_model(tmp_path / "encoder")
    x = torch.from_numpy(image_split.x_test[:4]).view(2, 2, 1, 12, 12)  # (B, k, C, H, W)
    assert enc(x).shape == (2, 1, 1, 12, 12)
    _, dec = load_model(tmp_path / "decoder")
    assert dec(torch.randn(5, 3, 4)).shape == (5, 2, 4)


@pytest.mark.parametrize(
    ("change", "message"),
    [({"encoder": "rnn"}, "encoder must be one of"), ({"loss": "ce"}, "loss must be one of")],
)
def test_bad_settings(lenet_dir: Path, image_split: Split, tmp_path: Path, change, message):
    with pytest.raises(ValueError, match=message):
        train_learned(lenet_dir, image_split, tiny_learned(**change), tmp_path, name="q")


@pytest.mark.parametrize(("k", "r"), [(2, 1), (3, 2)])
def test_serving_computes_what_training_computed(
    base_dir: Path, split: Split, tmp_path: Path, k: int, r: int
) -> None:
    """The trained whole (checkpoint) and the served code (bundles, NumPy, the base
    model in between) give the same reconstructions, to 1e-5."""
    config = tiny_learned(k=k, r=r, decoder_args={"hidden": 2})
    train_learned(base_dir, split, config, tmp_path, name="q", checkpoint=True)
    base_manifest, base = frozen_model(base_dir, torch.device("cpu"))
    x = torch.from_numpy(split.x_test[: 4 * k]).view(k, 4, -1)  # (k, B, features)
    cpu = torch.device("cpu")
    (x_train, _), _ = training_parts(split, config.val_fraction, config.seed, cpu)
    trained = _networks(config, base_manifest, x_train, base).module(base)
    trained.load_state_dict(read_checkpoint(tmp_path / CHECKPOINT_FILE)["model"])
    outputs = predict(base, x.flatten(0, 1)).view(k, 4, -1)  # (k, B, O)
    erased = torch.zeros(k, 4, dtype=torch.bool)
    erased[1] = True
    with torch.no_grad():
        want = trained(x, outputs, erased)[1]  # (B, O)
    served = load_learned_code(tmp_path, base_manifest, k, r)
    parity_in = served.encode_all(x.numpy())
    parity_out = [predict(base, torch.from_numpy(p)).numpy() for p in parity_in]
    (got,) = served.decode_erasures(parity_out, outputs.numpy(), [1])
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("k", "r"), [(2, 1), (3, 2), (4, 3)])
def test_parity_erasures_leave_room_for_the_erased_data(k: int, r: int) -> None:
    generator = torch.Generator().manual_seed(0)
    data = random_erasures(k, r, 500, generator)
    parity = random_parity_erasures(data, r, generator)
    assert parity.shape == (r, 500) and parity.dtype == torch.bool
    assert (data.sum(0) + parity.sum(0) <= r).all()
    assert parity.any() == (r > 1)  # with r > 1 some groups lose a parity too
