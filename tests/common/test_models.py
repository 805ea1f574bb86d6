"""Architecture registry, preprocessing, and bundle save/load."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from torch import nn

from common import models
from common.bundle import (
    MANIFEST_FILE,
    WEIGHTS_FILE,
    BundleError,
    Manifest,
    TensorSpec,
    file_sha256,
    read_manifest,
)
from common.models import (
    ARCHITECTURES,
    MLP,
    Preprocess,
    UnknownArchitectureError,
    build,
    load_model,
    register,
    resolve_device,
    save_bundle,
)

ARCH_ARGS = {"in_features": 64, "num_classes": 10, "hidden": [32, 16]}
PRE = {"mean": [4.5], "std": [6.0]}


def save(path: Path, net: nn.Module, **overrides) -> Manifest:
    kwargs: dict[str, Any] = {
        "name": "tiny",
        "role": "base",
        "architecture": "mlp",
        "arch_args": ARCH_ARGS,
        "module": net,
        "input_spec": TensorSpec("input", "FP32", (64,)),
        "output_spec": TensorSpec("logits", "FP32", (10,)),
        "preprocessing": PRE,
        "metrics": {"note": "test"},
    } | overrides
    return save_bundle(path, **kwargs)


@pytest.fixture
def net() -> nn.Module:
    torch.manual_seed(0)
    return build("mlp", **ARCH_ARGS)


def test_unknown_architecture_names_the_known_ones():
    with pytest.raises(UnknownArchitectureError, match=r"unknown architecture 'resnet-9'.*'mlp'"):
        build("resnet-9")


def test_register_extends_the_registry(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(models, "ARCHITECTURES", dict(ARCHITECTURES))

    @register("identity")
    def identity() -> nn.Module:
        return nn.Identity()

    assert isinstance(build("identity"), nn.Identity)
    with pytest.raises(ValueError, match="already registered"):
        register("identity")(identity)


@pytest.mark.parametrize("shape", [(5, 64), (5, 1, 8, 8)])
def test_mlp_flattens_its_input(shape):
    mlp = build("mlp", in_features=64, num_classes=10)
    assert isinstance(mlp, MLP)
    assert mlp(torch.zeros(shape)).shape == (5, 10)


def test_mlp_default_hidden_widths():
    mlp = build("mlp", in_features=64, num_classes=10)
    widths = [m.out_features for m in mlp.modules() if isinstance(m, nn.Linear)]
    assert widths == [200, 100, 10]


def test_linear_mlp_is_linear():
    linear = build("mlp", in_features=64, num_classes=10, hidden=[], bias=False)
    a, b = torch.randn(3, 64), torch.randn(3, 64)
    torch.testing.assert_close(linear(a + b), linear(a) + linear(b))


def test_preprocess_per_channel():
    pre = Preprocess([1.0, 2.0, 3.0], [0.5, 1.0, 2.0])
    x = torch.randn(4, 3, 5, 5)
    expected = torch.stack(
        [(x[:, c] - m) / s for c, m, s in [(0, 1, 0.5), (1, 2, 1), (2, 3, 2)]], 1
    )
    torch.testing.assert_close(pre(x), expected)


@pytest.mark.parametrize("shape", [(4, 64), (4, 1, 8, 8)])
def test_preprocess_scalar(shape):
    x = torch.randn(shape)
    torch.testing.assert_close(Preprocess([4.5], [6.0])(x), (x - 4.5) / 6.0)


def test_preprocess_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="equal non-zero length"):
        Preprocess([1.0, 2.0], [1.0])


def test_save_then_load_gives_identical_outputs(tmp_path: Path, net: nn.Module):
    save(tmp_path / "b", net)
    manifest, loaded = load_model(tmp_path / "b")
    x = torch.rand(7, 64) * 16
    expected = net((x - 4.5) / 6.0)
    assert not loaded.training
    assert torch.equal(loaded(x), expected)
    assert manifest == read_manifest(tmp_path / "b")
    assert manifest.weights_sha256 == file_sha256(tmp_path / "b" / WEIGHTS_FILE)
    assert manifest.metrics == {"note": "test"}


def test_save_returns_what_a_reader_sees(tmp_path: Path, net: nn.Module):
    args = ARCH_ARGS | {"hidden": (32, 16)}
    manifest = save(tmp_path / "b", net, arch_args=args, preprocessing={"mean": [4], "std": [6]})
    assert manifest == read_manifest(tmp_path / "b")
    assert manifest.arch_args["hidden"] == [32, 16]
    assert manifest.preprocessing == {"mean": [4.0], "std": [6.0]}


def test_load_never_unpickles(tmp_path: Path, net: nn.Module, monkeypatch: pytest.MonkeyPatch):
    save(tmp_path / "b", net)

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load must not be used for bundles")

    monkeypatch.setattr(torch, "load", refuse)
    load_model(tmp_path / "b")


def test_digest_mismatch_is_detected(tmp_path: Path, net: nn.Module):
    save(tmp_path / "b", net)
    weights = tmp_path / "b" / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # flip bits in the last weight
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"weights digest \w+ does not match"):
        load_model(tmp_path / "b")


def test_missing_weights(tmp_path: Path, net: nn.Module):
    save(tmp_path / "b", net)
    (tmp_path / "b" / WEIGHTS_FILE).unlink()
    with pytest.raises(BundleError, match="cannot read bundle weights"):
        load_model(tmp_path / "b")


def test_weights_that_do_not_fit_the_architecture(tmp_path: Path, net: nn.Module):
    save(tmp_path / "b", net)
    path = tmp_path / "b" / MANIFEST_FILE
    d = json.loads(path.read_text())
    d["arch_args"]["hidden"] = [32, 17]
    path.write_text(json.dumps(d))
    with pytest.raises(BundleError, match="weights do not fit architecture 'mlp'") as info:
        load_model(tmp_path / "b")
    message = str(info.value)  # one line naming the tensor, not torch's list of errors
    assert message.endswith("tensor 'layers.3.weight': expected shape [17, 32], found [16, 32]")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.pop("layers.5.bias"), r"missing tensor\(s\) \['layers.5.bias'\]"),
        (lambda t: t.update(extra=torch.zeros(1)), r"unexpected tensor\(s\) \['extra'\]"),
    ],
)
def test_weights_with_missing_or_extra_tensors(tmp_path: Path, net: nn.Module, change, message):
    save(tmp_path / "b", net)
    weights = tmp_path / "b" / WEIGHTS_FILE
    tensors = safetensors.torch.load_file(weights)
    change(tensors)
    safetensors.torch.save_file(tensors, weights)
    path = tmp_path / "b" / MANIFEST_FILE
    d = json.loads(path.read_text())
    d["weights_sha256"] = file_sha256(weights)
    path.write_text(json.dumps(d))
    with pytest.raises(BundleError, match=f"weights do not fit architecture 'mlp'.*: {message}"):
        load_model(tmp_path / "b")


@pytest.mark.timeout(60)  # before the fix, it blocked forever
def test_weights_as_a_fifo_are_refused_without_waiting(tmp_path: Path, net: nn.Module):
    save(tmp_path / "b", net)
    (tmp_path / "b" / WEIGHTS_FILE).unlink()
    os.mkfifo(tmp_path / "b" / WEIGHTS_FILE)
    with pytest.raises(BundleError, match=r"weights .*: expected a regular file, got a FIFO"):
        load_model(tmp_path / "b")


def test_weights_linked_to_dev_zero_are_refused_unread(tmp_path: Path, net: nn.Module):
    save(tmp_path / "b", net)
    (tmp_path / "b" / WEIGHTS_FILE).unlink()
    (tmp_path / "b" / WEIGHTS_FILE).symlink_to("/dev/zero")  # read_bytes would never end
    with pytest.raises(BundleError, match="expected a regular file, got a character device"):
        load_model(tmp_path / "b")


def test_weights_larger_than_the_architecture_needs_are_refused_unread(
    tmp_path: Path, net: nn.Module
):
    save(tmp_path / "b", net)
    with open(tmp_path / "b" / WEIGHTS_FILE, "r+b") as f:
        f.truncate(1 << 26)  # sparse: no disk used, and nothing may read it
    count = sum(t.numel() for t in net.state_dict().values())
    bound = (1 << 20) + 8 * count  # the header's allowance, 8 bytes per element
    with pytest.raises(BundleError, match=f"expected at most {bound} bytes, got {1 << 26}"):
        load_model(tmp_path / "b")


def test_absurd_architecture_arguments_are_refused_before_allocating(
    tmp_path: Path, net: nn.Module, monkeypatch: pytest.MonkeyPatch
):
    save(tmp_path / "b", net)
    path = tmp_path / "b" / MANIFEST_FILE
    d = json.loads(path.read_text())
    d["arch_args"]["hidden"] = [200, 100_000, 100_000]  # 10**10 parameters: 40 GB
    path.write_text(json.dumps(d))

    def meta_only(**arch_args: Any) -> nn.Module:
        assert torch.get_default_device().type == "meta", "built for real"
        return MLP(**arch_args)

    monkeypatch.setitem(ARCHITECTURES, "mlp", meta_only)
    count = 64 * 200 + 200 * 100_000 + 100_000 * 100_000 + 100_000 * 10 + 200 + 2 * 100_000 + 10
    with pytest.raises(BundleError, match=f"parameters .*, got {count}$"):
        load_model(tmp_path / "b")


def test_the_parameter_bound_is_configurable(tmp_path: Path, net: nn.Module):
    save(tmp_path / "b", net)
    count = sum(t.numel() for t in net.state_dict().values())
    load_model(tmp_path / "b", max_parameters=count)
    with pytest.raises(BundleError, match=f"expected at most {count - 1} parameters"):
        load_model(tmp_path / "b", max_parameters=count - 1)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("architecture", "resnet-9", "unknown architecture 'resnet-9'"),
        ("arch_args", {"in_features": 64, "classes": 10}, "cannot build architecture 'mlp'"),
    ],
)
def test_manifest_that_cannot_be_built(tmp_path: Path, net: nn.Module, field, value, message):
    save(tmp_path / "b", net)
    path = tmp_path / "b" / MANIFEST_FILE
    d = json.loads(path.read_text())
    d[field] = value
    path.write_text(json.dumps(d))
    with pytest.raises(BundleError, match=message):
        load_model(tmp_path / "b")


def test_save_replaces_an_existing_bundle_atomically(tmp_path: Path, net: nn.Module):
    save(tmp_path / "b", build("mlp", **ARCH_ARGS))
    manifest = save(tmp_path / "b", net, name="tiny-2")
    assert read_manifest(tmp_path / "b") == manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temporary folders left
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [MANIFEST_FILE, WEIGHTS_FILE]


def test_save_refuses_an_invalid_manifest(tmp_path: Path, net: nn.Module):
    with pytest.raises(BundleError, match="role: expected one of"):
        save(tmp_path / "b", net, role="spare")
    assert list(tmp_path.iterdir()) == []


def test_load_to_device(tmp_path: Path, net: nn.Module):
    save(tmp_path / "b", net)
    _, loaded = load_model(tmp_path / "b", device=torch.device("cpu"))
    assert all(p.device.type == "cpu" for p in loaded.parameters())


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(ValueError, match="device 'cuda:0' requested, but CUDA is not available"):
        resolve_device("cuda:0")
