"""``parm predict`` against an in-process v2 gRPC server that answers what the test says."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import numpy as np
import pytest

from deploy.predict import DIGITS_INPUT, _inputs, predict
from proto import inference_pb2 as pb
from proto import inference_pb2_grpc as pb_grpc
from proto.tensors import get_parameters, set_parameters, tensor_from_raw, tensor_to_raw


class FakeModel(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """One model whose answer to query ``i`` predicts class ``i % classes``."""

    def __init__(self, name: str, shape: list[int], fail: frozenset[str] = frozenset()) -> None:
        self.name, self.shape, self.fail = name, shape, fail
        self.parameters: list[dict[str, Any]] = []

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        if request.name != self.name:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no model {request.name!r}")
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=self.name, inputs=[tensor(name="input", datatype="FP32", shape=[-1, *self.shape])]
        )

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        self.parameters.append(get_parameters(request.parameters))
        if request.id in self.fail:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "instance lost")
        (spec,) = request.inputs
        query = tensor_from_raw(spec.datatype, spec.shape, request.raw_input_contents[0])
        assert query.shape == (1, *self.shape)  # one query a request: (1, *sample)
        logits = np.eye(10, dtype=np.float32)[int(request.id) % 10][None]  # (1, classes)
        datatype, shape, raw = tensor_to_raw(logits)
        response = pb.ModelInferResponse(model_name=self.name, id=request.id)
        response.outputs.add(name="logits", datatype=datatype, shape=shape)
        response.raw_output_contents.append(raw)
        set_parameters(response.parameters, {"parm_source": "reconstructed"})
        return response


def served(model: FakeModel, client: Callable[[str], Awaitable[int]]) -> int:
    async def run() -> int:
        server = grpc.aio.server()
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(model, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            return await client(f"127.0.0.1:{port}")
        finally:
            await server.stop(None)

    return asyncio.run(run())


def test_digits_answers_show_label_prediction_and_source(
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = FakeModel("digits", DIGITS_INPUT)
    assert served(model, lambda url: predict(url, "digits", 3, 250.0, True)) == 0
    lines = capsys.readouterr().out.splitlines()
    _, labels = _inputs("digits", DIGITS_INPUT, "FP32", 3)
    assert labels is not None
    for i, line in enumerate(lines):
        assert line.startswith(f"query {i}: label {labels[i]} -> predicted {i}  [reconstructed]")
    assert model.parameters == [{"timeout_ms": 250.0, "parm_require_original": True}] * 3


def test_a_failed_query_is_reported_and_the_others_still_answer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = FakeModel("m", [3], fail=frozenset({"1"}))
    assert served(model, lambda url: predict(url, "m", 2, None, False)) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert first.startswith("query 0: predicted 0  [reconstructed]")  # no labels: random inputs
    assert second == "query 1: UNAVAILABLE: instance lost"
    assert model.parameters == [{}, {}]


def test_an_unknown_model_is_a_clear_failure(capsys: pytest.CaptureFixture[str]) -> None:
    assert served(FakeModel("m", [3]), lambda url: predict(url, "x", 1, None, False)) == 1
    assert "cannot reach model 'x'" in capsys.readouterr().out  # NOT_FOUND: named, not raised


@pytest.mark.parametrize(("datatype", "dtype"), [("FP32", np.float32), ("FP64", np.float64)])
def test_other_models_get_seeded_random_inputs_of_their_type(datatype: str, dtype: type) -> None:
    inputs, labels = _inputs("other", [2, 3], datatype, 4)
    again, _ = _inputs("other", [2, 3], datatype, 4)
    assert labels is None and inputs.shape == (4, 1, 2, 3) and inputs.dtype == dtype
    assert np.array_equal(inputs, again)
