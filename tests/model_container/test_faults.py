"""Integration: fault injection and shutdown of a real container process."""

import signal
import socket
import time

import grpc
import numpy as np
import pytest

from proto import inference_pb2 as pb
from proto.framing import FrameDecoder, encode_frame
from proto.tensors import make_infer_request
from tests.model_container.container_process import (
    IN_FEATURES,
    MODEL,
    inference_stub,
    make_bundle,
    start_container,
)

DELAY_MS = 200


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("bundle") / MODEL)


def _request(request_id: str = "") -> pb.ModelInferRequest:
    return make_infer_request(
        MODEL, {"input": np.zeros((1, IN_FEATURES), np.float32)}, request_id=request_id
    )


def _framed_roundtrip(port: int, request: pb.ModelInferRequest) -> pb.ModelStreamInferResponse:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(encode_frame(request.SerializeToString()))
        decoder = FrameDecoder()
        frames: list[bytes] = []
        while not frames:
            frames = decoder.feed(sock.recv(65536))
    return pb.ModelStreamInferResponse.FromString(frames[0])


@pytest.fixture(scope="module")
def failing(bundle, tmp_path_factory):
    running = start_container(bundle, tmp_path_factory.mktemp("logs"), "--fail-prob", "1")
    yield running
    assert running.stop() == 0, running.log()


def test_injected_failure_unary(failing):
    with grpc.insecure_channel(failing.target) as channel:
        stub = inference_stub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(_request())
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details() == "injected failure"


def test_injected_failure_stream(failing):
    with grpc.insecure_channel(failing.target) as channel:
        stub = inference_stub(channel)
        replies = list(stub.ModelStreamInfer(iter([_request("a"), _request("b")])))
    assert [(r.error_message, r.infer_response.id) for r in replies] == [
        ("INTERNAL: injected failure", "a"),
        ("INTERNAL: injected failure", "b"),
    ]


def test_injected_failure_framed(failing):
    reply = _framed_roundtrip(failing.stream_port, _request("f"))
    assert (reply.error_message, reply.infer_response.id) == ("INTERNAL: injected failure", "f")


def test_injected_failure_keeps_health_serving(failing):
    with grpc.insecure_channel(failing.target) as channel:
        stub = inference_stub(channel)
        assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL)).ready


def test_injected_delay(bundle, tmp_path):
    delayed = start_container(bundle, tmp_path, "--delay-ms", str(DELAY_MS), "--seed", "1")
    try:
        with grpc.insecure_channel(delayed.target) as channel:
            stub = inference_stub(channel)
            start = time.monotonic()
            reply = stub.ModelInfer(_request("d"))
            unary_s = time.monotonic() - start
        start = time.monotonic()
        framed = _framed_roundtrip(delayed.stream_port, _request("e"))
        framed_s = time.monotonic() - start
    finally:
        assert delayed.stop() == 0, delayed.log()
    # Lower bounds only: the delay is a floor, never a timing tolerance.
    assert reply.id == "d" and unary_s >= DELAY_MS / 1000
    assert framed.infer_response.id == "e" and framed_s >= DELAY_MS / 1000


def test_sigterm_exits_zero_promptly(bundle, tmp_path):
    running = start_container(bundle, tmp_path)
    # An open, idle framed connection must not hold the shutdown up.
    with socket.create_connection(("127.0.0.1", running.stream_port), timeout=10):
        assert running.stop(signal.SIGTERM, timeout=5) == 0, running.log()
    log = running.log()
    assert "shutting down" in log and "stopped" in log
