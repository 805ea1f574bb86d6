"""Tensors and parameters of the v2 inference protocol, to and from NumPy.

The v2 protocol names element types with strings ("FP32", "INT64", ...) and carries
tensor data as raw little-endian, row-major bytes (``raw_input_contents`` /
``raw_output_contents``), one entry per tensor, in the order of ``inputs`` /
``outputs``. Raw bytes are what Triton's clients send and what this project uses
everywhere; the typed ``InferTensorContents`` fields are read too (some v2 servers answer
with them) but never written.

Decoding is zero-copy: :func:`tensor_from_raw` returns a read-only view of the bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from common.bundle import TensorSpec
from common.datatypes import DATATYPES
from proto import inference_pb2 as pb

ParamValue = bool | int | float | str

# (kind, itemsize) -> datatype name; byte order is normalised separately.
_NAMES = {(dt.kind, dt.itemsize): name for name, dt in DATATYPES.items()}

# Which InferTensorContents field holds each datatype (FP16 has none: raw only).
_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}

_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


class TensorError(ValueError):
    """A tensor's datatype, shape or data is not what the protocol or the model expects."""


def dtype_of(datatype: str) -> np.dtype[Any]:
    """The NumPy dtype of a v2 datatype name; TensorError if there is none."""
    try:
        return DATATYPES[datatype]
    except KeyError:
        known = ", ".join(DATATYPES)
        raise TensorError(f"unknown datatype {datatype!r}, expected one of {known}") from None


def datatype_of(dtype: npt.DTypeLike) -> str:
    """The v2 datatype name of a NumPy dtype; TensorError if the protocol has none."""
    dt = np.dtype(dtype)
    try:
        return _NAMES[(dt.kind, dt.itemsize)]
    except KeyError:
        raise TensorError(f"NumPy dtype {dt} has no v2 datatype") from None


def _checked_shape(shape: Sequence[int]) -> tuple[int, ...]:
    dims = tuple(int(d) for d in shape)
    if any(d < 0 for d in dims):
        raise TensorError(f"shape {list(dims)} has a negative dimension")
    return dims


def batch_shape_text(spec: TensorSpec) -> str:
    """The batched shape of a spec as the protocol writes it, e.g. ``[-1, 64]``."""
    return str([-1, *spec.shape])


def check_batch(spec: TensorSpec, name: str, datatype: str, shape: Sequence[int]) -> None:
    """A request's input tensor must be a batch ``[n >= 1, *spec.shape]`` of ``spec``.

    The one check of a tensor's signature, shared by the frontend and the containers;
    raises TensorError naming what was expected and what came.
    """
    if name != spec.name:
        raise TensorError(f"expected input {spec.name!r}, got {name!r}")
    if datatype != spec.datatype:
        raise TensorError(f"input {name!r}: expected datatype {spec.datatype}, got {datatype}")
    if len(shape) != len(spec.shape) + 1 or tuple(shape[1:]) != spec.shape or shape[0] < 1:
        expected = batch_shape_text(spec)
        raise TensorError(f"input {name!r}: expected shape {expected}, got {list(shape)}")


def tensor_from_raw(datatype: str, shape: Sequence[int], raw: bytes) -> npt.NDArray[Any]:
    """A read-only array viewing ``raw`` as a ``datatype`` tensor of ``shape``.

    Raises TensorError for an unknown datatype, a negative dimension, or a byte length
    that does not match the shape.
    """
    dtype = dtype_of(datatype)
    dims = _checked_shape(shape)
    expected = math.prod(dims) * dtype.itemsize
    if len(raw) != expected:
        raise TensorError(
            f"expected {expected} bytes for {datatype} shape {list(dims)}, got {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(dims)


def tensor_from_contents(
    datatype: str, shape: Sequence[int], contents: pb.InferTensorContents
) -> npt.NDArray[Any]:
    """An array from the typed ``InferTensorContents`` fields (the non-raw form)."""
    dtype = dtype_of(datatype)
    dims = _checked_shape(shape)
    field = _CONTENTS_FIELD.get(datatype)
    if field is None:
        raise TensorError(f"datatype {datatype} can only be sent as raw contents")
    values = getattr(contents, field)
    expected = math.prod(dims)
    if len(values) != expected:
        raise TensorError(
            f"expected {expected} {field} values for shape {list(dims)}, got {len(values)}"
        )
    return np.array(values, dtype=dtype).reshape(dims)


def tensor_to_raw(array: npt.ArrayLike) -> tuple[str, list[int], bytes]:
    """``(datatype, shape, raw bytes)`` of an array, little-endian and row-major."""
    arr = np.asarray(array)
    datatype = datatype_of(arr.dtype)
    # tobytes() writes C order whatever the strides; astype fixes big-endian input.
    wire = arr.astype(DATATYPES[datatype], copy=False)
    return datatype, list(arr.shape), wire.tobytes()


def make_infer_request(
    model_name: str,
    inputs: Mapping[str, npt.ArrayLike],
    *,
    request_id: str = "",
    parameters: Mapping[str, ParamValue] | None = None,
) -> pb.ModelInferRequest:
    """A ModelInferRequest carrying ``inputs`` as raw contents, in mapping order."""
    request = pb.ModelInferRequest(model_name=model_name, id=request_id)
    for name, array in inputs.items():
        datatype, shape, raw = tensor_to_raw(array)
        request.inputs.add(name=name, datatype=datatype, shape=shape)
        request.raw_input_contents.append(raw)
    if parameters:
        set_parameters(request.parameters, parameters)
    return request


def read_infer_response(response: pb.ModelInferResponse) -> dict[str, npt.NDArray[Any]]:
    """The output tensors of a response by name (raw contents, else typed contents)."""
    raw = response.raw_output_contents
    if raw and len(raw) != len(response.outputs):
        raise TensorError(
            f"response has {len(response.outputs)} outputs but {len(raw)} raw_output_contents"
        )
    result: dict[str, npt.NDArray[Any]] = {}
    for i, out in enumerate(response.outputs):
        if raw:
            result[out.name] = tensor_from_raw(out.datatype, out.shape, raw[i])
        else:
            result[out.name] = tensor_from_contents(out.datatype, out.shape, out.contents)
    return result


def get_parameters(params: Mapping[str, pb.InferParameter]) -> dict[str, ParamValue]:
    """Plain Python values of an InferParameter map; entries with no value are skipped."""
    result: dict[str, ParamValue] = {}
    for key, param in params.items():
        which = param.WhichOneof("parameter_choice")
        if which is not None:
            result[key] = getattr(param, which)
    return result


def set_parameters(
    params: MutableMapping[str, pb.InferParameter], values: Mapping[str, ParamValue]
) -> None:
    """Write plain Python values into an InferParameter map (e.g. ``request.parameters``).

    bool -> bool_param, int -> int64_param (uint64_param above int64's range),
    float -> double_param, str -> string_param.
    """
    for key, value in values.items():
        # Protobuf maps create the entry on access; assigning a message is not allowed.
        param = params[key]
        if isinstance(value, bool):  # before int: bool is an int subclass
            param.bool_param = value
        elif isinstance(value, int):
            _set_int(param, key, value)
        elif isinstance(value, float):
            param.double_param = value
        elif isinstance(value, str):
            param.string_param = value
        else:
            raise TypeError(f"parameter {key!r}: expected bool, int, float or str, got {value!r}")


def _set_int(param: pb.InferParameter, key: str, value: int) -> None:
    if _INT64_MIN <= value <= _INT64_MAX:
        param.int64_param = value
    elif _INT64_MAX < value <= _UINT64_MAX:
        param.uint64_param = value
    else:
        raise ValueError(f"parameter {key!r}: {value} does not fit in int64 or uint64")
