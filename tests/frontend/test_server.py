"""Integration: the frontend over real model containers on loopback.

Four containers serve the whole module: two fast base instances, one base instance
that answers every request after ``SLOW_MS``, and one parity instance.  Each test runs
a fresh in-process frontend inside its own event loop, so no test inherits another's
busy instance.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
import numpy as np
import pytest

import frontend.api
from frontend.config import FrontendConfig, ModelConfig
from frontend.events import Mode
from frontend.server import Frontend
from proto import inference_pb2 as pb
from tests.frontend.cluster import (
    FEATURES,
    SLOW_MS,
    Bundles,
    Containers,
    Reference,
    Reply,
    Scenario,
    SendLog,
    address,
    assert_close,
    call,
    call_all,
    coded_model,
    frontend_config,
    inputs,
    reply_of,
    request,
    start_containers,
    with_frontend,
)
from tests.frontend.rest_support import all_up

T = TypeVar("T")


@pytest.fixture(scope="module")
def reference(bundles: Bundles) -> Reference:
    return Reference(bundles)


@pytest.fixture(scope="module")
def containers(bundles: Bundles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containers]:
    running = start_containers(
        {
            "fast-a": (bundles.base, ()),
            "fast-b": (bundles.base, ()),
            "slow": (bundles.base, ("--delay-ms", str(SLOW_MS))),
            "parity": (bundles.parity, ()),
        },
        tmp_path_factory.mktemp("container-logs"),
    )
    yield running
    assert running.stop() == dict.fromkeys(running.running, 0)


def coded_with_slow_data_0(
    containers: Containers, bundles: Bundles, *, framed: bool = True, **settings: Any
) -> ModelConfig:
    """k=2, coded: ``data-0`` answers after SLOW_MS, ``data-1`` and ``parity-0`` at once.

    The group fill timeout is generous so that two queries sent together always form
    one coding group, whatever the scheduling on a busy test machine.
    """
    settings.setdefault("group_timeout_ms", 100.0)
    return coded_model(
        bundles, containers, ("slow", "fast-a"), ("parity",), framed=framed, **settings
    )


def slow_only(containers: Containers, bundles: Bundles, **settings: Any) -> ModelConfig:
    """One slow instance, no redundancy: every query waits SLOW_MS for its original."""
    return ModelConfig(
        name=bundles.model,
        base_bundle=bundles.base,
        data=(address("data-0", containers["slow"]),),
        mode=Mode.NONE,
        **settings,
    )


def coded_fast(
    containers: Containers, bundles: Bundles, *, framed: bool = True, **settings: Any
) -> ModelConfig:
    return coded_model(
        bundles, containers, ("fast-a", "fast-b"), ("parity",), framed=framed, **settings
    )


def with_instances(config: FrontendConfig, scenario: Scenario[T]) -> T:
    """`with_frontend`, once every instance link is up: a model is ready with one data
    instance, and the tests count on which instance each query of a group goes to."""

    async def once_up(frontend: Frontend, stub: Any) -> T:
        await all_up(frontend)
        return await scenario(frontend, stub)

    return with_frontend(config, once_up)


async def pair(stub: Any, bundles: Bundles, x: np.ndarray, **parameters: Any) -> list[Reply]:
    """Send rows 0 and 1 of ``x`` as two concurrent queries; with k=2 they form one group."""
    return list(
        await asyncio.gather(
            call(stub, bundles.request(x[0:1], **parameters)),
            call(stub, bundles.request(x[1:2], **parameters)),
        )
    )


# ---------------------------------------------------------------- a slow instance


@pytest.mark.parametrize("framed", [True, False], ids=["framed-tcp", "grpc-stream"])
def test_a_slow_instance_is_outrun_by_reconstruction(
    containers: Containers, bundles: Bundles, reference: Reference, framed: bool
) -> None:
    """Queries sent to the slow data-0 come back reconstructed, in time, and exact."""
    config = frontend_config(coded_with_slow_data_0(containers, bundles, framed=framed))
    pairs = 8
    x = inputs(2 * pairs, seed=1)

    async def scenario(frontend: Frontend, stub: Any) -> tuple[list[Reply], SendLog]:
        sends = SendLog(frontend.services[bundles.model])
        replies: list[Reply] = []
        for i in range(0, 2 * pairs, 2):
            replies += await pair(stub, bundles, x[i : i + 2])
        return replies, sends

    replies, sends = with_instances(config, scenario)
    assert [r.code for r in replies] == [None] * len(replies)
    # Every query that went to data-0 was answered by reconstruction.  Others may be
    # too: a query still queued behind its partner when the parity output arrives.
    # The slow instance answers long after everything else: a query sent to it that is
    # answered at all, with no deadline or default in play, was reconstructed.
    reconstructed = [i for i, r in enumerate(replies) if r.source == "reconstructed"]
    to_slow = sends.rows_sent_to("data-0", x)
    assert len(to_slow) == sends.count("data-0") >= 1
    assert set(to_slow) <= set(reconstructed)
    for i, reply in enumerate(replies):
        if reply.source == "reconstructed":
            partner = i ^ 1  # the other query of its pair
            expected = reference.reconstruction(x[i : i + 1], x[partner : partner + 1])
        else:
            assert reply.source == "original"
            expected = reference.base(x[i : i + 1])
        assert_close(reply.output, expected)


def test_require_original_waits_for_the_slow_instance(
    containers: Containers, bundles: Bundles, reference: Reference
) -> None:
    config = frontend_config(coded_with_slow_data_0(containers, bundles))
    x = inputs(2, seed=2)

    async def scenario(frontend: Frontend, stub: Any) -> tuple[list[Reply], SendLog]:
        sends = SendLog(frontend.services[bundles.model])
        return await pair(stub, bundles, x, parm_require_original=True), sends

    replies, sends = with_instances(config, scenario)
    # One of the pair went to the slow instance, and still came back as its original.
    assert len(sends.rows_sent_to("data-0", x)) == 1
    assert [r.source for r in replies] == ["original", "original"]
    for i, reply in enumerate(replies):
        assert_close(reply.output, reference.base(x[i : i + 1]))


def test_require_original_past_its_timeout_is_deadline_exceeded(
    containers: Containers, bundles: Bundles, reference: Reference
) -> None:
    config = frontend_config(coded_with_slow_data_0(containers, bundles))
    x = inputs(2, seed=3)
    timeout_ms = 400

    async def scenario(frontend: Frontend, stub: Any) -> tuple[list[Reply], SendLog]:
        sends = SendLog(frontend.services[bundles.model])
        replies = await pair(stub, bundles, x, parm_require_original="true", timeout_ms=timeout_ms)
        return replies, sends

    replies, sends = with_instances(config, scenario)
    # timeout_ms is far below SLOW_MS: the query on the slow instance cannot be answered.
    (slow,) = sends.rows_sent_to("data-0", x)
    assert replies[slow].code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "deadline" in replies[slow].message
    assert (replies[1 - slow].code, replies[1 - slow].source) == (None, "original")


# ---------------------------------------------------------------- deadlines and defaults

DEFAULT = tuple(float(i) / 10 for i in range(10))


@pytest.mark.parametrize("default", [DEFAULT, None], ids=["default", "no-default"])
@pytest.mark.parametrize("limit", ["timeout_ms", "grpc-deadline"])
def test_a_deadline_gives_the_default_or_deadline_exceeded(
    containers: Containers,
    bundles: Bundles,
    default: tuple[float, ...] | None,
    limit: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whether the client sets ``timeout_ms`` or a gRPC deadline, the query never waits
    for the slow instance: it gets the model's default output, or DEADLINE_EXCEEDED.
    The deadline is far below SLOW_MS, so the instance's own answer can never win."""
    config = frontend_config(slow_only(containers, bundles, default_output=default))
    # The frontend answers a gRPC deadline's default this margin before the client's
    # own deadline fires; 10 ms was too little for a loaded 2-core CI machine.
    monkeypatch.setattr(frontend.api, "DEADLINE_MARGIN_S", 0.1)
    deadline_s = 0.6  # a margin of 60 ms (a tenth), still far below SLOW_MS
    req = bundles.request(inputs(1, seed=4))
    if limit == "timeout_ms":
        req.parameters["timeout_ms"].double_param = deadline_s * 1000

    async def scenario(frontend: Frontend, stub: Any) -> Reply:
        return await call(stub, req, timeout=deadline_s if limit == "grpc-deadline" else None)

    reply = with_instances(config, scenario)
    if default is None:
        assert reply.code == grpc.StatusCode.DEADLINE_EXCEEDED
    else:
        assert (reply.code, reply.source) == (None, "default")
        np.testing.assert_array_equal(reply.output, np.array([default], np.float32))


# ---------------------------------------------------------------- admission


def test_admission_refuses_the_excess_of_a_burst_at_once(
    containers: Containers, bundles: Bundles, reference: Reference
) -> None:
    # Two links to the slow container: both admitted queries run side by side.
    slow = containers["slow"]
    model = ModelConfig(
        name=bundles.model,
        base_bundle=bundles.base,
        data=(address("data-0", slow), address("data-1", slow)),
        mode=Mode.NONE,
        max_outstanding=2,
    )
    x = inputs(6, seed=5)

    async def scenario(frontend: Frontend, stub: Any) -> list[Reply]:
        return await call_all(stub, [bundles.request(x[i : i + 1]) for i in range(6)], 6)

    replies = with_instances(frontend_config(model), scenario)
    refused = [r for r in replies if r.code is not None]
    answered = [(i, r) for i, r in enumerate(replies) if r.code is None]
    assert [r.code for r in refused] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 4
    assert all("admission limit of 2" in r.message for r in refused)
    assert [r.source for _, r in answered] == ["original"] * 2
    for i, reply in answered:
        assert_close(reply.output, reference.base(x[i : i + 1]))


# ---------------------------------------------------------------- modes


@pytest.mark.parametrize(
    ("mode", "used"),
    [
        (Mode.EQUAL_RESOURCES, {"data-0", "data-1", "extra-0"}),
        (Mode.REPLICATE, {"data-0", "data-1", "extra-0"}),
        (Mode.NONE, {"data-0", "data-1"}),
    ],
    ids=lambda v: v.value if isinstance(v, Mode) else "",
)
def test_modes_without_parity_answer_originals(
    containers: Containers, bundles: Bundles, reference: Reference, mode: Mode, used: set[str]
) -> None:
    """Equal-resources and replicate spend the extra instance on another copy of F
    (a second link to a base container); none leaves it idle."""
    model = ModelConfig(
        name=bundles.model,
        base_bundle=bundles.base,
        data=(address("data-0", containers["fast-a"]), address("data-1", containers["fast-b"])),
        parity=(address("extra-0", containers["fast-a"]),),
        mode=mode,
    )
    n = 24
    x = inputs(n, seed=6)

    async def scenario(frontend: Frontend, stub: Any) -> tuple[list[Reply], SendLog]:
        sends = SendLog(frontend.services[bundles.model])
        requests = [bundles.request(x[i : i + 1]) for i in range(n)]
        return await call_all(stub, requests, concurrency=8), sends

    replies, sends = with_instances(frontend_config(model), scenario)
    assert [r.source for r in replies] == ["original"] * n
    assert_close(
        np.concatenate([r.output for r in replies if r.output is not None]), reference.base(x)
    )
    assert sends.instances == used


# ---------------------------------------------------------------- batched requests


def test_a_batched_request_answers_each_row_with_its_source(
    containers: Containers, bundles: Bundles, reference: Reference
) -> None:
    """Rows 0 and 1 form a group, one of them on the slow data-0; row 2 goes to data-1
    once it is free.  So exactly one of rows 0 and 1 is reconstructed."""
    config = frontend_config(coded_with_slow_data_0(containers, bundles))
    x = inputs(3, seed=7)

    async def scenario(frontend: Frontend, stub: Any) -> Reply:
        return await call(stub, bundles.request(x))

    reply = with_instances(config, scenario)
    assert reply.code is None
    assert reply.output is not None and reply.output.shape == (3, 10)
    assert reply.source == "reconstructed"
    assert sorted(reply.sources[:2]) == ["original", "reconstructed"]
    assert reply.sources[2] == "original"
    for row, source in enumerate(reply.sources):
        if source == "original":
            expected = reference.base(x[row : row + 1])
        else:
            partner = 1 - row
            expected = reference.reconstruction(x[row : row + 1], x[partner : partner + 1])
        assert_close(reply.output[row : row + 1], expected)


# ---------------------------------------------------------------- ModelStreamInfer


@pytest.mark.parametrize("framed", [True, False], ids=["framed-tcp", "grpc-stream"])
def test_model_stream_infer_answers_every_request_and_survives_a_bad_one(
    containers: Containers, bundles: Bundles, reference: Reference, framed: bool
) -> None:
    """A client stream; the instances are reached over framed TCP or a gRPC stream."""
    model = coded_fast(containers, bundles, framed=framed)
    n, bad = 40, 17
    x = inputs(n, seed=8)
    requests = [
        bundles.request(x[i : i + 1], request_id=f"q{i}", parm_require_original=True)
        for i in range(n)
    ]
    requests[bad] = bundles.request(x[bad : bad + 1, :-1], request_id=f"q{bad}")

    async def scenario(frontend: Frontend, stub: Any) -> list[pb.ModelStreamInferResponse]:
        stream = stub.ModelStreamInfer()

        async def write() -> None:
            for req in requests:
                await stream.write(req)
            await stream.done_writing()

        async with asyncio.TaskGroup() as group:
            group.create_task(write())
            return [response async for response in stream]

    responses = with_instances(frontend_config(model), scenario)
    by_id = {r.infer_response.id: r for r in responses}
    assert len(responses) == len(by_id) == n
    error = by_id.pop(f"q{bad}")
    assert error.error_message.startswith("INVALID_ARGUMENT: input ")
    assert f"expected shape [-1, {FEATURES}], got [1, {FEATURES - 1}]" in error.error_message
    for rid, response in by_id.items():
        i = int(rid[1:])
        assert not response.error_message
        got = reply_of(response.infer_response)
        assert got.source == "original"
        assert_close(got.output, reference.base(x[i : i + 1]))


# ---------------------------------------------------------------- bad input


ONE = inputs(1, seed=9)


def _one(bundles: Bundles, **parameters: Any) -> pb.ModelInferRequest:
    return bundles.request(ONE, **parameters)


def _edited(edit: Callable[[pb.ModelInferRequest], object]) -> Callable[[Bundles], Any]:
    def build(bundles: Bundles) -> pb.ModelInferRequest:
        req = _one(bundles)
        edit(req)
        return req

    return build


BAD_INPUT = [
    pytest.param(
        lambda b: request("no-such-model", ONE, b.input_name),
        grpc.StatusCode.NOT_FOUND,
        "unknown model 'no-such-model'",
        id="unknown-model",
    ),
    pytest.param(
        _edited(lambda r: setattr(r.inputs[0], "name", "pixels")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "got 'pixels'",
        id="input-name",
    ),
    pytest.param(
        lambda b: b.request(ONE.astype(np.float64)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "expected datatype FP32, got FP64",
        id="datatype",
    ),
    pytest.param(
        lambda b: b.request(ONE[:, :32]),
        grpc.StatusCode.INVALID_ARGUMENT,
        f"expected shape [-1, {FEATURES}], got [1, 32]",
        id="shape",
    ),
    pytest.param(
        lambda b: b.request(ONE[0]),
        grpc.StatusCode.INVALID_ARGUMENT,
        f"expected shape [-1, {FEATURES}], got [{FEATURES}]",
        id="no-batch-axis",
    ),
    pytest.param(
        _edited(lambda r: r.raw_input_contents.__setitem__(0, bytes(4 * FEATURES - 1))),
        grpc.StatusCode.INVALID_ARGUMENT,
        f"needs {4 * FEATURES} bytes, got {4 * FEATURES - 1}",
        id="byte-length",
    ),
    pytest.param(
        lambda b: b.request(inputs(2, seed=9)),
        grpc.StatusCode.INVALID_ARGUMENT,
        f"{8 * FEATURES} bytes exceed the limit of {4 * FEATURES}",
        id="oversized",
    ),
    pytest.param(
        _edited(lambda r: r.raw_input_contents.pop()),
        grpc.StatusCode.INVALID_ARGUMENT,
        "expected its data in raw_input_contents",
        id="typed-contents",
    ),
    pytest.param(
        _edited(lambda r: r.outputs.add(name="probabilities")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "unknown output 'probabilities'",
        id="output-name",
    ),
    pytest.param(
        lambda b: _one(b, timeout_ms="soon"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "parameter timeout_ms: expected a number, got 'soon'",
        id="timeout-not-a-number",
    ),
    pytest.param(
        lambda b: _one(b, timeout_ms=-5),
        grpc.StatusCode.INVALID_ARGUMENT,
        "parameter timeout_ms: expected a positive finite number, got -5.0",
        id="timeout-negative",
    ),
    pytest.param(
        lambda b: _one(b, parm_require_original="maybe"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "parameter parm_require_original: expected a boolean, got 'maybe'",
        id="require-original-not-a-bool",
    ),
]


@pytest.mark.parametrize(("build", "code", "message"), BAD_INPUT)
def test_bad_input_is_refused_before_any_instance(
    containers: Containers,
    bundles: Bundles,
    build: Callable[[Bundles], pb.ModelInferRequest],
    code: grpc.StatusCode,
    message: str,
) -> None:
    config = frontend_config(coded_fast(containers, bundles), max_request_bytes=4 * FEATURES)

    async def scenario(frontend: Frontend, stub: Any) -> tuple[Reply, SendLog, int]:
        service = frontend.services[bundles.model]
        sends = SendLog(service)
        reply = await call(stub, build(bundles))
        return reply, sends, service.core.outstanding

    reply, sends, outstanding = with_instances(config, scenario)
    assert reply.code == code
    assert message in reply.message
    assert sends.sent == [] and outstanding == 0
