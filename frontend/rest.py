"""The HTTP wire formats, without any server: KServe v2 REST and Clipper's REST.

Pure functions from request bodies to validated rows and from results to response
bodies, so that the HTTP handlers (`frontend.http`) stay short and these can be tested
byte for byte.  Validation that every front door shares (tensor names, datatypes,
shapes, sizes, request parameters) is `frontend.requests`; this module only turns JSON
and binary tensors into what it takes.

KServe v2 REST: a JSON body, or with the binary tensor extension (what
``tritonclient.http`` sends by default) the JSON header of ``Inference-Header-Content-Length``
bytes followed by each binary input's bytes, in input order, sized by its
``parameters.binary_data_size``.  A response carries its outputs as JSON ``data`` or,
when asked for (``binary_data_output`` or an output's ``binary_data``), as binary.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from common.bundle import TensorSpec
from common.datatypes import DATATYPES
from frontend.api import Query
from frontend.model import Result
from frontend.requests import SOURCE, SOURCES, PayloadTooLarge, invalid, overall_source

HEADER_LENGTH = "inference-header-content-length"
BINARY_SIZE = "binary_data_size"
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """The body under its ``Content-Encoding`` (gzip, deflate), never more than ``limit``."""
    if encoding in ("", "identity"):
        return body
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding)
    if wbits is None:
        raise invalid(f"unsupported Content-Encoding {encoding!r}; expected gzip or deflate")
    inflater = zlib.decompressobj(wbits)
    try:
        plain = inflater.decompress(body, limit + 1)  # bounded: a zip bomb stops here
    except zlib.error as exc:
        raise invalid(f"cannot decode the {encoding} body: {exc}") from None
    if len(plain) > limit:
        raise PayloadTooLarge(len(plain), limit)
    return plain


# ---------------------------------------------------------------- KServe v2

#: the request parameters every front door reads (checked by `frontend.requests`)
_PARAMETERS = {
    "timeout_ms": ("number", "the query's deadline, in ms"),
    "parm_require_original": ("boolean", "never answer with a reconstruction"),
    "binary_data_output": ("boolean", "answer every output as binary"),
}


def _documented(kind: str, description: str) -> Any:
    """A field taken as it comes and checked later (the checks and their messages are
    shared with gRPC), documented as ``kind``."""
    return Field(default=None, description=description, json_schema_extra={"type": kind})


class RequestParameters(BaseModel):
    """A request's ``parameters``: any name; these are the ones read here."""

    model_config = ConfigDict(extra="allow")
    timeout_ms: Any = _documented(*_PARAMETERS["timeout_ms"])
    parm_require_original: Any = _documented(*_PARAMETERS["parm_require_original"])
    binary_data_output: Any = _documented(*_PARAMETERS["binary_data_output"])


class TensorParameters(BaseModel):
    model_config = ConfigDict(extra="allow")
    binary_data_size: Any = _documented(
        "integer", "binary tensor extension: the size of this input's bytes after the header"
    )


class InputTensor(BaseModel):
    """One input tensor: its values as ``data``, or as binary after the JSON header."""

    name: StrictStr
    datatype: StrictStr = Field(examples=["FP32"])
    shape: list[StrictInt] = Field(examples=[[1, 64]])
    parameters: TensorParameters = TensorParameters()
    data: list[Any] | None = Field(default=None, description="row-major values, flat or nested")


class OutputParameters(BaseModel):
    model_config = ConfigDict(extra="allow")
    binary_data: Any = _documented("boolean", "answer this output as binary")


class RequestedOutput(BaseModel):
    name: StrictStr
    parameters: OutputParameters = OutputParameters()


class InferRequest(BaseModel):
    """A KServe v2 inference request (its JSON part, with the binary tensor extension)."""

    model_config = ConfigDict(extra="allow")
    parameters: RequestParameters = RequestParameters()
    inputs: list[InputTensor] = Field(min_length=1, max_length=1)
    outputs: list[RequestedOutput] = []
    id: Any = _documented("string", "echoed in the answer")


@dataclass(frozen=True)
class V2Request:
    """What the frontend needs from a v2 inference request, after parsing."""

    id: str
    query: Query
    binary_output: bool


def parse_v2(body: bytes, header_length: str | None) -> V2Request:
    """Parse a v2 inference request body (JSON, or JSON header plus binary tensors)."""
    header, binary = _split_binary(body, header_length)
    try:
        request = InferRequest.model_validate_json(header)
    except ValidationError as exc:
        raise invalid(_v2_message(exc, header)) from None
    tensor = request.inputs[0]
    parameters = request.parameters.model_dump(exclude_none=True)
    size = tensor.parameters.binary_data_size
    if size is None:
        raw = _json_tensor(tensor.data, tensor.name, tensor.datatype, tensor.shape)
        if binary:
            raise invalid(f"{len(binary)} bytes of binary data but no input has {BINARY_SIZE}")
    else:
        if not isinstance(size, int) or size != len(binary):
            raise invalid(
                f"input {tensor.name!r}: {BINARY_SIZE} is {size!r} but {len(binary)} bytes "
                f"follow the {len(header)}-byte JSON header"
            )
        raw = bytes(binary)
    binary_output = parameters.get("binary_data_output") is True
    for output in request.outputs:  # an output's own flag overrides the request's
        if output.parameters.binary_data is not None:
            binary_output = output.parameters.binary_data is True
    query = Query(
        tensor.name,
        tensor.datatype,
        tensor.shape,
        raw,
        parameters,
        [output.name for output in request.outputs],
    )
    request_id = "" if request.id is None else str(request.id)
    return V2Request(request_id, query, binary_output)


def _v2_message(exc: ValidationError, header: bytes) -> str:
    """The message of a body the schema refused: what was expected where, and what came.

    The first error is reported, in the order the fields are read; the body is parsed
    again here (an error path) to name the input tensor and quote the whole shape.
    """
    error = exc.errors(include_url=False)[0]
    loc, kind = error["loc"], error["type"]
    if kind == "json_invalid":
        return f"the request is not valid JSON: {error['msg']}"
    got = _kind(None if kind == "missing" else error["input"])
    doc = json.loads(header)
    match loc:
        case ():
            return f"the request: expected a JSON object, got {got}"
        case ("inputs",) if kind in ("too_long", "too_short"):
            return f"expected 1 input tensor, got {len(error['input'])}"
        case ("inputs",):
            return f"'inputs': expected a list of tensors, got {got}"
        case ("inputs", 0):
            return f"inputs[0]: expected a JSON object, got {got}"
        case ("inputs", 0, "name"):
            return f"inputs[0]: expected 'name' (str), got {got}"
        case ("inputs", 0, field, *_):
            return _input_message(doc["inputs"][0], field, got)
        case ("outputs",):
            return f"'outputs': expected a list, got {got}"
        case ("outputs", int(i)):
            return f"outputs[{i}]: expected a JSON object, got {got}"
        case ("outputs", int(i), "name"):
            return f"outputs[{i}]: expected 'name' (str), got {got}"
        case ("parameters",):
            return f"parameters: expected a JSON object, got {got}"
        case ("outputs", int(i), "parameters"):
            return f"outputs[{i}] parameters: expected a JSON object, got {got}"
        case _:
            return f"{_where(loc)}: {error['msg']}, got {got}"


def _input_message(tensor: Mapping[str, Any], field: object, got: str) -> str:
    name = tensor["name"]
    if field == "datatype":
        return f"input {name!r}: expected 'datatype' (str), got {got}"
    if field == "shape":
        return f"input {name!r}: expected 'shape' (a list of integers), got {tensor['shape']!r}"
    if field == "parameters":
        return f"input {name!r} parameters: expected a JSON object, got {got}"
    if tensor["datatype"] not in DATATYPES:  # as when the data is read: the datatype first
        return f"input {name!r}: unknown datatype {tensor['datatype']!r}"
    return f"input {name!r}: expected 'data' (a list) or {BINARY_SIZE}"


def _where(loc: Sequence[int | str]) -> str:
    """``outputs[0]`` or ``parameters`` from a location in the body."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)[1:]


def _split_binary(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    if header_length is None:
        return body, memoryview(b"")
    try:
        length = int(header_length)
    except ValueError:
        length = -1
    if not 0 <= length <= len(body):
        raise invalid(
            f"Inference-Header-Content-Length: expected a byte count within the "
            f"{len(body)}-byte body, got {header_length!r}"
        )
    view = memoryview(body)
    return bytes(view[:length]), view[length:]


def _json_tensor(data: object, name: str, datatype: str, shape: Sequence[int]) -> bytes:
    """The raw bytes of a tensor given as JSON ``data`` (flat or nested, row-major)."""
    if datatype not in DATATYPES:
        raise invalid(f"input {name!r}: unknown datatype {datatype!r}")
    if not isinstance(data, list):
        raise invalid(f"input {name!r}: expected 'data' (a list) or {BINARY_SIZE}")
    array = json_values(data, datatype, f"input {name!r}: 'data' is not a list of")
    expected = math.prod(shape)
    if array.size != expected:
        raise invalid(
            f"input {name!r}: shape {list(shape)} holds {expected} values, got {array.size}"
        )
    return array.tobytes()


def json_values(values: object, datatype: str, what: str) -> np.ndarray:
    """``values`` (JSON numbers in nested lists) as an array of ``datatype``; ``what``
    begins the refusal's message (``"'data' is not a list of"``).

    Refused (INVALID_ARGUMENT): ragged or too deeply nested lists, anything but numbers
    (``null`` is no NaN, a string no number), fractions for an integer type, and
    numbers the datatype cannot hold (300 as INT8, 1e39 as FP32, 10**400): NumPy
    would raise OverflowError, wrap around or round to infinity.
    """
    dtype = DATATYPES[datatype]
    try:
        found = np.array(values)
    except (ValueError, RecursionError) as exc:
        raise invalid(f"{what} {datatype} values: {exc}") from None
    if found.dtype.kind not in "biuf":
        raise invalid(f"{what} {datatype} values: got {_odd_one(found)}")
    if found.size and not _holds(dtype, found):
        low, high = _range(dtype)
        whole = "" if dtype.kind == "f" else " (whole numbers)"
        raise invalid(
            f"{what} {datatype} values: got values from {found.min()} to {found.max()}, "
            f"expected [{low}, {high}]{whole}"
        )
    return found.astype(dtype)


def _holds(dtype: np.dtype[Any], found: np.ndarray) -> bool:
    """Whether every value of ``found`` is one of ``dtype``'s (infinities and NaN are a
    float's; an integer type takes whole numbers only)."""
    low, high = _range(dtype)
    if dtype.kind == "f":
        finite = found[np.isfinite(found)] if found.dtype.kind == "f" else found
        return bool(finite.size == 0 or (finite.min() >= low and finite.max() <= high))
    if found.dtype.kind == "f" and not np.array_equal(found, np.trunc(found)):
        return False  # fractions, NaN and infinities are no integers
    return bool(found.min() >= low and found.max() <= high)


def _range(dtype: np.dtype[Any]) -> tuple[int | float, int | float]:
    if dtype.kind == "b":
        return 0, 1
    info = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype)
    return info.min, info.max


def _odd_one(found: np.ndarray) -> str:
    """The first value of an array of no number dtype that is no number, for a message."""
    for value in found.flat:
        if not isinstance(value, (int, float)):
            return _kind(value.item() if isinstance(value, np.generic) else value)
    return f"integers beyond 64 bits (such as {found.flat[0]!r:.40})"


def v2_response(
    model: str, output: TensorSpec, results: Sequence[Result], request: V2Request
) -> tuple[bytes, dict[str, str]]:
    """The response body and its extra headers (content type, binary header length)."""
    rows = len(results)
    data = results[0].output if rows == 1 else np.stack([r.output for r in results])
    tensor: dict[str, Any] = {
        "name": output.name,
        "datatype": output.datatype,
        "shape": [rows, *output.shape],
    }
    sources = [r.source.value for r in results]
    params = {SOURCE: overall_source(sources)}
    if rows > 1:
        params[SOURCES] = ",".join(sources)
    head: dict[str, Any] = {"model_name": model, "model_version": "1", "outputs": [tensor]}
    if request.id:
        head["id"] = request.id
    head["parameters"] = params
    if not request.binary_output:
        tensor["data"] = json_numbers(data.ravel())
        return _dumps(head), {"content-type": JSON_TYPE}
    raw = data.tobytes()
    tensor["parameters"] = {BINARY_SIZE: len(raw)}
    header = _dumps(head)
    headers = {"content-type": BINARY_TYPE, HEADER_LENGTH: str(len(header))}
    return header + raw, headers


def model_metadata(name: str, inputs: TensorSpec, outputs: TensorSpec) -> dict[str, Any]:
    """The v2 model metadata object (batch dimension -1, as over gRPC)."""
    return {
        "name": name,
        "versions": ["1"],
        "platform": "parm",
        "inputs": [_spec(inputs)],
        "outputs": [_spec(outputs)],
    }


def _spec(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": [-1, *spec.shape]}


# ---------------------------------------------------------------- Clipper


def parse_clipper(body: bytes, spec: TensorSpec) -> tuple[Mapping[str, Any], bytes, int, bool]:
    """``(request object, raw rows, row count, batch?)`` of ``{"input": ...}`` or
    ``{"input_batch": [...]}``; each input is the model's input, flat or shaped."""
    doc = _json_object(body, "the request")
    if ("input" in doc) == ("input_batch" in doc):
        raise invalid("expected exactly one of 'input' and 'input_batch'")
    batch = "input_batch" in doc
    inputs = doc["input_batch"] if batch else [doc["input"]]
    if not isinstance(inputs, list) or not inputs:
        raise invalid(f"'input_batch': expected a non-empty list of inputs, got {_kind(inputs)}")
    array = json_values(inputs, spec.datatype, "inputs are not lists of")
    size = math.prod(spec.shape)
    if array.shape[1:] not in ((size,), spec.shape):
        raise invalid(
            f"each input: expected {size} {spec.datatype} values (or shape {list(spec.shape)}), "
            f"got shape {list(array.shape[1:])}"
        )
    return doc, array.tobytes(), len(inputs), batch


def clipper_response(first_id: int, results: Sequence[Result], batch: bool) -> bytes:
    """Clipper's answer: one prediction, or ``batch_predictions``; each says its source."""
    predictions = [_prediction(first_id + i, r) for i, r in enumerate(results)]
    return _dumps({"batch_predictions": predictions} if batch else predictions[0])


def _prediction(query_id: int, result: Result) -> dict[str, Any]:
    source = result.source.value
    answer: dict[str, Any] = {
        "query_id": query_id,
        "output": json_numbers(result.output),
        "default": source == "default",
        "source": source,
    }
    if source == "default":
        answer["default_explanation"] = "no output was ready before the query's deadline"
    return answer


# ---------------------------------------------------------------- JSON helpers


#: how a non-finite float is written in JSON: as the strings of proto3's JSON mapping
#: (what the v2 protocol's gRPC messages become in JSON), which Python's ``float`` and
#: NumPy read back; a bare ``NaN`` is not JSON, and ``null`` would lose which it was.
NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def json_numbers(array: np.ndarray) -> Any:
    """``array`` as (nested) JSON lists, NaN and infinities as `NON_FINITE` strings."""
    if array.dtype.kind != "f" or np.isfinite(array).all():
        return array.tolist()
    spelled = array.astype(object)
    spelled[np.isnan(array)] = NON_FINITE["nan"]
    spelled[array == np.inf] = NON_FINITE["inf"]
    spelled[array == -np.inf] = NON_FINITE["-inf"]
    return spelled.tolist()


def _dumps(doc: object) -> bytes:
    # allow_nan=False: never write what is not JSON (json_numbers spells the non-finite)
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


def _json_object(text: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # nesting past the stack
        raise invalid(f"{what} is not valid JSON: {exc}") from None
    return _object(doc, what)


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(f"{what}: expected a JSON object, got {_kind(value)}")
    return value


def _kind(value: object) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r:.40}"
