"""Helpers for the integration tests: a tiny bundle and a real container process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

# The benchmark's tiny model and port picker, re-exported for the tests.
from bench.container_rtt import CLASSES as CLASSES
from bench.container_rtt import IN_FEATURES as IN_FEATURES
from bench.container_rtt import tiny_bundle
from common.bundle import ParityInfo, read_manifest
from common.models import build, save_bundle
from common.runtime import free_port as free_port
from proto import inference_pb2 as pb
from proto import inference_pb2_grpc as pb_grpc
from proto.tensors import make_infer_request

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = "mlp"
START_TIMEOUT_S = 60


def make_bundle(path: Path, name: str = MODEL) -> Path:
    """A small MLP bundle (64 -> 16 -> 10) with fixed random weights: the benchmark's."""
    return tiny_bundle(path, name, preprocessing={"mean": [0.5], "std": [0.25]})


def make_misfit_bundle(path: Path, name: str = MODEL) -> Path:
    """A tiny bundle whose manifest asks for a hidden width its weights do not have."""
    return break_architecture(make_bundle(path, name))


def break_architecture(bundle: Path) -> Path:
    """Make a tiny (base or parity) bundle's manifest ask for 17 hidden units, not 16."""
    manifest = bundle / "manifest.json"
    d = json.loads(manifest.read_text())
    d["arch_args"]["hidden"] = [17]
    manifest.write_text(json.dumps(d))
    return bundle


#: what loading `make_misfit_bundle`'s bundle says
MISFIT = "tensor 'layers.1.weight': expected shape [17, 64], found [16, 64]"


def zero_request(request_id: str = "") -> pb.ModelInferRequest:
    """One all-zero query for the tiny bundle's model."""
    x = np.zeros((1, IN_FEATURES), np.float32)
    return make_infer_request(MODEL, {"input": x}, request_id=request_id)


def make_parity_bundle(path: Path, base: Path, k: int = 2) -> Path:
    """A parity model bundle (same architecture, sum encoder) for the bundle at ``base``."""
    manifest = read_manifest(base)
    arch = manifest.arch_args
    save_bundle(
        path,
        name=f"{manifest.name}-parity",
        role="parity",
        architecture=manifest.architecture,
        arch_args=arch,
        module=build(manifest.architecture, **arch),
        input_spec=manifest.inputs[0],
        output_spec=manifest.outputs[0],
        preprocessing=manifest.preprocessing,
        parity=ParityInfo(k, "sum", manifest.weights_sha256, manifest.name),
    )
    return path


def inference_stub(channel: grpc.Channel) -> Any:
    """The generated client stub of the v2 service (the generated module is untyped)."""
    stub_class: Any = pb_grpc.GRPCInferenceServiceStub
    return stub_class(channel)


def alive(pid: int) -> bool:
    """Whether a process with this id exists (it may be a zombie not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Container:
    """A running ``python -m model_container`` process."""

    proc: subprocess.Popen[bytes]
    port: int
    stream_port: int
    log_path: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal the process and wait for it; returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def start_container(bundle: Path, log_dir: Path, *args: str) -> Container:
    """Start a container on free ports and wait until its health service says SERVING."""
    port, stream_port = free_port(), free_port()
    log_path = log_dir / f"container-{port}.log"
    cmd = [sys.executable, "-m", "model_container", "--bundle", str(bundle)]
    cmd += ["--port", str(port), "--stream-port", str(stream_port), *args]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env)
    container = Container(proc, port, stream_port, log_path)
    try:
        wait_serving(container.target)
    except BaseException:
        container.stop(signal.SIGKILL)
        raise RuntimeError(f"container did not become ready:\n{container.log()}") from None
    return container


def wait_serving(target: str, service: str = "", timeout: float = START_TIMEOUT_S) -> None:
    """Block until the health service reports SERVING (Watch streams every change)."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=service)
        updates = stub.Watch(request, timeout=timeout, wait_for_ready=True)
        try:
            for update in updates:
                if update.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        finally:
            updates.cancel()
