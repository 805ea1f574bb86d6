"""The local launcher: every instance a child process, the frontend in this process.

``LocalCluster`` starts one model container per instance, supervises them (a dead
instance is restarted, with back-off, while the frontend treats it as down until its
health check passes again), runs the frontend in this process's event loop, and on
``stop()`` shuts everything down in order: the frontend stops accepting and drains,
then the children get SIGTERM, then SIGKILL.  Children also get SIGTERM from the
kernel if this process dies without cleaning up (each container asks for
``PR_SET_PDEATHSIG`` with ``--exit-with-parent``), so none outlives ``parm up``.

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
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from common.backoff import Backoff
from deploy.netns import HostNetwork, NetworkSpec
from deploy.spec import Deployment, Injection, ModelDeployment
from frontend.config import FrontendConfig, InstanceAddress, ModelConfig
from frontend.server import Frontend
from model_container.config import ContainerConfig

log = logging.getLogger(__name__)

STOP_GRACE_S = 5.0
RESTART_BACKOFF_S = (0.5, 10.0)
#: a child that ran this long before dying was not crash-looping: back off from the start
HEALTHY_RUN_S = 30.0
#: on a host of its own (netns) every instance listens on the same ports
HOST_GRPC_PORT, HOST_STREAM_PORT = 8500, 8501

Configure = Callable[[ContainerConfig], ContainerConfig]


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
        self._frontend = None if network else Frontend(self.frontend_config())
        self._supervisors: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def frontend(self) -> Frontend:
        if self._frontend is None:
            raise RuntimeError("on a netns network the frontend is built by start()")
        return self._frontend

    def frontend_config(self) -> FrontendConfig:
        d = self.deployment
        return FrontendConfig(
            models=tuple(self._model_config(m) for m in d.models),
            host=d.host,
            grpc_port=d.grpc_port,
            http_port=d.http_port,
            metrics_port=d.metrics_port,
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
            self._frontend = Frontend(self.frontend_config())
        loop = asyncio.get_running_loop()
        for inst in self.instances.values():
            task = loop.create_task(self._supervise(inst), name=f"supervise-{inst.name}")
            self._supervisors.add(task)
            task.add_done_callback(self._supervisors.discard)
        await self.frontend.start()
        await self.frontend.wait_ready(ready_timeout, every_instance=True)

    async def stop(self) -> None:
        """Frontend first (drain), then the children: SIGTERM, then SIGKILL."""
        self._stopping = True
        if self._frontend is not None:
            await self._frontend.stop()
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

    async def _supervise(self, inst: Instance) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff(*RESTART_BACKOFF_S)  # jittered: restarts of many do not align
        while not self._stopping:
            began = loop.time()
            with (self.log_dir / f"{inst.model}-{inst.name}.log").open("ab") as out:
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
            code = await inst.process.wait()
            if self._stopping:
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
        yield f"frontend  v2 gRPC  {d.host}:{self.frontend.grpc_port}"
        if self.frontend.http_port is not None:
            yield f"frontend  v2 HTTP  http://{d.host}:{self.frontend.http_port}  (docs: /docs)"
        if self.frontend.metrics_port is not None:
            yield f"frontend  metrics  http://{d.host}:{self.frontend.metrics_port}/metrics"
        for inst in self.instances.values():
            role = inst.bundle.name
            yield (
                f"{inst.model}/{inst.name:<9} grpc {inst.host}:{inst.grpc_port}  "
                f"stream {inst.host}:{inst.stream_port}  ({role})"
            )


def _free_ports() -> tuple[int, int]:
    """A gRPC and a stream port on loopback."""
    return _free_port(), _free_port()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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
