"""Readers for the standard files of MNIST, Fashion-MNIST (idx) and CIFAR (python pickle).

- **idx** (LeCun's format, gzip or not): a 4-byte magic ``0 0 <type> <ndim>``, then
  ``ndim`` big-endian uint32 sizes, then the data in big-endian order.
- **CIFAR-10/100** python batches are pickles of a dict of NumPy arrays, lists, bytes and
  strings.  Unpickling can run arbitrary code, so `read_cifar_batch` uses an unpickler
  that refuses every global except the few NumPy needs to rebuild an array
  (``_reconstruct``, ``ndarray``, ``dtype``, ``_frombuffer``) and ``_codecs.encode``
  (how Python 3 writes bytes in a protocol-2 pickle): a file that asks for anything else
  is rejected with `DataFormatError` before any of it runs.
"""

from __future__ import annotations

import codecs
import gzip
import importlib
import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

IDX_TYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


class DataFormatError(ValueError):
    """A data file is missing, truncated, or not in the expected format."""


def open_maybe_gzip(path: Path) -> bytes:
    """The bytes of ``path``, gunzipped when it starts with the gzip magic."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataFormatError(f"cannot read {path}: {exc}") from exc
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DataFormatError(f"{path}: corrupt gzip data: {exc}") from exc
    return data


def read_idx(path: Path) -> npt.NDArray[Any]:
    """An idx file as a native-endian array of its declared type and shape."""
    data = open_maybe_gzip(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise DataFormatError(f"{path}: not an idx file (magic {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(f"{path}: truncated idx header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(IDX_TYPES[data[2]])
    count = int(np.prod(shape))
    if len(data) - header != count * dtype.itemsize:
        raise DataFormatError(
            f"{path}: expected {count * dtype.itemsize} data bytes for shape {shape}, "
            f"got {len(data) - header}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def _allowed_global(module: str, name: str) -> Callable[..., Any]:
    if module == "_codecs":
        return codecs.encode
    # NumPy 2 moved numpy.core to numpy._core (the old name warns); old pickles name either.
    for candidate in (module.replace("numpy.core", "numpy._core"), module):
        try:
            found: Callable[..., Any] = getattr(importlib.import_module(candidate), name)
            return found
        except (ImportError, AttributeError):
            continue
    raise DataFormatError(f"NumPy has no {module}.{name}")  # pragma: no cover


_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts/lists/bytes/str and NumPy arrays; refuses every other global."""

    def __init__(self, file: io.BytesIO, source: Path) -> None:
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise DataFormatError(
                f"{self.source}: refusing to unpickle {module}.{name}: a CIFAR batch may "
                "only hold NumPy arrays, lists, bytes and strings"
            )
        return _allowed_global(module, name)


def read_cifar_batch(path: Path) -> dict[str, Any]:
    """One CIFAR python batch as a dict with ``str`` keys (``data``, ``labels``, ...)."""
    data = open_maybe_gzip(path)
    try:
        obj = _ArraysOnlyUnpickler(io.BytesIO(data), path).load()
    except DataFormatError:
        raise
    except Exception as exc:  # a truncated or foreign file: pickle raises many types
        raise DataFormatError(f"{path}: not a CIFAR python batch: {exc}") from exc
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path}: expected a dict, got {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def cifar_arrays(path: Path, label_key: str) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Images ``(N, 3, 32, 32)`` uint8 (channel planes R, G, B) and labels of one batch."""
    batch = read_cifar_batch(path)
    for key in ("data", label_key):
        if key not in batch:
            raise DataFormatError(f"{path}: missing {key!r}; keys are {sorted(batch)}")
    x = np.asarray(batch["data"], dtype=np.uint8)
    y = np.asarray(batch[label_key], dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(x) != len(y):
        raise DataFormatError(
            f"{path}: expected data (N, 3072) and N labels, got {x.shape} and {y.shape}"
        )
    return x.reshape(-1, 3, 32, 32), y
