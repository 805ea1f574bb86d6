"""``parm deploy docker up/down`` on a real engine, through the Docker SDK.

The demo deployment (k=2: two data instances and one parity instance on CPU, and the
frontend) on this machine's engine: the command line starts it, Triton's clients get
answers with provenance, a data instance killed while queries flow loses none and rejoins,
and ``down`` removes every container it started.  Its containers use the host's network
(as on a fleet of hosts): the instances listen on ports 9000-9008 and the frontend on free
ports chosen here, all reached on loopback.  The tests run in file order: the last one
takes the deployment down.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from deploy.docker import LABEL
from tests.deploy.engine import (
    KILLS,
    crash,
    demo_bundles,
    engine_client,
    load,
    metric,
    status,
    summary,
    triton_answers,
    wait_for,
)
from tests.model_container.container_process import REPO_ROOT, free_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


@dataclass(frozen=True)
class Deployed:
    name: str
    client: docker.DockerClient
    grpc: str  # the frontend's addresses, host:port
    http: str
    metrics: str

    def containers(self, **labels: str) -> list[Any]:
        wanted = {LABEL: self.name, **labels}
        found: list[Any] = self.client.containers.list(
            all=True, filters={"label": [f"{k}={v}" for k, v in wanted.items()]}
        )
        return found

    def frontend_metrics(self) -> str:
        with urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=10) as response:
            text: str = response.read().decode()
        return text


def parm(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cli", *args], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, f"parm {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


def deployment_file(path: Path, bundles: Path, ports: dict[str, int]) -> Path:
    path.write_text(
        "[frontend]\n"
        + "".join(f"{key} = {port}\n" for key, port in ports.items())
        + "\n[[models]]\n"
        + 'name = "digits"\n'
        + f'base = "{bundles / "digits-base"}"\n'
        + f'parity = "{bundles / "digits-parity-k2"}"\n'
        + "k = 2\ngroup_timeout_ms = 10\nslo_ms = 1000\n"
    )
    return path


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    client = engine_client()
    bundles = demo_bundles()
    ports = {"grpc_port": free_port(), "http_port": free_port(), "metrics_port": free_port()}
    config = deployment_file(tmp_path_factory.mktemp("deploy") / "demo.toml", bundles, ports)
    name = f"parm-test-{uuid.uuid4().hex[:8]}"
    at = {key: f"127.0.0.1:{port}" for key, port in ports.items()}
    running = Deployed(name, client, at["grpc_port"], at["http_port"], at["metrics_port"])
    try:
        parm("deploy", "docker", "up", "--config", str(config), "--bundles", str(bundles),
             "--name", name)  # fmt: skip
        url = f"http://{running.http}/v2/health/ready"
        wait_for("the frontend ready", lambda: ready(url), 600)
        yield running
    finally:
        subprocess.run([sys.executable, "-m", "cli", "deploy", "docker", "down", "--name", name],
                       cwd=REPO_ROOT, capture_output=True)  # fmt: skip
        client.close()


def test_up_starts_the_instances_and_the_frontend(deployed: Deployed) -> None:
    roles = sorted(c.labels["parm.role"] for c in deployed.containers())
    assert roles == ["data", "data", "frontend", "parity"]
    assert all(c.status == "running" for c in deployed.containers())
    images = {c.labels["parm.role"]: c.image.tags[0] for c in deployed.containers()}
    assert images == {
        "data": "parm-model:cpu",
        "parity": "parm-model:cpu",
        "frontend": "parm-frontend:latest",
    }


def test_tritonclient_gets_answers_with_provenance(deployed: Deployed) -> None:
    answers = triton_answers(deployed.grpc, deployed.http)
    for answer in answers.values():
        assert answer["source"] in ("original", "reconstructed")
        assert answer["shape"] == [1, 10]


@KILLS
def test_a_killed_data_instance_loses_no_query_and_rejoins(deployed: Deployed, kill: Any) -> None:
    (victim,) = deployed.containers(**{"parm.instance": "data-1"})
    restarts = victim.attrs["RestartCount"]

    def answered() -> float:
        return metric(deployed.frontend_metrics(), "parm_answers_total")

    def served() -> float:
        text = deployed.frontend_metrics()
        return metric(text, "parm_instance_service_seconds_count", instance_name="data-1")

    client = load(deployed.grpc, queries=3000, concurrency=4)
    flowing = answered() + 100
    wait_for("queries to flow", lambda: answered() > flowing)
    kill(victim)
    result = summary(client)
    assert result["errors"] == {} and result["count"] == 3000
    wait_for("data-1 running again", lambda: status(victim) == "running", 120)
    if kill is crash:
        assert victim.attrs["RestartCount"] == restarts + 1  # the engine restarted it
    wait_for("the frontend to see data-1 up", lambda: up(deployed) == 1.0)
    rejoined = served()
    summary(load(deployed.grpc, queries=200, concurrency=2))
    assert served() > rejoined  # it serves queries again


def up(deployed: Deployed) -> float:
    return metric(deployed.frontend_metrics(), "parm_instance_up", instance_name="data-1")


def test_down_removes_every_container(deployed: Deployed) -> None:
    out = parm("deploy", "docker", "down", "--name", deployed.name)
    assert "removed 4 containers" in out
    assert deployed.containers() == []
