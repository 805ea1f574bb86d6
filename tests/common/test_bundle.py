"""Bundle manifests: JSON round trip, validation errors, parity/base matching."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from common.bundle import (
    FORMAT,
    MANIFEST_FILE,
    MAX_ARCH_ARGS_BYTES,
    MAX_MANIFEST_BYTES,
    BundleError,
    BundleMismatchError,
    Manifest,
    ParityInfo,
    TensorSpec,
    check_parity_for,
    file_sha256,
    read_manifest,
    read_regular_file,
)

BASE_SHA = "a" * 64
PARITY_SHA = "b" * 64


def base_json() -> dict[str, Any]:
    return {
        "format": FORMAT,
        "name": "digits",
        "role": "base",
        "architecture": "mlp",
        "arch_args": {"in_features": 64, "num_classes": 10, "hidden": [200, 100]},
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [64]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [10]}],
        "preprocessing": {"mean": [4.9], "std": [6.0]},
        "weights_sha256": BASE_SHA,
        "parity": None,
        "metrics": {"A_a": 0.97},
    }


def parity_json(k: int = 2) -> dict[str, Any]:
    d = base_json()
    d.update(
        name="digits-parity-k2",
        role="parity",
        weights_sha256=PARITY_SHA,
        preprocessing={"mean": [9.8], "std": [8.5]},
        parity={"k": k, "code": "sum", "base_sha256": BASE_SHA, "base_name": "digits"},
    )
    return d


@pytest.mark.parametrize("make", [base_json, parity_json])
def test_json_round_trip(make):
    d = make()
    manifest = Manifest.from_json(json.loads(json.dumps(d)))
    assert manifest.to_json() == d
    assert Manifest.from_json(manifest.to_json()) == manifest


def test_parsed_fields_have_python_types():
    manifest = Manifest.from_json(parity_json())
    assert manifest.inputs == (TensorSpec("input", "FP32", (64,)),)
    assert manifest.parity == ParityInfo(2, "sum", BASE_SHA, "digits")


def _set(path: str, value: Any):
    def mutate(d: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            d = d[int(key)] if isinstance(d, list) else d[key]
        if value is _DELETE:
            del d[last]
        else:
            d[last] = value

    return mutate


_DELETE = object()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_set("format", "parm-bundle/0"), "format: expected 'parm-bundle/1'"),
        (_set("name", _DELETE), r"missing field\(s\) \['name'\]"),
        (_set("colour", "red"), r"unknown field\(s\) \['colour'\]"),
        (_set("name", ""), "name: expected a non-empty string"),
        (_set("role", "spare"), "role: expected one of"),
        (_set("architecture", 3), "architecture: expected a non-empty string, got 3"),
        (_set("arch_args", []), "arch_args: expected a JSON object, got list"),
        (_set("metrics", None), "metrics: expected a JSON object, got NoneType"),
        (_set("inputs", []), "inputs: expected a non-empty list"),
        (_set("inputs.0.datatype", "float32"), r"inputs\[0\].datatype: expected a v2 datatype"),
        (_set("inputs.0.shape", [0]), r"inputs\[0\].shape: expected a list of positive integers"),
        (_set("outputs.0.shape", "10"), r"outputs\[0\].shape: expected a list of positive"),
        (_set("outputs.0.name", _DELETE), r"outputs\[0\]: missing field\(s\) \['name'\]"),
        (_set("preprocessing.mean", [1.0, 2.0]), "mean and std of equal length, got 2 and 1"),
        (_set("preprocessing.std", [0.0]), "preprocessing.std: expected positive numbers"),
        (_set("preprocessing.mean", "4.9"), "preprocessing.mean: expected a non-empty list"),
        (_set("preprocessing.mean", [float("nan")]), "preprocessing.mean: expected a non-empty"),
        (_set("weights_sha256", "ABC"), "weights_sha256: expected 64 lowercase hex digits"),
        (_set("parity", {"k": 2}), "parity: expected null for a base model"),
    ],
)
def test_base_manifest_validation(mutate, message):
    d = base_json()
    mutate(d)
    with pytest.raises(BundleError, match=message):
        Manifest.from_json(d)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_set("parity", None), "parity: expected a parity object for role 'parity', got null"),
        (_set("parity.k", 0), "parity.k: expected an integer >= 1, got 0"),
        (_set("parity.k", True), "parity.k: expected an integer >= 1, got True"),
        (_set("parity.code", ""), "parity.code: expected a non-empty string"),
        (_set("parity.base_sha256", "xyz"), "parity.base_sha256: expected 64 lowercase hex"),
        (_set("parity.base_name", _DELETE), r"parity: missing field\(s\) \['base_name'\]"),
    ],
)
def test_parity_manifest_validation(mutate, message):
    d = parity_json()
    mutate(d)
    with pytest.raises(BundleError, match=message):
        Manifest.from_json(d)


@pytest.mark.parametrize(
    "name",
    ["../../../../x", "a/b", "/abs", "..", ".hidden", "a..b", "-flag", "x" * 65, "a b", "ü"],
)
@pytest.mark.parametrize(
    ("make", "field"), [(base_json, "name"), (parity_json, "parity.base_name")]
)
def test_names_that_could_leave_a_folder_are_refused(make, field, name):
    d = make()
    if field == "name":
        d["name"] = name
    else:
        d["parity"]["base_name"] = name
    with pytest.raises(BundleError) as info:
        Manifest.from_json(d)
    assert str(info.value).startswith(f"{field}: expected a name matching ")
    assert f"got {name!r}" in str(info.value)


@pytest.mark.parametrize("name", ["digits", "m", "resnet18-cifar10.k2", "A_1", "x" * 64])
def test_plain_names_are_accepted(name):
    d = base_json()
    d["name"] = name
    assert Manifest.from_json(d).name == name


def test_long_architecture_arguments_are_refused():
    d = base_json()
    d["arch_args"]["hidden"] = [1] * MAX_ARCH_ARGS_BYTES  # thousands of layers to build
    with pytest.raises(BundleError, match=f"arch_args: expected at most {MAX_ARCH_ARGS_BYTES} "):
        Manifest.from_json(d)


def test_manifest_must_be_an_object():
    with pytest.raises(BundleError, match="manifest: expected a JSON object, got list"):
        Manifest.from_json([])


def test_read_manifest(tmp_path: Path):
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(base_json()))
    assert read_manifest(tmp_path) == Manifest.from_json(base_json())


def test_read_manifest_missing(tmp_path: Path):
    with pytest.raises(BundleError, match="cannot read bundle manifest"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("content", [b"{", b"\xff\xfe{}"])
def test_read_manifest_not_json(tmp_path: Path, content: bytes):
    (tmp_path / MANIFEST_FILE).write_bytes(content)
    with pytest.raises(BundleError, match="not valid JSON"):
        read_manifest(tmp_path)


def test_read_manifest_names_the_file(tmp_path: Path):
    d = base_json()
    d["role"] = "spare"
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(d))
    with pytest.raises(BundleError, match=f"{MANIFEST_FILE}: role"):
        read_manifest(tmp_path)


@pytest.mark.timeout(60)  # before the fix, it blocked forever
def test_a_fifo_manifest_is_refused_without_waiting_for_a_writer(tmp_path: Path):
    os.mkfifo(tmp_path / MANIFEST_FILE)  # opening it for reading would block forever
    with pytest.raises(BundleError, match="expected a regular file, got a FIFO"):
        read_manifest(tmp_path)


@pytest.mark.parametrize(
    ("target", "kind"), [("/dev/zero", "a character device"), (".", "a directory")]
)
def test_a_manifest_linked_to_a_special_file_is_refused(tmp_path: Path, target: str, kind: str):
    (tmp_path / MANIFEST_FILE).symlink_to(target)  # /dev/zero would be read until memory ran out
    with pytest.raises(BundleError, match=f"expected a regular file, got {kind}"):
        read_manifest(tmp_path)


def test_an_oversized_manifest_is_refused_unread(tmp_path: Path):
    with open(tmp_path / MANIFEST_FILE, "wb") as f:
        f.truncate(MAX_MANIFEST_BYTES + 1)  # sparse: nothing written, nothing to read
    with pytest.raises(BundleError, match=f"at most {MAX_MANIFEST_BYTES} bytes, got "):
        read_manifest(tmp_path)


def test_read_regular_file_reads_up_to_the_bound(tmp_path: Path):
    (tmp_path / "f").write_bytes(b"abc")
    assert read_regular_file(tmp_path / "f", "blob", 3) == b"abc"
    with pytest.raises(BundleError, match=r"bundle blob .*: expected at most 2 bytes, got 3"):
        read_regular_file(tmp_path / "f", "blob", 2)


def test_file_sha256(tmp_path: Path):
    path = tmp_path / "blob"
    data = bytes(range(256)) * 10_000  # larger than one read chunk
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_check_parity_for_accepts_the_right_parity():
    check_parity_for(
        Manifest.from_json(base_json()), Manifest.from_json(parity_json()), k=2, code="sum"
    )


def _mismatch(
    base_change: dict[str, Any], parity_change: dict[str, Any]
) -> tuple[Manifest, Manifest]:
    base, parity = base_json(), parity_json()
    for d, change in ((base, base_change), (parity, parity_change)):
        for path, value in change.items():
            _set(path, value)(d)
    return Manifest.from_json(base), Manifest.from_json(parity)


@pytest.mark.parametrize(
    ("base_change", "parity_change", "message"),
    [
        ({}, {"parity.k": 3}, "trained for k=3, but k=2 is configured"),
        ({}, {"parity.code": "concat"}, "trained for code 'concat', but code 'sum'"),
        ({}, {"parity.base_sha256": "c" * 64}, "trained for base weights cccccccccccc"),
        ({"weights_sha256": "d" * 64}, {}, "base model 'digits' has weights dddddddddddd"),
        ({}, {"inputs.0.shape": [8, 8]}, "inputs: expected"),
        ({}, {"inputs.0.datatype": "FP16"}, "inputs: expected"),
        ({}, {"outputs.0.shape": [11]}, "outputs: expected"),
    ],
)
def test_check_parity_for_rejects(base_change, parity_change, message):
    base, parity = _mismatch(base_change, parity_change)
    with pytest.raises(BundleMismatchError, match=message):
        check_parity_for(base, parity, k=2, code="sum")


def test_check_parity_for_rejects_a_base_as_parity():
    base = Manifest.from_json(base_json())
    with pytest.raises(BundleMismatchError, match="expected a 'parity' bundle"):
        check_parity_for(base, base, k=2, code="sum")


def test_check_parity_for_rejects_a_parity_as_base():
    parity = Manifest.from_json(parity_json())
    with pytest.raises(BundleMismatchError, match="has role 'parity', not 'base'"):
        check_parity_for(parity, parity, k=2, code="sum")


def test_mismatch_is_a_bundle_error():
    assert issubclass(BundleMismatchError, BundleError)
    assert issubclass(BundleError, ValueError)


def test_manifest_is_immutable():
    manifest = Manifest.from_json(base_json())
    with pytest.raises(AttributeError):
        manifest.name = "other"  # type: ignore[misc]
    assert copy.deepcopy(manifest) == manifest


def test_bundle_module_does_not_import_torch():
    # The frontend reads manifests without torch installed.
    code = "import sys, common.bundle; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
