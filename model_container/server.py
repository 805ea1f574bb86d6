"""The model container: one model bundle served over v2 gRPC and framed TCP.

Theory of operation. `serve` reads the bundle's manifest, starts the gRPC server (the
v2 ``GRPCInferenceService`` plus ``grpc.health.v1``) and, when asked, the framed TCP
server, then loads and warms the model in a worker thread so liveness answers meanwhile.
Only after a warm-up forward pass are ServerReady/ModelReady true and the health
service SERVING. Every inference, whatever the transport, goes through
`Container.infer`: fault injection (delay, failure), then `ModelRunner.infer` inline in
the event loop. SIGTERM/SIGINT stop it: health turns NOT_SERVING, servers stop
accepting, in-flight work gets a short grace, and `serve` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import grpc
import torch
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from model_container.bundle import Manifest, TensorSpec, read_manifest
from model_container.metrics import ContainerMetrics
from model_container.models import load_model
from model_container.runner import MODEL_VERSION, InferError, ModelRunner, resolve_device
from model_container.stream import FramedServer
from proto import inference_pb2 as pb
from proto.framing import MAX_FRAME_BYTES

log = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"
SERVER_NAME = "parm-model-container"
PLATFORM = "pytorch"
SHUTDOWN_GRACE_S = 1.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass(frozen=True)
class ContainerConfig:
    """Everything one container needs; the CLI flags map one to one onto these fields.

    ``stream_port`` 0 disables the framed TCP server; ``port`` 0 binds any free port.
    ``delay_prob`` None means 1.0 when ``delay_ms`` is set, else 0. ``name`` overrides
    the model name requests must use (default: the manifest's name).
    """

    bundle: Path
    port: int
    stream_port: int = 0
    host: str = "127.0.0.1"
    device: str = "auto"
    threads: int = 1
    delay_ms: float = 0.0
    delay_prob: float | None = None
    fail_prob: float = 0.0
    seed: int | None = None
    name: str | None = None
    #: pad each inference to this many ms (an accelerator's service time on a CPU
    #: machine); the remainder is slept asynchronously, so padding burns no CPU
    service_time_ms: float = 0.0
    #: ``const``: every delayed response waits ``delay_ms``; ``exp``: an exponential
    #: draw with mean ``delay_ms``
    delay_dist: str = "const"
    #: benchmark hook: serve network-contention transfers from this process (0: off)
    shuffle_port: int = 0
    #: Prometheus ``/metrics`` on this port (0: off)
    metrics_port: int = 0

    def __post_init__(self) -> None:
        if self.service_time_ms < 0:
            raise ValueError(f"service_time_ms: expected >= 0, got {self.service_time_ms}")
        if self.delay_dist not in ("const", "exp"):
            raise ValueError(f"delay_dist: expected const or exp, got {self.delay_dist!r}")
        if self.threads < 1:
            raise ValueError(f"threads: expected >= 1, got {self.threads}")
        if self.delay_ms < 0:
            raise ValueError(f"delay_ms: expected >= 0, got {self.delay_ms}")
        for field, p in (("delay_prob", self.delay_prob), ("fail_prob", self.fail_prob)):
            if p is not None and not 0.0 <= p <= 1.0:
                raise ValueError(f"{field}: expected a probability in [0, 1], got {p}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ValueError(f"device: expected auto, cpu or cuda[:N], got {self.device!r}")

    @property
    def effective_delay_prob(self) -> float:
        """The probability a response is delayed, after applying the default."""
        if self.delay_prob is not None:
            return self.delay_prob
        return 1.0 if self.delay_ms > 0 else 0.0


class Container:
    """Shared state of one container process: the runner once warm, and fault draws."""

    def __init__(self, config: ContainerConfig, manifest: Manifest) -> None:
        self.config = config
        self.manifest = manifest
        self.name = config.name or manifest.name
        self.runner: ModelRunner | None = None
        self._rng = random.Random(config.seed)
        self._delay_s = config.delay_ms / 1000.0
        self._delay_prob = config.effective_delay_prob
        self._service_s = config.service_time_ms / 1000.0
        self.metrics = ContainerMetrics(self.name, lambda: self.ready)

    @property
    def ready(self) -> bool:
        """True once the model is loaded and warmed up."""
        return self.runner is not None

    def load(self, device: str) -> ModelRunner:
        """Load and warm the model (blocking: call in a worker thread), then return it."""
        manifest, module = load_model(self.config.bundle, device=device)
        runner = ModelRunner(manifest, module, device, self.name)
        runner.warm_up()
        return runner

    async def infer(self, request: pb.ModelInferRequest, response: pb.ModelInferResponse) -> None:
        """Answer one request into ``response``, counted in `metrics`; raises `InferError`."""
        began = time.perf_counter()
        self.metrics.inflight.inc()
        try:
            await self._answer(request, response)
        except InferError as exc:
            self.metrics.failed(exc.code.name)
            raise
        finally:
            self.metrics.inflight.dec()
        rows = response.outputs[0].shape[0] if response.outputs else 0
        self.metrics.answered(time.perf_counter() - began, rows)

    async def _answer(self, request: pb.ModelInferRequest, response: pb.ModelInferResponse) -> None:
        """Answer one request into ``response``; raises `InferError` for an error answer.

        This is the one exception boundary for inference on every transport: anything
        unexpected becomes INTERNAL and is logged with its traceback.
        """
        runner = self.runner
        if runner is None:
            raise InferError(grpc.StatusCode.UNAVAILABLE, "model is loading")
        # Draw both every time so a seed gives the same fault sequence whatever happens.
        delayed = self._rng.random() < self._delay_prob
        failed = self._rng.random() < self.config.fail_prob
        if delayed:
            await asyncio.sleep(self._draw_delay())
        if failed:
            raise InferError(grpc.StatusCode.INTERNAL, "injected failure")
        began = time.perf_counter()
        try:
            runner.infer(request, response)
        except InferError:
            raise
        except Exception as exc:
            log.exception("inference failed for request id=%r", request.id)
            raise InferError(grpc.StatusCode.INTERNAL, f"inference failed: {exc}") from exc
        if self._service_s:  # pad to the configured (accelerator-like) service time
            left = self._service_s - (time.perf_counter() - began)
            if left > 0:
                await asyncio.sleep(left)

    def _draw_delay(self) -> float:
        if self.config.delay_dist == "exp" and self._delay_s > 0:
            return self._rng.expovariate(1 / self._delay_s)
        return self._delay_s


def _tensor_metadata(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=spec.name, datatype=spec.datatype, shape=[-1, *spec.shape]
    )


def _server_version() -> str:
    try:
        return metadata.version("parm")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class InferenceServicer:
    """The v2 ``GRPCInferenceService`` (the seven RPCs in proto/inference.proto)."""

    def __init__(self, container: Container, extensions: list[str]) -> None:
        self._c = container
        self._metadata = pb.ServerMetadataResponse(
            name=SERVER_NAME, version=_server_version(), extensions=extensions
        )

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Any
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Any
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._c.ready)

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Any
    ) -> pb.ModelReadyResponse:
        ready = self._c.ready and request.name == self._c.name
        return pb.ModelReadyResponse(ready=ready and request.version in ("", MODEL_VERSION))

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Any
    ) -> pb.ServerMetadataResponse:
        return self._metadata

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Any
    ) -> pb.ModelMetadataResponse:
        if request.name != self._c.name:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"model {request.name!r} not found: this container serves {self._c.name!r}",
            )
        m = self._c.manifest
        return pb.ModelMetadataResponse(
            name=self._c.name,
            versions=[MODEL_VERSION],
            platform=PLATFORM,
            inputs=[_tensor_metadata(s) for s in m.inputs],
            outputs=[_tensor_metadata(s) for s in m.outputs],
        )

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Any
    ) -> pb.ModelInferResponse:
        response = pb.ModelInferResponse()
        try:
            await self._c.infer(request, response)
        except InferError as exc:
            await context.abort(exc.code, exc.message)
        return response

    async def ModelStreamInfer(
        self, requests: AsyncIterator[pb.ModelInferRequest], context: Any
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        # Sequential: one answer per request, in order; errors go into error_message
        # and the stream goes on.
        async for request in requests:
            yield await answer_stream_request(self._c, request)


async def answer_stream_request(
    container: Container, request: pb.ModelInferRequest
) -> pb.ModelStreamInferResponse:
    """The stream answer to one request: the result, or the error with the id echoed."""
    answer = pb.ModelStreamInferResponse()
    try:
        await container.infer(request, answer.infer_response)
    except InferError as exc:
        answer.Clear()
        answer.error_message = exc.stream_message()
        answer.infer_response.id = request.id
        answer.infer_response.model_name = request.model_name
    return answer


def _inference_handler(servicer: InferenceServicer) -> Any:
    """The service's method table, as ``add_GRPCInferenceServiceServicer_to_server`` builds.

    Written out because the generated ``inference_pb2_grpc`` is untyped; the method
    paths (``/inference.GRPCInferenceService/<rpc>``) are what Triton's clients call.
    """
    unary = grpc.unary_unary_rpc_method_handler
    rpcs: dict[str, Any] = {
        name: unary(
            getattr(servicer, name),
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )
        for name, request, response in (
            ("ServerLive", pb.ServerLiveRequest, pb.ServerLiveResponse),
            ("ServerReady", pb.ServerReadyRequest, pb.ServerReadyResponse),
            ("ModelReady", pb.ModelReadyRequest, pb.ModelReadyResponse),
            ("ServerMetadata", pb.ServerMetadataRequest, pb.ServerMetadataResponse),
            ("ModelMetadata", pb.ModelMetadataRequest, pb.ModelMetadataResponse),
            ("ModelInfer", pb.ModelInferRequest, pb.ModelInferResponse),
        )
    }
    rpcs["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(
        servicer.ModelStreamInfer,
        request_deserializer=pb.ModelInferRequest.FromString,
        response_serializer=pb.ModelStreamInferResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(SERVICE, rpcs)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _start_grpc(
    config: ContainerConfig, container: Container, extensions: list[str]
) -> tuple[Any, health.aio.HealthServicer, int]:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_FRAME_BYTES),
            ("grpc.max_send_message_length", MAX_FRAME_BYTES),
            # gRPC binds with SO_REUSEPORT by default: two containers given the same port
            # would share it silently. Fail at start instead.
            ("grpc.so_reuseport", 0),
        ]
    )
    servicer = InferenceServicer(container, extensions)
    server.add_generic_rpc_handlers((_inference_handler(servicer),))
    health_servicer = health.aio.HealthServicer()
    for service in ("", container.name):
        await health_servicer.set(service, NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = _address(config.host, config.port)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpc's way of saying the bind failed
        raise OSError(f"cannot bind the gRPC port {address}: {exc}") from exc
    await server.start()
    return server, health_servicer, port


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event, enabled: bool) -> Iterator[None]:
    """Set ``stop`` on SIGTERM/SIGINT; restore the previous handlers on exit."""
    loop = asyncio.get_running_loop()
    sigs = (signal.SIGTERM, signal.SIGINT) if enabled else ()
    for sig in sigs:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in sigs:
            loop.remove_signal_handler(sig)


async def serve(
    config: ContainerConfig, *, stop: asyncio.Event | None = None, handle_signals: bool = True
) -> None:
    """Run a container until SIGTERM/SIGINT (or until ``stop`` is set), then shut down.

    Pass ``handle_signals=False`` when not on the main thread (signal handlers can only
    be installed there) and stop it with ``stop`` instead.

    Raises `model_container.bundle.BundleError` (a ValueError) for an unreadable bundle,
    ValueError for one this container cannot serve, and OSError when a port cannot be
    bound.
    """
    stop = stop or asyncio.Event()
    manifest = read_manifest(config.bundle)
    container = Container(config, manifest)
    extensions = ["health", "model_stream_infer"]
    handler = functools.partial(answer_stream_request, container)
    framed = FramedServer(handler) if config.stream_port else None
    if framed is not None:
        extensions.append("parm_framed_tcp")
    shuffle = None
    with _stop_on_signals(stop, handle_signals):
        grpc_server, health_servicer, port = await _start_grpc(config, container, extensions)
        stop_metrics = None
        try:
            stop_metrics = _start_metrics(config, container)
            stream_port = await framed.start(config.host, config.stream_port) if framed else 0
            shuffle = await _start_shuffle(config)
            await _become_ready(config, container, health_servicer, port, stream_port, stop)
            await stop.wait()
            log.info("shutting down")
        finally:
            if shuffle is not None:
                await shuffle.close()
            await health_servicer.enter_graceful_shutdown()
            if framed is not None:
                await framed.close(SHUTDOWN_GRACE_S)
            await grpc_server.stop(SHUTDOWN_GRACE_S)
            if stop_metrics is not None:
                await asyncio.to_thread(stop_metrics)
    log.info("stopped")


def _start_metrics(config: ContainerConfig, container: Container) -> Callable[[], None] | None:
    """Serve /metrics from the start, so a scrape sees a loading container as not ready."""
    if not config.metrics_port:
        return None
    stop = container.metrics.serve(config.host, config.metrics_port)
    log.info("metrics on http://%s/metrics", _address(config.host, config.metrics_port))
    return stop


async def _start_shuffle(config: ContainerConfig) -> Any:
    """The benchmarks' network-contention sidecar, on this process's own event loop."""
    if not config.shuffle_port:
        return None
    from bench.contention.shuffle import ShuffleServer  # benchmark-only code, loaded on demand

    server = ShuffleServer()
    await server.start(config.host, config.shuffle_port)
    return server


async def _become_ready(
    config: ContainerConfig,
    container: Container,
    health_servicer: health.aio.HealthServicer,
    port: int,
    stream_port: int,
    stop: asyncio.Event,
) -> None:
    torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    # A worker thread, so liveness and health keep answering while weights load.
    load = asyncio.ensure_future(asyncio.to_thread(container.load, device))
    halt = asyncio.ensure_future(stop.wait())
    await asyncio.wait({load, halt}, return_when=asyncio.FIRST_COMPLETED)
    halt.cancel()
    if not load.done():
        load.cancel()  # asked to stop while loading; the thread finishes on its own
        return
    container.runner = load.result()
    for service in ("", container.name):
        await health_servicer.set(service, SERVING)
    stream = _address(config.host, stream_port) if stream_port else "off"
    log.info(
        "ready: model=%s grpc=%s stream=%s device=%s",
        container.name,
        _address(config.host, port),
        stream,
        device,
    )
