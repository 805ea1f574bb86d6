"""Data sets for training base and parity models, loaded from local files.

A `Split` holds NumPy arrays: inputs ``(N, *sample_shape)`` float32 on the wire scale the
frontend receives (raw pixel values; no normalisation here: the bundle's preprocessing
does that, with statistics measured at training time) and int64 labels.  Images are
``(C, H, W)``; the 8x8 ``digits`` stay flat ``(64,)`` as the demo serves them.

`load_dataset` takes a spec: ``digits``, ``npz:PATH``, ``mnist:DIR``, ``fashion-mnist:DIR``,
``cifar10:DIR`` or ``cifar100:DIR`` (the standard files; see `train.formats`).  With
``download=True`` and torchvision installed, missing MNIST/Fashion-MNIST/CIFAR files are
downloaded into DIR first.  `hold_out` draws the validation split from the training data,
fixed by a seed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import sklearn.datasets
import torch
from sklearn.model_selection import train_test_split

from train.formats import DataFormatError, cifar_arrays, read_idx

FloatArray = npt.NDArray[np.float32]
LabelArray = npt.NDArray[np.int64]

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Where the files may sit inside DIR: the folder itself, or torchvision's layout.
IDX_FOLDERS = {
    "mnist": ("", "raw", "MNIST/raw"),
    "fashion-mnist": ("", "raw", "FashionMNIST/raw"),
}
# kind: (torchvision's subfolder, training files, test file, label key, classes)
CIFAR = {
    "cifar10": (
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        "labels",
        10,
    ),
    "cifar100": ("cifar-100-python", ("train",), "test", "fine_labels", 100),
}
# The augmentation each kind of data gets unless a config says otherwise.
AUGMENTATION = {
    "digits": "none",
    "npz": "shift",
    "mnist": "shift-rotate",
    "fashion-mnist": "shift-flip",
    "cifar10": "crop-flip",
    "cifar100": "crop-flip",
}


class DatasetError(ValueError):
    """A data-set spec is malformed or its files cannot be used."""


@dataclass(frozen=True)
class Split:
    """A fixed train/test split of one data set.

    ``augmentation`` names the augmentation that suits it (`train.augment`); ``kind`` is
    the loader (``digits``, ``npz``, ``mnist``...).
    """

    name: str
    x_train: FloatArray  # (N_train, *sample_shape)
    y_train: LabelArray  # (N_train,)
    x_test: FloatArray  # (N_test, *sample_shape)
    y_test: LabelArray  # (N_test,)
    num_classes: int
    augmentation: str = "none"

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Per-sample input shape (no batch axis)."""
        return tuple(self.x_train.shape[1:])


def load_digits(seed: int = 0, test_fraction: float = 0.2) -> Split:
    """scikit-learn's bundled 8x8 digits: (N, 64) float32 pixels 0..16, stratified split."""
    bunch = sklearn.datasets.load_digits()
    x = np.asarray(bunch.data, dtype=np.float32)  # (1797, 64)
    y = np.asarray(bunch.target, dtype=np.int64)  # (1797,)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return Split(
        name="digits",
        x_train=np.ascontiguousarray(x_train),
        y_train=np.ascontiguousarray(y_train),
        x_test=np.ascontiguousarray(x_test),
        y_test=np.ascontiguousarray(y_test),
        num_classes=10,
    )


def load_dataset(spec: str, *, seed: int = 0, download: bool = False) -> Split:
    """The data set named by ``spec`` (see the module docstring)."""
    kind, _, where = spec.partition(":")
    if kind == "digits" and not where:
        return load_digits(seed)
    if not where:
        raise DatasetError(
            f"data set {spec!r}: expected 'digits' or KIND:PATH with KIND one of "
            f"{['npz', *IDX_FOLDERS, *CIFAR]}"
        )
    path = Path(where).expanduser()
    if kind == "npz":
        return load_npz(path)
    if kind not in IDX_FOLDERS and kind not in CIFAR:
        raise DatasetError(f"unknown data set kind {kind!r} in {spec!r}")
    if download:
        fetch(kind, path)
    if kind in IDX_FOLDERS:
        return load_idx_folder(path, kind)
    return load_cifar(path, kind)


def load_npz(path: Path) -> Split:
    """``x_train``, ``y_train``, ``x_test``, ``y_test`` from an ``.npz`` file (no pickles)."""
    needed = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [key for key in needed if key not in f.files]
            arrays = {key: f[key] for key in needed if key in f.files}
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    if missing:
        raise DatasetError(f"{path}: missing array(s) {missing}; need {list(needed)}")
    name = f"npz:{path.stem}"
    return make_split(
        name, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]
    )


def load_idx_folder(folder: Path, kind: str) -> Split:
    """MNIST or Fashion-MNIST from the four standard idx files (gzip or not) in ``folder``."""
    arrays = []
    for part in ("train", "test"):
        for stem in IDX_FILES[part]:
            arrays.append(read_idx(_find(folder, stem, IDX_FOLDERS[kind])))
    x_train, y_train, x_test, y_test = arrays
    return make_split(kind, x_train, y_train, x_test, y_test)


def load_cifar(folder: Path, kind: str) -> Split:
    """CIFAR-10 or CIFAR-100 (fine labels) from the standard python batches in ``folder``."""
    sub, train_files, test_file, label_key, classes = CIFAR[kind]
    where = ("", sub)
    parts = [cifar_arrays(_find(folder, name, where), label_key) for name in train_files]
    x_test, y_test = cifar_arrays(_find(folder, test_file, where), label_key)
    x_train = np.concatenate([x for x, _ in parts])
    y_train = np.concatenate([y for _, y in parts])
    return make_split(kind, x_train, y_train, x_test, y_test, num_classes=classes)


def make_split(
    name: str,
    x_train: npt.NDArray[np.generic],
    y_train: npt.NDArray[np.generic],
    x_test: npt.NDArray[np.generic],
    y_test: npt.NDArray[np.generic],
    num_classes: int | None = None,
) -> Split:
    """A `Split` from raw arrays: images ``(N, H, W)`` gain a channel axis, float32 inputs."""
    xs = [_as_inputs(x, f"{name} x_{part}") for x, part in ((x_train, "train"), (x_test, "test"))]
    ys = [np.asarray(y, dtype=np.int64).reshape(-1) for y in (y_train, y_test)]
    for x, y, part in zip(xs, ys, ("train", "test"), strict=True):
        if len(x) != len(y) or len(x) == 0:
            raise DatasetError(f"{name}: {len(x)} {part} inputs but {len(y)} labels")
    if xs[0].shape[1:] != xs[1].shape[1:]:
        raise DatasetError(f"{name}: train samples {xs[0].shape[1:]}, test {xs[1].shape[1:]}")
    classes = num_classes or int(max(ys[0].max(), ys[1].max())) + 1
    if min(ys[0].min(), ys[1].min()) < 0 or max(ys[0].max(), ys[1].max()) >= classes:
        raise DatasetError(f"{name}: labels must lie in [0, {classes})")
    kind = name.partition(":")[0]
    return Split(name, xs[0], ys[0], xs[1], ys[1], classes, AUGMENTATION.get(kind, "none"))


def hold_out(
    n: int, fraction: float, seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(train, validation) indices into ``n`` training examples, fixed by ``seed``."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(n)
    cut = round(n * fraction)
    return np.sort(order[cut:]), np.sort(order[:cut])


def training_parts(
    split: Split, val_fraction: float, seed: int, device: torch.device
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """((x, y), (x_val, y_val)): the training data less the held-out validation part."""
    train_idx, val_idx = hold_out(len(split.x_train), val_fraction, seed)
    x = torch.from_numpy(split.x_train)
    y = torch.from_numpy(split.y_train)
    parts = [(x[torch.from_numpy(i)], y[torch.from_numpy(i)]) for i in (train_idx, val_idx)]
    (xt, yt), (xv, yv) = parts
    return (xt.to(device), yt.to(device)), (xv.to(device), yv.to(device))


def fetch(kind: str, folder: Path) -> None:
    """Download ``kind`` into ``folder`` with torchvision (optional; needs the network)."""
    try:
        datasets = importlib.import_module("torchvision.datasets")
    except ImportError:
        raise DatasetError(
            f"downloading {kind} needs torchvision (pip install torchvision); or put the "
            f"standard files in {folder} yourself"
        ) from None
    names = {
        "mnist": "MNIST",
        "fashion-mnist": "FashionMNIST",
        "cifar10": "CIFAR10",
        "cifar100": "CIFAR100",
    }
    for train in (True, False):
        getattr(datasets, names[kind])(root=str(folder), train=train, download=True)


def _as_inputs(x: npt.NDArray[np.generic], where: str) -> FloatArray:
    array = np.asarray(x)
    if array.ndim == 3:  # (N, H, W) greyscale images
        array = array[:, None]
    if array.ndim not in (2, 4):
        raise DatasetError(
            f"{where}: expected (N, D), (N, H, W) or (N, C, H, W), got {array.shape}"
        )
    return np.ascontiguousarray(array, dtype=np.float32)


def _find(folder: Path, stem: str, subfolders: tuple[str, ...]) -> Path:
    tried = []
    for sub in subfolders:
        for name in (stem, stem + ".gz"):
            path = folder / sub / name
            if path.is_file():
                return path
            tried.append(str(path))
    raise DatasetError(f"missing data file {stem}: tried {', '.join(tried)}")


__all__ = ["DataFormatError", "DatasetError", "Split", "hold_out", "load_dataset", "load_digits"]
