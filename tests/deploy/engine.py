"""What the real-engine tests (marker ``docker``) share: the engine, the images, the demo
bundles, waiting for a condition, and the load and Triton clients run in their own process.

The engine comes from ``deploy/engine/engine.sh start`` (it installs and starts Debian's
engine where none answers).  A test skips only when that fails, with the script's words;
once an engine answers, every failure fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import docker
import pytest

from common.runtime import parm_home
from tests.model_container.container_process import REPO_ROOT
from train.demo import ensure_demo

ENGINE_SCRIPT = REPO_ROOT / "deploy/engine/engine.sh"
IMAGES = ("parm-frontend:latest", "parm-model:cpu", "parm-prometheus:debian")
MODEL = "digits"  # the demo model, as deploy/compose/frontend.toml names it
T = TypeVar("T")


def engine_client() -> docker.DockerClient:
    """A client of a running engine with parm's images: started and built if need be."""
    started = subprocess.run([ENGINE_SCRIPT, "start"], capture_output=True, text=True)
    if started.returncode != 0:
        pytest.skip(
            "NO DOCKER ENGINE: deploy/engine/engine.sh start could not install or start one:\n"
            + started.stdout
            + started.stderr
        )
    client = docker.from_env(timeout=120)
    client.ping()
    if not all(_has_image(client, image) for image in IMAGES):
        subprocess.run([ENGINE_SCRIPT, "images"], check=True)
    return client


def _has_image(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def demo_bundles() -> Path:
    """The demo bundles (k=2), trained on first use, in the folder the README mounts."""
    folder = parm_home() / "demo"
    demo = ensure_demo(2, folder)
    assert demo.base_dir.parent == folder == demo.parity_dir.parent
    return folder


def wait_for(what: str, check: Callable[[], T | None], limit_s: float = 300.0) -> T:
    """Poll ``check`` until it returns something other than None (or False); its value.

    The limit is generous on purpose: it only ends a test that would otherwise hang.
    """
    deadline = time.monotonic() + limit_s
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {limit_s:.0f} s for {what}")
        time.sleep(0.5)


def load(grpc_target: str, queries: int, concurrency: int) -> subprocess.Popen[str]:
    """``bench.client``, a closed-loop load client, in its own process (no warm-up)."""
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "bench.client", "--url", grpc_target, "--model", MODEL),
            *("--concurrency", str(concurrency), "--queries", str(queries), "--warmup", "0"),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def summary(client: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = client.communicate(timeout=600)
    assert client.returncode == 0, out
    result: dict[str, Any] = json.loads(out)
    return result


def triton_answers(grpc_target: str, http_target: str) -> dict[str, Any]:
    """One query over each of tritonclient's gRPC and HTTP clients, with provenance
    (``python -m tests.deploy.triton_probe``: Triton's protobuf modules cannot share a
    process with this project's)."""
    out = subprocess.run(
        [sys.executable, "-m", "tests.deploy.triton_probe", grpc_target, http_target, MODEL],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    answers: dict[str, Any] = json.loads(out.stdout)
    return answers


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``, in a
    Prometheus text exposition."""
    total = 0.0
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        if all(f'{key}="{want}"' in head for key, want in labels.items()):
            total += float(value)
    return total


# ---------------------------------------------------------------- killing an instance


def status(container: Any) -> str:
    container.reload()
    state: str = container.status
    return state


def crash(container: Any) -> None:
    """Kill the container's program from the host: a crash, which the engine restarts by
    the container's restart policy."""
    os.kill(container.attrs["State"]["Pid"], signal.SIGKILL)


def docker_kill(container: Any) -> None:
    """``docker kill``: the engine counts it as a manual stop and leaves the container
    stopped whatever its restart policy (seen on Debian's engine 20.10); an operator (here,
    the test) starts it again."""
    container.kill()
    wait_for("the killed container to stop", lambda: status(container) == "exited", 60)
    container.start()


KILLS = pytest.mark.parametrize("kill", [docker_kill, crash], ids=["docker-kill", "crash"])
