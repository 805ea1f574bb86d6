"""``parm deploy docker``: the plan (pure) and its SDK calls.

The plan is checked directly, and `up`/`down` run against `RecordingEngine`, which records
the Docker SDK calls they make (the same methods and arguments as ``docker.DockerClient``):
placement over several hosts, which one engine cannot show.  The same commands on a real
engine, with parm's images: tests/deploy/test_engine_deploy.py (``make test-docker``).
"""

from __future__ import annotations

import io
import tarfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from docker.errors import APIError, ImageNotFound
from docker.types import DeviceRequest

from deploy import docker as launcher
from deploy.frontend_file import frontend_config_from
from deploy.placement import Host
from deploy.spec import Deployment, DeploymentError, Injection, ModelDeployment

HOSTS = [Host(f"ssh://gpu{i}", f"10.0.0.{i}", gpus=1) for i in range(3)]


def deployment() -> Deployment:
    model = ModelDeployment(
        "digits",
        Path("/anywhere/digits-base"),
        Path("/anywhere/digits-parity-k2"),
        inject={"data-1": Injection(delay_ms=5)},
        settings={"group_timeout_ms": 10.0},
    )
    return Deployment((model,), http_port=8000, metrics_port=8002)


def test_the_plan_spreads_instances_and_points_the_frontend_at_them() -> None:
    plan = launcher.plan(deployment(), HOSTS, "/srv/parm/bundles", name="exp1")
    *instances, frontend = plan.containers
    assert [(c.name, c.host.url) for c in instances] == [
        ("exp1-digits-data-0", "ssh://gpu0"),
        ("exp1-digits-data-1", "ssh://gpu1"),
        ("exp1-digits-parity-0", "ssh://gpu2"),
    ]
    assert frontend.name == "exp1-frontend" and frontend.host == HOSTS[0]
    config = frontend_config_from(tomllib.loads(frontend.files[launcher.FRONTEND_FILE]), Path("/"))
    (model,) = config.models
    assert [(a.name, a.grpc, a.stream) for a in model.data + model.parity] == [
        ("data-0", "10.0.0.0:9000", "10.0.0.0:9001"),
        ("data-1", "10.0.0.1:9000", "10.0.0.1:9001"),
        ("parity-0", "10.0.0.2:9000", "10.0.0.2:9001"),
    ]
    assert model.base_bundle == Path("/bundles/digits-base")
    assert model.parity_bundle == Path("/bundles/digits-parity-k2")
    assert model.group_timeout_ms == 10.0
    assert (config.host, config.http_port, config.metrics_port) == ("0.0.0.0", 8000, 8002)
    assert plan.scrape_targets() == [
        "10.0.0.0:9002",
        "10.0.0.1:9002",
        "10.0.0.2:9002",
        "10.0.0.0:8002",
    ]


def test_instance_containers_get_a_gpu_host_network_labels_and_the_bundles() -> None:
    plan = launcher.plan(deployment(), HOSTS, "/srv/parm/bundles", name="exp1")
    kwargs = plan.containers[1].create_kwargs()
    assert kwargs["image"] == "parm-model:cuda"
    assert kwargs["network_mode"] == "host"
    assert kwargs["volumes"] == {"/srv/parm/bundles": {"bind": "/bundles", "mode": "ro"}}
    assert kwargs["labels"] == {
        "parm.deployment": "exp1",
        "parm.role": "data",
        "parm.model": "digits",
        "parm.instance": "data-1",
        "parm.stripe": "0",
    }
    (request,) = kwargs["device_requests"]
    assert request == DeviceRequest(device_ids=["0"], capabilities=[["gpu"]])
    command = kwargs["command"]
    assert command[:2] == ["--bundle", "/bundles/digits-base"]
    for flag, value in [("--port", "9000"), ("--device", "cuda"), ("--delay-ms", "5")]:
        assert command[command.index(flag) + 1] == value


def test_cpu_hosts_get_the_cpu_image_and_no_gpu() -> None:
    cpu = [Host("tcp://10.0.0.9:2376", "10.0.0.9")]
    plan = launcher.plan(deployment(), cpu, "/b", images=launcher.Images(cpu="my/cpu:1"))
    kwargs = plan.containers[0].create_kwargs()
    assert kwargs["image"] == "my/cpu:1" and "device_requests" not in kwargs
    assert kwargs["command"][kwargs["command"].index("--device") + 1] == "cpu"


# ---------------------------------------------------------------- the SDK calls


@dataclass
class RecordedContainer:
    name: str
    labels: dict[str, str]
    log: list[tuple[str, ...]]
    archive: bytes = b""

    def put_archive(self, path: str, data: bytes) -> bool:
        self.log.append(("put_archive", self.name, path))
        self.archive = data
        return True

    def start(self) -> None:
        self.log.append(("start", self.name))

    def stop(self, timeout: int) -> None:
        self.log.append(("stop", self.name))

    def remove(self) -> None:
        self.log.append(("remove", self.name))


@dataclass
class RecordingEngine:
    """Records the ``docker.DockerClient`` calls made on it (``containers``, ``images``)."""

    url: str
    log: list[tuple[str, ...]]
    images_here: set[str] = field(default_factory=set)
    fail_start_of: str | None = None
    created: list[RecordedContainer] = field(default_factory=list)

    @property
    def containers(self) -> RecordingEngine:
        return self

    @property
    def images(self) -> RecordingEngine:
        return self

    def get(self, image: str) -> None:
        if image not in self.images_here:
            raise ImageNotFound(f"no {image}")

    def pull(self, image: str) -> None:
        self.log.append(("pull", self.url, image))
        if image.startswith("private/"):
            raise APIError("pull access denied")
        self.images_here.add(image)

    def create(self, **kwargs: Any) -> RecordedContainer:
        self.log.append(("create", self.url, kwargs["name"]))
        if kwargs["name"] == self.fail_start_of:
            raise APIError("port is already allocated")
        container = RecordedContainer(kwargs["name"], kwargs["labels"], self.log)
        self.created.append(container)
        return container

    def list(self, all: bool, filters: dict[str, str]) -> list[RecordedContainer]:
        assert all is True
        key, _, value = filters["label"].partition("=")
        return [c for c in self.created if c.labels.get(key) == value]


def engines(log: list[tuple[str, ...]], **settings: Any) -> dict[str, RecordingEngine]:
    images = {"parm-model:cuda", "parm-frontend:latest"}
    return {h.url: RecordingEngine(h.url, log, set(images), **settings) for h in HOSTS}


def test_up_starts_instances_then_the_frontend_with_its_file() -> None:
    plan = launcher.plan(deployment(), HOSTS, "/b", name="exp1")
    log: list[tuple[str, ...]] = []
    running = engines(log)
    started = launcher.up(plan, running)
    assert started == [c.name for c in plan.containers]
    assert [entry for entry in log if entry[0] == "start"] == [("start", n) for n in started]
    assert ("put_archive", "exp1-frontend", "/") in log
    frontend = running["ssh://gpu0"].created[-1]
    with tarfile.open(fileobj=io.BytesIO(frontend.archive)) as tar:
        assert tar.getnames() == ["etc", "etc/parm", "etc/parm/frontend.toml"]
        member = tar.extractfile("etc/parm/frontend.toml")
        assert member is not None and b'name = "digits"' in member.read()


def test_down_removes_exactly_the_labelled_containers_frontend_first() -> None:
    plan = launcher.plan(deployment(), HOSTS, "/b", name="exp1")
    log: list[tuple[str, ...]] = []
    running = engines(log)
    launcher.up(plan, running)
    running["ssh://gpu1"].created.append(RecordedContainer("someone-else", {}, log))
    log.clear()
    removed = launcher.down("exp1", running.values())
    assert removed == [
        "exp1-frontend",
        "exp1-digits-data-0",
        "exp1-digits-data-1",
        "exp1-digits-parity-0",
    ]
    assert log[0] == ("stop", "exp1-frontend")
    assert not any("someone-else" in entry for entry in log)


def test_a_failed_step_removes_what_was_started() -> None:
    plan = launcher.plan(deployment(), HOSTS, "/b", name="exp1")
    log: list[tuple[str, ...]] = []
    running = engines(log, fail_start_of="exp1-digits-parity-0")
    with pytest.raises(APIError, match="port is already allocated"):
        launcher.up(plan, running)
    assert ("remove", "exp1-digits-data-0") in log and ("remove", "exp1-digits-data-1") in log
    assert not any(entry[-1] == "exp1-frontend" for entry in log)


def test_a_running_deployment_is_not_started_twice() -> None:
    plan = launcher.plan(deployment(), HOSTS, "/b", name="exp1")
    log: list[tuple[str, ...]] = []
    running = engines(log)
    launcher.up(plan, running)
    with pytest.raises(DeploymentError, match="'exp1' already has containers on ssh://gpu0"):
        launcher.up(plan, running)


def test_a_missing_image_is_pulled_or_named() -> None:
    images = launcher.Images(gpu="private/model:1")
    plan = launcher.plan(deployment(), HOSTS, "/b", images=images)
    log: list[tuple[str, ...]] = []
    with pytest.raises(DeploymentError, match="image private/model:1 is not on ssh://gpu0"):
        launcher.up(plan, engines(log))
    assert ("pull", "ssh://gpu0", "private/model:1") in log
