"""``parm deploy docker``: a deployment's containers on one or more Docker hosts.

Two layers.  `plan` is pure: from a deployment (`deploy.spec`) and the hosts, it decides
every container (`deploy.placement` puts the members of a coding group on different
hosts), its image, command, ports, GPU, labels and mounts, and the frontend's own
configuration file (`deploy.frontend_file`).  `up` and `down` carry a plan out through
the Docker SDK, one client per host (``unix://``, ``ssh://`` or ``tcp://`` URLs, as in
``DOCKER_HOST``); they only create, start, list, stop and remove containers.

Containers use the host's network: an instance listens on its host's ports and the
frontend, on any host, reaches it at ``host-address:port``; no overlay network is
needed between hosts.  Model bundles are not baked into images: every host has them in
the same folder, mounted read-only at ``/bundles``.  Every container carries the label
``parm.deployment=<name>``, and ``down`` removes exactly those, frontend first.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from deploy.frontend_file import dump_frontend_config
from deploy.placement import Host, Ports, Slot, place, plan_ports
from deploy.spec import Deployment, DeploymentError, Injection, ModelDeployment
from frontend.config import FrontendConfig, InstanceAddress, ModelConfig
from model_container.config import ContainerConfig

LABEL = "parm.deployment"
BUNDLES = Path("/bundles")  # where every container sees the bundles
FRONTEND_FILE = "/etc/parm/frontend.toml"


@dataclass(frozen=True)
class Images:
    frontend: str = "parm-frontend:latest"
    gpu: str = "parm-model:cuda"  # for hosts with GPUs
    cpu: str = "parm-model:cpu"


@dataclass(frozen=True)
class ContainerSpec:
    """One container to create: everything the Docker SDK is told about it."""

    host: Host
    name: str
    image: str
    command: tuple[str, ...]
    labels: Mapping[str, str]
    mounts: Mapping[str, str]  # host path -> container path, read-only
    metrics_port: int  # where its /metrics listens, on its host
    gpu: int | None = None
    files: Mapping[str, str] = field(default_factory=dict)  # container path -> text

    def create_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``DockerClient.containers.create``."""
        from docker.types import DeviceRequest

        kwargs: dict[str, Any] = {
            "image": self.image,
            "command": list(self.command),
            "name": self.name,
            "labels": dict(self.labels),
            "detach": True,
            "network_mode": "host",
            "volumes": {src: {"bind": dst, "mode": "ro"} for src, dst in self.mounts.items()},
            # a crashed instance comes back; the frontend treats it as down meanwhile
            "restart_policy": {"Name": "unless-stopped"},
        }
        if self.gpu is not None:
            kwargs["device_requests"] = [
                DeviceRequest(device_ids=[str(self.gpu)], capabilities=[["gpu"]])
            ]
        return kwargs


@dataclass(frozen=True)
class DockerPlan:
    """What `up` creates: the containers, the frontend's configuration, where it runs."""

    name: str
    containers: tuple[ContainerSpec, ...]  # the instances, then the frontend
    frontend: FrontendConfig
    frontend_host: Host

    def scrape_targets(self) -> list[str]:
        """Every ``host:port`` serving /metrics, for Prometheus."""
        return [f"{spec.host.address}:{spec.metrics_port}" for spec in self.containers]


def plan(
    deployment: Deployment,
    hosts: Sequence[Host],
    bundles: str,
    *,
    name: str = "parm",
    images: Images | None = None,
    frontend_host: Host | None = None,
) -> DockerPlan:
    """Every container of ``deployment`` on ``hosts``; ``bundles``: the folder holding the
    bundles on every host."""
    images = images or Images()
    slots = place(deployment, hosts)
    ports = plan_ports(slots)
    by_model = {m.name: m for m in deployment.models}
    specs = [
        _instance(name, by_model[slot.model], slot, p, bundles, images, deployment.threads)
        for slot, p in zip(slots, ports, strict=True)
    ]
    frontend = FrontendConfig(
        models=tuple(_model_config(m, slots, ports) for m in deployment.models),
        host="0.0.0.0",
        grpc_port=deployment.grpc_port,
        http_port=deployment.http_port or 8000,
        metrics_port=deployment.metrics_port or 8002,
    )
    where = frontend_host or hosts[0]
    specs.append(
        ContainerSpec(
            host=where,
            name=f"{name}-frontend",
            image=images.frontend,
            command=("--config", FRONTEND_FILE),
            labels={LABEL: name, "parm.role": "frontend"},
            mounts={bundles: str(BUNDLES)},
            metrics_port=frontend.metrics_port or 0,
            files={FRONTEND_FILE: dump_frontend_config(frontend)},
        )
    )
    return DockerPlan(name, tuple(specs), frontend, where)


def _instance(
    deployment: str,
    model: ModelDeployment,
    slot: Slot,
    ports: Ports,
    bundles: str,
    images: Images,
    threads: int,
) -> ContainerSpec:
    config = ContainerConfig(
        bundle=BUNDLES / model.bundle_for(slot.instance).name,
        port=ports.grpc,
        stream_port=ports.stream,
        host="0.0.0.0",
        # the one GPU handed to the container is its cuda:0
        device="cpu" if slot.gpu is None else "cuda",
        threads=threads,
        metrics_port=ports.metrics,
    ).with_faults(model.inject.get(slot.instance, Injection()).faults())
    role = slot.instance.split("-")[0]
    return ContainerSpec(
        host=slot.host,
        name=f"{deployment}-{model.name}-{slot.instance}",
        image=images.cpu if slot.gpu is None else images.gpu,
        command=tuple(config.argv()),
        labels={
            LABEL: deployment,
            "parm.role": role,
            "parm.model": model.name,
            "parm.instance": slot.instance,
            "parm.stripe": str(slot.stripe),
        },
        mounts={bundles: str(BUNDLES)},
        metrics_port=ports.metrics,
        gpu=slot.gpu,
    )


def _model_config(
    model: ModelDeployment, slots: Sequence[Slot], ports: Sequence[Ports]
) -> ModelConfig:
    def addresses(role: str) -> tuple[InstanceAddress, ...]:
        return tuple(
            InstanceAddress(
                s.instance, f"{s.host.address}:{p.grpc}", f"{s.host.address}:{p.stream}"
            )
            for s, p in zip(slots, ports, strict=True)
            if s.model == model.name and s.instance.startswith(role)
        )

    return model.model_config(addresses("data-"), addresses("parity-"), BUNDLES)


# ---------------------------------------------------------------- carrying it out


class Engine(Protocol):
    """The part of ``docker.DockerClient`` used here (``containers``, ``images``)."""

    @property
    def containers(self) -> Any: ...

    @property
    def images(self) -> Any: ...


def connect(host: Host) -> Engine:
    """A Docker SDK client for ``host`` (``ssh://`` goes through the ``ssh`` command)."""
    import docker

    client: Engine = docker.DockerClient(
        base_url=host.url, use_ssh_client=host.url.startswith("ssh://")
    )
    return client


def up(plan: DockerPlan, engines: Mapping[str, Engine]) -> list[str]:
    """Create and start every container, the frontend last; the names started.

    Refuses to start a deployment whose name is already running anywhere, and
    removes what it started if any step fails.
    """
    for url, engine in engines.items():
        if _labelled(engine, plan.name):
            raise DeploymentError(
                f"deployment {plan.name!r} already has containers on {url}; "
                f"run 'parm deploy docker down --name {plan.name}' first"
            )
    started: list[str] = []
    try:
        for spec in plan.containers:
            engine = engines[spec.host.url]
            _ensure_image(engine, spec)
            container = engine.containers.create(**spec.create_kwargs())
            if spec.files:
                container.put_archive("/", _tar(spec.files))
            container.start()
            started.append(spec.name)
    except BaseException:
        down(plan.name, engines.values())
        raise
    return started


def down(name: str, engines: Iterable[Engine]) -> list[str]:
    """Stop and remove every container labelled ``parm.deployment=name``, frontend first."""
    removed: list[str] = []
    for engine in engines:
        containers = _labelled(engine, name)
        containers.sort(key=lambda c: c.labels.get("parm.role") != "frontend")
        for container in containers:
            container.stop(timeout=10)
            container.remove()
            removed.append(container.name)
    return removed


def _labelled(engine: Engine, name: str) -> list[Any]:
    found: list[Any] = engine.containers.list(all=True, filters={"label": f"{LABEL}={name}"})
    return found


def _ensure_image(engine: Engine, spec: ContainerSpec) -> None:
    from docker.errors import APIError, ImageNotFound

    try:
        engine.images.get(spec.image)
    except ImageNotFound:
        try:
            engine.images.pull(spec.image)
        except APIError as exc:
            raise DeploymentError(
                f"image {spec.image} is not on {spec.host.url} and cannot be pulled ({exc}); "
                "build it there (see deploy/docker/) or push it to a registry"
            ) from None


def _tar(files: Mapping[str, str]) -> bytes:
    """A tar archive of ``files`` (absolute container paths) with their folders."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folders = {p for path in files for p in PurePosixPath(path).parents if str(p) != "/"}
        for folder in sorted(folders, key=lambda p: len(p.parts)):
            info = tarfile.TarInfo(str(folder).lstrip("/"))
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
