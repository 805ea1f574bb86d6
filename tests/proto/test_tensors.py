"""v2 tensors and parameters <-> NumPy."""

import numpy as np
import pytest

from common.bundle import TensorSpec
from common.datatypes import DATATYPES
from proto import inference_pb2 as pb
from proto.tensors import (
    TensorError,
    batch_shape_text,
    check_batch,
    datatype_of,
    get_parameters,
    make_infer_request,
    read_infer_response,
    set_parameters,
    tensor_from_contents,
    tensor_from_raw,
    tensor_to_raw,
)


def _sample(datatype: str, shape: tuple[int, ...] = (2, 3)) -> np.ndarray:
    rng = np.random.default_rng(0)
    dtype = DATATYPES[datatype]
    if datatype == "BOOL":
        return rng.random(shape) > 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("datatype", sorted(DATATYPES))
def test_raw_round_trip(datatype):
    array = _sample(datatype)
    name, shape, raw = tensor_to_raw(array)
    assert (name, shape) == (datatype, [2, 3])
    assert len(raw) == array.size * array.dtype.itemsize
    back = tensor_from_raw(name, shape, raw)
    assert back.dtype == DATATYPES[datatype]
    np.testing.assert_array_equal(back, array)


def test_from_raw_is_a_zero_copy_view():
    raw = np.arange(4, dtype="<f4").tobytes()
    view = tensor_from_raw("FP32", [2, 2], raw)
    assert not view.flags.writeable
    assert view.base is not None


def test_big_endian_and_strided_arrays_go_out_little_endian_row_major():
    big = np.arange(6, dtype=">i4").reshape(2, 3).T  # (3, 2), non-contiguous, big-endian
    datatype, shape, raw = tensor_to_raw(big)
    assert (datatype, shape) == ("INT32", [3, 2])
    assert raw == np.ascontiguousarray(big, dtype="<i4").tobytes()


def test_scalar_and_empty_tensors():
    assert tensor_to_raw(np.float64(1.5))[:2] == ("FP64", [])
    assert tensor_from_raw("FP64", [], np.float64(1.5).tobytes()) == 1.5
    assert tensor_from_raw("INT8", [0, 4], b"").shape == (0, 4)


def test_unknown_datatype():
    with pytest.raises(TensorError, match=r"unknown datatype 'FP8', expected one of BOOL"):
        tensor_from_raw("FP8", [1], b"\x00")


def test_negative_dimension():
    with pytest.raises(TensorError, match=r"shape \[-1, 4\] has a negative dimension"):
        tensor_from_raw("FP32", [-1, 4], b"")


def test_wrong_byte_length_names_both_lengths():
    with pytest.raises(TensorError, match=r"expected 24 bytes for FP32 shape \[2, 3\], got 20"):
        tensor_from_raw("FP32", [2, 3], bytes(20))


@pytest.mark.parametrize("dtype", [np.complex64, np.dtype("U3"), np.dtype("datetime64[s]")])
def test_dtype_without_datatype(dtype):
    with pytest.raises(TensorError, match="has no v2 datatype"):
        datatype_of(dtype)


@pytest.mark.parametrize(
    ("datatype", "field", "values"),
    [
        ("BOOL", "bool_contents", [True, False]),
        ("INT16", "int_contents", [-3, 7]),
        ("INT64", "int64_contents", [-(2**40), 5]),
        ("UINT8", "uint_contents", [0, 255]),
        ("UINT64", "uint64_contents", [2**63, 1]),
        ("FP32", "fp32_contents", [0.5, -1.25]),
        ("FP64", "fp64_contents", [0.1, 2.0]),
    ],
)
def test_typed_contents(datatype, field, values):
    contents = pb.InferTensorContents(**{field: values})
    array = tensor_from_contents(datatype, [1, 2], contents)
    assert array.dtype == DATATYPES[datatype]
    np.testing.assert_array_equal(array, np.array([values], dtype=DATATYPES[datatype]))


def test_typed_contents_errors():
    with pytest.raises(TensorError, match="FP16 can only be sent as raw contents"):
        tensor_from_contents("FP16", [1], pb.InferTensorContents())
    with pytest.raises(TensorError, match=r"expected 4 fp32_contents values .* got 1"):
        tensor_from_contents("FP32", [2, 2], pb.InferTensorContents(fp32_contents=[1.0]))


def test_make_request_and_read_response():
    x = np.ones((1, 4), np.float32)
    ids = np.arange(3, dtype=np.int64)
    request = make_infer_request(
        "m", {"x": x, "ids": ids}, request_id="r7", parameters={"sequence_start": True}
    )
    assert (request.model_name, request.id) == ("m", "r7")
    assert [(t.name, t.datatype, list(t.shape)) for t in request.inputs] == [
        ("x", "FP32", [1, 4]),
        ("ids", "INT64", [3]),
    ]
    assert get_parameters(request.parameters) == {"sequence_start": True}
    # Mirror the request into a response: same layout, raw_output_contents field.
    response = pb.ModelInferResponse(raw_output_contents=request.raw_input_contents)
    for t in request.inputs:
        response.outputs.add(name=t.name, datatype=t.datatype, shape=t.shape)
    outputs = read_infer_response(response)
    np.testing.assert_array_equal(outputs["x"], x)
    np.testing.assert_array_equal(outputs["ids"], ids)


def test_read_response_with_typed_contents():
    response = pb.ModelInferResponse()
    out = response.outputs.add(name="y", datatype="FP32", shape=[2])
    out.contents.fp32_contents.extend([1.0, 2.0])
    np.testing.assert_array_equal(read_infer_response(response)["y"], [1.0, 2.0])


def test_read_response_with_missing_raw_contents():
    response = pb.ModelInferResponse(raw_output_contents=[b""])
    response.outputs.add(name="a", datatype="FP32", shape=[0])
    response.outputs.add(name="b", datatype="FP32", shape=[0])
    with pytest.raises(TensorError, match="2 outputs but 1 raw_output_contents"):
        read_infer_response(response)


def test_parameters_round_trip():
    values: dict[str, bool | int | float | str] = {
        "b": False,
        "i": -5,
        "big": 2**63 + 1,
        "f": 0.25,
        "s": "x",
    }
    request = pb.ModelInferRequest()
    set_parameters(request.parameters, values)
    assert request.parameters["i"].WhichOneof("parameter_choice") == "int64_param"
    assert request.parameters["big"].WhichOneof("parameter_choice") == "uint64_param"
    assert request.parameters["f"].WhichOneof("parameter_choice") == "double_param"
    assert get_parameters(request.parameters) == values


def test_unset_parameter_is_skipped():
    request = pb.ModelInferRequest()
    request.parameters["empty"].Clear()
    assert get_parameters(request.parameters) == {}


def test_parameter_errors():
    request = pb.ModelInferRequest()
    with pytest.raises(ValueError, match="does not fit in int64 or uint64"):
        set_parameters(request.parameters, {"n": 2**64})
    with pytest.raises(TypeError, match="expected bool, int, float or str"):
        set_parameters(request.parameters, {"n": [1]})  # type: ignore[dict-item]


# ---------------------------------------------------------------- check_batch

BATCH_SPEC = TensorSpec("input", "FP32", (2, 3))


@pytest.mark.parametrize("shape", [[1, 2, 3], [7, 2, 3]])
def test_check_batch_accepts_any_batch_of_the_spec(shape):
    check_batch(BATCH_SPEC, "input", "FP32", shape)


@pytest.mark.parametrize(
    ("name", "datatype", "shape", "message"),
    [
        ("x", "FP32", [1, 2, 3], "expected input 'input', got 'x'"),
        ("input", "INT8", [1, 2, 3], "input 'input': expected datatype FP32, got INT8"),
        ("input", "FP32", [2, 3], "input 'input': expected shape [-1, 2, 3], got [2, 3]"),
        ("input", "FP32", [0, 2, 3], "input 'input': expected shape [-1, 2, 3], got [0, 2, 3]"),
        ("input", "FP32", [1, 3, 2], "input 'input': expected shape [-1, 2, 3], got [1, 3, 2]"),
    ],
)
def test_check_batch_names_what_was_expected(name, datatype, shape, message):
    with pytest.raises(TensorError) as info:
        check_batch(BATCH_SPEC, name, datatype, shape)
    assert str(info.value) == message
    assert batch_shape_text(BATCH_SPEC) == "[-1, 2, 3]"
