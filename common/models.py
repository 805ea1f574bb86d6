"""Architectures shared by training and the model containers, and bundle load/save.

Registered architectures: ``mlp`` (below), ``lenet5``, ``resnet18`` and ``vgg11``, and the
learned-code networks ``mlp-encoder``, ``conv-encoder`` and ``mlp-decoder``
(`common.architectures`).

Training builds a network with `build`, saves it with `save_bundle`; a container loads it
with `load_model`, which rebuilds the same architecture from the registry by name and the
manifest's ``arch_args``, loads the weights from safetensors (never pickle), and folds the
bundle's input preprocessing in front so the container feeds it raw wire tensors.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import safetensors.torch
import torch
from torch import nn

from common.architectures import (
    VGG11,
    ConvEncoder,
    LeNet5,
    MLPDecoder,
    MLPEncoder,
    ResNet18,
)
from common.bundle import (
    MANIFEST_FILE,
    WEIGHTS_FILE,
    BundleError,
    Manifest,
    ParityInfo,
    TensorSpec,
    read_manifest,
    read_regular_file,
)

ModuleFactory = TypeVar("ModuleFactory", bound=Callable[..., nn.Module])

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}

#: The most elements (parameters and buffers) a bundle's network may have, checked
#: before anything is allocated: 2**30, 4 GiB of float32, several times the largest
#: model here.  Pass ``max_parameters`` to `load_model` for a larger one.
MAX_PARAMETERS = 2**30
#: Room for a weights file's safetensors header beyond its tensors' bytes.
_HEADER_ALLOWANCE = 1 << 20
#: The widest element a weights file may store (float64, int64).
_MAX_ELEMENT_BYTES = 8


class UnknownArchitectureError(ValueError):
    """No architecture is registered under the requested name."""


def register(name: str) -> Callable[[ModuleFactory], ModuleFactory]:
    """Class/function decorator: make ``name`` buildable with `build`."""

    def decorator(factory: ModuleFactory) -> ModuleFactory:
        if name in ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is already registered")
        ARCHITECTURES[name] = factory
        return factory

    return decorator


def build(name: str, **arch_args: Any) -> nn.Module:
    """A fresh (randomly initialised) network of the registered architecture ``name``."""
    try:
        factory = ARCHITECTURES[name]
    except KeyError:
        raise UnknownArchitectureError(
            f"unknown architecture {name!r}; expected one of {sorted(ARCHITECTURES)}"
        ) from None
    return factory(**arch_args)


@register("mlp")
class MLP(nn.Module):
    """Fully connected ReLU network; flattens its input, so (B, 64) and (B, 1, 28, 28) both work.

    ``hidden=[]`` with ``bias=False`` is a purely linear map, which tests use: for it the
    sum code's reconstruction is exact.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: Sequence[int] = (200, 100),
        bias: bool = True,
    ) -> None:
        super().__init__()
        widths = [in_features, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for width_in, width_out in itertools.pairwise(widths):
            layers += [nn.Linear(width_in, width_out, bias=bias), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], num_classes, bias=bias))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # type: ignore[no-any-return]


register("lenet5")(LeNet5)
register("resnet18")(ResNet18)
register("vgg11")(VGG11)
register("mlp-encoder")(MLPEncoder)
register("conv-encoder")(ConvEncoder)
register("mlp-decoder")(MLPDecoder)


class Preprocess(nn.Module):
    """``(x - mean) / std`` with one mean/std per channel, broadcast over axis 1."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or not mean:
            raise ValueError(f"expected mean and std of equal non-zero length, got {mean}, {std}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (C,) -> (1, C, 1, ...) so it lines up with axis 1 of (B, C, ...).
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)


def save_bundle(
    bundle_dir: str | Path,
    *,
    name: str,
    role: str,
    architecture: str,
    arch_args: dict[str, Any],
    module: nn.Module,
    input_spec: TensorSpec,
    output_spec: TensorSpec,
    preprocessing: dict[str, Any],
    parity: ParityInfo | None = None,
    metrics: dict[str, Any] | None = None,
    extra_files: Mapping[str, bytes] | None = None,
) -> Manifest:
    """Write ``module``'s weights and a manifest to ``bundle_dir``, atomically.

    ``module`` is the bare network (without `Preprocess`). The bundle is assembled in a
    temporary sibling folder and moved into place, so a reader never sees a half-written
    bundle; an existing bundle at ``bundle_dir`` is replaced.  ``extra_files`` (name ->
    bytes, for example a training run's ``metrics.json``) are written alongside.
    """
    extra = dict(extra_files or {})
    for file_name in extra:
        if file_name in (MANIFEST_FILE, WEIGHTS_FILE) or Path(file_name).name != file_name:
            raise ValueError(f"extra bundle file must be a plain new file name, got {file_name!r}")
    bundle_dir = Path(bundle_dir)
    bundle_dir.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    data = safetensors.torch.save(tensors)
    manifest = Manifest(
        name=name,
        role=role,
        architecture=architecture,
        arch_args=dict(arch_args),
        inputs=(input_spec,),
        outputs=(output_spec,),
        preprocessing=dict(preprocessing),
        weights_sha256=_sha256(data),
        parity=parity,
        metrics=dict(metrics or {}),
    )
    # Round trip through JSON and the validator: never write a manifest we would refuse to
    # read, and return exactly what `read_manifest` will see (tuples become lists, etc.).
    text = json.dumps(manifest.to_json(), indent=2) + "\n"
    manifest = Manifest.from_json(json.loads(text))
    with _staging_dir(bundle_dir) as staging:
        (staging / WEIGHTS_FILE).write_bytes(data)
        (staging / MANIFEST_FILE).write_text(text, encoding="utf-8")
        for file_name, content in extra.items():
            (staging / file_name).write_bytes(content)
        _swap_into_place(staging, bundle_dir)
    return manifest


def load_model(
    bundle_dir: str | Path,
    device: str | torch.device = "cpu",
    *,
    max_parameters: int = MAX_PARAMETERS,
) -> tuple[Manifest, nn.Module]:
    """Load a bundle: its manifest and ``nn.Sequential(Preprocess, net)`` in eval mode.

    Nothing large is allocated or read before it is known to fit: the architecture is
    first built on the ``meta`` device (no memory), its parameter and buffer count must
    not exceed ``max_parameters`` (`MAX_PARAMETERS` by default), the weights file must be
    a regular file no larger than those tensors can take, its digest must match the
    manifest's, and every tensor must have the shape the architecture expects.  Any of
    these failing raises one `BundleError` that says which.
    """
    manifest = read_manifest(bundle_dir)
    arch = f"architecture {manifest.architecture!r} with {manifest.arch_args}"
    with torch.device("meta"):
        skeleton = _build(manifest, f"{bundle_dir}: cannot build {arch}")
    expected = {name: tuple(t.shape) for name, t in skeleton.state_dict().items()}
    count = sum(math.prod(shape) for shape in expected.values())
    if count > max_parameters:
        raise BundleError(
            f"{bundle_dir}: {arch}: expected at most {max_parameters} parameters "
            f"(common.models.MAX_PARAMETERS), got {count}"
        )
    tensors = load_weights(bundle_dir, manifest, max_bytes=_weights_bound(count))
    misfit = f"{bundle_dir}: weights do not fit {arch}"
    _check_shapes(expected, tensors, misfit)
    net = _build(manifest, f"{bundle_dir}: cannot build {arch}")
    try:
        net.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:  # the shapes fit; a dtype that cannot be copied in
        raise BundleError(f"{misfit}: {_one_line(exc)}") from exc
    pre = manifest.preprocessing
    model = nn.Sequential(Preprocess(pre["mean"], pre["std"]), net)
    return manifest, model.to(device).eval()


def load_weights(
    bundle_dir: str | Path, manifest: Manifest, *, max_bytes: int | None = None
) -> dict[str, torch.Tensor]:
    """The bundle's tensors (on CPU), after checking their digest against ``manifest``.

    The file must be a regular file of at most ``max_bytes`` bytes (by default, what
    `MAX_PARAMETERS` elements can take); it is refused unread otherwise.
    """
    path = Path(bundle_dir) / WEIGHTS_FILE
    bound = _weights_bound(MAX_PARAMETERS) if max_bytes is None else max_bytes
    data = read_regular_file(path, "weights", bound)
    digest = _sha256(data)
    if digest != manifest.weights_sha256:
        raise BundleError(
            f"{path}: weights digest {digest} does not match the manifest's "
            f"weights_sha256 {manifest.weights_sha256}"
        )
    try:
        return safetensors.torch.load(data)
    except Exception as exc:  # safetensors raises its own SafetensorError type
        raise BundleError(f"{path}: not a valid safetensors file: {exc}") from exc


def _build(manifest: Manifest, where: str) -> nn.Module:
    try:
        return build(manifest.architecture, **manifest.arch_args)
    # unknown name, arguments it does not take, or sizes torch refuses (negative, huge)
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
        raise BundleError(f"{where}: {_one_line(exc)}") from exc


def _weights_bound(count: int) -> int:
    # Every element stored at the widest dtype, plus the safetensors header.
    return _HEADER_ALLOWANCE + _MAX_ELEMENT_BYTES * count


def _check_shapes(
    expected: Mapping[str, tuple[int, ...]], tensors: Mapping[str, torch.Tensor], where: str
) -> None:
    missing = sorted(expected.keys() - tensors.keys())
    if missing:
        raise BundleError(f"{where}: missing tensor(s) {missing}")
    unexpected = sorted(tensors.keys() - expected.keys())
    if unexpected:
        raise BundleError(f"{where}: unexpected tensor(s) {unexpected}")
    for name, shape in expected.items():
        found = tuple(tensors[name].shape)
        if found != shape:
            raise BundleError(
                f"{where}: tensor {name!r}: expected shape {list(shape)}, found {list(found)}"
            )


def _one_line(exc: BaseException) -> str:
    # torch's messages span lines; a container's error must stay one log line.
    return " ".join(str(exc).split())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def _staging_dir(bundle_dir: Path) -> Iterator[Path]:
    staging = Path(tempfile.mkdtemp(prefix=f".{bundle_dir.name}.tmp-", dir=bundle_dir.parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_into_place(staging: Path, bundle_dir: Path) -> None:
    # os.replace cannot overwrite a non-empty folder: move the old bundle aside first.
    old: Path | None = None
    if bundle_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{bundle_dir.name}.old-", dir=bundle_dir.parent))
        os.replace(bundle_dir, old / "bundle")
    # mkdtemp made it 0700: model containers read bundles as an unprivileged user
    staging.chmod(0o755)
    os.replace(staging, bundle_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is usable, else ``cpu``; other names pass through.

    Raises ValueError when CUDA is asked for and there is none, rather than failing
    later inside torch with a less direct message.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested, but CUDA is not available")
    return device
