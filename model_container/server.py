"""The model container: one model bundle served over v2 gRPC and framed TCP.

Theory of operation. `serve` reads the bundle's manifest, starts the gRPC server (the
v2 ``GRPCInferenceService`` plus ``grpc.health.v1``) and, when asked, the framed TCP
server, then loads and warms the model in a worker thread so liveness answers meanwhile.
Only after a warm-up forward pass are ServerReady/ModelReady true and the health
service SERVING. Every inference, whatever the transport, goes through
`Container.infer`: fault injection (delay, failure), then `ModelRunner.infer` inline in
the event loop. SIGTERM/SIGINT stop it: health turns NOT_SERVING, servers stop
accepting, in-flight work gets a short grace, and `serve` returns, also while the model
is still loading (the loading thread is a daemon: nothing waits for it).  A bundle that
cannot be loaded ends `serve` with one `BundleError`; ``python -m model_container`` then
logs one line and exits with `EXIT_BAD_BUNDLE`, so a supervisor can tell it from a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
import torch
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from common.bundle import read_manifest
from common.models import resolve_device
from model_container.config import ContainerConfig
from model_container.container import Container
from model_container.servicer import InferenceServicer, answer_stream_request
from model_container.stream import FramedServer
from proto.framing import MAX_FRAME_BYTES

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 1.0
#: ``python -m model_container``'s exit status when its bundle cannot be loaded
EXIT_BAD_BUNDLE = 3
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


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
    InferenceServicer(container, extensions).register(server)
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

    Raises `common.bundle.BundleError` (a ValueError) for an unreadable bundle,
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
    with _stop_on_signals(stop, handle_signals):
        grpc_server, health_servicer, port = await _start_grpc(config, container, extensions)
        stop_metrics = None
        try:
            stop_metrics = _start_metrics(config, container)
            stream_port = await framed.start(config.host, config.stream_port) if framed else 0
            await _become_ready(config, container, health_servicer, port, stream_port, stop)
            await stop.wait()
            log.info("shutting down")
        finally:
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
    load = _in_daemon_thread(functools.partial(container.load, device))
    halt = asyncio.ensure_future(stop.wait())
    waits: set[asyncio.Future[Any]] = {load, halt}
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    halt.cancel()
    if not load.done():
        load.cancel()  # asked to stop while loading: the process exits without it
        log.info("stopped while loading the model")
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


_T = TypeVar("_T")


def _in_daemon_thread(fn: Callable[[], _T]) -> asyncio.Future[_T]:
    """``fn()`` in a daemon thread, as a future of this loop.

    Not `asyncio.to_thread`: the loop's executor is joined when `asyncio.run` ends and its
    threads at interpreter exit, so a load stuck in a slow read would keep a container
    that was told to stop alive.  Nobody waits for a daemon thread.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def settle(result: _T | None, error: BaseException | None) -> None:
        if future.done():  # cancelled: nobody wants it any more
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, error = fn(), None
        except BaseException as exc:  # handed to the loop, which raises it in the awaiter
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="load-model", daemon=True).start()
    return future
