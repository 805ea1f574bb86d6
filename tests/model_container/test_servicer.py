"""The container's v2 servicer (model_container/servicer.py), in process, on a fake context."""

import asyncio
import random

import grpc
import pytest

from common.bundle import read_manifest
from model_container.config import ContainerConfig
from model_container.container import Container
from model_container.servicer import InferenceServicer, answer_stream_request
from proto import inference_pb2 as pb
from tests.model_container.container_process import IN_FEATURES, MODEL, zero_request
from tests.proto.fake_context import Aborted, FakeContext


def test_not_ready_before_warm_up(bundle):
    container = Container(ContainerConfig(bundle=bundle, port=0), read_manifest(bundle))
    servicer = InferenceServicer(container, [])
    ctx = FakeContext()

    async def run() -> None:
        assert not (await servicer.ServerReady(pb.ServerReadyRequest(), ctx)).ready
        assert not (await servicer.ModelReady(pb.ModelReadyRequest(name=MODEL), ctx)).ready
        assert (await servicer.ServerLive(pb.ServerLiveRequest(), ctx)).live
        with pytest.raises(Aborted) as info:
            await servicer.ModelInfer(zero_request("q"), ctx)
        assert info.value.args == (grpc.StatusCode.UNAVAILABLE, "model is loading")
        # Metadata comes from the manifest, so it is there before the weights are.
        metadata = await servicer.ModelMetadata(pb.ModelMetadataRequest(name=MODEL), ctx)
        assert metadata.platform == "pytorch"

    asyncio.run(run())


def test_ready_after_load(bundle):
    container = Container(ContainerConfig(bundle=bundle, port=0), read_manifest(bundle))
    container.runner = container.load("cpu")
    servicer = InferenceServicer(container, [])

    async def run() -> None:
        assert (await servicer.ServerReady(pb.ServerReadyRequest(), FakeContext())).ready
        reply = await servicer.ModelInfer(zero_request("q"), FakeContext())
        assert reply.id == "q"

    asyncio.run(run())


def test_fault_draws_follow_the_seed(bundle):
    config = ContainerConfig(bundle=bundle, port=0, fail_prob=0.5, seed=7)
    container = Container(config, read_manifest(bundle))
    container.runner = container.load("cpu")

    async def run() -> list[bool]:
        answers = [await answer_stream_request(container, zero_request("q")) for _ in range(40)]
        return [a.error_message == "INTERNAL: injected failure" for a in answers]

    rng = random.Random(7)
    expected = []
    for _ in range(40):
        rng.random()  # the delay draw comes first
        expected.append(rng.random() < 0.5)
    assert asyncio.run(run()) == expected
    assert any(expected) and not all(expected)


def test_stream_error_answer_echoes_the_id(bundle):
    container = Container(ContainerConfig(bundle=bundle, port=0), read_manifest(bundle))
    answer = asyncio.run(answer_stream_request(container, zero_request("q")))
    assert answer.error_message == "UNAVAILABLE: model is loading"
    assert (answer.infer_response.id, answer.infer_response.model_name) == ("q", MODEL)


@pytest.mark.parametrize(
    ("name", "version", "message"),
    [
        ("nope", "", f"model 'nope' not found: this container serves '{MODEL}'"),
        (MODEL, "2", f"model '{MODEL}' version '2' not found: expected '1'"),
    ],
)
def test_a_model_not_served_here_is_not_ready_and_has_no_metadata(bundle, name, version, message):
    container = Container(ContainerConfig(bundle=bundle, port=0), read_manifest(bundle))
    container.runner = container.load("cpu")
    servicer = InferenceServicer(container, ["health"])
    ctx = FakeContext()

    async def run() -> None:
        ready = await servicer.ModelReady(pb.ModelReadyRequest(name=name, version=version), ctx)
        assert not ready.ready
        with pytest.raises(Aborted) as info:
            await servicer.ModelMetadata(pb.ModelMetadataRequest(name=name, version=version), ctx)
        assert info.value.args == (grpc.StatusCode.NOT_FOUND, message)
        served = await servicer.ModelMetadata(pb.ModelMetadataRequest(name=MODEL), ctx)
        assert (served.name, list(served.versions)) == (MODEL, ["1"])
        assert [(t.name, list(t.shape)) for t in served.inputs] == [("input", [-1, IN_FEATURES])]
        server = await servicer.ServerMetadata(pb.ServerMetadataRequest(), ctx)
        assert (server.name, list(server.extensions)) == ("parm-model-container", ["health"])

    asyncio.run(run())
