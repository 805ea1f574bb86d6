"""The learned code: its NumPy (serving) face agrees with its torch (training) face,
and its bundles are refused for another base model, k or r."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from common.bundle import BundleMismatchError, TensorSpec, learned_code_info, read_manifest
from common.learned import LearnedCode, load_learned_code
from common.models import build, save_bundle
from tests.common.learned_runs import save_learned_run

FEATURES, CLASSES = 6, 4


def networks(k: int, r: int) -> LearnedCode:
    torch.manual_seed(k * 10 + r)
    encoder = build("mlp-encoder", k=k, r=r, sample_shape=[FEATURES])
    decoder = build("mlp-decoder", k=k, r=r, out_features=CLASSES, hidden=2)
    return LearnedCode(encoder, decoder, k, r).eval()


def base_bundle(tmp_path: Path) -> Path:
    path = tmp_path / "base"
    save_bundle(
        path, name="m", role="base", architecture="mlp",
        arch_args={"in_features": FEATURES, "num_classes": CLASSES, "hidden": [5]},
        module=build("mlp", in_features=FEATURES, num_classes=CLASSES, hidden=[5]),
        input_spec=TensorSpec("input", "FP32", (FEATURES,)),
        output_spec=TensorSpec("logits", "FP32", (CLASSES,)),
        preprocessing={"mean": [0.0], "std": [1.0]},
    )  # fmt: skip
    return path


@pytest.mark.parametrize(("k", "r"), [(2, 1), (3, 2), (4, 1)])
def test_encode_and_decode_shapes(k: int, r: int) -> None:
    code = networks(k, r)
    assert (code.name, code.k, code.r, code.off_loop) == ("learned", k, r, frozenset({"encode"}))
    inputs = np.random.default_rng(0).random((k, 3, FEATURES))
    parities = code.encode_all(inputs)
    assert len(parities) == r and all(p.shape == (3, FEATURES) for p in parities)
    assert np.array_equal(code.encode(inputs), parities[0])
    outputs = np.random.default_rng(1).random((k, 3, CLASSES)).astype(np.float32)
    parity_outputs = [p[:, :CLASSES] for p in parities]
    decoded = code.decode_erasures(parity_outputs, outputs, [0])
    assert len(decoded) == 1 and decoded[0].shape == (3, CLASSES)
    first_only = code.decode_erasures([parity_outputs[0]] + [None] * (r - 1), outputs, [0])
    np.testing.assert_array_equal(code.decode(parity_outputs[0], outputs, 0), first_only[0])


def test_the_numpy_face_computes_what_the_torch_face_computes() -> None:
    code = networks(3, 2)
    x = torch.randn(3, 5, FEATURES)
    outputs, parity_out = torch.randn(3, 5, CLASSES), torch.randn(2, 5, CLASSES)
    erased = torch.zeros(3, 5, dtype=torch.bool)
    erased[1] = True
    parity_erased = torch.zeros(2, 5, dtype=torch.bool)
    parity_erased[0] = True  # parity 0 did not arrive
    with torch.no_grad():
        want_parities = code.parities(x)
        want = code.reconstruct(outputs, parity_out, erased, parity_erased)[1]
    got = code.encode_all(x.numpy())
    np.testing.assert_allclose(np.stack(got), want_parities.numpy(), rtol=1e-6, atol=1e-6)
    junk = outputs.numpy().copy()
    junk[1] = 1e6  # the missing row is never read
    (decoded,) = code.decode_erasures([None, parity_out[1].numpy()], junk, [1])
    np.testing.assert_allclose(decoded, want.numpy(), rtol=1e-6, atol=1e-6)


def test_slots_and_erasures_are_checked() -> None:
    code = networks(2, 1)
    with pytest.raises(ValueError, match="expected 2 slots"):
        code.encode_all(np.zeros((3, 1, FEATURES)))
    with pytest.raises(ValueError, match="need as many parity outputs"):
        code.decode_erasures([None], np.zeros((2, 1, CLASSES)), [0])
    with pytest.raises(ValueError, match="trains no parity model"):
        code.combine(np.zeros((2, 1, CLASSES)))


def test_a_saved_code_loads_and_decodes_the_same(tmp_path: Path) -> None:
    base = base_bundle(tmp_path)
    code = save_learned_run(tmp_path / "run", base, k=2, r=1)
    assert learned_code_info(tmp_path / "run").r == 1
    loaded = load_learned_code(tmp_path / "run", read_manifest(base), 2, 1)
    inputs = np.random.default_rng(2).random((2, 4, FEATURES)).astype(np.float32)
    np.testing.assert_allclose(loaded.encode(inputs), code.encode(inputs), rtol=1e-6)


@pytest.mark.parametrize(
    ("k", "r", "roles", "other_base", "message"),
    [
        (3, 1, {}, False, "trained for k=2, r=1, but k=3, r=1"),
        (2, 2, {}, False, "trained for k=2, r=1, but k=2, r=2"),
        (2, 1, {"decoder": "parity"}, False, "has role 'parity'; expected 'decoder'"),
        (2, 1, {}, True, "trained for base weights"),
    ],
)
def test_a_code_for_another_base_k_or_r_is_refused(
    tmp_path: Path, k: int, r: int, roles: dict[str, str], other_base: bool, message: str
) -> None:
    base = base_bundle(tmp_path)
    save_learned_run(tmp_path / "run", base, k=2, r=1, roles=roles)
    served = read_manifest(base)
    if other_base:
        torch.manual_seed(99)
        served = read_manifest(base_bundle(tmp_path / "other"))
    with pytest.raises(BundleMismatchError, match=message):
        load_learned_code(tmp_path / "run", served, k, r)


def test_learned_code_info_wants_an_encoder(tmp_path: Path) -> None:
    save_learned_run(tmp_path / "run", base_bundle(tmp_path), roles={"encoder": "parity"})
    with pytest.raises(BundleMismatchError, match="expected a learned code's training run"):
        learned_code_info(tmp_path / "run")
