"""Reusable NumPy buffers for what the frontend sends, each reused only once it is free.

A parity of a 3x224x224 input is 602 KB: allocating (and zeroing) one per coding group
cost more than encoding it (bench/RESULTS.md, "Parity packing").  So parities are
encoded into buffers kept here, and sent from them without a copy (`frontend.outgoing`).
A transport reads a buffer it was handed when it gets round to it: a write the kernel
did not take at once stays queued, holding a view of the buffer, until the socket drains.
Reusing that buffer then would change the bytes of a parity already sent.  So a buffer
is handed out again only when nothing but the pool refers to it: every view of a NumPy
array (a memoryview, a slice, the transport's queued write) holds a reference to it,
and CPython counts references exactly.  A buffer still held is left alone and another
one is used (at most ``keep`` are kept; past that, fresh ones are not kept).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import numpy.typing as npt

#: references to a free buffer seen inside `BufferPool.take`: the pool's list, the
#: loop variable, and getrefcount's own argument
_FREE = 3


class BufferPool:
    """Buffers of one shape and dtype, each lent out until nothing else holds it."""

    def __init__(self, shape: tuple[int, ...], dtype: npt.DTypeLike, keep: int = 8) -> None:
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.keep = keep
        self._buffers: list[npt.NDArray[Any]] = []

    def take(self) -> npt.NDArray[Any]:
        """A buffer (contents undefined) that no one else holds a view of."""
        for buffer in self._buffers:
            if sys.getrefcount(buffer) <= _FREE:
                return buffer
        fresh = np.empty(self.shape, self.dtype)
        if len(self._buffers) < self.keep:
            self._buffers.append(fresh)
        return fresh

    def __len__(self) -> int:
        return len(self._buffers)
