"""The frontend process: the v2 gRPC API for clients, over one ModelService per model.

Clients speak the KServe v2 / Open Inference Protocol (Triton's ``tritonclient`` and
``perf_analyzer`` work as they are).  Each response carries the parameter
``parm_source`` (``original``, ``reconstructed`` or ``default``); a request may set
``timeout_ms`` and ``parm_require_original``.  The servicer is a thin adapter: it
turns a request into a `frontend.api.Query`, runs it through the one entry point
(`frontend.api.Api`) and packages the answer; the one exception boundary
(`frontend.api.refusal`) gives the gRPC status.  `Frontend` owns the model services,
this server and the HTTP ones (`frontend.http`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError

from common.clock import LoopClock
from frontend.api import DEADLINE_MARGIN_S, VERSION, Api, Query, refusal
from frontend.config import FrontendConfig
from frontend.connections import (
    SHUTTING_DOWN,
    Calls,
    ConnectionLimits,
    connection_cap,
    raise_descriptor_limit,
    shut_out,
)
from frontend.instances import InstanceLink
from frontend.metrics import Metrics
from frontend.model import ModelService, QueryError, Result
from frontend.requests import SOURCE, SOURCES, expect_one_input, invalid, overall_source
from proto import inference_pb2 as pb
from proto import servicer
from proto.tensors import get_parameters

if TYPE_CHECKING:
    from frontend.http import HttpServer

log = logging.getLogger(__name__)

__all__ = ["DEADLINE_MARGIN_S", "VERSION", "Frontend", "InferenceServicer"]

#: of the shutdown grace period, the share calls in flight get to finish; the rest is
#: for the UNAVAILABLE / 503 answers of those still running to go out before the
#: servers close (gRPC cancels what is left when its grace ends)
DRAIN_SHARE = 0.8


class Frontend:
    """Owns the model services and the gRPC server; start, wait until ready, stop."""

    def __init__(self, config: FrontendConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        clock = LoopClock()
        self.services = {
            m.name: ModelService(m, clock, InstanceLink, self.metrics) for m in config.models
        }
        self.metrics.watch(self.services.values)
        self.api = Api(self.services, config)
        self.calls = Calls()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: grpc.aio.Server | None = None
        self._http: list[HttpServer] = []
        self._crashed: asyncio.Future[None] | None = None  # made in start(), in the loop
        self.grpc_port = config.grpc_port
        self.http_port = config.http_port
        self.metrics_port = config.metrics_port

    async def start(self, listen: bool = True) -> None:
        """Start the model services and, with ``listen``, the client ports (`listen`)."""
        self._crashed = asyncio.get_running_loop().create_future()
        for service in self.services.values():
            task = asyncio.get_running_loop().create_task(
                service.run(), name=f"model-{service.name}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._service_ended)
        self._descriptors = raise_descriptor_limit()
        if listen:
            await self.listen()

    async def listen(self) -> None:
        """Open the gRPC port, then the HTTP ones; a worker that restarts opens them
        only once its models are ready (``deploy.workers``)."""
        server = grpc_server(self.config)
        InferenceServicer(self.api, self.calls).register(server)
        self.grpc_port = server.add_insecure_port(f"{self.config.host}:{self.config.grpc_port}")
        if self.grpc_port == 0:
            raise OSError(f"cannot listen on {self.config.host}:{self.config.grpc_port}")
        await server.start()
        self._server = server
        log.info("frontend: v2 gRPC on %s:%d", self.config.host, self.grpc_port)
        await self._start_http()

    async def _start_http(self) -> None:
        """The HTTP API and /metrics, where configured (FastAPI is imported only then)."""
        from frontend.http import HttpServer, api_app, metrics_app

        config = self.config
        host, http_port, metrics_port = config.host, self.http_port, self.metrics_port
        ports = (http_port is not None) + (metrics_port is not None)
        cap = connection_cap(config.http_max_connections, self._descriptors, ports)
        limits = ConnectionLimits(
            cap, config.http_idle_timeout_s, config.http_read_timeout_s, config.http_max_requests
        )
        if http_port is not None:
            api = api_app(self.api, self.calls)
            name = "v2 REST + Clipper"
            self._http.append(HttpServer(api, host, http_port, name, limits, config.reuse_port))
            self.http_port = await self._http[-1].start()
        if metrics_port is not None:
            app = metrics_app(self.metrics)
            self._http.append(HttpServer(app, host, metrics_port, "Prometheus /metrics", limits))
            self.metrics_port = await self._http[-1].start()

    @property
    def ready(self) -> bool:
        return self.api.ready

    async def wait_ready(self, timeout: float, every_instance: bool = False) -> None:
        """Return once every model can answer (with ``every_instance``: all instances up).

        TimeoutError names the models that cannot; a model service that crashed while
        starting raises RuntimeError at once instead of leaving the caller waiting.
        """
        assert self._crashed is not None, "start() first"
        ready: asyncio.Future[Any] = asyncio.ensure_future(
            asyncio.gather(*(s.wait_ready(every_instance) for s in self.services.values()))
        )
        waits: list[asyncio.Future[Any]] = [ready, self._crashed]
        try:
            done, _ = await asyncio.wait(
                waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:  # its caller gave up: so do the waits it started
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready
            raise
        if ready not in done:
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready
        if self._crashed in done:
            raise RuntimeError(
                "a model service crashed while starting"
            ) from self._crashed.exception()
        if ready not in done:
            waiting = [
                s.name
                for s in self.services.values()
                if not s.ready or (every_instance and not s.all_up)
            ]
            raise TimeoutError(f"models not ready after {timeout:.0f} s: {waiting}")
        # Everything allocated while starting (imported libraries, torch when the demo was
        # trained in this process, bundles) lives as long as the process: keep it out of
        # the collector's way.  Full collections of that heap stalled every query for
        # 100-500 ms in the latency benchmarks.
        gc.collect()
        gc.freeze()

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let calls in flight finish for most of ``grace`` seconds
        (default: the ``shutdown_grace_s`` setting), answer the rest UNAVAILABLE / 503,
        then stop the model services."""
        grace = self.config.shutdown_grace_s if grace is None else grace
        stopping = [server.stop(grace) for server in self._http]
        if self._server is not None:
            stopping.append(self._server.stop(grace))
        stopping.append(self.calls.drain(grace * DRAIN_SHARE))
        await asyncio.gather(*stopping)
        for task in list(self._tasks):
            task.cancel("frontend stopping")
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _service_ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("model service %s crashed", task.get_name(), exc_info=error)
            if self._crashed is not None and not self._crashed.done():
                self._crashed.set_exception(error)
                self._crashed.exception()  # retrieved: it is logged above


def grpc_server(config: FrontendConfig) -> grpc.aio.Server:
    """The gRPC server: `grpc_options`, and at most ``grpc_max_calls`` calls at once."""
    return grpc.aio.server(
        options=grpc_options(config), maximum_concurrent_rpcs=config.grpc_max_calls or None
    )


def grpc_options(config: FrontendConfig) -> list[tuple[str, int]]:
    """The gRPC server's options: message sizes, and the connection limits that keep
    one client from holding the port (the configured ``grpc_options`` come last, so
    they win)."""
    limit = config.max_request_bytes + (1 << 20)
    return [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.so_reuseport", int(config.reuse_port)),
        ("grpc.max_allowed_incoming_connections", config.grpc_max_connections),
        ("grpc.max_concurrent_streams", config.grpc_max_streams),
        ("grpc.max_connection_idle_ms", round(config.grpc_idle_timeout_s * 1000)),
        ("grpc.server_handshake_timeout_ms", round(config.grpc_handshake_timeout_s * 1000)),
        *config.grpc_options,
    ]


@dataclass(frozen=True)
class BadMessage:
    """Bytes that are no ``ModelInferRequest``: handed to the servicer as they are, to be
    answered INVALID_ARGUMENT (a deserializer that raises makes gRPC answer UNKNOWN)."""

    error: str
    id: str = ""
    model_name: str = ""


def parse_request(data: bytes) -> pb.ModelInferRequest | BadMessage:
    """The request in ``data``, or what is wrong with it."""
    try:
        return pb.ModelInferRequest.FromString(data)
    except DecodeError as exc:
        return BadMessage(str(exc))


class _LenientInference:
    """A gRPC server seen through by `InferenceServicer.register`: the inference
    methods' requests are parsed by `parse_request`."""

    def __init__(self, server: Any) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # the generated code registers the same table below, which this rebuilds

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        handlers = dict(handlers)
        for method in ("ModelInfer", "ModelStreamInfer"):
            handlers[method] = handlers[method]._replace(request_deserializer=parse_request)
        generic = grpc.method_handlers_generic_handler(service, handlers)
        self._server.add_generic_rpc_handlers((generic,))
        self._server.add_registered_method_handlers(service, handlers)


def packaged(
    request: pb.ModelInferRequest, service: ModelService, results: list[Result]
) -> pb.ModelInferResponse:
    """The v2 answer to ``request``: the output rows and where each came from."""
    response = pb.ModelInferResponse(model_name=service.name, model_version="1", id=request.id)
    spec = service.output
    response.outputs.add(name=spec.name, datatype=spec.datatype, shape=[len(results), *spec.shape])
    response.raw_output_contents.append(b"".join(r.output.tobytes() for r in results))
    sources = [r.source.value for r in results]
    response.parameters[SOURCE].string_param = overall_source(sources)
    if len(sources) > 1:
        response.parameters[SOURCES].string_param = ",".join(sources)
    return response


class InferenceServicer(servicer.InferenceServicer):
    """GRPCInferenceService over the frontend's entry point: health and metadata are
    the shared `proto.servicer.InferenceServicer`; inference goes through `Api`."""

    def __init__(self, api: Api, calls: Calls | None = None) -> None:
        super().__init__("parm-frontend", VERSION, ["parm"])
        self._api = api
        self._calls = Calls() if calls is None else calls

    def register(self, server: Any) -> None:
        """Serve on ``server``; undecodable inference requests are INVALID_ARGUMENT."""
        super().register(_LenientInference(server))

    @property
    def ready(self) -> bool:
        return self._api.ready

    def model(self, name: str, version: str) -> servicer.ModelInfo:
        service = self._api.services.get(name)
        if service is None:
            raise servicer.ModelNotFound(f"unknown model {name!r}")
        return servicer.ModelInfo(
            service.name, ["1"], "parm", [service.input], [service.output], service.ready
        )

    async def answer(
        self,
        request: pb.ModelInferRequest | BadMessage,
        time_left: float | None,
        client: str | None = None,
    ) -> pb.ModelInferResponse:
        """Validate, run and package one inference request; raises QueryError."""
        if isinstance(request, BadMessage):
            raise invalid(f"the request is not a ModelInferRequest message: {request.error}")
        service = self._api.service(request.model_name)
        expect_one_input(len(request.inputs))
        tensor = request.inputs[0]
        if len(request.raw_input_contents) != 1:
            raise QueryError(
                "INVALID_ARGUMENT",
                f"input {tensor.name!r}: expected its data in raw_input_contents "
                f"(1 entry), got {len(request.raw_input_contents)} entries",
            )
        query = Query(
            tensor.name,
            tensor.datatype,
            tensor.shape,
            request.raw_input_contents[0],
            get_parameters(request.parameters),
            [wanted.name for wanted in request.outputs],
        )
        return packaged(request, service, await self._api.infer(service, query, time_left, client))

    async def ModelInfer(
        self, request: pb.ModelInferRequest | BadMessage, context: Any
    ) -> pb.ModelInferResponse:
        try:
            return await self._answered(request, context)
        except Exception as exc:
            error = refusal(exc)
            await context.abort(getattr(grpc.StatusCode, error.status), error.message)
            raise  # unreachable: abort raises

    async def _answered(
        self, request: pb.ModelInferRequest | BadMessage, context: Any
    ) -> pb.ModelInferResponse:
        """`answer`, held as a call in flight: one still running when the shutdown's
        grace ends raises QueryError UNAVAILABLE (not gRPC's CANCELLED)."""
        try:
            with self._calls.held():
                return await self.answer(request, context.time_remaining(), context.peer())
        except asyncio.CancelledError as exc:
            if not shut_out(exc):
                raise
            raise QueryError("UNAVAILABLE", SHUTTING_DOWN) from None

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest | BadMessage], context: Any
    ) -> None:
        """Answers each request as soon as it is ready, so they may come back out of order.

        Flow control: at most ``stream_max_inflight`` requests of the stream are in the
        frontend at once; the next is read when one has been answered (written), so a
        client that writes without reading stalls on its own stream's window.
        """
        lock = asyncio.Lock()
        window = asyncio.Semaphore(self._api.config.stream_max_inflight)

        async def one(request: pb.ModelInferRequest | BadMessage) -> None:
            try:
                reply = pb.ModelStreamInferResponse(
                    infer_response=await self._answered(request, context)
                )
            except Exception as exc:
                error = refusal(exc)
                reply = pb.ModelStreamInferResponse(
                    error_message=f"{error.status}: {error.message}",
                    infer_response=pb.ModelInferResponse(
                        id=request.id, model_name=request.model_name
                    ),
                )
            try:
                async with lock:
                    await context.write(reply)
            finally:
                window.release()

        async with asyncio.TaskGroup() as group:
            while True:
                await window.acquire()
                request = await anext(request_iterator, None)
                if request is None:
                    break
                group.create_task(one(request))
