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

from common.bundle import TensorSpec
from common.datatypes import DATATYPES
from frontend.model import QueryError, Result
from frontend.requests import (
    SOURCE,
    SOURCES,
    expect_one_input,
    invalid,
    overall_source,
)

HEADER_LENGTH = "inference-header-content-length"
BINARY_SIZE = "binary_data_size"
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"


class PayloadTooLarge(QueryError):
    """A request body over the limit: HTTP 413 (gRPC has its own message size limit)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__("INVALID_ARGUMENT", f"request body of {size} bytes exceeds {limit} bytes")


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


@dataclass(frozen=True)
class V2Request:
    """What the frontend needs from a v2 inference request, after parsing."""

    id: str
    name: str  # of the one input tensor
    datatype: str
    shape: list[int]
    raw: bytes
    parameters: Mapping[str, object]
    outputs: list[str]  # names asked for (empty: all)
    binary_output: bool


def parse_v2(body: bytes, header_length: str | None) -> V2Request:
    """Parse a v2 inference request body (JSON, or JSON header plus binary tensors)."""
    header, binary = _split_binary(body, header_length)
    doc = _json_object(header, "the request")
    parameters = _object(doc.get("parameters", {}), "parameters")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list):
        raise invalid(f"'inputs': expected a list of tensors, got {_kind(inputs)}")
    expect_one_input(len(inputs))
    tensor = _object(inputs[0], "inputs[0]")
    name = _typed(tensor, "name", str, "inputs[0]")
    datatype = _typed(tensor, "datatype", str, f"input {name!r}")
    shape = _shape(tensor.get("shape"), name)
    size = _object(tensor.get("parameters", {}), f"input {name!r} parameters").get(BINARY_SIZE)
    if size is None:
        raw = _json_tensor(tensor.get("data"), name, datatype, shape)
        if binary:
            raise invalid(f"{len(binary)} bytes of binary data but no input has {BINARY_SIZE}")
    else:
        if not isinstance(size, int) or size != len(binary):
            raise invalid(
                f"input {name!r}: {BINARY_SIZE} is {size!r} but {len(binary)} bytes "
                f"follow the {len(header)}-byte JSON header"
            )
        raw = bytes(binary)
    outputs, binary_output = _outputs(doc, parameters)
    request_id = doc.get("id", "")
    return V2Request(
        str(request_id), name, datatype, shape, raw, parameters, outputs, binary_output
    )


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


def _outputs(doc: Mapping[str, Any], parameters: Mapping[str, object]) -> tuple[list[str], bool]:
    """The output names asked for, and whether the answer should carry them as binary."""
    binary = parameters.get("binary_data_output") is True
    wanted = doc.get("outputs", [])
    if not isinstance(wanted, list):
        raise invalid(f"'outputs': expected a list, got {_kind(wanted)}")
    names = []
    for i, entry in enumerate(wanted):
        output = _object(entry, f"outputs[{i}]")
        names.append(_typed(output, "name", str, f"outputs[{i}]"))
        flag = _object(output.get("parameters", {}), f"outputs[{i}] parameters").get("binary_data")
        if flag is not None:
            binary = flag is True
    return names, binary


def _json_tensor(data: object, name: str, datatype: str, shape: Sequence[int]) -> bytes:
    """The raw bytes of a tensor given as JSON ``data`` (flat or nested, row-major)."""
    dtype = DATATYPES.get(datatype)
    if dtype is None:
        raise invalid(f"input {name!r}: unknown datatype {datatype!r}")
    if not isinstance(data, list):
        raise invalid(f"input {name!r}: expected 'data' (a list) or {BINARY_SIZE}")
    try:
        array = np.asarray(data, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise invalid(f"input {name!r}: 'data' is not a list of {datatype} values: {exc}") from None
    expected = math.prod(shape)
    if array.size != expected:
        raise invalid(
            f"input {name!r}: shape {list(shape)} holds {expected} values, got {array.size}"
        )
    return array.tobytes()


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
        tensor["data"] = data.ravel().tolist()
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
    dtype = DATATYPES[spec.datatype]
    try:
        array = np.asarray(inputs, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise invalid(f"inputs are not lists of {spec.datatype} values: {exc}") from None
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
        "output": result.output.tolist(),
        "default": source == "default",
        "source": source,
    }
    if source == "default":
        answer["default_explanation"] = "no output was ready before the query's deadline"
    return answer


# ---------------------------------------------------------------- JSON helpers


def _dumps(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _json_object(text: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise invalid(f"{what} is not valid JSON: {exc}") from None
    return _object(doc, what)


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(f"{what}: expected a JSON object, got {_kind(value)}")
    return value


def _typed(doc: Mapping[str, Any], key: str, kind: type, what: str) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind):
        raise invalid(f"{what}: expected '{key}' ({kind.__name__}), got {_kind(value)}")
    return value


def _shape(value: object, name: str) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in value
    ):
        raise invalid(f"input {name!r}: expected 'shape' (a list of integers), got {value!r}")
    return value


def _kind(value: object) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r:.40}"
