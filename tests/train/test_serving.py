"""A trained bundle pair, served by real model containers and reconstructed by the frontend.

Training writes a LeNet-5 base and a ``concat`` parity model for k=2 on tiny images; three
``python -m model_container`` processes serve them on loopback (one data instance delayed
far beyond the test's patience), the in-process frontend codes each group of two queries,
and the reconstruction the client receives must equal the one `train.evaluate` computes
offline with the same bundles and the same code module.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from common.bundle import read_manifest
from common.codes import make_code
from common.models import load_model
from frontend.config import FrontendConfig, InstanceAddress, ModelConfig
from frontend.server import Frontend
from proto.tensors import get_parameters, make_infer_request, read_infer_response
from tests.model_container.container_process import (
    REPO_ROOT,
    Container,
    free_port,
    inference_stub,
    wait_serving,
)
from tests.train.tiny import tiny_parity
from train.common import predict
from train.data import Split
from train.evaluate import decode_pattern
from train.parity import train_parity

K = 2
SLOW_MS = 5000  # the delayed data instance answers long after the reconstruction


@pytest.fixture(scope="module")
def parity_dir(lenet_dir: Path, image_split: Split, tmp_path_factory) -> Path:
    path: Path = tmp_path_factory.mktemp("served") / "quadrants-parity-k2"
    config = tiny_parity(K, code="concat", groups_per_epoch=64, batch_size=32, epochs=1)
    train_parity(lenet_dir, image_split, config, path, name="quadrants-parity-k2")
    return path


def spawn(bundle: Path, log_dir: Path, name: str, *args: str) -> Container:
    """Start a container without waiting: several then load torch at the same time."""
    port, stream_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "model_container", "--bundle", str(bundle)]
    cmd += ["--port", str(port), "--stream-port", str(stream_port), "--device", "cpu"]
    cmd += ["--threads", "1", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with open(log_dir / f"{name}.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env)
    return Container(proc, port, stream_port, log_dir / f"{name}.log")


@pytest.fixture(scope="module")
def containers(lenet_dir: Path, parity_dir: Path, tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    started = {
        "data-0": spawn(lenet_dir, logs, "data-0"),
        "data-1": spawn(lenet_dir, logs, "data-1", "--delay-ms", str(SLOW_MS)),
        "parity-0": spawn(parity_dir, logs, "parity-0"),
    }
    try:
        for container in started.values():
            wait_serving(container.target)
        yield started
    finally:
        for container in started.values():  # signal all, then wait: they stop together
            if container.proc.poll() is None:
                container.proc.send_signal(signal.SIGTERM)
        for container in started.values():
            container.stop()


def frontend_config(lenet_dir: Path, parity_dir: Path, containers: dict[str, Container]):
    def address(name: str) -> InstanceAddress:
        c = containers[name]
        return InstanceAddress(name, c.target, f"127.0.0.1:{c.stream_port}")

    model = ModelConfig(
        name=read_manifest(lenet_dir).name,
        base_bundle=lenet_dir,
        parity_bundle=parity_dir,
        data=(address("data-0"), address("data-1")),
        parity=(address("parity-0"),),
        k=K,
        code="concat",
        group_timeout_ms=5000.0,  # the two queries always form one full group
    )
    return FrontendConfig(models=(model,), host="127.0.0.1", grpc_port=0)


async def ask_two(config: FrontendConfig, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Send two queries, in order, into one coding group; each answer's source and output."""
    frontend = Frontend(config)
    await frontend.start()
    try:
        await frontend.wait_ready(60.0)
        name = config.models[0].name
        async with grpc.aio.insecure_channel(f"127.0.0.1:{frontend.grpc_port}") as channel:
            stub = inference_stub(channel)
            calls = []
            for i in range(K):
                request = make_infer_request(name, {"input": x[i : i + 1]})
                calls.append(asyncio.ensure_future(stub.ModelInfer(request, timeout=30)))
                # Query i must take slot i: concat tiles by slot, so the order matters.
                await asyncio.sleep(0.2)
            responses = await asyncio.gather(*calls)
    finally:
        await frontend.stop(grace=0.5)
    answers = []
    for response in responses:
        source = get_parameters(response.parameters)["parm_source"]
        (output,) = read_infer_response(response).values()
        answers.append((str(source), output[0]))
    return answers


def test_served_reconstruction_equals_the_offline_decode(
    lenet_dir: Path, parity_dir: Path, image_split: Split, containers: dict[str, Container]
):
    x = np.ascontiguousarray(image_split.x_test[:K])  # (2, 1, 12, 12) FP32
    answers = asyncio.run(ask_two(frontend_config(lenet_dir, parity_dir, containers), x))
    sources = [source for source, _ in answers]
    assert sorted(sources) == ["original", "reconstructed"]
    missing = sources.index("reconstructed")

    # Offline, with the evaluation path of `parm eval`.
    _, base = load_model(lenet_dir)
    _, parity = load_model(parity_dir)
    code = make_code("concat", K)
    xt = torch.from_numpy(x)
    groups = torch.arange(K).view(K, 1)  # one group: slot i holds query i
    outputs = predict(base, xt)[groups]  # (k, 1, classes)
    parity_out = predict(parity, code.encode(xt[groups]))  # (1, classes)
    (offline,) = decode_pattern(code, outputs, [parity_out], ((missing,), ()))
    np.testing.assert_allclose(answers[missing][1], offline[0].numpy(), rtol=1e-4, atol=1e-4)
    original = answers[1 - missing][1]
    np.testing.assert_allclose(original, outputs[1 - missing, 0].numpy(), rtol=1e-5, atol=1e-5)
