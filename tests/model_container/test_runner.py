"""ModelRunner: request validation and inference, in process."""

from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from common.bundle import BundleError
from common.models import load_model
from model_container.runner import InferError, ModelRunner
from proto import inference_pb2 as pb
from proto.tensors import make_infer_request, read_infer_response
from tests.model_container.container_process import (
    CLASSES,
    IN_FEATURES,
    MODEL,
    make_bundle,
    zero_request,
)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load_model(make_bundle(tmp_path_factory.mktemp("b") / MODEL))


@pytest.fixture(scope="module")
def runner(loaded):
    manifest, module = loaded
    return ModelRunner(manifest, module, "cpu", MODEL)


def _infer(runner: ModelRunner, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse()
    runner.infer(request, response)
    return response


def _error(runner: ModelRunner, request: pb.ModelInferRequest) -> InferError:
    with pytest.raises(InferError) as info:
        _infer(runner, request)
    return info.value


def test_infer_fills_the_response(runner, loaded):
    x = np.linspace(0, 1, 2 * IN_FEATURES, dtype=np.float32).reshape(2, IN_FEATURES)
    response = _infer(runner, make_infer_request(MODEL, {"input": x}, request_id="r"))
    assert (response.model_name, response.model_version, response.id) == (MODEL, "1", "r")
    with torch.inference_mode():
        expected = loaded[1](torch.from_numpy(x)).numpy()
    output = read_infer_response(response)["output"]
    assert output.shape == (2, CLASSES)
    np.testing.assert_allclose(output, expected, atol=1e-6)


def test_warm_up_runs(runner):
    runner.warm_up()


def test_version_must_be_empty_or_1(runner):
    request = zero_request()
    request.model_version = "1"
    _infer(runner, request)
    request.model_version = "2"
    error = _error(runner, request)
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.message == "model 'mlp' version '2' not found: expected '1'"


def test_two_raw_contents_for_one_input(runner):
    request = zero_request()
    request.raw_input_contents.append(b"")
    error = _error(runner, request)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.message == "expected 1 raw_input_contents entry, got 2"


def test_typed_contents_with_wrong_count(runner):
    request = pb.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name="input", datatype="FP32", shape=[1, IN_FEATURES])
    tensor.contents.fp32_contents.extend([0.0] * 3)
    error = _error(runner, request)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        error.message == "input 'input': expected 64 fp32_contents values for shape [1, 64], got 3"
    )


def test_stream_message_prefixes_the_status_name():
    error = InferError(grpc.StatusCode.INVALID_ARGUMENT, "bad")
    assert error.stream_message() == "INVALID_ARGUMENT: bad"


def test_model_output_shape_mismatch_is_internal(loaded):
    manifest, _ = loaded
    runner = ModelRunner(manifest, torch.nn.Flatten(), "cpu", MODEL)  # (B, 64), not (B, 10)
    error = _error(runner, zero_request())
    assert error.code == grpc.StatusCode.INTERNAL
    assert error.message == "model produced shape [1, 64], manifest says [1, 10]"


def test_served_name_can_differ_from_the_manifest(loaded):
    manifest, module = loaded
    runner = ModelRunner(manifest, module, "cpu", "instance-7")
    request = make_infer_request("instance-7", {"input": np.zeros((1, IN_FEATURES), np.float32)})
    assert _infer(runner, request).model_name == "instance-7"


def test_bundle_with_unsupported_datatype_is_refused_at_start(tmp_path: Path):
    bundle = make_bundle(tmp_path / "b")
    manifest_path = bundle / "manifest.json"
    manifest_path.write_text(manifest_path.read_text().replace('"FP32"', '"BF16"', 1))
    # the one datatype table refuses it when the manifest is read, before any network loads
    with pytest.raises(ValueError, match=r"expected a v2 datatype .* got 'BF16'"):
        load_model(bundle)


@pytest.mark.parametrize(
    ("network", "found"),
    [
        (torch.nn.Linear(IN_FEATURES + 1, CLASSES), "mat1 and mat2 shapes cannot be multiplied"),
        (torch.nn.Flatten(), "model produced shape [1, 64], manifest says [1, 10]"),
    ],
)
def test_a_network_that_does_not_fit_its_manifest_is_a_bundle_error(loaded, network, found):
    manifest, _ = loaded
    runner = ModelRunner(manifest, network, "cpu", MODEL)
    with pytest.raises(BundleError) as info:
        runner.warm_up()
    message = str(info.value)
    assert message.startswith(f"bundle {MODEL!r}: the network does not fit the manifest's ")
    assert found in message and "\n" not in message
