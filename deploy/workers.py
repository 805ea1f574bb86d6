"""Several frontend processes on one host, sharing its client ports (``--frontend-workers N``).

Theory of operation.  One frontend process is one event loop, so one core.  `FrontendWorkers`
is a supervisor that runs N worker processes (the spawn context), each a whole
`frontend.server.Frontend`: its own connections to every instance, its own coding
groups, queue and admission.  The workers share the client ports (v2 gRPC, v2 HTTP and
Clipper REST) through SO_REUSEPORT: the kernel hands each new connection to one
worker, so a gRPC channel or an HTTP keep-alive connection stays with the worker that
accepted it, and every query is answered by exactly the worker that received it.  The
supervisor holds each port bound (not listening) for as long as it runs, which turns
port 0 into one concrete port for all workers and keeps it theirs across restarts.

What is shared and what is not.  Every worker connects to every instance (instances
are not partitioned: a parity instance serves all workers' groups, and a small
deployment needs no more instances for more workers).  What that costs:

- coding groups fill from one worker's queries only: at low load a group waits about
  N times longer for its k queries (or closes at ``group_timeout_ms``, padded);
- single-queue dispatch holds per worker: an instance may have up to N requests in
  flight (one per worker with ``max_inflight = 1``), queued at the instance;
- admission is per worker: each worker admits ``max_outstanding / N`` (rounded up, as
  is ``max_outstanding_per_client``), so the host admits what one process would.

Supervision.  A worker that exits is started again after a back-off
(`common.backoff.Backoff`); a restarted worker opens the client ports only once its
models are ready, so the connections the kernel hands it are not refused.  Calls in
flight on a worker that dies get UNAVAILABLE (its connections are reset; retrying is
safe), never a second answer.  SIGTERM drains a worker (`Frontend.stop`); workers
ignore SIGINT (a terminal's Ctrl-C reaches the supervisor, which stops them in order)
and get SIGTERM from the kernel when the supervisor dies, so none outlives ``parm up``.

Metrics.  Each worker keeps its own registry; the supervisor serves ``/metrics`` on the
frontend's metrics port and, at each scrape, asks every worker for its text over the
worker's socket and merges the families, each sample labelled ``frontend_worker``.  One
scrape shows the whole frontend (``sum without (frontend_worker)``) and each worker's
readiness (``parm_frontend_worker_ready``).  prometheus-client's multiprocess mode was
not used: it cannot carry the gauges read from live state at scrape time, and it
writes to a memory-mapped file on every update of the per-query path.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import math
import multiprocessing
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from common.backoff import Backoff
from deploy.worker import WorkerSpec, read_message, worker_main, write_message
from frontend.config import FrontendConfig
from frontend.connections import ConnectionLimits
from frontend.http import HttpServer

log = logging.getLogger(__name__)

#: the label that says which worker a sample comes from
WORKER = "frontend_worker"
RESTART_BACKOFF_S = (0.5, 10.0)
#: a worker that ran this long before dying was not crash-looping: back off from the start
HEALTHY_RUN_S = 30.0
#: starts in a row that end before the worker listens, after which it is given up
MAX_FAILED_STARTS = 3
#: a worker that has not answered a scrape in this long is left out of it
SCRAPE_TIMEOUT_S = 5.0
#: after the shutdown grace, how long a worker gets to exit before SIGKILL
EXIT_MARGIN_S = 5.0
#: the supervisor's metrics port: connections open and scrapes at once
METRICS_CONNECTIONS, METRICS_REQUESTS = 64, 8


class WorkerFailedError(RuntimeError):
    """A worker kept exiting before it opened the client ports."""


def worker_config(config: FrontendConfig) -> FrontendConfig:
    """One of ``config.workers`` workers' configuration: the client ports shared
    (SO_REUSEPORT), ``/metrics`` left to the supervisor, admission limits split N ways."""
    n = config.workers

    def share(limit: int | None) -> int | None:
        return None if limit is None else math.ceil(limit / n)

    models = tuple(
        dataclasses.replace(
            m,
            max_outstanding=math.ceil(m.max_outstanding / n),
            max_outstanding_per_client=share(m.max_outstanding_per_client),
        )
        for m in config.models
    )
    return dataclasses.replace(config, models=models, reuse_port=True, metrics_port=None)


def hold_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` with SO_REUSEPORT and not listening: it gets no
    connections, but keeps the port (port 0: a free one) for the workers that share it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class Worker:
    """The supervisor's view of one worker process."""

    index: int
    process: BaseProcess | None = None
    restarts: int = 0
    #: set at each start (tests clear it to see the next)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    listening: asyncio.Event = field(default_factory=asyncio.Event)
    #: set once the process has exited and been reaped (cleared at each start)
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    #: every model can answer / every instance is up (cleared when the process exits)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    all_up: asyncio.Event = field(default_factory=asyncio.Event)
    #: the supervisor's end of its socket, while it runs
    writer: asyncio.StreamWriter | None = None
    scrapes: dict[int, asyncio.Future[str]] = field(default_factory=dict)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.exitcode is None


class FrontendWorkers:
    """N frontend processes sharing the client ports, supervised; the same lifecycle as
    `frontend.server.Frontend`: start, wait until ready, stop."""

    def __init__(self, config: FrontendConfig) -> None:
        self.config = config
        self.workers = [Worker(i) for i in range(config.workers)]
        self.grpc_port: int = config.grpc_port
        self.http_port: int | None = config.http_port
        self.metrics_port: int | None = config.metrics_port
        self._held: list[socket.socket] = []
        self._metrics: HttpServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._failed: asyncio.Future[None] | None = None
        self._seq = itertools.count()
        self._context = multiprocessing.get_context("spawn")

    @property
    def ready(self) -> bool:
        """Whether every worker can answer."""
        return all(w.ready.is_set() for w in self.workers)

    async def start(self) -> None:
        """Hold the client ports, serve the merged ``/metrics``, start every worker."""
        loop = asyncio.get_running_loop()
        self._failed = loop.create_future()
        self.grpc_port = self._hold(self.config.grpc_port)
        if self.config.http_port is not None:
            self.http_port = self._hold(self.config.http_port)
        if self.config.metrics_port is not None:
            limits = ConnectionLimits(  # a port for Prometheus, not for clients
                METRICS_CONNECTIONS,
                self.config.http_idle_timeout_s,
                self.config.http_read_timeout_s,
                METRICS_REQUESTS,
            )
            app = metrics_app(self.scrape)
            name = "Prometheus /metrics (all workers)"
            self._metrics = HttpServer(
                app, self.config.host, self.config.metrics_port, name, limits
            )
            self.metrics_port = await self._metrics.start()
        shared = dataclasses.replace(
            worker_config(self.config), grpc_port=self.grpc_port, http_port=self.http_port
        )
        for worker in self.workers:
            task = loop.create_task(self._supervise(worker, shared), name=f"worker-{worker.index}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        log.info(
            "frontend: %d workers sharing v2 gRPC %s:%d", len(self.workers), self.config.host,
            self.grpc_port,
        )  # fmt: skip

    def _hold(self, port: int) -> int:
        sock = hold_port(self.config.host, port)
        self._held.append(sock)
        held: int = sock.getsockname()[1]
        return held

    async def wait_ready(self, timeout: float, every_instance: bool = False) -> None:
        """Return once every worker can answer (``every_instance``: sees every instance
        up); WorkerFailedError when one was given up, TimeoutError names the others."""
        assert self._failed is not None, "start() first"

        def event(w: Worker) -> asyncio.Event:
            return w.all_up if every_instance else w.ready

        waits = [asyncio.ensure_future(event(w).wait()) for w in self.workers]
        everyone: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*waits))
        both: list[asyncio.Future[Any]] = [everyone, self._failed]
        try:
            await asyncio.wait(both, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            everyone.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await everyone
        if self._failed.done():
            self._failed.result()
        waiting = [w.index for w in self.workers if not event(w).is_set()]
        if waiting:
            raise TimeoutError(f"frontend workers not ready after {timeout:.0f} s: {waiting}")

    async def stop(self, grace: float | None = None) -> None:
        """SIGTERM every worker (each drains for its ``shutdown_grace_s``), SIGKILL one
        still running ``grace`` (default: the same) plus a margin later, close the ports."""
        self._stopping = True
        grace = self.config.shutdown_grace_s if grace is None else grace
        await asyncio.gather(*(self._terminate(w, grace) for w in self.workers))
        for task in list(self._tasks):
            task.cancel("frontend workers stopping")
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._metrics is not None:
            await self._metrics.stop(grace)
        for sock in self._held:
            sock.close()
        self._held.clear()

    def kill(self, index: int, sig: int = signal.SIGKILL) -> None:
        """Send a signal to one worker (fault experiments, tests)."""
        process = self.workers[index].process
        if process is None or process.pid is None or process.exitcode is not None:
            raise ProcessLookupError(f"frontend worker {index} is not running")
        os.kill(process.pid, sig)

    # -- supervision -------------------------------------------------------------------

    async def _supervise(self, worker: Worker, config: FrontendConfig) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff(*RESTART_BACKOFF_S)
        failed_starts = 0
        while not self._stopping:
            began = loop.time()
            spec = WorkerSpec(worker.index, config, listen_at_once=worker.restarts == 0)
            messages = await self._spawn(worker, spec)
            try:
                await _exited(worker.process)
            finally:  # exited, or this supervision was cancelled: never leave a socket open
                messages.cancel("worker exited")
                with contextlib.suppress(asyncio.CancelledError):
                    await messages
                self._closed(worker)
            if self._stopping:
                return
            listened = worker.listening.is_set()
            worker.listening.clear()
            failed_starts = 0 if listened else failed_starts + 1
            if failed_starts >= MAX_FAILED_STARTS:
                self._give_up(worker, failed_starts)
                return
            worker.restarts += 1
            code = None if worker.process is None else worker.process.exitcode
            log.warning(
                "frontend worker %d exited with %s; restarting (restart %d)",
                worker.index, code, worker.restarts,
            )  # fmt: skip
            if loop.time() - began > HEALTHY_RUN_S:
                backoff.reset()
            await asyncio.sleep(backoff.next())

    async def _spawn(self, worker: Worker, spec: WorkerSpec) -> asyncio.Task[None]:
        """Start ``worker``'s process; the task that reads its messages."""
        ours, theirs = socket.socketpair()
        process = self._context.Process(
            target=worker_main,
            args=(spec, theirs),
            name=f"parm-frontend-{worker.index}",
            daemon=True,  # also ended by multiprocessing when this process exits
        )
        try:
            process.start()
        finally:
            theirs.close()
        worker.process = process
        worker.exited.clear()
        reader, worker.writer = await asyncio.open_connection(sock=ours)
        worker.started.set()
        return asyncio.get_running_loop().create_task(
            self._read(worker, reader), name=f"worker-{worker.index}-messages"
        )

    async def _read(self, worker: Worker, reader: asyncio.StreamReader) -> None:
        """``worker``'s messages: its state changes, and its scrapes' texts."""
        events = {"listening": worker.listening, "ready": worker.ready, "all_up": worker.all_up}
        while (message := await read_message(reader)) is not None:
            kind, *rest = message
            if kind == "metrics":
                seq, text = rest
                pending = worker.scrapes.pop(seq, None)
                if pending is not None and not pending.done():
                    pending.set_result(text)
            else:
                events[kind].set()

    def _closed(self, worker: Worker) -> None:
        """After ``worker`` exited: close its socket, fail its scrapes, clear its state."""
        worker.exited.set()
        if worker.writer is not None:
            worker.writer.close()
            worker.writer = None
        for pending in worker.scrapes.values():
            pending.cancel()
        worker.scrapes.clear()
        worker.ready.clear()
        worker.all_up.clear()

    def _give_up(self, worker: Worker, starts: int) -> None:
        code = None if worker.process is None else worker.process.exitcode
        error = WorkerFailedError(
            f"frontend worker {worker.index} exited {starts} times in a row before it "
            f"listened (last exit status {code}); not restarting it (its log is above)"
        )
        if self._failed is not None and not self._failed.done():
            self._failed.set_exception(error)
            self._failed.exception()  # retrieved here: wait_ready raises it
        log.error("%s", error)

    async def _terminate(self, worker: Worker, grace: float) -> None:
        process = worker.process
        if process is None or not worker.alive:
            return
        process.terminate()
        try:  # _supervise sees the exit; it sets ``exited``
            await asyncio.wait_for(worker.exited.wait(), grace + EXIT_MARGIN_S)
        except TimeoutError:
            log.warning("frontend worker %d did not drain in time; killing it", worker.index)
            process.kill()
            await worker.exited.wait()

    # -- metrics -----------------------------------------------------------------------

    async def scrape(self) -> str:
        """Every worker's metrics, merged, and the supervisor's own, as Prometheus text."""
        # a worker still starting (or restarting) serves nobody yet: left out
        live = [w for w in self.workers if w.listening.is_set() and w.writer is not None]
        texts = await asyncio.gather(*(self._scrape(w) for w in live))
        merged = merge_metrics({w.index: t for w, t in zip(live, texts, strict=True) if t})
        return merged + self._own_metrics()

    async def _scrape(self, worker: Worker) -> str | None:
        seq = next(self._seq)
        reply = asyncio.get_running_loop().create_future()
        worker.scrapes[seq] = reply
        try:
            assert worker.writer is not None
            write_message(worker.writer, "scrape", seq)
            return await asyncio.wait_for(reply, SCRAPE_TIMEOUT_S)
        except (TimeoutError, asyncio.CancelledError, OSError):
            return None  # it is gone or stuck: the scrape shows the others
        finally:
            worker.scrapes.pop(seq, None)

    def _own_metrics(self) -> str:
        def per_worker(family: Any, read: Callable[[Worker], float]) -> Any:
            for w in self.workers:
                family.add_metric([str(w.index)], read(w))
            return family

        families = [
            per_worker(
                GaugeMetricFamily(
                    "parm_frontend_worker_up", "1 while the worker process runs", labels=[WORKER]
                ),
                lambda w: w.alive,
            ),
            per_worker(
                GaugeMetricFamily(
                    "parm_frontend_worker_ready",
                    "1 once the worker's models could all answer since it (re)started",
                    labels=[WORKER],
                ),
                lambda w: w.ready.is_set(),
            ),
            per_worker(
                CounterMetricFamily(
                    "parm_frontend_worker_restarts",
                    "Times the worker was started again after it exited",
                    labels=[WORKER],
                ),
                lambda w: w.restarts,
            ),
        ]
        return render(families)


async def _exited(process: BaseProcess | None) -> None:
    """Wait (without a thread) until ``process`` exits, and reap it."""
    assert process is not None
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    sentinel = process.sentinel

    def exited() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(sentinel, exited)
    try:
        await done
    finally:
        loop.remove_reader(sentinel)
    process.join()  # reaped: its exit code is known


# ---------------------------------------------------------------- metrics text


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def render(families: list[Metric]) -> str:
    """``families`` in the Prometheus text format (0.0.4)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry).decode()


def merge_metrics(texts: Mapping[int, str]) -> str:
    """Prometheus texts of several workers as one, each sample labelled with its worker."""
    families: dict[str, Metric] = {}
    for index, text in texts.items():
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = Metric(family.name, family.documentation, family.type, family.unit)
                families[family.name] = merged
            merged.samples += [
                s._replace(labels={**s.labels, WORKER: str(index)}) for s in family.samples
            ]
    return render(list(families.values()))


def metrics_app(scrape: Callable[[], Awaitable[str]]) -> Callable[..., Awaitable[None]]:
    """The ASGI application of the supervisor's metrics port: ``GET /metrics``."""
    content_type = (b"content-type", b"text/plain; version=0.0.4; charset=utf-8")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        found = scope["path"] == "/metrics"
        body = (await scrape()).encode() if found else b"not found: try /metrics\n"
        headers = [content_type, (b"content-length", str(len(body)).encode())]
        await send(
            {"type": "http.response.start", "status": 200 if found else 404, "headers": headers}
        )
        await send({"type": "http.response.body", "body": body})

    return app
