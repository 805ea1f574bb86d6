"""Helpers for the HTTP and metrics tests: small bundles, a frontend with HTTP, a client.

The bundles are a small MLP with fixed random weights and a parity model of the same
shape (untrained: these tests check the HTTP plumbing and the counts, not accuracy), so
no test session has to train anything.  Containers are real processes on loopback
(`tests.frontend.cluster.start_containers`); the frontend runs in the test's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import numpy as np

from common.bundle import ParityInfo, read_manifest
from common.models import build, save_bundle
from frontend.config import FrontendConfig, ModelConfig
from frontend.server import Frontend
from tests.frontend.cluster import Bundles, Containers, address
from tests.model_container.container_process import make_bundle

T = TypeVar("T")
READY_S = 30.0


def small_bundles(root: Path, name: str = "mlp") -> Bundles:
    """A base MLP bundle (64 -> 16 -> 10) and an untrained k=2 sum parity bundle for it."""
    base = make_bundle(root / "base", name=name)
    manifest = read_manifest(base)
    save_bundle(
        root / "parity",
        name=f"{name}-parity",
        role="parity",
        architecture="mlp",
        arch_args=manifest.arch_args,
        module=build("mlp", **manifest.arch_args),
        input_spec=manifest.inputs[0],
        output_spec=manifest.outputs[0],
        preprocessing=manifest.preprocessing,
        parity=ParityInfo(2, "sum", manifest.weights_sha256, name),
    )
    return Bundles(base, root / "parity")


def coded_slow(c: Containers, b: Bundles, **settings: Any) -> ModelConfig:
    """``coded``, k=2: data-0 is slow, data-1 and parity-0 fast; a generous group timeout
    makes the two rows of one request one coding group."""
    return ModelConfig(
        "coded",
        b.base,
        (address("data-0", c["slow"]), address("data-1", c["fast-a"])),
        parity=(address("parity-0", c["parity"]),),
        parity_bundle=b.parity,
        group_timeout_ms=200.0,
        **settings,
    )


def http_config(*models: ModelConfig, **settings: Any) -> FrontendConfig:
    """A frontend on free loopback ports: gRPC, HTTP and metrics."""
    settings.setdefault("http_port", 0)
    settings.setdefault("metrics_port", 0)
    return FrontendConfig(models=models, host="127.0.0.1", grpc_port=0, **settings)


@dataclass
class Http:
    """An aiohttp session on one frontend's HTTP and metrics ports."""

    frontend: Frontend
    session: aiohttp.ClientSession

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.frontend.http_port}"

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(self.base + path) as r:
            return r.status, await r.json(content_type=None)

    async def post(
        self, path: str, body: Any = None, *, data: bytes | None = None, **headers: str
    ) -> tuple[int, Any]:
        """POST JSON ``body`` (or raw ``data``); the status and the decoded JSON answer."""
        kwargs: dict[str, Any] = {"json": body} if data is None else {"data": data}
        headers = {k.replace("_", "-"): v for k, v in headers.items()}
        async with self.session.post(self.base + path, headers=headers, **kwargs) as r:
            return r.status, await r.json(content_type=None)

    async def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.frontend.metrics_port}/metrics"
        async with self.session.get(url) as r:
            assert r.status == 200
            return await r.text()


@contextlib.asynccontextmanager
async def http_frontend(config: FrontendConfig, *, wait: bool = True) -> AsyncIterator[Http]:
    """A started frontend (every instance up unless ``wait=False``) and a client session."""
    frontend = Frontend(config)
    await frontend.start()
    try:
        if wait:
            await frontend.wait_ready(READY_S)
            await all_up(frontend)
        async with aiohttp.ClientSession() as session:
            yield Http(frontend, session)
    finally:
        await frontend.stop(grace=0.5)


async def all_up(frontend: Frontend) -> None:
    """Wait until every instance link is up: a model is ready with one data instance, and
    tests that count on a group spanning two instances need both."""

    def up() -> bool:
        services = frontend.services.values()
        return all(s.core.is_up(name) for s in services for name in s.links)

    await until(up)


async def until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds, a state of the frontend that a test orders its
    events on (it has no event to await); gives up after READY_S."""
    async with asyncio.timeout(READY_S):
        while not condition():
            await asyncio.sleep(0.005)


def run(
    config: FrontendConfig, scenario: Callable[[Http], Awaitable[T]], *, wait: bool = True
) -> T:
    """Run ``scenario(http)`` in a fresh event loop against a fresh frontend."""

    async def main() -> T:
        async with http_frontend(config, wait=wait) as http:
            return await scenario(http)

    return asyncio.run(main())


def v2_json(x: np.ndarray, name: str = "input", **parameters: Any) -> dict[str, Any]:
    """A v2 JSON inference request for the rows of ``x`` ``(n, 64)``."""
    request: dict[str, Any] = {
        "inputs": [
            {"name": name, "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}
        ]
    }
    if parameters:
        request["parameters"] = parameters
    return request


def v2_output(answer: dict[str, Any]) -> np.ndarray:
    """The one output tensor of a JSON v2 answer."""
    (out,) = answer["outputs"]
    return np.asarray(out["data"], np.float32).reshape(out["shape"])
