"""deploy/k8s: the kustomize base and the CPU overlay, checked as files.

No cluster runs here.  The manifests are read and checked (kinds, GPU requests,
probes, scrape annotations, Services, mounts) and so is their agreement with the
frontend's file; where ``kubectl`` is installed, ``kubectl kustomize`` renders both
(offline) and the rendered output is checked too.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.frontend_file import load_frontend_config
from tests.model_container.container_process import REPO_ROOT

BASE = REPO_ROOT / "deploy/k8s/base"
CPU = REPO_ROOT / "deploy/k8s/overlays/cpu"


def documents(paths: list[Path]) -> list[dict[str, Any]]:
    return [doc for path in paths for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="module")
def base() -> dict[tuple[str, str], dict[str, Any]]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    docs = documents([BASE / name for name in kustomization["resources"]])
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def container(doc: dict[str, Any]) -> dict[str, Any]:
    (only,) = doc["spec"]["template"]["spec"]["containers"]
    return only  # type: ignore[no-any-return]


def test_the_resources(base: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert set(base) == {
        ("PersistentVolumeClaim", "parm-bundles"),
        ("Deployment", "parm-frontend"),
        ("Service", "parm-frontend"),
        ("Service", "parm-frontend-pods"),
        ("StatefulSet", "parm-data"),
        ("Service", "parm-data"),
        ("StatefulSet", "parm-parity"),
        ("Service", "parm-parity"),
    }
    assert base["PersistentVolumeClaim", "parm-bundles"]["spec"]["accessModes"] == ["ReadOnlyMany"]


def test_the_frontend_deployment(base: dict[tuple[str, str], dict[str, Any]]) -> None:
    deployment = base["Deployment", "parm-frontend"]
    pod = deployment["spec"]["template"]
    front = container(deployment)
    assert front["args"] == ["--config", "/etc/parm/frontend.toml"]
    ports = {p["name"]: p["containerPort"] for p in front["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert front["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert front["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(ports["metrics"]),
        "prometheus.io/path": "/metrics",
    }
    mounts = {m["name"]: (m["mountPath"], m["readOnly"]) for m in front["volumeMounts"]}
    assert mounts == {"config": ("/etc/parm", True), "bundles": ("/bundles", True)}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "parm-frontend"
    assert volumes["bundles"]["persistentVolumeClaim"]["readOnly"] is True
    service = base["Service", "parm-frontend"]["spec"]
    assert {p["name"]: p["port"] for p in service["ports"]} == ports


@pytest.mark.parametrize(("role", "replicas"), [("data", 2), ("parity", 1)])
def test_instance_statefulsets(
    base: dict[tuple[str, str], dict[str, Any]], role: str, replicas: int
) -> None:
    sts = base["StatefulSet", f"parm-{role}"]
    model = container(sts)
    assert sts["spec"]["replicas"] == replicas and sts["spec"]["serviceName"] == f"parm-{role}"
    assert model["resources"]["limits"]["nvidia.com/gpu"] == 1
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert model[probe]["grpc"] == {"port": 8001}
    annotations = sts["spec"]["template"]["metadata"]["annotations"]
    args = model["args"]
    assert annotations["prometheus.io/port"] == args[args.index("--metrics-port") + 1]
    assert annotations["prometheus.io/scrape"] == "true"
    anti = sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    (term,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == {"parm.io/model": "digits"}
    service = base["Service", f"parm-{role}"]["spec"]
    assert service["clusterIP"] == "None" and service["publishNotReadyAddresses"] is True


def test_the_frontend_file_names_the_pods(base: dict[tuple[str, str], dict[str, Any]]) -> None:
    (model,) = load_frontend_config(BASE / "frontend.toml").models
    expected = []
    for role in ("data", "parity"):
        sts = base["StatefulSet", f"parm-{role}"]
        ports = {p["name"]: p["containerPort"] for p in container(sts)["ports"]}
        for i in range(sts["spec"]["replicas"]):
            host = f"parm-{role}-{i}.parm-{role}"
            expected.append((f"{role}-{i}", f"{host}:{ports['grpc']}", f"{host}:{ports['stream']}"))
    assert [(a.name, a.grpc, a.stream) for a in model.data + model.parity] == expected
    args = container(base["StatefulSet", "parm-parity"])["args"]
    assert args[args.index("--bundle") + 1] == str(model.parity_bundle)


def kustomize(path: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=True
    )
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_renders_the_base_and_the_cpu_overlay() -> None:
    base = {(d["kind"], d["metadata"]["name"]): d for d in kustomize(BASE)}
    (config_map,) = [d for (kind, _), d in base.items() if kind == "ConfigMap"]
    assert "frontend.toml" in config_map["data"]
    pod = base["Deployment", "parm-frontend"]["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "config")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]  # with its hash
    assert all(
        d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "parm" for d in base.values()
    )
    cpu = [d for d in kustomize(CPU) if d["kind"] == "StatefulSet"]
    assert len(cpu) == 2
    for sts in cpu:
        model = container(sts)
        assert model["image"] == "parm-model:cpu"
        assert "nvidia.com/gpu" not in model["resources"]["limits"]


def test_several_frontends_sit_behind_the_service(
    base: dict[tuple[str, str], dict[str, Any]],
) -> None:
    deployment = base["Deployment", "parm-frontend"]
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["replicas"] >= 2
    anti = pod["spec"]["affinity"]["podAntiAffinity"]
    (term,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    labels = pod["metadata"]["labels"]
    for name in ("parm-frontend", "parm-frontend-pods"):
        service = base["Service", name]["spec"]
        assert service["selector"].items() <= labels.items()
    assert base["Service", "parm-frontend-pods"]["spec"]["clusterIP"] == "None"
    # each pod runs the file's workers: one CPU each
    config = load_frontend_config(BASE / "frontend.toml")
    assert config.workers == 2
    assert int(container(deployment)["resources"]["requests"]["cpu"]) >= config.workers
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace > config.shutdown_grace_s
