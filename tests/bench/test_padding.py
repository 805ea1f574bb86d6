"""A real model container padded to an accelerator-like service time, with its sidecar."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from bench.contention.shuffle import Shuffler, ShuffleServer, ShuffleSpec
from proto.tensors import make_infer_request
from tests.bench.test_contention import stat
from tests.model_container.container_process import (
    Container,
    free_port,
    inference_stub,
    make_bundle,
    start_container,
)

SERVICE_MS = 40.0


@pytest.fixture(scope="module")
def padded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Container, int]]:
    root = tmp_path_factory.mktemp("padded")
    bundle = make_bundle(root / "mlp")
    shuffle_port = free_port()
    args = ["--service-time-ms", str(SERVICE_MS), "--shuffle-port", str(shuffle_port)]
    container = start_container(bundle, root, "--device", "cpu", *args)
    yield container, shuffle_port
    container.stop()


def round_trips(target: str, n: int) -> list[float]:
    request = make_infer_request("mlp", {"input": np.zeros((1, 64), np.float32)})
    with grpc.insecure_channel(target) as channel:
        infer = inference_stub(channel).ModelInfer
        infer(request)  # connection set up
        times = []
        for _ in range(n):
            began = time.perf_counter()
            infer(request)
            times.append(time.perf_counter() - began)
    return times


def test_each_inference_takes_the_service_time_without_burning_cpu(padded):
    container, _ = padded
    cpu_before = stat(container.proc.pid)[1]
    times = round_trips(container.target, 10)
    cpu = stat(container.proc.pid)[1] - cpu_before
    assert min(times) >= SERVICE_MS / 1000
    assert np.median(times) < 2 * SERVICE_MS / 1000
    assert cpu < 0.25 * sum(times)  # it slept: a padded instance leaves the CPU to others


def test_the_sidecar_takes_part_in_shuffles(padded):
    _, shuffle_port = padded

    async def scenario() -> Shuffler:
        peer = ShuffleServer()
        peer_port = await peer.start("127.0.0.1", 0)
        shuffler = Shuffler(
            [shuffle_port, peer_port], ShuffleSpec(concurrency=1, min_mb=8, max_mb=8)
        )
        shuffler.start()
        deadline = time.monotonic() + 20
        while shuffler.transfers < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await shuffler.stop()
        await peer.close()
        return shuffler

    assert asyncio.run(scenario()).transfers >= 2
