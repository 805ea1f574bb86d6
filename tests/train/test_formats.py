"""The file formats of the public data sets: idx (MNIST) and CIFAR's python pickles."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from train.formats import (
    DataFormatError,
    cifar_arrays,
    open_maybe_gzip,
    read_cifar_batch,
    read_idx,
)


def idx_bytes(array: np.ndarray) -> bytes:
    code = {np.uint8: 0x08, np.int16: 0x0B, np.float32: 0x0D}[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def test_idx_reads_other_types_big_endian(tmp_path: Path):
    values = np.array([[1.5, -2.0], [3.25, 1e6]], dtype=np.float32)
    (tmp_path / "f").write_bytes(idx_bytes(values))
    assert np.array_equal(read_idx(tmp_path / "f"), values)
    shorts = np.array([-300, 7], dtype=np.int16)
    (tmp_path / "s").write_bytes(idx_bytes(shorts))
    assert read_idx(tmp_path / "s").tolist() == [-300, 7]


def test_real_mnist_test_file_if_present():
    path = Path(__file__).resolve().parents[3] / "shared/data/mnist/t10k-labels-idx1-ubyte.gz"
    if not path.exists():
        pytest.skip("the shared MNIST files are not on this machine")
    labels = read_idx(path)
    assert labels.shape == (10_000,) and labels.max() == 9


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00\x08", "not an idx file"),
        (b"\x01\x00\x08\x01" + bytes(8), "not an idx file"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated idx header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05" + bytes(4), "expected 5 data bytes"),
        (b"\x1f\x8bnot gzip", "corrupt gzip"),
    ],
)
def test_idx_errors(tmp_path: Path, data: bytes, message: str):
    (tmp_path / "f").write_bytes(data)
    with pytest.raises(DataFormatError, match=message):
        read_idx(tmp_path / "f")


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar_loader_refuses_foreign_globals(tmp_path: Path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Exploit()}, protocol=2))
    with pytest.raises(DataFormatError, match=r"refusing to unpickle (posix|os)\.system"):
        read_cifar_batch(path)


@pytest.mark.parametrize("gz", [False, True])
def test_files_are_read_gzipped_or_not(tmp_path: Path, gz: bool) -> None:
    (tmp_path / "f").write_bytes(gzip.compress(b"payload") if gz else b"payload")
    assert open_maybe_gzip(tmp_path / "f") == b"payload"


def test_a_missing_file_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="cannot read"):
        open_maybe_gzip(tmp_path / "absent")


def test_cifar_arrays_are_channel_planes_with_their_labels(tmp_path: Path) -> None:
    data = np.arange(2 * 3072, dtype=np.int64).reshape(2, 3072) % 256
    batch = {b"data": data.astype(np.uint8), b"fine_labels": [7, 3], b"batch_label": b"x"}
    (tmp_path / "b").write_bytes(pickle.dumps(batch, protocol=2))
    assert read_cifar_batch(tmp_path / "b")["batch_label"] == b"x"  # keys become str
    x, y = cifar_arrays(tmp_path / "b", "fine_labels")
    assert x.shape == (2, 3, 32, 32) and x.dtype == np.uint8 and y.tolist() == [7, 3]
    assert np.array_equal(x[1, 1].ravel(), data[1, 1024:2048])  # green plane of image 1
