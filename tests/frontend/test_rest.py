"""The HTTP wire formats (frontend/rest.py): v2 bodies parsed by their schema, byte for byte."""

from __future__ import annotations

import json
import zlib
from typing import Any

import numpy as np
import pytest

from common.bundle import TensorSpec
from common.datatypes import DATATYPES
from frontend.events import Source
from frontend.model import QueryError, Result
from frontend.requests import PayloadTooLarge
from frontend.rest import clipper_response, decompress, parse_clipper, parse_v2, v2_response

X = np.arange(4, dtype="<f4").reshape(1, 4)


def tensor(**change: Any) -> dict[str, Any]:
    return {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [0, 1, 2, 3], **change}


def encoded(doc: Any) -> bytes:
    return doc if isinstance(doc, bytes) else json.dumps(doc).encode()


def refused(body: bytes, header_length: str | None = None) -> str:
    with pytest.raises(QueryError) as excinfo:
        parse_v2(body, header_length)
    assert excinfo.value.status == "INVALID_ARGUMENT"
    return excinfo.value.message


def test_a_json_request() -> None:
    doc = {
        "id": 7,
        "inputs": [tensor()],
        "parameters": {"timeout_ms": 50, "other": "x", "binary_data_output": True},
        "outputs": [{"name": "output", "parameters": {"binary_data": False}}],
    }
    request = parse_v2(encoded(doc), None)
    assert request.id == "7" and not request.binary_output  # the output's own flag wins
    query = request.query
    assert (query.input, query.datatype, list(query.shape)) == ("input", "FP32", [1, 4])
    assert query.raw == X.tobytes() and list(query.outputs) == ["output"]
    assert query.parameters == {"timeout_ms": 50, "other": "x", "binary_data_output": True}


def test_a_binary_request() -> None:
    raw = X.tobytes()
    header = encoded({"inputs": [tensor(data=None, parameters={"binary_data_size": len(raw)})]})
    request = parse_v2(header + raw, str(len(header)))
    assert request.query.raw == raw and request.id == "" and not request.binary_output


BAD = {
    "not-json": (b"{nope", "the request is not valid JSON: "),
    "not-an-object": (b"[1, 2]", "the request: expected a JSON object, got list [1, 2]"),
    "parameters": ({"inputs": [tensor()], "parameters": 3}, "parameters: expected a JSON object"),
    "no-inputs": ({}, "'inputs': expected a list of tensors, got nothing"),
    "inputs-not-a-list": ({"inputs": 5}, "'inputs': expected a list of tensors, got int 5"),
    "no-input": ({"inputs": []}, "expected 1 input tensor, got 0"),
    "two-inputs": ({"inputs": [tensor(), 5]}, "expected 1 input tensor, got 2"),
    "input-not-an-object": ({"inputs": [5]}, "inputs[0]: expected a JSON object, got int 5"),
    "name": ({"inputs": [tensor(name=5)]}, "inputs[0]: expected 'name' (str), got int 5"),
    "datatype": (
        {"inputs": [tensor(datatype=None)]},
        "input 'input': expected 'datatype' (str), got nothing",
    ),
    "shape": (
        {"inputs": [tensor(shape=[1, "4"])]},
        "input 'input': expected 'shape' (a list of integers), got [1, '4']",
    ),
    "shape-bool": (
        {"inputs": [tensor(shape=[1, True])]},
        "input 'input': expected 'shape' (a list of integers), got [1, True]",
    ),
    "input-parameters": (
        {"inputs": [tensor(parameters=[])]},
        "input 'input' parameters: expected a JSON object, got list []",
    ),
    "data": ({"inputs": [tensor(data=5)]}, "input 'input': expected 'data' (a list) or"),
    "no-data": ({"inputs": [tensor(data=None)]}, "input 'input': expected 'data' (a list) or"),
    "data-and-unknown-datatype": (
        {"inputs": [tensor(data=5, datatype="BYTES")]},
        "input 'input': unknown datatype 'BYTES'",
    ),
    "unknown-datatype": (
        {"inputs": [tensor(datatype="BYTES")]},
        "input 'input': unknown datatype 'BYTES'",
    ),
    "not-numbers": ({"inputs": [tensor(data=["a"] * 4)]}, "'data' is not a list of FP32 values"),
    "too-few-values": ({"inputs": [tensor(data=[0.0])]}, "shape [1, 4] holds 4 values, got 1"),
    "outputs": ({"inputs": [tensor()], "outputs": {}}, "'outputs': expected a list, got dict {}"),
    "output": ({"inputs": [tensor()], "outputs": [3]}, "outputs[0]: expected a JSON object"),
    "output-name": (
        {"inputs": [tensor()], "outputs": [{}]},
        "outputs[0]: expected 'name' (str), got nothing",
    ),
    "output-parameters": (
        {"inputs": [tensor()], "outputs": [{"name": "o", "parameters": 1}]},
        "outputs[0] parameters: expected a JSON object, got int 1",
    ),
    "binary-but-json": (
        {"inputs": [tensor()]},
        "4 bytes of binary data but no input has binary_data_size",
    ),
}


@pytest.mark.parametrize(("doc", "message"), BAD.values(), ids=BAD.keys())
def test_bad_requests_are_refused_naming_what_was_expected(doc: Any, message: str) -> None:
    body = encoded(doc)
    length = None
    if "binary" in message:  # four bytes after the JSON
        body, length = body + bytes(4), str(len(body))
    assert message in refused(body, length)


@pytest.mark.parametrize(
    ("size", "length", "message"),
    [
        (16, "x", "Inference-Header-Content-Length: expected a byte count within the"),
        (16, "99999", "Inference-Header-Content-Length: expected a byte count within the"),
        (12, None, "input 'input': binary_data_size is 12 but 16 bytes follow"),
        ("16", None, "input 'input': binary_data_size is '16' but 16 bytes follow"),
    ],
)
def test_bad_binary_requests(size: Any, length: str | None, message: str) -> None:
    header = encoded({"inputs": [tensor(data=None, parameters={"binary_data_size": size})]})
    assert message in refused(header + X.tobytes(), length or str(len(header)))


def test_decompress_is_bounded() -> None:
    body = zlib.compress(bytes(1000))
    assert decompress(body, "deflate", 1000) == bytes(1000)
    assert decompress(b"abc", "identity", 1) == b"abc"
    with pytest.raises(PayloadTooLarge):
        decompress(body, "deflate", 999)
    with pytest.raises(QueryError, match="unsupported Content-Encoding 'br'"):
        decompress(body, "br", 1000)
    with pytest.raises(QueryError, match="cannot decode the gzip body"):
        decompress(body, "gzip", 1000)


# ---------------------------------------------------------------- hostile JSON (issue 10, 8)

DEEP = b"[" * 100_000 + b"]" * 100_000


def values(data: Any, datatype: str = "FP32") -> bytes:
    shape = [1, len(data)] if isinstance(data, list) else [1, 1]
    doc = {"inputs": [tensor(datatype=datatype, shape=shape, data=data)]}
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (DEEP, "recursion limit exceeded"),
        (values([10**400]), "FP32 values: got integers beyond 64 bits"),
        (values([300], "INT8"), "INT8 values: got values from 300 to 300, expected [-128, 127]"),
        (values([-1, 2], "UINT8"), "got values from -1 to 2, expected [0, 255] (whole numbers)"),
        (values([40_000], "INT16"), "expected [-32768, 32767]"),
        (values([1.5], "INT32"), "not a list of INT32 values: got values from 1.5 to 1.5"),
        (values([1e39]), "expected [-3.4028234663852886e+38, 3.4028234663852886e+38]"),
        (values([None, 1.0]), "'data' is not a list of FP32 values: got nothing"),
        (values(["1"]), "FP32 values: got str '1'"),
        (values([[1.0], [1.0, 2.0]]), "FP32 values: setting an array element with a sequence"),
    ],
    ids=["deep", "huge-int", "int8", "uint8", "int16", "fraction", "fp32", "null", "str", "ragged"],
)
def test_hostile_json_values_are_refused(body: bytes, message: str) -> None:
    assert message in refused(body)


@pytest.mark.parametrize(
    ("data", "datatype", "expected"),
    [([-128, 127], "INT8", [-128, 127]), ([2.0, 0], "UINT8", [2, 0]), ([1, 0], "BOOL", [1, 0])],
)
def test_values_at_the_edges_of_a_datatype_are_taken(
    data: list[Any], datatype: str, expected: list[int]
) -> None:
    raw = parse_v2(values(data, datatype), None).query.raw
    assert np.frombuffer(raw, DATATYPES[datatype]).tolist() == expected


@pytest.mark.parametrize(
    "body",
    [
        b'{"input": ' + DEEP + b"}",
        b'{"input": [1, 10' + b"0" * 400 + b"]}",
        b'{"input": [null, 1]}',
    ],
    ids=["deep", "huge-int", "null"],
)
def test_hostile_clipper_values_are_refused(body: bytes) -> None:
    with pytest.raises(QueryError) as excinfo:
        parse_clipper(body, TensorSpec("input", "FP32", (2,)))
    assert excinfo.value.status == "INVALID_ARGUMENT"


NON_FINITE_ROW = np.array([1.0, np.nan, np.inf, -np.inf], np.float32)
SPELLED = [1.0, "NaN", "Infinity", "-Infinity"]


def test_non_finite_outputs_are_valid_json_spelled_as_proto3_does() -> None:
    request = parse_v2(encoded({"inputs": [tensor()]}), None)
    result = Result(NON_FINITE_ROW, Source.ORIGINAL)
    body, _ = v2_response("m", TensorSpec("output", "FP32", (4,)), [result], request)
    doc = json.loads(body, parse_constant=pytest.fail)  # a bare NaN is not JSON
    assert doc["outputs"][0]["data"] == SPELLED
    assert np.array(SPELLED, np.float32).tobytes() == NON_FINITE_ROW.tobytes()  # read back
    clipper = json.loads(clipper_response(0, [result], False), parse_constant=pytest.fail)
    assert clipper["output"] == SPELLED
