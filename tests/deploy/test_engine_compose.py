"""deploy/compose on a real engine: the CPU stack up, queried, a data instance killed and
brought back, scraped by Prometheus, and taken down without a trace.

The stack is docker-compose.yml with the CPU override (docker-compose.cpu.yml), under a
project name of its own, with one more override made here that publishes the frontend's
and Prometheus's ports on ephemeral loopback ports (so nothing collides with another
stack on the machine and no traffic leaves it).  The tests run in file order: the last
one takes the stack down.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.deploy.engine import (
    KILLS,
    crash,
    demo_bundles,
    engine_client,
    load,
    metric,
    summary,
    triton_answers,
    wait_for,
)
from tests.model_container.container_process import REPO_ROOT

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

COMPOSE = REPO_ROOT / "deploy/compose"
PORTS = """
services:
  frontend:
    ports: !override ["127.0.0.1::8000", "127.0.0.1::8001", "127.0.0.1::8002"]
  prometheus:
    ports: !override ["127.0.0.1::9090"]
"""


@dataclass(frozen=True)
class Stack:
    project: str
    files: tuple[Path, ...]
    env: dict[str, str]
    client: docker.DockerClient

    def compose(self, *args: str) -> str:
        files = [arg for path in self.files for arg in ("-f", str(path))]
        command = ["docker", "compose", "-p", self.project, *files, *args]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(command)}:\n{done.stderr}"
        return done.stdout

    def address(self, service: str, port: int) -> str:
        """``127.0.0.1:P``: where ``service``'s ``port`` is published."""
        _, _, published = self.compose("port", service, str(port)).strip().rpartition(":")
        return f"127.0.0.1:{published}"

    def container(self, service: str) -> Any:
        (found,) = self.client.containers.list(
            all=True,
            filters={
                "label": [
                    f"com.docker.compose.project={self.project}",
                    f"com.docker.compose.service={service}",
                ]
            },
        )
        return found

    def metrics(self) -> str:
        return get(f"http://{self.address('frontend', 8002)}/metrics").decode()

    def labelled(self) -> dict[str, list[Any]]:
        """The project's containers, networks and volumes that the engine still has."""
        label: dict[str, str | list[str] | bool] = {
            "label": f"com.docker.compose.project={self.project}"
        }
        return {
            "containers": self.client.containers.list(all=True, filters=label),
            "networks": self.client.networks.list(filters=label),
            "volumes": self.client.volumes.list(filters=label),
        }


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
    return body


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    client = engine_client()
    ports = tmp_path_factory.mktemp("compose") / "ports.yml"
    ports.write_text(PORTS)
    env = {**os.environ, "PARM_BUNDLES": str(demo_bundles())}
    files = (COMPOSE / "docker-compose.yml", COMPOSE / "docker-compose.cpu.yml", ports)
    running = Stack(f"parm-test-{uuid.uuid4().hex[:8]}", files, env, client)
    began = time.monotonic()
    try:
        running.compose("up", "-d", "--wait", "--wait-timeout", "600")
        print(f"\ncompose stack {running.project} ready in {time.monotonic() - began:.1f} s")
        yield running
    finally:
        subprocess.run(
            ["docker", "compose", "-p", running.project, "down", "-t", "5"],
            env=env,
            capture_output=True,
        )
        client.close()


def test_every_service_runs_and_the_instances_are_healthy(stack: Stack) -> None:
    services = set(stack.compose("ps", "--services").split())
    assert services == {"frontend", "data-0", "data-1", "parity-0", "prometheus"}
    for name in ("frontend", "data-0", "data-1", "parity-0"):
        assert stack.container(name).attrs["State"]["Health"]["Status"] == "healthy"


def test_tritonclient_gets_answers_with_provenance_over_grpc_and_http(stack: Stack) -> None:
    answers = triton_answers(stack.address("frontend", 8001), stack.address("frontend", 8000))
    assert answers["grpc"]["id"] == "grpc-1" and answers["http"]["id"] == "http-1"
    for answer in answers.values():
        assert answer["source"] in ("original", "reconstructed")
        assert answer["shape"] == [1, 10]


@KILLS
def test_a_killed_data_instance_loses_no_query_and_rejoins(stack: Stack, kill: Any) -> None:
    victim = stack.container("data-0")
    restarts = victim.attrs["RestartCount"]
    client = load(stack.address("frontend", 8001), queries=3000, concurrency=4)
    flowing = metric(stack.metrics(), "parm_answers_total") + 100
    wait_for("queries to flow", lambda: metric(stack.metrics(), "parm_answers_total") > flowing)
    kill(victim)
    result = summary(client)
    assert result["errors"] == {} and result["count"] == 3000
    wait_for("data-0 healthy again", lambda: _health(victim) == "healthy")
    if kill is crash:
        assert victim.attrs["RestartCount"] == restarts + 1  # the engine restarted it
    wait_for("the frontend to see data-0 up", lambda: _up(stack, "data-0") == 1.0)
    rejoined = _served(stack, "data-0")
    summary(load(stack.address("frontend", 8001), queries=200, concurrency=2))
    assert _served(stack, "data-0") > rejoined  # it serves queries again


def _health(container: Any) -> str:
    container.reload()
    health: str = container.attrs["State"].get("Health", {}).get("Status", "none")
    return health


def _served(stack: Stack, instance: str) -> float:
    text = stack.metrics()
    return metric(text, "parm_instance_service_seconds_count", instance_name=instance)


def _up(stack: Stack, instance: str) -> float:
    return metric(stack.metrics(), "parm_instance_up", instance_name=instance)


def promql(stack: Stack, query: str) -> list[Any]:
    url = f"http://{stack.address('prometheus', 9090)}/api/v1/query?"
    reply = json.loads(get(url + urllib.parse.urlencode({"query": query})))
    assert reply["status"] == "success", reply
    result: list[Any] = reply["data"]["result"]
    return result


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the Grafana dashboard, its variables filled in."""
    dashboard = json.loads((COMPOSE / "grafana/dashboards/parm.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    return [re.sub(r"\$__rate_interval", "1m", e).replace("$model", ".*") for e in exprs]


def test_prometheus_scrapes_every_target(stack: Stack) -> None:
    def targets() -> list[Any] | None:
        url = f"http://{stack.address('prometheus', 9090)}/api/v1/targets"
        active: list[Any] = json.loads(get(url))["data"]["activeTargets"]
        return active if all(t["health"] == "up" for t in active) else None

    scraped = {t["labels"]["instance"] for t in wait_for("every target up", targets)}
    assert scraped == {"frontend:8002", "data-0:9102", "data-1:9102", "parity-0:9102"}


@pytest.mark.parametrize("query", dashboard_queries())
def test_every_dashboard_query_returns_data(stack: Stack, query: str) -> None:
    summary(load(stack.address("frontend", 8001), queries=200, concurrency=2))
    assert wait_for(f"data for {query}", lambda: promql(stack, query) or None, 120)


def test_down_leaves_no_container_network_or_volume(stack: Stack) -> None:
    assert stack.labelled()["containers"]
    stack.compose("down", "-t", "5")
    assert stack.labelled() == {"containers": [], "networks": [], "volumes": []}
