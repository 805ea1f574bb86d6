"""The shared v2 health and metadata RPCs (proto/servicer.py), over a small subclass."""

import asyncio
from typing import Any

import grpc
import pytest

from common.bundle import TensorSpec
from proto import inference_pb2 as pb
from proto import inference_pb2_grpc as pb_grpc
from proto.servicer import InferenceServicer, ModelInfo, ModelNotFound
from tests.proto.fake_context import Aborted, FakeContext

SPEC_IN = TensorSpec("x", "FP32", (3,))
SPEC_OUT = TensorSpec("y", "INT64", (2, 2))


class One(InferenceServicer):
    """Serves model "m" (any version); ready when told."""

    def __init__(self, ready: bool = True) -> None:
        super().__init__("one", "9.9", ["x"])
        self._ready = ready

    @property
    def ready(self) -> bool:
        return self._ready

    def model(self, name: str, version: str) -> ModelInfo:
        if name != "m":
            raise ModelNotFound(f"no {name!r}")
        return ModelInfo("m", ["1"], "test", [SPEC_IN], [SPEC_OUT], self._ready)


class Lenient(One):
    unknown_model_ready = False


def call(rpc: str, request: Any, servicer: InferenceServicer | None = None) -> Any:
    return asyncio.run(getattr(servicer or One(), rpc)(request, FakeContext()))


@pytest.mark.parametrize("ready", [True, False])
def test_health(ready):
    servicer = One(ready)
    assert call("ServerLive", pb.ServerLiveRequest(), servicer).live
    assert call("ServerReady", pb.ServerReadyRequest(), servicer).ready == ready
    assert call("ModelReady", pb.ModelReadyRequest(name="m"), servicer).ready == ready


def test_server_metadata():
    meta = call("ServerMetadata", pb.ServerMetadataRequest())
    assert (meta.name, meta.version, list(meta.extensions)) == ("one", "9.9", ["x"])


def test_model_metadata_has_a_batch_dimension():
    meta = call("ModelMetadata", pb.ModelMetadataRequest(name="m"))
    assert (meta.name, list(meta.versions), meta.platform) == ("m", ["1"], "test")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("x", "FP32", [-1, 3])]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
        ("y", "INT64", [-1, 2, 2])
    ]


@pytest.mark.parametrize("rpc", ["ModelReady", "ModelMetadata"])
def test_an_unknown_model_is_not_found(rpc):
    request = getattr(pb, f"{rpc}Request")(name="z")
    with pytest.raises(Aborted) as info:
        call(rpc, request)
    assert info.value.args == (grpc.StatusCode.NOT_FOUND, "no 'z'")


def test_an_unknown_model_may_just_be_not_ready():
    assert not call("ModelReady", pb.ModelReadyRequest(name="z"), Lenient()).ready


def test_register_serves_the_generated_method_paths():
    async def run() -> tuple[bool, str]:
        server = grpc.aio.server()
        One().register(server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                live = await stub.ServerLive(pb.ServerLiveRequest())
                meta = await stub.ServerMetadata(pb.ServerMetadataRequest())
                return live.live, meta.name
        finally:
            await server.stop(None)

    assert asyncio.run(run()) == (True, "one")


def test_the_hooks_must_be_provided():
    with pytest.raises(TypeError, match="abstract methods model, ready"):
        InferenceServicer("bare", "0", [])
