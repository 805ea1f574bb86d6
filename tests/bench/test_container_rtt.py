"""The container round-trip benchmark's clients, against small in-process servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

import bench.container_rtt as rtt
from common.bundle import read_manifest
from proto import inference_pb2 as pb
from proto.framing import FrameDecoder, encode_frame
from proto.servicer import InferenceServicer, ModelInfo, ModelNotFound

REQUEST = pb.ModelInferRequest(model_name="m", id="b")
N = 5


@pytest.fixture(autouse=True)
def short_warmup(monkeypatch):
    monkeypatch.setattr(rtt, "WARMUP", 2)


class Echo(InferenceServicer):
    """Answers every query, unary or on a stream, and counts them."""

    def __init__(self) -> None:
        super().__init__("echo", "0", [])
        self.seen = 0

    @property
    def ready(self) -> bool:
        return True

    def model(self, name: str, version: str) -> ModelInfo:
        raise ModelNotFound(f"echo serves no model metadata, asked for {name!r}")

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> Any:
        self.seen += 1
        return pb.ModelInferResponse(model_name=request.model_name, id=request.id)

    async def ModelStreamInfer(
        self, requests: AsyncIterator[pb.ModelInferRequest], context: Any
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        async for request in requests:
            self.seen += 1
            yield pb.ModelStreamInferResponse(infer_response=pb.ModelInferResponse(id=request.id))


@pytest.mark.parametrize("client", [rtt.unary_grpc, rtt.stream_grpc])
def test_the_grpc_clients_time_each_measured_request(client):
    servicer = Echo()

    async def scenario() -> list[float]:
        server = grpc.aio.server()
        servicer.register(server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            return await client(f"127.0.0.1:{port}", REQUEST, N)  # type: ignore[no-any-return]
        finally:
            await server.stop(None)

    samples = asyncio.run(scenario())
    assert len(samples) == N and min(samples) > 0
    assert servicer.seen == N + 2  # the warm-up is sent, not measured


def test_the_framed_client_sends_one_frame_and_reads_one_answer_at_a_time():
    seen: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder()
        while data := await reader.read(65536):
            for frame in decoder.feed(data):
                seen.append(pb.ModelInferRequest.FromString(frame).id)
                reply = pb.ModelStreamInferResponse(infer_response=pb.ModelInferResponse())
                writer.write(encode_frame(reply.SerializeToString()))
        writer.close()

    async def scenario() -> list[float]:
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        async with server:
            return await rtt.framed_tcp(server.sockets[0].getsockname()[1], REQUEST, N)

    samples = asyncio.run(scenario())
    assert len(samples) == N and seen == ["b"] * (N + 2)


def test_an_error_answer_fails_the_measurement():
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        reply = pb.ModelStreamInferResponse(error_message="no such model")
        writer.write(encode_frame(reply.SerializeToString()))
        await writer.drain()
        writer.close()

    async def scenario() -> list[float]:
        server = await asyncio.start_server(refuse, "127.0.0.1", 0)
        async with server:
            return await rtt.framed_tcp(server.sockets[0].getsockname()[1], REQUEST, N)

    with pytest.raises(AssertionError, match="no such model"):
        asyncio.run(scenario())


def test_a_summary_row_gives_median_p90_and_p99_in_microseconds():
    row = rtt.summary("(x) test", [i / 1e6 for i in range(1, 100)])  # 1..99 us
    assert row.split() == ["(x)", "test", "50", "90", "99"]


def test_the_tiny_bundle_is_the_size_the_tests_serve(tmp_path):
    manifest = read_manifest(rtt.tiny_bundle(tmp_path / "b", "tiny", {"mean": [0.5], "std": [1]}))
    assert manifest.name == "tiny"
    assert manifest.inputs[0].shape == (rtt.IN_FEATURES,)
    assert manifest.outputs[0].shape == (rtt.CLASSES,)
    assert manifest.preprocessing == {"mean": [0.5], "std": [1]}
