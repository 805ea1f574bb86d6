"""The gRPC front door against hostile clients (frontend/server.py; issue 10).

Finding 2: a ``ModelStreamInfer`` client that writes without reading grew the frontend's
memory without bound; the servicer now reads the next request only while fewer than
``stream_max_inflight`` are unanswered.  Driven here with a fake entry point whose
queries wait until the test ends them, so what is in flight is counted exactly.
Finding 8: bytes that are no ``ModelInferRequest`` are INVALID_ARGUMENT, not UNKNOWN.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from frontend.config import FrontendConfig
from frontend.model import QueryError
from frontend.server import Frontend, InferenceServicer, grpc_server
from proto import inference_pb2 as pb

WINDOW, SENT = 4, 100
BOUND_S = 30.0
INFER = "/inference.GRPCInferenceService/ModelInfer"
STREAM = "/inference.GRPCInferenceService/ModelStreamInfer"
#: the excess calls' own deadline: they wait this long in the client (never the server)
EXCESS_DEADLINE_S = 2.0
GARBAGE = b"\xff\xff\xff\xff garbage"


class HeldQueries:
    """A fake `frontend.api.Api`: every query waits for the test to refuse it."""

    def __init__(self) -> None:
        self.config = FrontendConfig(models=(), stream_max_inflight=WINDOW)
        self.waiting: list[asyncio.Future[None]] = []

    def service(self, name: str) -> Any:
        return name

    async def infer(self, *args: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        try:
            await future
        finally:
            self.waiting.remove(future)


class Client:
    """A stream's client side: what it has written, and what the server wrote back."""

    def __init__(self) -> None:
        self.pulled = 0
        self.written: list[pb.ModelStreamInferResponse] = []

    async def requests(self) -> AsyncIterator[pb.ModelInferRequest]:
        for i in range(SENT):
            self.pulled += 1
            request = pb.ModelInferRequest(model_name="m", id=f"q{i}")
            request.inputs.add(name="input", datatype="FP32", shape=[1, 1])
            request.raw_input_contents.append(b"\0" * 4)
            yield request

    def time_remaining(self) -> None:
        return None

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    async def write(self, reply: pb.ModelStreamInferResponse) -> None:
        self.written.append(reply)


async def settled() -> None:
    """Let every ready task run (loop iterations, not wall time)."""
    for _ in range(50):
        await asyncio.sleep(0)


def test_a_stream_holds_at_most_its_window_of_requests_in_flight() -> None:
    async def main() -> tuple[int, int, int, int, int]:
        api, client = HeldQueries(), Client()
        servicer = InferenceServicer(api)  # type: ignore[arg-type]
        stream = asyncio.ensure_future(servicer.ModelStreamInfer(client.requests(), client))
        await settled()
        first = len(api.waiting), client.pulled
        api.waiting[0].set_exception(QueryError("UNAVAILABLE", "let go"))  # one answered
        await settled()
        second = len(api.waiting), client.pulled
        stream.cancel()  # the client goes: its queries are dropped
        await asyncio.gather(stream, return_exceptions=True)
        return *first, *second, len(api.waiting)

    held, pulled, held_after, pulled_after, left = asyncio.run(main())
    assert (held, pulled) == (WINDOW, WINDOW)
    assert (held_after, pulled_after) == (WINDOW, WINDOW + 1)
    assert left == 0


@pytest.mark.parametrize("method", [INFER, STREAM])
def test_bytes_that_are_no_request_are_invalid_argument(method: str) -> None:
    async def main() -> tuple[Any, str]:
        frontend = Frontend(FrontendConfig(models=(), grpc_port=0))
        await frontend.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{frontend.grpc_port}") as channel:
                if method == INFER:
                    call = channel.unary_unary(method)
                    try:
                        await call(GARBAGE, timeout=BOUND_S)
                    except grpc.aio.AioRpcError as exc:
                        return exc.code(), exc.details() or ""
                    return grpc.StatusCode.OK, ""
                stream = channel.stream_stream(method)
                replies = [r async for r in stream(iter([GARBAGE]), timeout=BOUND_S)]
                reply = pb.ModelStreamInferResponse.FromString(replies[0])
                code, message = reply.error_message.split(": ", 1)
                return getattr(grpc.StatusCode, code), message
        finally:
            await frontend.stop(0.5)

    code, message = asyncio.run(main())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message.startswith("the request is not a ModelInferRequest message: ")


class PeakHeld(HeldQueries):
    """Held queries that record the most held at once, and wake the test on arrival."""

    def __init__(self) -> None:
        super().__init__()
        self.peak = 0
        self.arrived = asyncio.Event()

    async def infer(self, *args: Any) -> Any:
        self.peak = max(self.peak, len(self.waiting) + 1)
        self.arrived.set()
        await super().infer(*args)


@contextlib.asynccontextmanager
async def holding(
    api: PeakHeld, config: FrontendConfig, limit: int
) -> AsyncIterator[tuple[Any, pb.ModelInferRequest, list[asyncio.Future[Any]]]]:
    """A gRPC server of ``config`` over ``api`` with ``limit`` calls made and held in the
    frontend: (the call, its request, the held calls)."""
    server = grpc_server(config)
    InferenceServicer(api).register(server)  # type: ignore[arg-type]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            infer = channel.unary_unary(
                INFER, request_serializer=pb.ModelInferRequest.SerializeToString
            )
            request = pb.ModelInferRequest(model_name="m")
            request.inputs.add(name="input", datatype="FP32", shape=[1, 1])
            request.raw_input_contents.append(b"\0" * 4)
            held = [asyncio.ensure_future(infer(request, timeout=BOUND_S)) for _ in range(limit)]
            async with asyncio.timeout(BOUND_S):
                while len(api.waiting) < limit:
                    await api.arrived.wait()
                    api.arrived.clear()
            yield infer, request, held
    finally:
        await server.stop(0)


def test_calls_past_a_connections_stream_limit_never_reach_the_frontend() -> None:
    """``grpc_max_streams``: gRPC itself holds the excess back (the client queues it, or
    the server refuses it with REFUSED_STREAM, UNAVAILABLE), so an overloaded frontend
    spends nothing on calls it cannot serve in time."""
    limit, calls = 2, 6

    async def main() -> tuple[int, list[grpc.StatusCode]]:
        api = PeakHeld()
        config = FrontendConfig(models=(), grpc_max_streams=limit, grpc_max_calls=0)
        async with holding(api, config, limit) as (infer, request, held):
            # the excess, while they are held: it never reaches the frontend; it is
            # refused, or queued in the client until its own deadline ends it
            excess = [
                asyncio.ensure_future(infer(request, timeout=EXCESS_DEADLINE_S))
                for _ in range(calls - limit)
            ]
            await asyncio.wait(excess, timeout=BOUND_S)
            for waiting in api.waiting:  # let go: the held calls get UNAVAILABLE
                if not waiting.done():
                    waiting.set_exception(QueryError("UNAVAILABLE", "let go"))
            await asyncio.wait(held, timeout=BOUND_S)
            codes = []
            for p in [*held, *excess]:
                exc = p.exception()
                assert isinstance(exc, grpc.aio.AioRpcError)
                codes.append(exc.code())
        return api.peak, codes

    peak, codes = asyncio.run(main())
    assert peak == limit  # the most the frontend ever held at once
    assert codes[:limit] == [grpc.StatusCode.UNAVAILABLE] * limit  # the held ones, let go
    ended = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
    assert set(codes[limit:]) <= ended  # refused by gRPC, or expired in the client


def test_calls_past_the_process_call_limit_are_refused_at_once_unread() -> None:
    """``grpc_max_calls``: with room for more streams than calls, the excess is answered
    RESOURCE_EXHAUSTED by gRPC's server loop while the first calls are held: at once,
    not queued in the client, and never seen by the frontend."""
    limit, calls = 2, 6

    async def main() -> tuple[int, list[grpc.StatusCode], list[grpc.StatusCode]]:
        api = PeakHeld()
        config = FrontendConfig(models=(), grpc_max_streams=16, grpc_max_calls=limit)
        async with holding(api, config, limit) as (infer, request, held):
            # while both are held, every further call is refused, none left waiting
            excess = []
            for _ in range(calls - limit):
                try:
                    await infer(request, timeout=BOUND_S)
                except grpc.aio.AioRpcError as exc:
                    excess.append(exc.code())
            for waiting in api.waiting:
                waiting.set_exception(QueryError("UNAVAILABLE", "let go"))
            codes = []
            for call in held:
                try:
                    await call
                except grpc.aio.AioRpcError as exc:
                    codes.append(exc.code())
        return api.peak, excess, codes

    peak, excess, held = asyncio.run(main())
    assert peak == limit
    assert excess == [grpc.StatusCode.RESOURCE_EXHAUSTED] * (calls - limit)
    assert held == [grpc.StatusCode.UNAVAILABLE] * limit
