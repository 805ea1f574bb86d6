"""The front doors' transport guards (frontend/connections.py, frontend.http.GuardedHttp).

Issue 10, finding 1 (connections that send nothing, or trickle, held descriptors for
ever) and finding 7 (calls in flight at shutdown were CANCELLED or a bare 500).  The
HTTP tests run a frontend whose model has no instance (nothing is inferred) and hostile
clients on raw loopback sockets; counts and timeouts are small, and every wait is for a
condition, bounded by ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import numpy as np
import pytest

from frontend.config import FrontendConfig, InstanceAddress, ModelConfig
from frontend.connections import (
    RESERVED_DESCRIPTORS,
    SHUTTING_DOWN,
    Calls,
    connection_cap,
    raise_descriptor_limit,
    shut_out,
)
from frontend.events import Mode
from frontend.server import Frontend
from proto import inference_pb2 as pb
from proto import inference_pb2_grpc as pb_grpc
from tests.frontend.cluster import Bundles, Containers, address, inputs, request
from tests.frontend.rest_support import http_config, until, v2_json

BOUND_S = 30.0  # the upper bound of every wait: generous, never a measured window
REQUEST_HEAD = b"POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\n"


# ---------------------------------------------------------------- descriptors


def test_the_open_files_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, hard) // 2, hard))
    raised = raise_descriptor_limit()
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == raised
    assert raised == hard or hard == resource.RLIM_INFINITY


@pytest.mark.parametrize(
    ("wanted", "descriptors", "ports", "cap"),
    [(1000, 20_000, 2, 1000), (1000, 1024, 2, (1024 - RESERVED_DESCRIPTORS) // 2), (5, 10, 1, 1)],
)
def test_connection_caps_stay_under_the_open_files_limit(
    wanted: int, descriptors: int, ports: int, cap: int
) -> None:
    assert connection_cap(wanted, descriptors, ports) == cap


# ---------------------------------------------------------------- draining calls


def test_a_drain_lets_quick_calls_finish_and_cancels_the_rest_with_its_message() -> None:
    async def main() -> tuple[str, str]:
        calls, slow_started = Calls(), asyncio.Event()

        async def call(seconds: float) -> str:
            try:
                with calls.held():
                    slow_started.set()
                    await asyncio.sleep(seconds)
                    return "answered"
            except asyncio.CancelledError as exc:
                return "shut out" if shut_out(exc) else "cancelled"

        quick = asyncio.ensure_future(call(0))
        slow = asyncio.ensure_future(call(BOUND_S))
        await slow_started.wait()
        await calls.drain(0.05)
        return await quick, await slow

    assert asyncio.run(main()) == ("answered", "shut out")


def test_another_cancellation_is_not_a_shutdown() -> None:
    assert not shut_out(asyncio.CancelledError())
    assert not shut_out(asyncio.CancelledError("client gone"))


# ---------------------------------------------------------------- hostile HTTP clients


def lost_model(bundles: Bundles) -> ModelConfig:
    nowhere = InstanceAddress("data-0", "127.0.0.1:9")  # the discard port: nothing listens
    return ModelConfig("lost", bundles.base, (nowhere,), mode=Mode.NONE)


@contextlib.asynccontextmanager
async def started(config: FrontendConfig) -> AsyncIterator[Frontend]:
    frontend = Frontend(config)
    await frontend.start()
    try:
        yield frontend
    finally:
        await frontend.stop(grace=0.5)


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def answer(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    async with asyncio.timeout(BOUND_S):
        return await reader.read()


async def live(port: int) -> int:
    url = f"http://127.0.0.1:{port}/v2/health/live"
    async with aiohttp.ClientSession() as session, session.get(url) as r:
        return r.status


def test_connections_past_the_cap_are_refused_at_once_and_grpc_still_serves(
    rest_bundles: Bundles,
) -> None:
    cap, opened = 20, 40
    config = http_config(lost_model(rest_bundles), http_max_connections=cap)

    async def main() -> tuple[list[bytes], bool, int]:
        async with started(config) as frontend:
            port = frontend.http_port
            assert port is not None
            sockets = [await connect(port) for _ in range(opened)]
            reads = [asyncio.ensure_future(answer(reader)) for reader, _ in sockets]
            async with asyncio.timeout(BOUND_S):  # the excess is closed, the rest held
                while sum(r.done() for r in reads) < opened - cap:
                    await asyncio.wait(reads, return_when=asyncio.FIRST_COMPLETED)
            refused = [r.result() for r in reads if r.done()]
            async with grpc.aio.insecure_channel(f"127.0.0.1:{frontend.grpc_port}") as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                grpc_live = (await stub.ServerLive(pb.ServerLiveRequest(), timeout=BOUND_S)).live
            for _, writer in sockets:
                writer.close()
            await asyncio.gather(*reads)
            async with asyncio.timeout(BOUND_S):  # the held ones went: served again
                while (status := await live(port)) != 200:
                    await asyncio.sleep(0.01)
            return refused, grpc_live, status

    refused, grpc_live, status = asyncio.run(main())
    assert len(refused) == opened - cap
    assert all(r.startswith(b"HTTP/1.1 503 ") for r in refused)
    assert all(r.endswith(b'{"error": "over 20 open connections"}') for r in refused)
    assert grpc_live and status == 200


def test_connections_that_send_nothing_are_closed_after_the_idle_timeout(
    rest_bundles: Bundles,
) -> None:
    config = http_config(lost_model(rest_bundles), http_idle_timeout_s=0.1)

    async def main() -> list[bytes]:
        async with started(config) as frontend:
            assert frontend.http_port is not None
            sockets = [await connect(frontend.http_port) for _ in range(10)]
            got = await asyncio.gather(*(answer(reader) for reader, _ in sockets))
            for _, writer in sockets:
                writer.close()
            return got

    assert asyncio.run(main()) == [b""] * 10


async def trickle(writer: asyncio.StreamWriter, head: bytes, then: bytes) -> None:
    """Send ``head``, then ``then`` a byte at a time, until the server closes."""
    writer.write(head)
    with contextlib.suppress(ConnectionError):
        for byte in then:
            await asyncio.sleep(0.02)
            writer.write(bytes([byte]))
            await writer.drain()


@pytest.mark.parametrize(
    ("head", "then"),
    [
        (REQUEST_HEAD, b"X-Slow: " + b"a" * 5_000),
        (REQUEST_HEAD + b"Content-Length: 5000\r\n\r\n", b"[" * 5_000),
    ],
    ids=["headers", "body"],
)
def test_a_request_trickled_past_the_read_timeout_is_408_and_closed(
    rest_containers: Containers,
    rest_bundles: Bundles,
    caplog: pytest.LogCaptureFixture,
    head: bytes,
    then: bytes,
) -> None:
    """To a ready model: the body is read (a model not ready is refused before)."""
    config = http_config(slow_model(rest_containers, rest_bundles), http_read_timeout_s=0.2)

    async def main() -> bytes:
        async with started(config) as frontend:
            await frontend.wait_ready(BOUND_S)
            assert frontend.http_port is not None
            reader, writer = await connect(frontend.http_port)
            sending = asyncio.ensure_future(trickle(writer, head, then))
            got = await answer(reader)
            sending.cancel()
            writer.close()
            return got

    with caplog.at_level(logging.DEBUG):
        got = asyncio.run(main())
    assert got.startswith(b"HTTP/1.1 408 ")
    assert b"request not received whole within 0.2 s" in got
    # what the front door logged (not the gRPC poller of an earlier test's closed loop,
    # which may report "Event loop is closed" through asyncio whenever it wakes)
    ours = [r for r in caplog.records if r.name.startswith(("frontend", "uvicorn"))]
    assert not [r for r in ours if r.levelno >= logging.WARNING or r.exc_info]


def test_requests_past_the_ports_limit_in_progress_are_503_before_routing(
    rest_containers: Containers, rest_bundles: Bundles
) -> None:
    """``http_max_requests``: with 2 in progress (the slow instance holds them), 3 more
    are answered 503 with Retry-After at once, on connections that stay usable."""
    config = http_config(slow_model(rest_containers, rest_bundles), http_max_requests=2)
    x = inputs(1, seed=5)

    async def main() -> list[tuple[int, str, Any]]:
        async with started(config) as frontend:
            await frontend.wait_ready(BOUND_S)
            url = f"http://127.0.0.1:{frontend.http_port}/v2/models/slow/infer"
            async with aiohttp.ClientSession() as session:

                async def post() -> tuple[int, str, Any]:
                    async with session.post(url, json=v2_json(x)) as r:
                        body = await r.json(content_type=None)
                        return r.status, r.headers.get("Retry-After", ""), body

                held = [asyncio.ensure_future(post()) for _ in range(2)]
                await until(lambda: len(frontend.calls) == 2)
                refused = await asyncio.gather(*(post() for _ in range(3)))
                return [*refused, *await asyncio.gather(*held)]

    replies = asyncio.run(main())
    busy = {"error": "the frontend is at its limit of requests in progress"}
    assert replies[:3] == [(503, "1", busy)] * 3
    assert [status for status, _, _ in replies[3:]] == [200, 200]


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer off a raw connection: status, headers, body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
    if headers.get("transfer-encoding") == "chunked":  # uvicorn's own answers
        body = await reader.readuntil(b"0\r\n\r\n")
    else:
        body = await reader.readexactly(int(headers["content-length"]))
    return int(lines[0].split()[1]), headers, body


def test_a_request_past_the_limit_is_answered_before_its_body_and_the_body_skipped(
    rest_containers: Containers, rest_bundles: Bundles
) -> None:
    """The 503 comes as soon as the headers are in (no task is made for it); the body
    that follows is read and dropped, and the connection serves its next request;
    ``Connection: close`` gets the 503 and the close."""
    config = http_config(slow_model(rest_containers, rest_bundles), http_max_requests=1)
    x = inputs(1, seed=6)
    body = json.dumps(v2_json(x)).encode()
    head = REQUEST_HEAD + b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)

    async def main() -> list[Any]:
        async with started(config) as frontend:
            await frontend.wait_ready(BOUND_S)
            url = f"http://127.0.0.1:{frontend.http_port}/v2/models/slow/infer"
            async with aiohttp.ClientSession() as session:
                held = asyncio.ensure_future(session.post(url, json=v2_json(x)))
                await until(lambda: len(frontend.calls) == 1)
                reader, writer = await asyncio.open_connection("127.0.0.1", frontend.http_port)
                writer.write(head + b"\r\n")  # the headers only
                early = await asyncio.wait_for(read_answer(reader), BOUND_S)
                writer.write(body + head + b"\r\n" + body)  # its body, then a second request
                second = await asyncio.wait_for(read_answer(reader), BOUND_S)
                writer.write(head + b"Connection: close\r\n\r\n" + body)
                closing = await asyncio.wait_for(read_answer(reader), BOUND_S)
                rest = await asyncio.wait_for(reader.read(), BOUND_S)
                writer.close()
                answer = await held
                return [early, second, closing, rest, answer.status]

    early, second, closing, rest, held = asyncio.run(main())
    busy = json.dumps({"error": "the frontend is at its limit of requests in progress"})
    for status, headers, text in (early, second, closing):
        assert (status, headers["retry-after"], text.decode()) == (503, "1", busy)
    assert early[1]["connection"] == second[1]["connection"] == "keep-alive"
    assert closing[1]["connection"] == "close" and rest == b""  # then closed
    assert held == 200


def test_a_pipelined_request_past_the_limit_is_answered_after_the_one_before_it(
    rest_containers: Containers, rest_bundles: Bundles
) -> None:
    """Behind a request of its own connection still in progress, the refusal waits its
    turn: HTTP/1.1 answers come in request order."""
    config = http_config(slow_model(rest_containers, rest_bundles), http_max_requests=1)
    body = json.dumps(v2_json(inputs(1, seed=7))).encode()
    one = REQUEST_HEAD + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)

    async def main() -> list[int]:
        async with started(config) as frontend:
            await frontend.wait_ready(BOUND_S)
            reader, writer = await asyncio.open_connection("127.0.0.1", frontend.http_port)
            writer.write(one + body + one + body)  # both at once: the second is pipelined
            statuses = [(await asyncio.wait_for(read_answer(reader), BOUND_S))[0] for _ in "ab"]
            writer.close()
            return statuses

    assert asyncio.run(main()) == [200, 503]


# ---------------------------------------------------------------- shutdown


def slow_model(c: Containers, b: Bundles) -> ModelConfig:
    """One instance that answers after ``SLOW_MS`` (1 s): calls are in flight a while."""
    return ModelConfig("slow", b.base, (address("data-0", c["slow"]),), mode=Mode.NONE)


async def both_doors(frontend: Frontend, bundles: Bundles, grace: float) -> tuple[Any, Any]:
    """One HTTP and one gRPC inference in flight, then ``frontend.stop(grace)``:
    (HTTP status and body, gRPC status code or answer)."""
    x = inputs(1, seed=3)
    url = f"http://127.0.0.1:{frontend.http_port}/v2/models/slow/infer"

    async def http() -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session, session.post(url, json=v2_json(x)) as r:
            return r.status, await r.json(content_type=None)

    async def grpc_call() -> Any:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{frontend.grpc_port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            try:
                reply = await stub.ModelInfer(request("slow", x, bundles.input_name))
            except grpc.aio.AioRpcError as exc:
                return exc.code(), exc.details()
            return grpc.StatusCode.OK, reply.parameters["parm_source"].string_param

    calls = asyncio.ensure_future(asyncio.gather(http(), grpc_call()))
    await until(lambda: len(frontend.calls) == 2)
    await frontend.stop(grace)
    async with asyncio.timeout(BOUND_S):
        http_answer, grpc_answer = await calls
    return http_answer, grpc_answer


def run_stopped(containers: Containers, bundles: Bundles, grace: float) -> tuple[Any, Any]:
    config = http_config(slow_model(containers, bundles))

    async def main() -> tuple[Any, Any]:
        frontend = Frontend(config)
        await frontend.start()
        try:
            await frontend.wait_ready(BOUND_S)
            return await both_doors(frontend, bundles, grace)
        finally:
            await frontend.stop(0)  # a second stop: nothing left to do

    return asyncio.run(main())


def test_calls_still_running_at_the_end_of_the_grace_are_unavailable_and_503(
    rest_containers: Containers, rest_bundles: Bundles
) -> None:
    http_answer, grpc_answer = run_stopped(rest_containers, rest_bundles, grace=0.2)
    assert http_answer == (503, {"error": SHUTTING_DOWN})
    assert grpc_answer == (grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)


def test_calls_that_finish_within_the_grace_are_answered(
    rest_containers: Containers, rest_bundles: Bundles
) -> None:
    (status, body), grpc_answer = run_stopped(rest_containers, rest_bundles, grace=BOUND_S)
    assert status == 200 and np.asarray(body["outputs"][0]["data"]).shape == (10,)
    assert grpc_answer == (grpc.StatusCode.OK, "original")
