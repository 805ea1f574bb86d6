"""Model bundles: a folder holding a JSON manifest and safetensors weights.

A bundle is self-describing: the manifest names the architecture
and its arguments, the per-sample input/output tensor specs, the input preprocessing, the
role (``base`` or ``parity``), the SHA-256 of the weights file and, for a parity model, the
code, k, and the weights digest of the base model it was trained for.  Nothing in a bundle is
ever unpickled.

This module deliberately imports no torch: the frontend reads manifests and checks that a
parity model matches its base model without loading any network.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.datatypes import DATATYPES

MANIFEST_FILE = "manifest.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT = "parm-bundle/1"

#: A manifest larger than this is refused unread (real ones are a few kilobytes).
MAX_MANIFEST_BYTES = 1 << 20
#: Architecture arguments are a handful of numbers; a long ``hidden`` list would build
#: thousands of layers before any size check could run.
MAX_ARCH_ARGS_BYTES = 8192
#: Names (a model's, a base model's) become file names (``parm up``'s logs) and metric
#: labels: one plain path component, never ``.`` or ``..``, at most 64 characters.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RULE = (
    f"a name matching {NAME_PATTERN.pattern!r} without '..' "
    "(letters, digits, '_', '.', '-'; at most 64 characters)"
)

# encoder/decoder: the networks of a learned code (train.learned), served like any model.
ROLES = ("base", "parity", "encoder", "decoder")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MANIFEST_KEYS = frozenset(
    {
        "format",
        "name",
        "role",
        "architecture",
        "arch_args",
        "inputs",
        "outputs",
        "preprocessing",
        "weights_sha256",
        "parity",
        "metrics",
    }
)


class BundleError(ValueError):
    """A bundle is missing, malformed, or its weights do not match its manifest."""


def is_safe_name(value: str) -> bool:
    """Whether ``value`` may name a model: it must be safe as one file name (`NAME_RULE`)."""
    return NAME_PATTERN.fullmatch(value) is not None and ".." not in value


class BundleMismatchError(BundleError):
    """A parity bundle does not belong to the given base model and code."""


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor of a model's signature; ``shape`` is per sample (no batch axis)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        """The JSON object for this spec."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, d: Any, where: str) -> TensorSpec:
        """Parse and validate a spec; ``where`` names it in error messages."""
        obj = _expect_object(d, where, {"name", "datatype", "shape"})
        name = _expect_str(obj, "name", where)
        datatype = _expect_str(obj, "datatype", where)
        if datatype not in DATATYPES:
            raise BundleError(
                f"{where}.datatype: expected a v2 datatype {list(DATATYPES)}, got {datatype!r}"
            )
        shape = obj["shape"]
        if not isinstance(shape, list) or not all(_is_int(n) and n >= 1 for n in shape):
            raise BundleError(f"{where}.shape: expected a list of positive integers, got {shape!r}")
        return cls(name=name, datatype=datatype, shape=tuple(shape))


@dataclass(frozen=True)
class ParityInfo:
    """What a parity model was trained for: k data slots, a code, and one base model.

    With r > 1 parities (the ``linear`` code) each parity model computes one of them:
    ``index`` in ``[0, r)``.  ``r`` and ``index`` appear in the JSON only when r > 1, so
    r=1 manifests keep their original form.  Learned codes (roles ``encoder`` and
    ``decoder``) carry the same record.
    """

    k: int
    code: str
    base_sha256: str
    base_name: str
    r: int = 1
    index: int = 0

    def to_json(self) -> dict[str, Any]:
        """The JSON object for this record."""
        d: dict[str, Any] = {
            "k": self.k,
            "code": self.code,
            "base_sha256": self.base_sha256,
            "base_name": self.base_name,
        }
        if self.r != 1:
            d |= {"r": self.r, "index": self.index}
        return d

    @classmethod
    def from_json(cls, d: Any) -> ParityInfo:
        """Parse and validate the manifest's ``parity`` object."""
        keys = {"k", "code", "base_sha256", "base_name"}
        if isinstance(d, dict) and "r" in d:
            keys |= {"r", "index"}
        obj = _expect_object(d, "parity", keys)
        k = obj["k"]
        if not _is_int(k) or k < 1:
            raise BundleError(f"parity.k: expected an integer >= 1, got {k!r}")
        r, index = obj.get("r", 1), obj.get("index", 0)
        if not _is_int(r) or r < 1:
            raise BundleError(f"parity.r: expected an integer >= 1, got {r!r}")
        if not _is_int(index) or not 0 <= index < r:
            raise BundleError(f"parity.index: expected an integer in [0, {r}), got {index!r}")
        return cls(
            k=k,
            code=_expect_str(obj, "code", "parity"),
            base_sha256=_expect_sha256(obj, "base_sha256", "parity"),
            base_name=_expect_name(obj, "base_name", "parity"),
            r=r,
            index=index,
        )


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json`` of a bundle.

    ``preprocessing`` is ``{"mean": [...], "std": [...]}``, one entry per channel (a single
    entry for flat or greyscale inputs), applied to the wire input as ``(x - mean) / std``
    over axis 1 of ``(B, C, ...)``.
    """

    name: str
    role: str
    architecture: str
    arch_args: dict[str, Any]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    preprocessing: dict[str, Any]
    weights_sha256: str
    parity: ParityInfo | None
    metrics: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to ``manifest.json``."""
        return {
            "format": FORMAT,
            "name": self.name,
            "role": self.role,
            "architecture": self.architecture,
            "arch_args": dict(self.arch_args),
            "inputs": [spec.to_json() for spec in self.inputs],
            "outputs": [spec.to_json() for spec in self.outputs],
            "preprocessing": dict(self.preprocessing),
            "weights_sha256": self.weights_sha256,
            "parity": None if self.parity is None else self.parity.to_json(),
            "metrics": dict(self.metrics),
        }

    @classmethod
    def from_json(cls, d: Any) -> Manifest:
        """Parse and validate a manifest object; raises `BundleError` naming the bad field."""
        obj = _expect_object(d, "manifest", _MANIFEST_KEYS)
        if obj["format"] != FORMAT:
            raise BundleError(f"format: expected {FORMAT!r}, got {obj['format']!r}")
        role = _expect_str(obj, "role", "")
        if role not in ROLES:
            raise BundleError(f"role: expected one of {list(ROLES)}, got {role!r}")
        return cls(
            name=_expect_name(obj, "name", ""),
            role=role,
            architecture=_expect_str(obj, "architecture", ""),
            arch_args=_parse_arch_args(obj),
            inputs=_parse_specs(obj["inputs"], "inputs"),
            outputs=_parse_specs(obj["outputs"], "outputs"),
            preprocessing=_parse_preprocessing(obj["preprocessing"]),
            weights_sha256=_expect_sha256(obj, "weights_sha256", ""),
            parity=_parse_parity(obj["parity"], role),
            metrics=_expect_dict(obj, "metrics"),
        )


def read_manifest(bundle_dir: str | Path) -> Manifest:
    """Read and validate ``bundle_dir/manifest.json``."""
    path = Path(bundle_dir) / MANIFEST_FILE
    raw = read_regular_file(path, "manifest", MAX_MANIFEST_BYTES)
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON: {exc}") from exc
    try:
        return Manifest.from_json(data)
    except BundleError as exc:
        raise BundleError(f"{path}: {exc}") from exc


def read_regular_file(path: Path, what: str, max_bytes: int) -> bytes:
    """The bytes of the bundle file ``path`` (``what`` names it), refused unless it is a
    regular file of at most ``max_bytes`` bytes.

    A FIFO would block the reader forever and a device such as ``/dev/zero`` would be
    read until memory runs out, so the kind and size are checked before the file is
    opened for reading (following symbolic links), and again on the opened descriptor
    (the path may have been swapped in between; opening a FIFO with ``O_NONBLOCK`` does
    not wait for a writer).
    """
    try:
        _check_regular(os.stat(path), path, what, max_bytes)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise BundleError(f"cannot read bundle {what} {path}: {exc}") from exc
    with open(fd, "rb") as f:
        _check_regular(os.fstat(fd), path, what, max_bytes)
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew after the check
        raise BundleError(f"bundle {what} {path}: expected at most {max_bytes} bytes")
    return data


def _check_regular(st: os.stat_result, path: Path, what: str, max_bytes: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(
            f"bundle {what} {path}: expected a regular file, got {_file_kind(st.st_mode)}"
        )
    if st.st_size > max_bytes:
        raise BundleError(
            f"bundle {what} {path}: expected at most {max_bytes} bytes, got {st.st_size}"
        )


def _file_kind(mode: int) -> str:
    kinds = {
        stat.S_ISDIR: "a directory",
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    return next((kind for test, kind in kinds.items() if test(mode)), "a special file")


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_parity_for(
    base: Manifest,
    parity: Manifest,
    *,
    k: int,
    code: str,
    r: int = 1,
    index: int | None = None,
) -> None:
    """Raise `BundleMismatchError` unless ``parity`` is a parity model for ``base``.

    It must be a parity bundle trained for exactly this ``k``, ``code`` and ``r`` (and,
    when given, parity ``index``) and for these base weights, and its input and output
    tensors must match the base model's.
    """
    if base.role != "base":
        raise BundleMismatchError(f"base model {base.name!r} has role {base.role!r}, not 'base'")
    info = parity.parity
    if parity.role != "parity" or info is None:
        raise BundleMismatchError(
            f"model {parity.name!r} has role {parity.role!r}; expected a 'parity' bundle"
        )
    where = f"parity model {parity.name!r}"
    if info.k != k:
        raise BundleMismatchError(f"{where} was trained for k={info.k}, but k={k} is configured")
    if info.code != code:
        raise BundleMismatchError(
            f"{where} was trained for code {info.code!r}, but code {code!r} is configured"
        )
    if info.r != r:
        raise BundleMismatchError(f"{where} was trained for r={info.r}, but r={r} is configured")
    if index is not None and info.index != index:
        raise BundleMismatchError(f"{where} computes parity {info.index}, not parity {index}")
    if info.base_sha256 != base.weights_sha256:
        raise BundleMismatchError(
            f"{where} was trained for base weights {info.base_sha256[:12]}... "
            f"({info.base_name!r}), but base model {base.name!r} has weights "
            f"{base.weights_sha256[:12]}..."
        )
    _check_specs_match(base.inputs, parity.inputs, f"{where} inputs")
    _check_specs_match(base.outputs, parity.outputs, f"{where} outputs")


def _check_specs_match(
    base: tuple[TensorSpec, ...], parity: tuple[TensorSpec, ...], where: str
) -> None:
    # Names may differ; what the frontend relies on is datatype and per-sample shape.
    want = [(s.datatype, s.shape) for s in base]
    got = [(s.datatype, s.shape) for s in parity]
    if want != got:
        raise BundleMismatchError(f"{where}: expected (datatype, shape) {want}, got {got}")


def _parse_specs(value: Any, field: str) -> tuple[TensorSpec, ...]:
    if not isinstance(value, list) or not value:
        raise BundleError(f"{field}: expected a non-empty list of tensor specs, got {value!r}")
    return tuple(TensorSpec.from_json(item, f"{field}[{i}]") for i, item in enumerate(value))


def _parse_preprocessing(value: Any) -> dict[str, Any]:
    obj = _expect_object(value, "preprocessing", {"mean", "std"})
    mean, std = obj["mean"], obj["std"]
    for key, seq in (("mean", mean), ("std", std)):
        if not isinstance(seq, list) or not seq or not all(_is_number(v) for v in seq):
            raise BundleError(
                f"preprocessing.{key}: expected a non-empty list of numbers, got {seq!r}"
            )
    if len(mean) != len(std):
        raise BundleError(
            f"preprocessing: expected mean and std of equal length, got {len(mean)} and {len(std)}"
        )
    if not all(s > 0 for s in std):
        raise BundleError(f"preprocessing.std: expected positive numbers, got {std!r}")
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}


def _parse_parity(value: Any, role: str) -> ParityInfo | None:
    if role == "base":
        if value is not None:
            raise BundleError(f"parity: expected null for a base model, got {value!r}")
        return None
    if value is None:
        raise BundleError(f"parity: expected a parity object for role {role!r}, got null")
    return ParityInfo.from_json(value)


def _expect_object(value: Any, where: str, keys: set[str] | frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise BundleError(f"{where}: expected a JSON object, got {type(value).__name__}")
    missing = sorted(keys - value.keys())
    if missing:
        raise BundleError(f"{where}: missing field(s) {missing}")
    unknown = sorted(value.keys() - keys)
    if unknown:
        raise BundleError(f"{where}: unknown field(s) {unknown}; expected {sorted(keys)}")
    return value


def _expect_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj[key]
    if not isinstance(value, str) or not value:
        raise BundleError(f"{_field(where, key)}: expected a non-empty string, got {value!r}")
    return value


def _expect_name(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = _expect_str(obj, key, where)
    if not is_safe_name(value):
        raise BundleError(f"{_field(where, key)}: expected {NAME_RULE}, got {value!r}")
    return value


def _parse_arch_args(obj: Mapping[str, Any]) -> dict[str, Any]:
    args = _expect_dict(obj, "arch_args")
    size = len(json.dumps(args))
    if size > MAX_ARCH_ARGS_BYTES:
        raise BundleError(
            f"arch_args: expected at most {MAX_ARCH_ARGS_BYTES} bytes of JSON, got {size}"
        )
    return args


def _expect_sha256(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj[key]
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise BundleError(f"{_field(where, key)}: expected 64 lowercase hex digits, got {value!r}")
    return value


def _expect_dict(obj: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = obj[key]
    if not isinstance(value, dict):
        raise BundleError(f"{key}: expected a JSON object, got {type(value).__name__}")
    return dict(value)


def _field(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def learned_code_info(run_dir: str | Path) -> ParityInfo:
    """What a learned code's training run (``encoder/`` and ``decoder/``) was trained for:
    its encoder's record (k, r, base model); `BundleMismatchError` if it has none."""
    encoder = read_manifest(Path(run_dir) / "encoder")
    if encoder.role != "encoder" or encoder.parity is None:
        raise BundleMismatchError(
            f"{run_dir}: expected a learned code's training run, whose encoder/ bundle has "
            f"role 'encoder'; got role {encoder.role!r}"
        )
    return encoder.parity
