"""The local launcher with real child processes on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

import deploy.local
from deploy.local import InstanceFailedError, LocalCluster
from deploy.spec import Deployment, DeploymentError, Injection, ModelDeployment
from model_container.config import ContainerConfig
from model_container.faults import FaultSettings
from model_container.server import EXIT_BAD_BUNDLE
from proto.tensors import get_parameters, make_infer_request
from tests.model_container.container_process import (
    MISFIT,
    alive,
    break_architecture,
    inference_stub,
    make_bundle,
    make_parity_bundle,
)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("bundles")
    base = make_bundle(root / "base", name="m")
    return base, make_parity_bundle(root / "parity", base)


async def infer(port: int) -> str:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        x = np.zeros((1, 64), np.float32)
        response = await inference_stub(channel).ModelInfer(make_infer_request("m", {"input": x}))
        source = get_parameters(response.parameters)["parm_source"]
        assert isinstance(source, str)
        return source


def test_cluster_serves_restarts_a_dead_instance_and_leaves_no_orphans(
    bundles: tuple[Path, Path], tmp_path: Path
) -> None:
    base, parity = bundles
    model = ModelDeployment("m", base, parity, inject={"parity-0": Injection(delay_ms=1)})
    cluster = LocalCluster(Deployment((model,), grpc_port=0), tmp_path / "logs")

    async def scenario() -> list[int]:
        async with cluster:
            port = cluster.frontend.grpc_port
            assert await infer(port) in ("original", "reconstructed")
            victim = cluster.instances["m", "data-1"]
            assert victim.process is not None
            first_pid = victim.process.pid
            victim.started.clear()
            cluster.kill("m", "data-1", signal.SIGKILL)
            await asyncio.wait_for(victim.started.wait(), 30)  # the supervisor restarted it
            assert victim.restarts == 1
            assert victim.process.pid != first_pid
            # the frontend treats it as down until its health check passes again
            service = cluster.frontend.services["m"]
            async with asyncio.timeout(60):
                while not service.core.is_up("data-1"):
                    await asyncio.sleep(0.05)
            assert await infer(port) in ("original", "reconstructed")
            pids = [i.process.pid for i in cluster.instances.values() if i.process]
        return pids

    pids = asyncio.run(scenario())
    assert len(pids) == 3
    assert not any(alive(pid) for pid in pids)
    logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert logs == ["m-data-0.log", "m-data-1.log", "m-parity-0.log"]


def test_kill_names_a_running_instance(bundles: tuple[Path, Path], tmp_path: Path) -> None:
    base, parity = bundles
    cluster = LocalCluster(Deployment((ModelDeployment("m", base, parity),)), tmp_path)
    with pytest.raises(ProcessLookupError, match="m/data-0 is not running"):
        cluster.kill("m", "data-0")
    assert next(iter(cluster.endpoints())).startswith("frontend  v2 gRPC  127.0.0.1:8001")


def test_an_instance_that_cannot_start_fails_start_with_its_error(
    bundles: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    base, _ = bundles
    # The frontend accepts this parity bundle (its signature and base match); only
    # loading its weights fails, in the container, at every start.
    parity = break_architecture(make_parity_bundle(tmp_path / "parity", base))
    monkeypatch.setattr(deploy.local, "RESTART_BACKOFF_S", (0.01, 0.01))
    cluster = LocalCluster(Deployment((ModelDeployment("m", base, parity),)), tmp_path / "logs")

    async def scenario() -> None:
        try:
            await cluster.start(ready_timeout=240)  # a bound: crash-looping ends in a timeout
        finally:
            await cluster.stop()

    with pytest.raises(InstanceFailedError) as info:
        asyncio.run(scenario())
    message = str(info.value)
    assert message.startswith("instance m/parity-0 exited 3 times in a row before becoming ready")
    assert message.splitlines()[-1].endswith(MISFIT)  # the container's one error line
    assert message.count(MISFIT) == 1  # of its last run (every run appends to the log)
    assert "never retrieved" not in caplog.text  # the readiness wait was given up cleanly
    failed = cluster.instances["m", "parity-0"]
    assert failed.restarts == 2 and failed.process is not None
    assert failed.process.returncode == EXIT_BAD_BUNDLE
    assert not any(i.process and i.process.returncode is None for i in cluster.instances.values())


@pytest.mark.parametrize("name", ["../../../../x", "a/b", ".."])
def test_a_model_name_that_could_leave_the_log_folder_is_refused(
    bundles: tuple[Path, Path], tmp_path: Path, name: str
) -> None:
    base, parity = bundles
    deployment = Deployment((ModelDeployment(name, base, parity),))
    with pytest.raises(DeploymentError, match=f"model name: expected a name matching .*{name!r}"):
        LocalCluster(deployment, tmp_path / "a" / "b" / "c" / "d" / "logs")
    assert list(tmp_path.iterdir()) == []


def test_each_instance_is_started_from_its_container_config(
    bundles: tuple[Path, Path], tmp_path: Path
) -> None:
    base, parity = bundles
    inject = {"data-1": Injection(delay_ms=20, prob=0.5, fail_prob=0.25)}
    model = ModelDeployment("m", base, parity, inject=inject)
    padded = LocalCluster(
        Deployment((model,), threads=2),
        tmp_path,
        lambda config: dataclasses.replace(config, service_time_ms=10.0),
    )
    inst = padded.instances["m", "data-1"]
    config = padded.container_config(inst)
    assert (config.bundle, config.port, config.stream_port) == (
        base,
        inst.grpc_port,
        inst.stream_port,
    )
    assert (config.threads, config.service_time_ms) == (2, 10.0)
    assert config.faults == FaultSettings(20, 0.5, 0.25, seed=inst.seed)
    command = padded._command(inst)
    assert command[:3] == [sys.executable, "-m", "model_container"]
    assert command[-2:] == ["--exit-with-parent", str(os.getpid())]
    assert ContainerConfig.from_argv(command[3:-2]) == config


def test_instances_get_distinct_fault_seeds(bundles: tuple[Path, Path], tmp_path: Path) -> None:
    base, parity = bundles
    cluster = LocalCluster(Deployment((ModelDeployment("m", base, parity),)), tmp_path)
    seeds = [cluster.container_config(i).seed for i in cluster.instances.values()]
    assert seeds == [0, 1, 2]


def _get(url: str, body: bytes | None = None) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, body, timeout=60) as r:
        return r.status, r.read()


def test_a_cluster_with_frontend_workers_shares_its_ports_and_leaves_no_orphans(
    bundles: tuple[Path, Path], tmp_path: Path
) -> None:
    base, parity = bundles
    deployment = Deployment(
        (ModelDeployment("m", base, parity),),
        grpc_port=0,
        http_port=0,
        metrics_port=0,
        frontend_workers=2,
    )
    cluster = LocalCluster(deployment, tmp_path / "logs")
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}]}

    async def scenario() -> tuple[list[int | None], str, dict[str, Any], list[str]]:
        async with cluster:
            with pytest.raises(RuntimeError, match="runs in 2 worker processes"):
                _ = cluster.frontend
            front = cluster.workers
            assert await infer(front.grpc_port) in ("original", "reconstructed")
            url = f"http://127.0.0.1:{front.http_port}/v2/models/m/infer"
            status, answer = await asyncio.to_thread(_get, url, json.dumps(body).encode())
            assert status == 200
            metrics_url = f"http://127.0.0.1:{front.metrics_port}/metrics"
            _, text = await asyncio.to_thread(_get, metrics_url)
            return (
                [w.pid for w in front.workers],
                text.decode(),
                json.loads(answer),
                list(cluster.endpoints()),
            )

    pids, text, answer, endpoints = asyncio.run(scenario())
    assert answer["parameters"]["parm_source"] in ("original", "reconstructed")
    for worker in ("0", "1"):
        assert f'parm_frontend_worker_ready{{frontend_worker="{worker}"}} 1.0' in text
        assert f'parm_model_ready{{frontend_worker="{worker}",model="m"}} 1.0' in text
    assert any("2 worker processes sharing the ports" in line for line in endpoints)
    assert len(pids) == 2 and not any(pid is None or alive(pid) for pid in pids)
