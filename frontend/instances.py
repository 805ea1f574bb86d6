"""Long-lived connections from the frontend to model instances.

Each instance gets one ``InstanceLink``, which keeps one data connection open and
reports to its listener when the instance comes up, goes down, and answers.

The data path is the v2 ``ModelStreamInfer`` message pair.  With a parm model
container it travels framed over plain TCP (``proto.framing``): on these machines a
gRPC stream message costs about 0.5 ms against 0.15 ms for a TCP round trip.  Any
other v2 server (Triton, MLServer, KServe) is reached over its gRPC
``ModelStreamInfer`` stream, so it can act as an instance too.

Liveness: a link is *up* from the moment its data connection opens after a passing
health check until that connection breaks or a call fails.  To come back it must
pass the health check again: ``grpc.health.v1`` on the model's name, or, for servers
without it, the v2 ``ModelReady`` call.  Reconnection backs off exponentially with
jitter (``common.backoff``), timed by the service's clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol, cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.backoff import Backoff
from common.clock import Clock, sleep
from frontend.config import InstanceAddress
from frontend.outgoing import Outgoing
from proto import inference_pb2 as pb
from proto import inference_pb2_grpc as pb_grpc
from proto.framing import FrameDecoder, FrameError

log = logging.getLogger(__name__)

#: gRPC reconnects quickly to a restarted instance (its default waits up to 120 s).
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
)
HEALTH_TIMEOUT_S = 2.0


class LinkListener(Protocol):
    def link_up(self, name: str) -> None: ...

    def link_down(self, name: str, reason: str) -> None: ...

    def link_result(self, name: str, task_id: int, response: pb.ModelStreamInferResponse) -> None:
        """An answer (or an error in ``response.error_message``) for ``task_id``."""
        ...


class _Transport(Protocol):
    def send(self, request: Outgoing) -> None: ...

    def close(self, reason: str) -> None: ...

    async def finished(self) -> str:
        """Wait until the connection ends; the reason why."""
        ...


class InstanceLink:
    """One instance: health checks, one data connection, request/answer matching."""

    def __init__(
        self,
        address: InstanceAddress,
        model_name: str,
        listener: LinkListener,
        clock: Clock,
        *,
        backoff: tuple[float, float] = (0.05, 1.0),
    ) -> None:
        self.address = address
        self.name = address.name
        self.model_name = model_name
        self._listener = listener
        self._clock = clock
        self._backoff = Backoff(*backoff)
        # gRPC aio objects belong to the loop they are made in: made in run().
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None
        self._health: Any = None
        self._use_health_service = True
        self._transport: _Transport | None = None
        # Task ids sent and not yet answered, in send order.  Answers are matched by
        # their echoed id; an error that carries no id belongs to the oldest request
        # (a parm container answers each connection in order).
        self._inflight: dict[int, None] = {}

    @property
    def up(self) -> bool:
        return self._transport is not None

    def send(self, task_id: int, request: Outgoing) -> None:
        """Send ``request`` (of task ``task_id``); the link must be up."""
        if self._transport is None:
            raise RuntimeError(f"instance {self.name} is down; the coordinator sent to it anyway")
        self._inflight[task_id] = None
        self._transport.send(request)

    def fail(self, reason: str) -> None:
        """Take the link down (a call failed); it comes back after a health check."""
        if self._transport is not None:
            self._transport.close(reason)

    async def infer(self, request: pb.ModelInferRequest, timeout: float) -> pb.ModelInferResponse:
        """A single unary call, outside the data path (used once for F(0))."""
        response: pb.ModelInferResponse = await self._stub.ModelInfer(request, timeout=timeout)
        return response

    async def run(self) -> None:
        """Keep the instance connected until cancelled."""
        self._channel = grpc.aio.insecure_channel(self.address.grpc, options=CHANNEL_OPTIONS)
        self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        try:
            while True:
                await self._until_healthy()
                try:
                    transport = await self._connect()
                except (OSError, grpc.aio.AioRpcError) as exc:
                    log.info("instance %s: cannot open the data connection: %s", self.name, exc)
                    await sleep(self._clock, self._backoff.next())
                    continue
                self._backoff.reset()
                self._transport = transport
                self._listener.link_up(self.name)
                try:
                    reason = await transport.finished()
                finally:
                    self._transport = None
                    self._inflight.clear()
                    transport.close("link closed")
                self._listener.link_down(self.name, reason)
        finally:
            await self._channel.close()

    # -- health -----------------------------------------------------------------------

    async def _until_healthy(self) -> None:
        while not await self._healthy():
            await sleep(self._clock, self._backoff.next())

    async def _healthy(self) -> bool:
        try:
            if self._use_health_service:
                check = health_pb2.HealthCheckRequest(service=self.model_name)
                reply = await self._health.Check(
                    check, timeout=HEALTH_TIMEOUT_S, wait_for_ready=True
                )
                return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
            ready = await self._stub.ModelReady(
                pb.ModelReadyRequest(name=self.model_name),
                timeout=HEALTH_TIMEOUT_S,
                wait_for_ready=True,
            )
            return bool(ready.ready)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED and self._use_health_service:
                self._use_health_service = False  # a v2 server without grpc.health.v1
                return await self._healthy()
            return False

    # -- data path ---------------------------------------------------------------------

    async def _connect(self) -> _Transport:
        if self.address.stream is not None:
            host, port = _split(self.address.stream)
            loop = asyncio.get_running_loop()
            _, protocol = await loop.create_connection(
                lambda: _FramedProtocol(self._on_response, loop), host, port
            )
            return protocol
        return _GrpcStream(self._stub, self._on_response)

    def _on_response(self, response: pb.ModelStreamInferResponse) -> None:
        answer_id = response.infer_response.id
        if answer_id:
            try:
                task_id = int(answer_id)
            except ValueError:
                self.fail(f"answer with an id we never sent: {answer_id!r}")
                return
            if task_id not in self._inflight:
                return  # not ours (any more): the link was reset since it was sent
            del self._inflight[task_id]
        elif response.error_message and self._inflight:
            task_id = next(iter(self._inflight))
            del self._inflight[task_id]
        else:
            self.fail("answer without an id")
            return
        self._listener.link_result(self.name, task_id, response)


class _FramedProtocol(asyncio.Protocol):
    """The framed-TCP data connection to a parm model container."""

    def __init__(self, on_response: _ResponseSink, loop: asyncio.AbstractEventLoop) -> None:
        self._on_response = on_response
        self._decoder = FrameDecoder()
        self._transport: asyncio.Transport | None = None
        self._done: asyncio.Future[str] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not registered subclasses of asyncio.Transport.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._decoder.feed(data)
        except FrameError as exc:
            self.close(f"corrupt stream from the instance: {exc}")
            return
        for payload in frames:
            self._on_response(pb.ModelStreamInferResponse.FromString(payload))

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(f"connection lost: {exc}" if exc else "connection closed by the instance")

    def send(self, request: Outgoing) -> None:
        # One write of the two parts (a writev): the input is not copied into a frame.
        assert self._transport is not None
        self._transport.writelines(request.frame())

    def close(self, reason: str) -> None:
        self._finish(reason)
        if self._transport is not None:
            self._transport.abort()

    async def finished(self) -> str:
        return await self._done

    def _finish(self, reason: str) -> None:
        if not self._done.done():
            self._done.set_result(reason)


class _GrpcStream:
    """A ``ModelStreamInfer`` stream to any v2 gRPC server."""

    def __init__(self, stub: pb_grpc.GRPCInferenceServiceStub, on_response: _ResponseSink) -> None:
        self._outbox: asyncio.Queue[pb.ModelInferRequest | None] = asyncio.Queue()
        self._call = stub.ModelStreamInfer(self._requests())
        self._on_response = on_response
        self._done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _requests(self) -> AsyncIterator[pb.ModelInferRequest]:
        while (request := await self._outbox.get()) is not None:
            yield request

    async def _read(self) -> None:
        try:
            async for response in self._call:
                self._on_response(response)
            self._finish("stream ended by the instance")
        except grpc.aio.AioRpcError as exc:
            self._finish(f"stream failed: {exc.code().name}: {exc.details()}")

    def send(self, request: Outgoing) -> None:
        self._outbox.put_nowait(request.message())

    def close(self, reason: str) -> None:
        self._finish(reason)
        self._outbox.put_nowait(None)
        self._call.cancel()
        self._reader.cancel()

    async def finished(self) -> str:
        return await self._done

    def _finish(self, reason: str) -> None:
        if not self._done.done():
            self._done.set_result(reason)


class _ResponseSink(Protocol):
    def __call__(self, response: pb.ModelStreamInferResponse) -> None: ...


def _split(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)
