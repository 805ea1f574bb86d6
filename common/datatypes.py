"""The one table of tensor datatypes: v2 protocol names and their NumPy dtypes.

Bundle manifests, the wire helpers of ``proto`` and the frontend's request checks all
read this table, so a datatype a manifest may name is always one the wire can carry.
The v2 protocol also names ``BF16`` and ``BYTES``; NumPy has no dtype for the first and
the second is not a fixed-size element, so neither is served, and a manifest naming
either is refused when it is read.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# v2 datatype name -> NumPy dtype, explicitly little-endian: the wire byte order.
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
