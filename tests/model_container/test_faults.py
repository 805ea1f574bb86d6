"""Fault injection: the draws for a seed, the delays asked for, and a real container."""

import asyncio
import dataclasses
import random
import signal
import socket

import grpc
import pytest

from common.bundle import read_manifest
from model_container.config import ContainerConfig
from model_container.container import Container
from model_container.faults import Draw, Faults, FaultSettings
from proto import inference_pb2 as pb
from proto.framing import FrameDecoder, encode_frame
from tests.model_container.container_process import (
    MODEL,
    inference_stub,
    start_container,
    zero_request,
)

DRAWS = 50


class Sleeps:
    """Stands in for asyncio.sleep: records every wait asked for, waits for none."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)


def expected_draws(settings: FaultSettings, n: int) -> list[Draw]:
    """What the documented order (delay, failure, then an exp delay) gives for a seed."""
    rng = random.Random(settings.seed)
    draws = []
    for _ in range(n):
        delayed = rng.random() < settings.effective_delay_prob
        failed = rng.random() < settings.fail_prob
        delay = settings.delay_ms / 1000 if delayed else 0.0
        if delayed and settings.delay_dist == "exp":
            delay = rng.expovariate(1000 / settings.delay_ms)
        draws.append(Draw(delay, failed))
    return draws


@pytest.mark.parametrize(
    "settings",
    [
        FaultSettings(fail_prob=0.5, seed=7),
        FaultSettings(delay_ms=20, delay_prob=0.3, fail_prob=0.2, seed=1),
        FaultSettings(delay_ms=20, delay_prob=0.5, delay_dist="exp", seed=2),
    ],
    ids=["failures", "const-delays", "exp-delays"],
)
def test_draws_follow_the_seed(settings):
    faults = Faults(settings)
    draws = [faults.draw() for _ in range(DRAWS)]
    assert draws == expected_draws(settings, DRAWS)
    assert len(set(draws)) > 1  # the seed gives a mix, not one outcome


def test_the_same_seed_gives_the_same_faults_and_another_seed_others():
    settings = FaultSettings(delay_ms=5, delay_prob=0.5, fail_prob=0.5, delay_dist="exp", seed=3)
    first, again = Faults(settings), Faults(settings)
    other = Faults(dataclasses.replace(settings, seed=4))
    sequence = [first.draw() for _ in range(DRAWS)]
    assert sequence == [again.draw() for _ in range(DRAWS)]
    assert sequence != [other.draw() for _ in range(DRAWS)]


@pytest.mark.parametrize(
    ("settings", "asked", "failures"),
    [
        (FaultSettings(), [], 0),
        (FaultSettings(delay_ms=200), [0.2] * 4, 0),
        (FaultSettings(delay_ms=200, delay_prob=0.0), [], 0),
        (FaultSettings(fail_prob=1.0), [], 4),
        (FaultSettings(delay_ms=50, fail_prob=1.0), [0.05] * 4, 4),
    ],
)
def test_inject_waits_the_drawn_delay_and_says_when_to_fail(settings, asked, failures):
    sleeps = Sleeps()
    faults = Faults(settings, sleep=sleeps)

    async def run() -> list[bool]:
        return [await faults.inject() for _ in range(4)]

    assert sum(asyncio.run(run())) == failures
    assert sleeps.asked == asked


def test_exponential_delays_are_the_drawn_ones():
    settings = FaultSettings(delay_ms=30, delay_dist="exp", seed=5)
    sleeps = Sleeps()
    faults = Faults(settings, sleep=sleeps)

    async def run() -> None:
        for _ in range(DRAWS):
            await faults.inject()

    asyncio.run(run())
    assert sleeps.asked == [d.delay_s for d in expected_draws(settings, DRAWS)]
    assert len(set(sleeps.asked)) == DRAWS


@pytest.mark.parametrize(
    ("delay_ms", "delay_prob", "effective"), [(0.0, None, 0.0), (5.0, None, 1.0), (5.0, 0.2, 0.2)]
)
def test_delay_probability_defaults_to_one_when_a_delay_is_set(delay_ms, delay_prob, effective):
    assert FaultSettings(delay_ms, delay_prob).effective_delay_prob == effective


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"delay_ms": -1.0}, "delay_ms: expected >= 0, got -1.0"),
        ({"delay_prob": 1.5}, r"delay_prob: expected a probability in \[0, 1\], got 1.5"),
        ({"fail_prob": 2.0}, r"fail_prob: expected a probability in \[0, 1\], got 2.0"),
        ({"delay_dist": "pareto"}, "delay_dist: expected const or exp, got 'pareto'"),
    ],
)
def test_settings_validation(changes, message):
    with pytest.raises(ValueError, match=message):
        FaultSettings(**changes)


# ---------------------------------------------------------------- in a container


def test_a_container_waits_its_drawn_delays_before_answering(bundle):
    sleeps = Sleeps()
    config = ContainerConfig(bundle=bundle, port=0, delay_ms=200, delay_prob=0.5, seed=11)
    container = Container(config, read_manifest(bundle), sleep=sleeps)
    container.runner = container.load("cpu")

    async def run() -> list[str]:
        ids = []
        for i in range(10):
            response = pb.ModelInferResponse()
            await container.infer(zero_request(str(i)), response)
            ids.append(response.id)
        return ids

    assert asyncio.run(run()) == [str(i) for i in range(10)]
    expected = [d.delay_s for d in expected_draws(config.faults, 10) if d.delay_s]
    assert sleeps.asked == expected and 0 < len(expected) < 10


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
            stub.ModelInfer(zero_request())
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details() == "injected failure"


def test_injected_failure_stream(failing):
    with grpc.insecure_channel(failing.target) as channel:
        stub = inference_stub(channel)
        replies = list(stub.ModelStreamInfer(iter([zero_request("a"), zero_request("b")])))
    assert [(r.error_message, r.infer_response.id) for r in replies] == [
        ("INTERNAL: injected failure", "a"),
        ("INTERNAL: injected failure", "b"),
    ]


def test_injected_failure_framed(failing):
    reply = _framed_roundtrip(failing.stream_port, zero_request("f"))
    assert (reply.error_message, reply.infer_response.id) == ("INTERNAL: injected failure", "f")


def test_injected_failure_keeps_health_serving(failing):
    with grpc.insecure_channel(failing.target) as channel:
        stub = inference_stub(channel)
        assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL)).ready


def test_a_delayed_container_still_answers_on_both_transports(bundle, tmp_path):
    # The delays themselves are checked above, through a recording sleep; here only
    # that the flags reach a real process and its answers come.
    delayed = start_container(bundle, tmp_path, "--delay-ms", "20", "--seed", "1")
    try:
        with grpc.insecure_channel(delayed.target) as channel:
            reply = inference_stub(channel).ModelInfer(zero_request("d"))
        framed = _framed_roundtrip(delayed.stream_port, zero_request("e"))
    finally:
        assert delayed.stop() == 0, delayed.log()
    assert reply.id == "d"
    assert (framed.error_message, framed.infer_response.id) == ("", "e")


def test_sigterm_exits_zero_promptly(bundle, tmp_path):
    running = start_container(bundle, tmp_path)
    # An open, idle framed connection must not hold the shutdown up.
    with socket.create_connection(("127.0.0.1", running.stream_port), timeout=10):
        assert running.stop(signal.SIGTERM, timeout=5) == 0, running.log()
    log = running.log()
    assert "shutting down" in log and "stopped" in log
