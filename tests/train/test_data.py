"""Data sets: digits, npz, idx (MNIST, Fashion-MNIST) and CIFAR pickles, written here."""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from tests.train.test_formats import idx_bytes
from train.data import DatasetError, Split, hold_out, load_dataset, load_digits
from train.formats import DataFormatError


def test_shapes_and_dtypes(split: Split):
    assert split.x_train.shape == (1437, 64)
    assert split.x_test.shape == (360, 64)
    assert split.y_train.shape == (1437,)
    assert split.x_train.dtype == np.float32
    assert split.y_test.dtype == np.int64
    assert split.sample_shape == (64,)
    assert split.num_classes == 10
    assert split.augmentation == "none"


def test_pixel_range(split: Split):
    assert split.x_train.min() == 0.0
    assert split.x_train.max() == 16.0


def test_split_is_stratified(split: Split):
    counts = np.bincount(split.y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37


def test_split_is_fixed_by_the_seed(split: Split):
    again = load_digits(seed=0)
    assert np.array_equal(again.x_test, split.x_test)
    assert not np.array_equal(load_digits(seed=1).x_test, split.x_test)
    assert np.array_equal(load_dataset("digits").x_test, split.x_test)


# -- npz -----------------------------------------------------------------------------


def test_npz_images_gain_a_channel_axis(tmp_path: Path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (10, 6, 6), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x[:8], y_train=np.arange(8) % 3, x_test=x[8:],
             y_test=np.array([0, 2]))  # fmt: skip
    s = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert (s.name, s.num_classes, s.augmentation) == ("npz:d", 3, "shift")
    assert s.x_train.shape == (8, 1, 6, 6) and s.x_train.dtype == np.float32
    assert np.array_equal(s.x_train[:, 0], x[:8].astype(np.float32))


def test_npz_missing_array_is_named(tmp_path: Path):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((2, 4)), y_train=np.zeros(2))
    with pytest.raises(DatasetError, match=r"missing array\(s\) \['x_test', 'y_test'\]"):
        load_dataset(f"npz:{tmp_path / 'd.npz'}")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"y_train": np.zeros(3)}, "2 train inputs but 3 labels"),
        ({"x_test": np.zeros((2, 5))}, "train samples"),
        ({"y_test": np.array([0, -1])}, r"labels must lie in \[0, "),
        ({"x_train": np.zeros((2, 1, 1, 1, 4))}, "expected \\(N, D\\)"),
    ],
)
def test_npz_inconsistent_arrays_are_refused(tmp_path: Path, changes, message):
    arrays = {"x_train": np.zeros((2, 4)), "y_train": np.zeros(2), "x_test": np.zeros((2, 4)),
              "y_test": np.zeros(2)} | changes  # fmt: skip
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DatasetError, match=message):
        load_dataset(f"npz:{tmp_path / 'd.npz'}")


# -- idx -----------------------------------------------------------------------------


def write_idx_set(folder: Path, *, gz: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """The four MNIST files, 6 training and 4 test images of 28x28."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 6, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.array([0, 9, 3, 3], dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        data = idx_bytes(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


@pytest.mark.parametrize(
    ("kind", "sub", "gz"),
    [("mnist", "", True), ("mnist", "MNIST/raw", False), ("fashion-mnist", "", False),
     ("fashion-mnist", "FashionMNIST/raw", True)],
)  # fmt: skip
def test_idx_folders(tmp_path: Path, kind: str, sub: str, gz: bool):
    arrays = write_idx_set(tmp_path / sub, gz=gz)
    s = load_dataset(f"{kind}:{tmp_path}")
    assert s.name == kind
    assert s.x_train.shape == (6, 1, 28, 28) and s.x_test.shape == (4, 1, 28, 28)
    assert np.array_equal(s.x_train[:, 0], arrays["train-images-idx3-ubyte"])
    assert s.y_test.tolist() == [0, 9, 3, 3]
    assert s.augmentation == ("shift-rotate" if kind == "mnist" else "shift-flip")


def test_missing_idx_file_lists_where_it_looked(tmp_path: Path):
    write_idx_set(tmp_path, gz=True)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DatasetError, match=r"missing data file t10k-labels-idx1-ubyte: tried"):
        load_dataset(f"mnist:{tmp_path}")


# -- CIFAR ---------------------------------------------------------------------------


def write_cifar_batch(path: Path, n: int, label_key: bytes, seed: int) -> np.ndarray:
    """A batch as CIFAR ships it: a protocol-2 pickle of a dict with bytes keys."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    batch = {b"batch_label": b"tiny", label_key: list(range(n)), b"data": data,
             b"filenames": [b"x.png"] * n}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(batch, protocol=2))
    return data


def test_cifar10_batches(tmp_path: Path):
    folder = tmp_path / "cifar-10-batches-py"  # torchvision's layout
    first = write_cifar_batch(folder / "data_batch_1", 3, b"labels", 1)
    for i in range(2, 6):
        write_cifar_batch(folder / f"data_batch_{i}", 3, b"labels", i)
    write_cifar_batch(folder / "test_batch", 2, b"labels", 9)
    s = load_dataset(f"cifar10:{tmp_path}")
    assert (s.name, s.num_classes, s.augmentation) == ("cifar10", 10, "crop-flip")
    assert s.x_train.shape == (15, 3, 32, 32) and s.x_test.shape == (2, 3, 32, 32)
    # Channel planes in order: the first 1024 values are red, row by row.
    assert np.array_equal(s.x_train[0, 0].ravel(), first[0, :1024].astype(np.float32))
    assert np.array_equal(s.x_train[0, 2].ravel(), first[0, 2048:].astype(np.float32))
    assert s.y_train[:3].tolist() == [0, 1, 2]


def test_cifar100_uses_fine_labels(tmp_path: Path):
    write_cifar_batch(tmp_path / "train", 4, b"fine_labels", 0)
    write_cifar_batch(tmp_path / "test", 2, b"fine_labels", 1)
    s = load_dataset(f"cifar100:{tmp_path}")
    assert (s.name, s.num_classes) == ("cifar100", 100)
    assert s.x_train.shape == (4, 3, 32, 32)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (pickle.dumps([1, 2]), "expected a dict"),
        (b"garbage", "not a CIFAR python batch"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}), "missing 'labels'"),
        (pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}), "(N, 3072)"),
    ],
)
def test_cifar_errors(tmp_path: Path, content: bytes, message: str):
    folder = tmp_path / "cifar-10-batches-py"
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        write_cifar_batch(folder / name, 2, b"labels", 0)
    (folder / "data_batch_3").write_bytes(content)
    with pytest.raises(DataFormatError, match=message):
        load_dataset(f"cifar10:{tmp_path}")


# -- specs, validation split, downloads -------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [("mnist", "expected 'digits' or KIND:PATH"), ("svhn:/tmp", "unknown data set kind 'svhn'"),
     ("npz:/nonexistent.npz", "cannot read")],
)  # fmt: skip
def test_bad_specs(spec: str, message: str):
    with pytest.raises(DatasetError, match=message):
        load_dataset(spec)


def test_download_without_torchvision_says_what_to_do(tmp_path: Path):
    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed: this test covers its absence, offline")
    with pytest.raises(DatasetError, match=r"needs torchvision \(pip install torchvision\)"):
        load_dataset(f"mnist:{tmp_path}", download=True)


def test_hold_out_is_disjoint_complete_and_seeded():
    train, val = hold_out(100, 0.1, seed=3)
    assert len(val) == 10 and len(train) == 90
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(100))
    again_train, again_val = hold_out(100, 0.1, seed=3)
    assert np.array_equal(val, again_val) and np.array_equal(train, again_train)
    assert not np.array_equal(val, hold_out(100, 0.1, seed=4)[1])
    assert len(hold_out(100, 0.0, seed=0)[1]) == 0
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        hold_out(10, 1.0, seed=0)
