"""The gRPC load client, against a small in-process v2 server: what it sends and counts."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import grpc

from bench.client import ClosedLoop, run_closed_loop
from common.bundle import TensorSpec
from proto import inference_pb2 as pb
from proto.servicer import InferenceServicer, ModelInfo


class Counting(InferenceServicer):
    """Model "m" (FP32, 2x3): every 4th query is reconstructed, every 5th refused."""

    def __init__(self) -> None:
        super().__init__("counting", "0", [])
        self.shapes: list[tuple[str, str, tuple[int, ...]]] = []

    @property
    def ready(self) -> bool:
        return True

    def model(self, name: str, version: str) -> ModelInfo:
        spec = TensorSpec("x", "FP32", (2, 3))
        return ModelInfo("m", ["1"], "test", [spec], [spec], True)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> Any:
        (tensor,) = request.inputs
        self.shapes.append((tensor.name, tensor.datatype, tuple(tensor.shape)))
        n = len(self.shapes)
        if n % 5 == 0:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "full")
        response = pb.ModelInferResponse(model_name="m")
        if n % 4 == 0:
            response.parameters["parm_source"].string_param = "reconstructed"
        return response


async def against_server(spec: ClosedLoop, servicer: Counting) -> dict[str, object]:
    server = grpc.aio.server()
    servicer.register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        return await run_closed_loop(dataclasses.replace(spec, url=f"127.0.0.1:{port}"))
    finally:
        await server.stop(None)


def test_the_client_sends_batch_one_queries_of_the_models_shape_and_counts_answers():
    servicer = Counting()
    spec = ClosedLoop("", "m", concurrency=1, queries=20, warmup=0)
    result = asyncio.run(against_server(spec, servicer))
    assert set(servicer.shapes) == {("x", "FP32", (1, 2, 3))}
    assert result["errors"] == {"RESOURCE_EXHAUSTED": 4}  # queries 5, 10, 15, 20
    assert result["sources"] == {"original": 12, "reconstructed": 4}
    assert result["count"] == 16 and result["concurrency"] == 1


def test_warm_up_queries_are_sent_but_not_measured():
    servicer = Counting()
    result = asyncio.run(against_server(ClosedLoop("", "m", 1, queries=3, warmup=3), servicer))
    assert len(servicer.shapes) == 6
    assert result["sources"] == {"reconstructed": 1, "original": 1}  # queries 4 and 6
    assert result["errors"] == {"RESOURCE_EXHAUSTED": 1}


class Peers(Counting):
    """`Counting` that records which connection each query came on."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: list[str] = []

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> Any:
        self.peers.append(context.peer())
        return await super().ModelInfer(request, context)


def test_several_channels_are_several_connections_used_in_turn():
    servicer = Peers()
    spec = ClosedLoop("", "m", concurrency=1, queries=9, warmup=0, channels=3)
    asyncio.run(against_server(spec, servicer))
    assert len(set(servicer.peers)) == 3
    assert servicer.peers[:3] == servicer.peers[3:6] == servicer.peers[6:]
