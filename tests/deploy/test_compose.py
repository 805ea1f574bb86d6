"""deploy/compose: the compose file, Prometheus and Grafana, checked as files.

No Docker engine (nor the compose plugin) runs on the development machine, so these
tests read the files and check that they agree with each other and with the code:
services and ports against frontend.toml, GPU reservations, read-only bundle mounts,
healthchecks, scrape targets, and that every dashboard query names a metric that the
frontend or a container really exports.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from deploy.frontend_file import load_frontend_config
from frontend.metrics import Metrics
from model_container.metrics import ContainerMetrics
from tests.model_container.container_process import REPO_ROOT

COMPOSE = REPO_ROOT / "deploy/compose"
INSTANCES = ("data-0", "data-1", "parity-0")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose: dict[str, Any] = load(COMPOSE / "docker-compose.yml")
    return compose["services"]  # type: ignore[no-any-return]


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_services(services: dict[str, Any]) -> None:
    assert set(services) == {"frontend", *INSTANCES, "prometheus", "grafana"}
    assert services["frontend"]["image"] == "parm-frontend:latest"
    assert services["frontend"]["ports"] == ["8000:8000", "8001:8001", "8002:8002"]
    assert services["frontend"]["command"] == ["--config", "/etc/parm/frontend.toml"]


@pytest.mark.parametrize("name", INSTANCES)
def test_instances_reserve_a_gpu_and_mount_the_bundles_read_only(
    services: dict[str, Any], name: str
) -> None:
    instance = services[name]
    assert instance["image"] == "parm-model:cuda"
    (device,) = instance["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert len(device["device_ids"]) == 1
    assert instance["volumes"] == ["${PARM_BUNDLES:-./bundles}:/bundles:ro"]
    assert instance["healthcheck"]["test"][:4] == ["CMD", "python", "-m", "model_container.probe"]
    command = instance["command"]
    assert flag(command, "--host") == "0.0.0.0" and flag(command, "--device") == "cuda"
    assert instance["labels"]["parm.role"] == name.split("-")[0]


def test_the_frontend_file_names_the_services_and_their_ports(services: dict[str, Any]) -> None:
    frontend = services["frontend"]
    assert "./frontend.toml:/etc/parm/frontend.toml:ro" in frontend["volumes"]
    assert "${PARM_BUNDLES:-./bundles}:/bundles:ro" in frontend["volumes"]
    (model,) = load_frontend_config(COMPOSE / "frontend.toml").models
    for address in model.data + model.parity:
        command = services[address.name]["command"]
        assert address.grpc == f"{address.name}:{flag(command, '--port')}"
        assert address.stream == f"{address.name}:{flag(command, '--stream-port')}"
        bundle = model.parity_bundle if address.name.startswith("parity") else model.base_bundle
        assert flag(command, "--bundle") == str(bundle)


def test_prometheus_scrapes_the_frontend_and_every_instance(services: dict[str, Any]) -> None:
    config = load(COMPOSE / "prometheus.yml")
    targets = {
        target
        for job in config["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    config_file = load_frontend_config(COMPOSE / "frontend.toml")
    expected = {f"frontend:{config_file.metrics_port}"}
    expected |= {f"{n}:{flag(services[n]['command'], '--metrics-port')}" for n in INSTANCES}
    assert targets == expected
    mount = "./prometheus.yml:/etc/prometheus/prometheus.yml:ro"
    assert mount in services["prometheus"]["volumes"]


def exported_names() -> set[str]:
    """Every metric name the frontend and a container export (their sample names)."""
    text = Metrics().render()
    text += generate_latest(ContainerMetrics("m", lambda: True).registry).decode()
    names = set(re.findall(r"^# TYPE (\w+) ", text, re.MULTILINE))
    return names | {f"{n}{s}" for n in names for s in ("_bucket", "_count", "_sum", "_total")}


def test_every_dashboard_query_names_an_exported_metric() -> None:
    dashboard = json.loads((COMPOSE / "grafana/dashboards/parm.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\b(parm_\w+)", expr)}
    assert used and used <= exported_names(), used - exported_names()
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("latency by source", "reconstruction rate", "queue depths", "health"):
        assert topic in titles
    # the latency panel shows p50, p99 and p99.9 per source
    latency = dashboard["panels"][0]["targets"]
    assert [t["expr"].split(",")[0] for t in latency] == [
        "histogram_quantile(0.5",
        "histogram_quantile(0.99",
        "histogram_quantile(0.999",
    ]
    assert all("by (le, source)" in t["expr"] for t in latency)


def test_grafana_is_provisioned_with_the_datasource_the_dashboard_uses(
    services: dict[str, Any],
) -> None:
    (source,) = load(COMPOSE / "grafana/provisioning/datasources/prometheus.yml")["datasources"]
    assert source["url"] == "http://prometheus:9090" and source["uid"] == "prometheus"
    dashboard = json.loads((COMPOSE / "grafana/dashboards/parm.json").read_text())
    uids = {p["datasource"]["uid"] for p in dashboard["panels"]}
    assert uids == {"prometheus"}
    (provider,) = load(COMPOSE / "grafana/provisioning/dashboards/parm.yml")["providers"]
    mounts = services["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


class _ComposeLoader(yaml.SafeLoader):
    """YAML with compose's merge tags (``!reset``, ``!override``), read as plain values."""


def _untagged(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


for _tag in ("!reset", "!override"):
    _ComposeLoader.add_constructor(_tag, _untagged)


def load_override(path: Path) -> Any:
    return yaml.load(path.read_text(), _ComposeLoader)  # a SafeLoader: no objects


def test_the_replicas_override_puts_the_frontends_behind_a_balancer(
    services: dict[str, Any],
) -> None:
    override = load_override(COMPOSE / "docker-compose.replicas.yml")["services"]
    frontend = override["frontend"]
    assert frontend["deploy"]["replicas"] == "${FRONTENDS:-2}"
    assert frontend["ports"] == []  # YAML's !reset: the balancer publishes them
    config = load_frontend_config(COMPOSE / "frontend.toml")
    client_ports = [config.http_port, config.grpc_port]
    lb = override["frontend-lb"]
    assert lb["ports"] == [f"{p}:{p}" for p in client_ports]
    assert "./frontend-lb.conf:/etc/nginx/nginx.conf:ro" in lb["volumes"]
    conf = (COMPOSE / "frontend-lb.conf").read_text()
    for port in client_ports:
        assert f"listen {port};" in conf and f"{port} frontend:{port};" in conf
    mount = "./prometheus.replicas.yml:/etc/prometheus/prometheus.yml:ro"
    assert override["prometheus"]["volumes"] == [mount]


def test_the_replicas_prometheus_finds_every_frontend_and_instance() -> None:
    single = load(COMPOSE / "prometheus.yml")
    replicas = load(COMPOSE / "prometheus.replicas.yml")
    jobs = {job["job_name"]: job for job in replicas["scrape_configs"]}
    (found,) = jobs["parm-frontend"]["dns_sd_configs"]
    port = load_frontend_config(COMPOSE / "frontend.toml").metrics_port
    assert found == {"names": ["frontend"], "type": "A", "port": port}
    others = [job for job in single["scrape_configs"] if job["job_name"] != "parm-frontend"]
    assert [job for job in replicas["scrape_configs"] if job["job_name"] != "parm-frontend"] == (
        others
    )
