"""A real ``python -m model_container`` process on loopback ports; padding in process."""

import asyncio
import json
import socket
import subprocess
import sys
from typing import Any

import grpc
import numpy as np
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.bundle import read_manifest
from common.models import load_model
from model_container.config import ContainerConfig
from model_container.container import Container
from proto import inference_pb2 as pb
from proto.framing import FrameDecoder, encode_frame
from proto.tensors import make_infer_request, read_infer_response
from tests.model_container.container_process import (
    CLASSES,
    IN_FEATURES,
    MODEL,
    REPO_ROOT,
    inference_stub,
    start_container,
)


@pytest.fixture(scope="module")
def container(bundle, tmp_path_factory):
    running = start_container(bundle, tmp_path_factory.mktemp("logs"))
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture(scope="module")
def stub(container):
    with grpc.insecure_channel(container.target) as channel:
        yield inference_stub(channel)


@pytest.fixture(scope="module")
def reference(bundle):
    """The bundle's model run directly, for comparison with the container's answers."""
    _, model = load_model(bundle)

    def run(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return run


def _inputs(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, IN_FEATURES), dtype=np.float32)


def test_health_serving_for_server_and_model(container):
    with grpc.insecure_channel(container.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", MODEL):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_live_and_ready(stub):
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL)).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL, version="1")).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name="other")).ready


def test_server_metadata(stub):
    reply = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert reply.name == "parm-model-container"
    assert reply.version
    assert "parm_framed_tcp" in reply.extensions


def test_model_metadata(stub):
    reply = stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL))
    assert (reply.name, list(reply.versions), reply.platform) == (MODEL, ["1"], "pytorch")
    assert [(t.name, t.datatype, list(t.shape)) for t in reply.inputs] == [
        ("input", "FP32", [-1, IN_FEATURES])
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in reply.outputs] == [
        ("output", "FP32", [-1, CLASSES])
    ]


def test_model_metadata_unknown_model(stub):
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelMetadata(pb.ModelMetadataRequest(name="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("batch", [1, 3])
def test_model_infer_matches_the_model(stub, reference, batch):
    x = _inputs(batch)
    reply = stub.ModelInfer(make_infer_request(MODEL, {"input": x}, request_id=f"b{batch}"))
    assert (reply.id, reply.model_name) == (f"b{batch}", MODEL)
    assert [(t.name, t.datatype, list(t.shape)) for t in reply.outputs] == [
        ("output", "FP32", [batch, CLASSES])
    ]
    np.testing.assert_allclose(read_infer_response(reply)["output"], reference(x), atol=1e-5)


def test_model_infer_typed_contents(stub, reference):
    x = _inputs(2)
    request = pb.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name="input", datatype="FP32", shape=[2, IN_FEATURES])
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    output = read_infer_response(stub.ModelInfer(request))["output"]
    np.testing.assert_allclose(output, reference(x), atol=1e-5)


def _bad_request(**changes: Any) -> pb.ModelInferRequest:
    request = make_infer_request(MODEL, {"input": _inputs(1)})
    tensor = request.inputs[0]
    if "name" in changes:
        tensor.name = changes["name"]
    if "datatype" in changes:
        tensor.datatype = changes["datatype"]
    if "shape" in changes:
        del tensor.shape[:]
        tensor.shape.extend(changes["shape"])
    if "raw" in changes:
        request.raw_input_contents[0] = changes["raw"]
    return request


BAD_REQUESTS = [
    ({"name": "x"}, "expected input 'input', got 'x'"),
    ({"datatype": "INT32"}, "input 'input': expected datatype FP32, got INT32"),
    ({"shape": [1, 63]}, "input 'input': expected shape [-1, 64], got [1, 63]"),
    ({"shape": [64]}, "input 'input': expected shape [-1, 64], got [64]"),
    ({"shape": [0, 64]}, "input 'input': expected shape [-1, 64], got [0, 64]"),
    ({"raw": bytes(252)}, "input 'input': expected 256 bytes for FP32 shape [1, 64], got 252"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_REQUESTS)
def test_model_infer_invalid_argument(stub, changes, message):
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(_bad_request(**changes))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == message


def test_model_infer_two_inputs(stub):
    request = make_infer_request(MODEL, {"input": _inputs(1), "extra": _inputs(1)})
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expected 1 input 'input', got 2" in info.value.details()


def test_model_infer_unknown_output(stub):
    request = make_infer_request(MODEL, {"input": _inputs(1)})
    request.outputs.add(name="logits")
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "unknown output 'logits': expected 'output'"


def test_model_infer_unknown_model(stub):
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(make_infer_request("resnet", {"input": _inputs(1)}))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "model 'resnet' not found: this container serves 'mlp'"


def test_model_stream_infer(stub, reference):
    xs = [_inputs(1, seed) for seed in range(3)]
    requests = [
        make_infer_request(MODEL, {"input": x}, request_id=f"s{i}") for i, x in enumerate(xs)
    ]
    requests.insert(1, _bad_request(datatype="FP64"))
    replies = list(stub.ModelStreamInfer(iter(requests)))
    assert len(replies) == 4
    bad = replies.pop(1)
    assert bad.error_message == "INVALID_ARGUMENT: input 'input': expected datatype FP32, got FP64"
    for i, (x, reply) in enumerate(zip(xs, replies, strict=True)):
        assert reply.error_message == ""
        assert reply.infer_response.id == f"s{i}"
        np.testing.assert_allclose(
            read_infer_response(reply.infer_response)["output"], reference(x), atol=1e-5
        )


def _framed_exchange(
    sock: socket.socket, decoder: FrameDecoder, request: pb.ModelInferRequest
) -> pb.ModelStreamInferResponse:
    sock.sendall(encode_frame(request.SerializeToString()))
    frames: list[bytes] = []
    while not frames:
        chunk = sock.recv(65536)
        assert chunk, "container closed the connection"
        frames = decoder.feed(chunk)
    assert len(frames) == 1
    return pb.ModelStreamInferResponse.FromString(frames[0])


@pytest.fixture
def framed(container):
    with socket.create_connection(("127.0.0.1", container.stream_port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        yield sock


def test_framed_port_answers_in_order_with_ids(framed, reference):
    decoder = FrameDecoder()
    for i in range(5):
        x = _inputs(1 + i % 2, seed=i)
        request = make_infer_request(MODEL, {"input": x}, request_id=f"f{i}")
        reply = _framed_exchange(framed, decoder, request)
        assert reply.error_message == ""
        assert reply.infer_response.id == f"f{i}"
        np.testing.assert_allclose(
            read_infer_response(reply.infer_response)["output"], reference(x), atol=1e-5
        )


def test_framed_port_pipelined_requests(framed):
    requests = [
        make_infer_request(MODEL, {"input": _inputs(1)}, request_id=f"p{i}") for i in range(4)
    ]
    framed.sendall(b"".join(encode_frame(r.SerializeToString()) for r in requests))
    decoder = FrameDecoder()
    frames: list[bytes] = []
    while len(frames) < 4:
        frames += decoder.feed(framed.recv(65536))
    ids = [pb.ModelStreamInferResponse.FromString(f).infer_response.id for f in frames]
    assert ids == ["p0", "p1", "p2", "p3"]


def test_framed_port_errors_keep_the_connection(framed):
    decoder = FrameDecoder()
    bad = _framed_exchange(
        framed, decoder, make_infer_request("other", {"input": _inputs(1)}, request_id="e1")
    )
    assert bad.error_message == "NOT_FOUND: model 'other' not found: this container serves 'mlp'"
    assert bad.infer_response.id == "e1"
    framed.sendall(encode_frame(b"\xff\xff\xff"))  # not a protobuf message
    garbage = pb.ModelStreamInferResponse.FromString(_read_frame(framed, decoder))
    assert garbage.error_message.startswith("INVALID_ARGUMENT: frame is not a ModelInferRequest")
    good = _framed_exchange(
        framed, decoder, make_infer_request(MODEL, {"input": _inputs(1)}, request_id="ok")
    )
    assert (good.error_message, good.infer_response.id) == ("", "ok")


def _read_frame(sock: socket.socket, decoder: FrameDecoder) -> bytes:
    frames: list[bytes] = []
    while not frames:
        frames = decoder.feed(sock.recv(65536))
    return frames[0]


TRITON_CLIENT = """
import json, os, sys, queue
import numpy as np
import tritonclient.grpc as tc

target, model = sys.argv[1], sys.argv[2]
x = np.array(json.loads(sys.stdin.read()), dtype=np.float32)
client = tc.InferenceServerClient(target)
assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(model)
meta = client.get_model_metadata(model, as_json=True)
inp = tc.InferInput("input", list(x.shape), "FP32")
inp.set_data_from_numpy(x)
result = client.infer(model, [inp], outputs=[tc.InferRequestedOutput("output")], request_id="t1")
answers = queue.Queue()
client.start_stream(callback=lambda result, error: answers.put((result, error)))
client.async_stream_infer(model, [inp], request_id="t2")
streamed, error = answers.get(timeout=10)
client.stop_stream()
assert error is None, error
print(json.dumps({
    "metadata": meta,
    "unary": result.as_numpy("output").tolist(),
    "unary_id": result.get_response().id,
    "stream": streamed.as_numpy("output").tolist(),
    "stream_id": streamed.get_response().id,
}), flush=True)
# The report is out: skip the interpreter's teardown, where tritonclient's stream thread
# and gRPC's threads once held the exit past the test's timeout (CI, report printed).
os._exit(0)
"""


def test_tritonclient_is_wire_compatible(container, reference):
    # A subprocess: tritonclient's descriptors clash with ours in one process.
    x = _inputs(2)
    done = subprocess.run(
        [sys.executable, "-c", TRITON_CLIENT, container.target, MODEL],
        input=json.dumps(x.tolist()),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["metadata"]["inputs"] == [
        {"name": "input", "datatype": "FP32", "shape": ["-1", "64"]}
    ]
    assert (out["unary_id"], out["stream_id"]) == ("t1", "t2")
    np.testing.assert_allclose(out["unary"], reference(x), atol=1e-5)
    np.testing.assert_allclose(out["stream"], reference(x), atol=1e-5)


# ------------------------------------------------- service-time padding, in process


class TickingClock:
    """A clock that moves ``tick`` seconds at every reading and never otherwise."""

    def __init__(self, tick: float) -> None:
        self.tick = tick
        self.now = 0.0

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


@pytest.mark.parametrize(
    ("service_ms", "inference_ms", "padding"),
    [(40.0, 10.0, [0.03]), (40.0, 0.0, [0.04]), (5.0, 10.0, []), (0.0, 10.0, [])],
)
def test_padding_sleeps_the_rest_of_the_service_time(bundle, service_ms, inference_ms, padding):
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    # One tick between the two readings around the inference: its measured time.
    clock = TickingClock(inference_ms / 1000)
    config = ContainerConfig(bundle=bundle, port=0, service_time_ms=service_ms)
    container = Container(config, read_manifest(bundle), sleep=sleep, clock=clock)
    container.runner = container.load("cpu")
    response = pb.ModelInferResponse()
    request = make_infer_request(MODEL, {"input": _inputs(1)}, request_id="p")
    asyncio.run(container.infer(request, response))
    assert response.id == "p"
    assert sleeps == pytest.approx(padding)
