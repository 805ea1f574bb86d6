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
from typing import TYPE_CHECKING, Any

import grpc

from common.clock import LoopClock
from frontend.api import DEADLINE_MARGIN_S, VERSION, Api, Query, refusal
from frontend.config import FrontendConfig
from frontend.instances import InstanceLink
from frontend.metrics import Metrics
from frontend.model import ModelService, QueryError, Result
from frontend.requests import SOURCE, SOURCES, expect_one_input, overall_source
from proto import inference_pb2 as pb
from proto import servicer
from proto.tensors import get_parameters

if TYPE_CHECKING:
    from frontend.http import HttpServer

log = logging.getLogger(__name__)

__all__ = ["DEADLINE_MARGIN_S", "VERSION", "Frontend", "InferenceServicer"]


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
        InferenceServicer(self.api).register(server)
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
            api = api_app(self.api)
            self._http.append(HttpServer(api, host, http_port, "v2 REST + Clipper"))
            self.http_port = await self._http[-1].start()
        if metrics_port is not None:
            app = metrics_app(self.metrics)
            self._http.append(HttpServer(app, host, metrics_port, "Prometheus /metrics"))
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

    def __init__(self, api: Api) -> None:
        super().__init__("parm-frontend", VERSION, ["parm"])
        self._api = api

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
        self, request: pb.ModelInferRequest, time_left: float | None
    ) -> pb.ModelInferResponse:
        """Validate, run and package one inference request; raises QueryError."""
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
        return packaged(request, service, await self._api.infer(service, query, time_left))

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Any
    ) -> pb.ModelInferResponse:
        try:
            return await self.answer(request, context.time_remaining())
        except Exception as exc:
            error = refusal(exc)
            await context.abort(getattr(grpc.StatusCode, error.status), error.message)
            raise  # unreachable: abort raises

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: Any
    ) -> None:
        """Answers each request as soon as it is ready, so they may come back out of order."""
        lock = asyncio.Lock()

        async def one(request: pb.ModelInferRequest) -> None:
            try:
                reply = pb.ModelStreamInferResponse(
                    infer_response=await self.answer(request, context.time_remaining())
                )
            except Exception as exc:
                error = refusal(exc)
                reply = pb.ModelStreamInferResponse(
                    error_message=f"{error.status}: {error.message}",
                    infer_response=pb.ModelInferResponse(
                        id=request.id, model_name=request.model_name
                    ),
                )
            async with lock:
                await context.write(reply)

        async with asyncio.TaskGroup() as group:
            async for request in request_iterator:
                group.create_task(one(request))
