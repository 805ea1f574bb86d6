"""The local launcher: every instance a child process, the frontend in this process
(or, with ``frontend_workers`` > 1, in that many supervised worker processes sharing its
ports: `deploy.workers`).

``LocalCluster`` starts one model container per instance, supervises them (a dead
instance is restarted, with back-off, while the frontend treats it as down until its
health check passes again), runs the frontend in this process's event loop, and on
``stop()`` shuts everything down in order: the frontend stops accepting and drains,
then the children get SIGTERM, then SIGKILL.  An instance that exits before becoming
ready `MAX_FAILED_STARTS` times in a row (a bundle it cannot load, a port it cannot
bind) is not restarted again: `LocalCluster.start` fails at once with the end of its
log, rather than waiting for the frontend's readiness timeout.  Children also get
SIGTERM from the kernel if this process dies without cleaning up (each container asks
for ``PR_SET_PDEATHSIG`` with ``--exit-with-parent``), so none outlives ``parm up``.

With a ``NetworkSpec`` (``parm up --network netns``) every instance runs on a host of its
own (``deploy.netns``: a network namespace with its own address and a rate-limited link);
the frontend stays in this process and reaches them over the bridge.  The network is
built by ``start()`` and removed by ``stop()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.backoff import Backoff
from common.bundle import NAME_RULE, is_safe_name
from common.runtime import free_port
from deploy.netns import HostNetwork, NetworkSpec
from deploy.spec import Deployment, DeploymentError, Injection, ModelDeployment
from deploy.workers import FrontendWorkers
from frontend.config import FrontendConfig, InstanceAddress, ModelConfig
from frontend.server import Frontend
from model_container.config import ContainerConfig

log = logging.getLogger(__name__)

STOP_GRACE_S = 5.0
RESTART_BACKOFF_S = (0.5, 10.0)
#: a child that ran this long before dying was not crash-looping: back off from the start
HEALTHY_RUN_S = 30.0
#: starts in a row that end before the instance is ready, after which it is given up
MAX_FAILED_STARTS = 3
#: lines from the end of a given-up instance's log quoted in the error
LOG_TAIL_LINES = 3
#: on a host of its own (netns) every instance listens on the same ports
HOST_GRPC_PORT, HOST_STREAM_PORT = 8500, 8501

Configure = Callable[[ContainerConfig], ContainerConfig]


class InstanceFailedError(DeploymentError):
    """An instance kept exiting before it became ready; the message quotes its log."""


@dataclass
class Instance:
    """One supervised model container."""

    model: str
    name: str
    bundle: Path
    grpc_port: int
    stream_port: int
    injection: Injection
    process: asyncio.subprocess.Process | None = None
    seed: int = 0  # of the injected faults: reproducible runs
    restarts: int = 0
    started: asyncio.Event = field(default_factory=asyncio.Event)
    host: str = "127.0.0.1"  # its address: loopback, or its own host's on a netns network

    @property
    def key(self) -> str:
        return f"{self.model}/{self.name}"

    @property
    def address(self) -> InstanceAddress:
        return InstanceAddress(
            self.name, f"{self.host}:{self.grpc_port}", f"{self.host}:{self.stream_port}"
        )


class LocalCluster:
    """A whole deployment on this machine."""

    def __init__(
        self,
        deployment: Deployment,
        log_dir: Path,
        configure: Configure | None = None,
        network: NetworkSpec | None = None,
    ) -> None:
        self.deployment = deployment
        self.log_dir = log_dir
        # Benchmarks' hook: change every instance's container configuration (service-
        # time padding, injected delays), e.g.
        # ``lambda c: dataclasses.replace(c, service_time_ms=10)``.
        self._configure = configure
        self.instances: dict[tuple[str, str], Instance] = {}
        for model in deployment.models:
            if not is_safe_name(model.name):  # it names the instances' log files and hosts
                raise DeploymentError(f"model name: expected {NAME_RULE}, got {model.name!r}")
            for name in model.instance_names():
                ports = (HOST_GRPC_PORT, HOST_STREAM_PORT) if network else _free_ports()
                self.instances[model.name, name] = Instance(
                    model.name,
                    name,
                    model.bundle_for(name),
                    ports[0],
                    ports[1],
                    model.inject.get(name, Injection()),
                    seed=len(self.instances),
                )
        keys = [inst.key for inst in self.instances.values()]
        self.network = HostNetwork(keys, network) if network is not None else None
        # On a netns network the instances' addresses exist once start() built it.
        self._front = None if network else self._make_front()
        self._supervisors: set[asyncio.Task[None]] = set()
        self._stopping = False
        #: while start() waits: set to the error of the first instance given up
        self._failed: asyncio.Future[InstanceFailedError] | None = None

    def _make_front(self) -> Frontend | FrontendWorkers:
        config = self.frontend_config()
        return FrontendWorkers(config) if config.workers > 1 else Frontend(config)

    @property
    def front(self) -> Frontend | FrontendWorkers:
        """The frontend: in this process, or its supervised worker processes."""
        if self._front is None:
            raise RuntimeError("on a netns network the frontend is built by start()")
        return self._front

    @property
    def frontend(self) -> Frontend:
        """The frontend in this process (one worker)."""
        front = self.front
        if not isinstance(front, Frontend):
            raise RuntimeError(f"the frontend runs in {front.config.workers} worker processes")
        return front

    @property
    def workers(self) -> FrontendWorkers:
        """The frontend's worker processes (``frontend_workers`` > 1)."""
        front = self.front
        if not isinstance(front, FrontendWorkers):
            raise RuntimeError("the frontend runs in this process (one worker)")
        return front

    def frontend_config(self) -> FrontendConfig:
        d = self.deployment
        return FrontendConfig(
            models=tuple(self._model_config(m) for m in d.models),
            host=d.host,
            grpc_port=d.grpc_port,
            http_port=d.http_port,
            metrics_port=d.metrics_port,
            workers=d.frontend_workers,
        )

    def _model_config(self, model: ModelDeployment) -> ModelConfig:
        def addresses(prefix: str) -> tuple[InstanceAddress, ...]:
            return tuple(
                inst.address
                for (m, name), inst in self.instances.items()
                if m == model.name and name.startswith(prefix)
            )

        return model.model_config(addresses("data-"), addresses("parity-"))

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, ready_timeout: float = 180.0) -> None:
        """Start every instance and the frontend; return when every instance is up.

        Readiness alone (some data instance up) would let the first queries of a demo or
        an experiment run on a cluster that is still half started.
        """
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.network is not None:
            await asyncio.to_thread(self.network.create)
            for inst in self.instances.values():
                inst.host = self.network.host(inst.key).address
            self._front = self._make_front()
        loop = asyncio.get_running_loop()
        self._failed = loop.create_future()
        for inst in self.instances.values():
            task = loop.create_task(self._supervise(inst), name=f"supervise-{inst.name}")
            self._supervisors.add(task)
            task.add_done_callback(self._supervisors.discard)
        await self.front.start()
        await self._wait_ready(ready_timeout, self._failed)

    async def _wait_ready(
        self, timeout: float, failed: asyncio.Future[InstanceFailedError]
    ) -> None:
        """The frontend's readiness wait, cut short when an instance is given up."""
        ready = asyncio.ensure_future(self.front.wait_ready(timeout, every_instance=True))
        waits: set[asyncio.Future[Any]] = {ready, failed}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._failed = None  # from now on, an instance given up is logged
            gave_up = not ready.done()
            if gave_up:
                ready.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ready
        if gave_up:
            raise failed.result()
        ready.result()

    async def stop(self) -> None:
        """Frontend first (drain), then the children: SIGTERM, then SIGKILL."""
        self._stopping = True
        if self._front is not None:
            await self._front.stop()
        for task in list(self._supervisors):
            task.cancel("cluster stopping")
        await asyncio.gather(*(self._terminate(inst) for inst in self.instances.values()))
        for task in list(self._supervisors):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.network is not None:
            await asyncio.to_thread(self.network.close)

    async def __aenter__(self) -> LocalCluster:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def kill(self, model: str, name: str, sig: int = signal.SIGKILL) -> None:
        """Send a signal to one instance's process (fault experiments, tests)."""
        process = self.instances[model, name].process
        if process is None or process.returncode is not None:
            raise ProcessLookupError(f"instance {model}/{name} is not running")
        process.send_signal(sig)

    # -- supervision -------------------------------------------------------------------

    def log_path(self, inst: Instance) -> Path:
        """The file ``inst``'s container writes its output to (appended across restarts)."""
        return self.log_dir / f"{inst.model}-{inst.name}.log"

    async def _supervise(self, inst: Instance) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff(*RESTART_BACKOFF_S)  # jittered: restarts of many do not align
        failed_starts = 0
        while not self._stopping:
            began = loop.time()
            run_began = _size(self.log_path(inst))  # where this run's output begins
            with self.log_path(inst).open("ab") as out:
                inst.process = await asyncio.create_subprocess_exec(
                    *self._command(inst),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    # Own session: a terminal's Ctrl-C reaches only the launcher, which
                    # then stops the children in order.
                    start_new_session=True,
                )
            inst.started.set()
            target = f"{inst.host}:{inst.grpc_port}"
            became_ready = await _exited_after_ready(inst.process, target)
            code = inst.process.returncode
            if self._stopping:
                return
            failed_starts = 0 if became_ready else failed_starts + 1
            if failed_starts >= MAX_FAILED_STARTS:
                self._give_up(inst, code, failed_starts, run_began)
                return
            inst.restarts += 1
            log.warning(
                "instance %s/%s exited with %s; restarting (restart %d)",
                inst.model,
                inst.name,
                code,
                inst.restarts,
            )
            if loop.time() - began > HEALTHY_RUN_S:
                backoff.reset()
            await asyncio.sleep(backoff.next())

    def _give_up(self, inst: Instance, code: int | None, starts: int, run_began: int) -> None:
        """Stop restarting ``inst``; fail `start` with the end of its last run's log."""
        path = self.log_path(inst)
        tail = "".join(f"\n  {line}" for line in _log_tail(path, run_began, LOG_TAIL_LINES))
        error = InstanceFailedError(
            f"instance {inst.key} exited {starts} times in a row before becoming ready "
            f"(last exit status {code}); not restarting it. The end of its log {path}:{tail}"
        )
        if self._failed is not None and not self._failed.done():
            self._failed.set_result(error)  # start() raises it
        else:  # the cluster is running: the log is the only place to say it
            log.error("%s", error)

    def container_config(self, inst: Instance) -> ContainerConfig:
        """The configuration ``inst``'s container is started with."""
        d = self.deployment
        config = ContainerConfig(
            bundle=inst.bundle,
            port=inst.grpc_port,
            stream_port=inst.stream_port,
            host="0.0.0.0" if self.network is not None else "127.0.0.1",  # its own host's
            device=d.device,
            threads=d.threads,
        ).with_faults(inst.injection.faults(seed=inst.seed))
        return self._configure(config) if self._configure else config

    def _command(self, inst: Instance) -> list[str]:
        config = self.container_config(inst)
        parent = ["--exit-with-parent", str(os.getpid())]
        # ``ip netns exec`` execs the command in place: the container's parent stays us
        on_host = self.network.exec_prefix(inst.key) if self.network is not None else []
        return [*on_host, sys.executable, "-m", "model_container", *config.argv(), *parent]

    @staticmethod
    async def _terminate(inst: Instance) -> None:
        process = inst.process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE_S)
        except TimeoutError:
            log.warning("instance %s/%s ignored SIGTERM; killing it", inst.model, inst.name)
            process.kill()
            await process.wait()

    def endpoints(self) -> Iterator[str]:
        d = self.deployment
        front = self.front
        yield f"frontend  v2 gRPC  {d.host}:{front.grpc_port}"
        if front.http_port is not None:
            yield f"frontend  v2 HTTP  http://{d.host}:{front.http_port}  (docs: /docs)"
        if front.metrics_port is not None:
            yield f"frontend  metrics  http://{d.host}:{front.metrics_port}/metrics"
        if isinstance(front, FrontendWorkers):
            pids = ", ".join(str(w.pid) for w in front.workers)
            yield f"frontend  {len(front.workers)} worker processes sharing the ports: {pids}"
        for inst in self.instances.values():
            role = inst.bundle.name
            yield (
                f"{inst.model}/{inst.name:<9} grpc {inst.host}:{inst.grpc_port}  "
                f"stream {inst.host}:{inst.stream_port}  ({role})"
            )


async def _exited_after_ready(process: asyncio.subprocess.Process, target: str) -> bool:
    """Wait until ``process`` exits; whether its container (at ``target``) was ready first."""
    ready = asyncio.ensure_future(_serving(target))
    try:
        await process.wait()
    finally:
        ready.cancel()  # no effect once it is done
    return ready.done() and not ready.cancelled() and ready.result()


async def _serving(target: str) -> bool:
    """Wait until the container at ``target`` says SERVING (True) or the watch ends (False).

    The health service's Watch streams every change, so this waits without polling;
    ``wait_for_ready`` lets it begin before the container listens.
    """
    request = health_pb2.HealthCheckRequest(service="")
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            async for update in stub.Watch(request, wait_for_ready=True):
                if update.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
    except grpc.aio.AioRpcError:  # the container went away mid-watch
        pass
    return False


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _log_tail(path: Path, since: int, lines: int) -> list[str]:
    """The last ``lines`` non-blank lines written to a log after offset ``since``.

    The log is appended to by every run of an instance: ``since`` keeps to the last run.
    At most its last 16 KiB are read.
    """
    try:
        with path.open("rb") as f:
            f.seek(max(f.seek(0, os.SEEK_END) - (16 << 10), since))
            text = f.read().decode(errors="replace")
    except OSError as exc:
        return [f"(cannot read it: {exc})"]
    return [line for line in text.splitlines() if line.strip()][-lines:]


def _free_ports() -> tuple[int, int]:
    """A gRPC and a stream port on loopback."""
    return free_port(), free_port()


async def serve_until_signalled(cluster: LocalCluster) -> None:
    """Run until SIGINT or SIGTERM, then stop in order and restore the handlers."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await cluster.stop()
