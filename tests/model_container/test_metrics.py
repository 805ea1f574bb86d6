"""The container's /metrics: a container served in process, requests over gRPC, a scrape."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from model_container.config import ContainerConfig
from model_container.server import serve
from proto.tensors import make_infer_request
from tests.model_container.container_process import (
    IN_FEATURES,
    MODEL,
    free_port,
    inference_stub,
    wait_serving,
)


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as r,
    ):
        text = await r.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def requests(port: int) -> None:
    """Three good requests (1, 2 and 3 rows) and one for an unknown model."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = inference_stub(channel)
        for rows in (1, 2, 3):
            x = np.zeros((rows, IN_FEATURES), np.float32)
            await stub.ModelInfer(make_infer_request(MODEL, {"input": x}))
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.ModelInfer(make_infer_request("nope", {"input": x}))


def test_requests_rows_and_readiness_are_counted(bundle: Path) -> None:
    port, metrics_port = free_port(), free_port()
    config = ContainerConfig(bundle, port, device="cpu", metrics_port=metrics_port)

    async def scenario() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        stop = asyncio.Event()
        server = asyncio.ensure_future(serve(config, stop=stop, handle_signals=False))
        try:
            await asyncio.to_thread(wait_serving, f"127.0.0.1:{port}")
            await requests(port)
            return await scrape(metrics_port)
        finally:
            stop.set()
            await server

    got = asyncio.run(scenario())
    model = (("model", MODEL),)
    assert got["parm_container_requests_total", (("model", MODEL), ("outcome", "ok"))] == 3
    assert got["parm_container_requests_total", (("model", MODEL), ("outcome", "NOT_FOUND"))] == 1
    assert got["parm_container_rows_total", model] == 6
    assert got["parm_container_request_seconds_count", model] == 3
    assert got["parm_container_inflight", model] == 0
    assert got["parm_container_ready", ()] == 1
