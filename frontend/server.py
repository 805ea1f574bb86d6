"""The frontend process: the v2 gRPC API for clients, over one ModelService per model.

Clients speak the KServe v2 / Open Inference Protocol (Triton's ``tritonclient`` and
``perf_analyzer`` work as they are).  Each response carries the parameter
``parm_source`` (``original``, ``reconstructed`` or ``default``); a request may set
``timeout_ms`` and ``parm_require_original``.  One exception boundary per request
maps errors to gRPC status codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import grpc

from frontend.config import FrontendConfig
from frontend.metrics import Metrics
from frontend.model import ModelService, QueryError, Result
from frontend.requests import (
    SOURCE,
    SOURCES,
    check_outputs,
    expect_one_input,
    overall_source,
    query_options,
    split_rows,
)
from proto import inference_pb2 as pb
from proto import inference_pb2_grpc as pb_grpc
from proto.tensors import get_parameters

if TYPE_CHECKING:
    from frontend.http import HttpServer

log = logging.getLogger(__name__)

VERSION = "0.1.0"

#: Of a client's own gRPC deadline, the part kept for the answer's way back (at most this
#: many seconds, and at most a tenth of the time left): an answer sent exactly at the
#: client's deadline usually loses the race against the client's timer, so a default
#: output would never reach a client that sets a gRPC deadline.
DEADLINE_MARGIN_S = 0.01


class Frontend:
    """Owns the model services and the gRPC server; start, wait until ready, stop."""

    def __init__(self, config: FrontendConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.services = {m.name: ModelService(m, metrics=self.metrics) for m in config.models}
        self.metrics.watch(self.services.values)
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: grpc.aio.Server | None = None
        self._http: list[HttpServer] = []
        self._crashed: asyncio.Future[None] | None = None  # made in start(), in the loop
        self.grpc_port = config.grpc_port
        self.http_port = config.http_port
        self.metrics_port = config.metrics_port

    async def start(self) -> None:
        self._crashed = asyncio.get_running_loop().create_future()
        for service in self.services.values():
            task = asyncio.get_running_loop().create_task(
                service.run(), name=f"model-{service.name}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._service_ended)
        limit = self.config.max_request_bytes + (1 << 20)
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),
                *self.config.grpc_options,
            ]
        )
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(self), server)
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

        host, http_port, metrics_port = self.config.host, self.http_port, self.metrics_port
        if http_port is not None:
            self._http.append(HttpServer(api_app(self), host, http_port, "v2 REST + Clipper"))
            self.http_port = await self._http[-1].start()
        if metrics_port is not None:
            app = metrics_app(self.metrics)
            self._http.append(HttpServer(app, host, metrics_port, "Prometheus /metrics"))
            self.metrics_port = await self._http[-1].start()

    @property
    def ready(self) -> bool:
        return all(s.ready for s in self.services.values())

    async def wait_ready(self, timeout: float) -> None:
        """Return once every model can answer.

        TimeoutError names the models that cannot; a model service that crashed while
        starting raises RuntimeError at once instead of leaving the caller waiting.
        """
        assert self._crashed is not None, "start() first"
        ready: asyncio.Future[Any] = asyncio.ensure_future(
            asyncio.gather(*(s.wait_ready() for s in self.services.values()))
        )
        waits: list[asyncio.Future[Any]] = [ready, self._crashed]
        done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready
        if self._crashed in done:
            raise RuntimeError(
                "a model service crashed while starting"
            ) from self._crashed.exception()
        if ready not in done:
            waiting = [s.name for s in self.services.values() if not s.ready]
            raise TimeoutError(f"models not ready after {timeout:.0f} s: {waiting}")
        # Everything allocated while starting (imported libraries, torch when the demo was
        # trained in this process, bundles) lives as long as the process: keep it out of
        # the collector's way.  Full collections of that heap stalled every query for
        # 100-500 ms in the latency benchmarks.
        gc.collect()
        gc.freeze()

    async def stop(self, grace: float = 2.0) -> None:
        """Stop accepting, let calls in flight finish for ``grace`` seconds, then cancel."""
        stopping = [server.stop(grace) for server in self._http]
        if self._server is not None:
            stopping.append(self._server.stop(grace))
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

    async def answer(
        self, request: pb.ModelInferRequest, time_left: float | None
    ) -> pb.ModelInferResponse:
        """Validate, run and package one inference request; raises QueryError."""
        service = self.service(request.model_name)
        expect_one_input(len(request.inputs))
        tensor = request.inputs[0]
        if len(request.raw_input_contents) != 1:
            raise QueryError(
                "INVALID_ARGUMENT",
                f"input {tensor.name!r}: expected its data in raw_input_contents "
                f"(1 entry), got {len(request.raw_input_contents)} entries",
            )
        check_outputs(service.output, (wanted.name for wanted in request.outputs))
        rows = split_rows(
            service.input,
            tensor.name,
            tensor.datatype,
            tensor.shape,
            request.raw_input_contents[0],
            max_bytes=self.config.max_request_bytes,
        )
        results = await self.run(service, rows, get_parameters(request.parameters), time_left)
        response = pb.ModelInferResponse(model_name=service.name, model_version="1", id=request.id)
        spec = service.output
        response.outputs.add(name=spec.name, datatype=spec.datatype, shape=[len(rows), *spec.shape])
        response.raw_output_contents.append(b"".join(r.output.tobytes() for r in results))
        sources = [r.source.value for r in results]
        response.parameters[SOURCE].string_param = overall_source(sources)
        if len(sources) > 1:
            response.parameters[SOURCES].string_param = ",".join(sources)
        return response

    def service(self, name: str) -> ModelService:
        """The service of model ``name``; QueryError NOT_FOUND names the models served."""
        service = self.services.get(name)
        if service is None:
            known = sorted(self.services)
            raise QueryError("NOT_FOUND", f"unknown model {name!r}; serving {known}")
        return service

    async def run(
        self,
        service: ModelService,
        rows: list[bytes],
        parameters: Mapping[str, object],
        time_left: float | None,
    ) -> list[Result]:
        """Answer validated ``rows`` under the request's ``parameters``, any front door.

        ``time_left`` is the client's own deadline in seconds (a gRPC deadline, an
        HTTP header), if it set one; raises QueryError.
        """
        options = query_options(parameters)
        timeout = self._timeout(service, options.timeout_ms, time_left)
        return await service.infer(rows, timeout, require_original=options.require_original)

    def _timeout(
        self, service: ModelService, timeout_ms: float | None, time_left: float | None
    ) -> float:
        """Seconds to the query's deadline: the tightest of the client's limits, else the SLO."""
        limits = []
        if time_left is not None:
            if time_left <= 0:
                raise QueryError("DEADLINE_EXCEEDED", "the client's deadline had already passed")
            # Answer (default or DEADLINE_EXCEEDED) a little before the client's gRPC
            # deadline fires, so that the answer still reaches it; see DEADLINE_MARGIN_S.
            limits.append(time_left - min(DEADLINE_MARGIN_S, time_left / 10))
        if timeout_ms is not None:
            limits.append(timeout_ms / 1000)
        if limits:
            return min(limits)
        slo = service.config.slo_ms or self.config.max_deadline_ms
        return slo / 1000


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """GRPCInferenceService over a Frontend."""

    def __init__(self, frontend: Frontend) -> None:
        self._frontend = frontend

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Any
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Any
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._frontend.ready)

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Any
    ) -> pb.ModelReadyResponse:
        service = await self._service(request.name, context)
        return pb.ModelReadyResponse(ready=service.ready)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Any
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="parm-frontend", version=VERSION, extensions=["parm"])

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Any
    ) -> pb.ModelMetadataResponse:
        service = await self._service(request.name, context)
        meta = pb.ModelMetadataResponse(name=service.name, versions=["1"], platform="parm")
        for spec, field in ((service.input, meta.inputs), (service.output, meta.outputs)):
            field.add(name=spec.name, datatype=spec.datatype, shape=[-1, *spec.shape])
        return meta

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Any
    ) -> pb.ModelInferResponse:
        try:
            return await self._frontend.answer(request, context.time_remaining())
        except QueryError as exc:
            await context.abort(getattr(grpc.StatusCode, exc.status), exc.message)
            raise  # unreachable: abort raises

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: Any
    ) -> None:
        """Answers each request as soon as it is ready, so they may come back out of order."""
        lock = asyncio.Lock()

        async def one(request: pb.ModelInferRequest) -> None:
            try:
                reply = pb.ModelStreamInferResponse(
                    infer_response=await self._frontend.answer(request, context.time_remaining())
                )
            except QueryError as exc:
                reply = pb.ModelStreamInferResponse(
                    error_message=f"{exc.status}: {exc.message}",
                    infer_response=pb.ModelInferResponse(
                        id=request.id, model_name=request.model_name
                    ),
                )
            async with lock:
                await context.write(reply)

        async with asyncio.TaskGroup() as group:
            async for request in request_iterator:
                group.create_task(one(request))

    async def _service(self, name: str, context: Any) -> ModelService:
        service = self._frontend.services.get(name)
        if service is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {name!r}")
        assert service is not None
        return service
