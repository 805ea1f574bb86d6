"""Helpers for the frontend's integration tests: bundles, real containers, a frontend.

The bundles are the real trained demo pair (``train.demo``).  The model containers are
real ``python -m model_container`` processes on loopback; the frontend runs in-process,
inside the test's own event loop (`serving`, `with_frontend`).  Expected outputs are
computed offline from the same bundles (`Reference`), never by asking the frontend.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
import numpy.typing as npt
import pytest
import torch

from common.bundle import read_manifest
from common.models import load_model
from frontend.config import FrontendConfig, InstanceAddress, ModelConfig
from frontend.model import ModelService
from frontend.outgoing import Outgoing
from frontend.server import Frontend
from proto import inference_pb2 as pb
from proto.tensors import ParamValue, make_infer_request, read_infer_response
from tests.model_container.container_process import (
    REPO_ROOT,
    Container,
    free_port,
    inference_stub,
    wait_serving,
)
from train.demo import demo_parity_config, ensure_demo

T = TypeVar("T")
Array = npt.NDArray[Any]

K = 2
FEATURES = 64  # the 8x8 digits, flattened
#: a delay far beyond any latency the tests allow, so a slow instance never answers in time
SLOW_MS = 1000
READY_TIMEOUT_S = 30.0
#: generous: on a loaded 2-core machine, a container's torch import alone can take a minute
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0


# ---------------------------------------------------------------- bundles


@dataclass(frozen=True)
class Bundles:
    """A base bundle and a parity bundle trained for it with the sum code."""

    base: Path
    parity: Path

    @property
    def model(self) -> str:
        """The base model's name: what instances serve and what clients ask for."""
        return read_manifest(self.base).name

    @property
    def input_name(self) -> str:
        return read_manifest(self.base).inputs[0].name

    @property
    def output_name(self) -> str:
        return read_manifest(self.base).outputs[0].name

    def request(
        self, x: Array, *, request_id: str = "", **parameters: ParamValue
    ) -> pb.ModelInferRequest:
        """A request to the base model for the rows of ``x`` ``(n, 64)``."""
        return request(self.model, x, self.input_name, request_id=request_id, **parameters)


def session_bundles(factory: pytest.TempPathFactory) -> Bundles:
    """The real trained demo pair (a digits MLP and its k=2 parity model), trained once
    per test session and cached under the session's base temp folder.

    The parity model trains for a tenth of the demo's epochs (seconds instead of tens
    of seconds; A_d is still about 96%): these tests compare a reconstruction with the
    parity model's own output, so its accuracy does not matter here.
    """
    parity = dataclasses.replace(demo_parity_config(K), epochs=100)
    demo = ensure_demo(K, factory.getbasetemp() / "parm-bundles", parity_config=parity)
    return Bundles(demo.base_dir, demo.parity_dir)


class Reference:
    """The bundles loaded in the test process: what the right answers are."""

    def __init__(self, bundles: Bundles) -> None:
        _, self._base = load_model(bundles.base)
        _, self._parity = load_model(bundles.parity)

    def base(self, x: Array) -> Array:
        """F on each row of ``x`` ``(n, 64)``, one row at a time as an instance runs it."""
        return _rows(self._base, x)

    def parity(self, x: Array) -> Array:
        return _rows(self._parity, x)

    def reconstruction(self, missing: Array, partner: Array) -> Array:
        """F(missing) as decoded from a k=2 group: Fp(missing + partner) - F(partner)."""
        return self.parity(missing + partner) - self.base(partner)


def _rows(module: torch.nn.Module, x: Array) -> Array:
    with torch.inference_mode():
        rows = [module(torch.from_numpy(np.array(x[i : i + 1], np.float32))) for i in range(len(x))]
    return torch.cat(rows).numpy()


def assert_close(actual: Any, expected: Any) -> None:
    """Equal to 1e-5: what the instance computed and what the test computed offline."""
    np.testing.assert_allclose(actual, expected, rtol=0.0, atol=1e-5)


def inputs(n: int, seed: int) -> Array:
    """``n`` random digit-like inputs ``(n, 64)`` in [0, 16), as FP32."""
    return np.random.default_rng(seed).uniform(0, 16, (n, FEATURES)).astype(np.float32)


# ---------------------------------------------------------------- containers


@dataclass
class Containers:
    """Running containers by name; stopped together."""

    running: dict[str, Container] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Container:
        return self.running[name]

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> dict[str, int]:
        """SIGTERM the containers still alive, all at once; their exit statuses by name.

        One that has not exited ``timeout`` seconds later is killed, and then reported.
        """
        for container in self.running.values():
            if container.proc.poll() is None:
                container.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        statuses: dict[str, int] = {}
        stuck: list[str] = []
        for name, container in self.running.items():
            try:
                statuses[name] = container.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                container.proc.kill()
                statuses[name] = container.proc.wait()
                stuck.append(f"--- {name}\n{container.log()}")
        assert not stuck, "containers did not stop on SIGTERM:\n" + "\n".join(stuck)
        return statuses


def start_containers(specs: dict[str, tuple[Path, Sequence[str]]], log_dir: Path) -> Containers:
    """Start ``name -> (bundle, extra args)`` containers at once, then wait for all.

    Starting them together overlaps their (slow) torch imports.
    """
    result = Containers()
    try:
        for name, (bundle, args) in specs.items():
            result.running[name] = _spawn(bundle, log_dir / f"{name}.log", args)
        for container in result.running.values():
            wait_serving(container.target, timeout=START_TIMEOUT_S)
    except BaseException as exc:
        for container in result.running.values():
            container.stop(signal.SIGKILL)
        logs = "\n".join(f"--- {n}\n{c.log()}" for n, c in result.running.items())
        raise RuntimeError(f"containers did not become ready:\n{logs}") from exc
    return result


def _spawn(bundle: Path, log_path: Path, args: Sequence[str]) -> Container:
    port, stream_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "model_container", "--bundle", str(bundle)]
    cmd += ["--port", str(port), "--stream-port", str(stream_port), "--device", "cpu", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env)
    return Container(proc, port, stream_port, log_path)


def address(name: str, container: Container, *, framed: bool = True) -> InstanceAddress:
    """An instance of ``container`` called ``name``; ``framed=False``: gRPC stream only
    (the data path of any v2 server without parm's framed TCP)."""
    stream = f"127.0.0.1:{container.stream_port}" if framed else None
    return InstanceAddress(name, container.target, stream)


def coded_model(
    bundles: Bundles,
    containers: Containers,
    data: Sequence[str],
    parity: Sequence[str],
    *,
    framed: bool = True,
    **settings: Any,
) -> ModelConfig:
    """The demo pair, coded: ``data-i`` on container ``data[i]``, ``parity-j`` on
    container ``parity[j]``."""
    return ModelConfig(
        name=bundles.model,
        base_bundle=bundles.base,
        parity_bundle=bundles.parity,
        data=tuple(address(f"data-{i}", containers[n], framed=framed) for i, n in enumerate(data)),
        parity=tuple(
            address(f"parity-{i}", containers[n], framed=framed) for i, n in enumerate(parity)
        ),
        **settings,
    )


# ---------------------------------------------------------------- the frontend


def frontend_config(*models: ModelConfig, **settings: Any) -> FrontendConfig:
    """A frontend on a free loopback port serving ``models``."""
    return FrontendConfig(models=models, host="127.0.0.1", grpc_port=0, **settings)


@contextlib.asynccontextmanager
async def serving(config: FrontendConfig) -> AsyncIterator[Frontend]:
    """A started frontend whose models are ready, in the running event loop."""
    frontend = Frontend(config)
    await frontend.start()
    try:
        await frontend.wait_ready(READY_TIMEOUT_S)
        yield frontend
    finally:
        await frontend.stop(grace=0.5)


@contextlib.asynccontextmanager
async def client(port: int) -> AsyncIterator[Any]:
    """A grpc.aio stub of the v2 service on ``127.0.0.1:port``."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield inference_stub(channel)


Scenario = Callable[[Frontend, Any], Awaitable[T]]


def with_frontend(config: FrontendConfig, scenario: Scenario[T]) -> T:
    """Run ``scenario(frontend, stub)`` in a fresh event loop with a fresh frontend."""

    async def main() -> T:
        async with serving(config) as frontend, client(frontend.grpc_port) as stub:
            return await scenario(frontend, stub)

    return asyncio.run(main())


# ---------------------------------------------------------------- clients


def request(
    model: str, x: Array, input_name: str, *, request_id: str = "", **parameters: ParamValue
) -> pb.ModelInferRequest:
    """A ModelInferRequest for the rows of ``x`` ``(n, 64)`` with request ``parameters``."""
    return make_infer_request(
        model, {input_name: x}, request_id=request_id, parameters=parameters or None
    )


@dataclass(frozen=True)
class Reply:
    """What a client saw for one request: an output and its source, or an error."""

    latency: float
    output: Array | None = None
    source: str | None = None
    sources: tuple[str, ...] = ()
    code: grpc.StatusCode | None = None
    message: str = ""


async def call(stub: Any, req: pb.ModelInferRequest, timeout: float | None = None) -> Reply:
    """One unary ModelInfer; errors come back as a Reply with a status, never raised."""
    start = time.perf_counter()
    try:
        response: pb.ModelInferResponse = await stub.ModelInfer(req, timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        return Reply(time.perf_counter() - start, code=exc.code(), message=exc.details() or "")
    return reply_of(response, time.perf_counter() - start)


def reply_of(response: pb.ModelInferResponse, latency: float = 0.0) -> Reply:
    sources = response.parameters["parm_sources"].string_param
    (output,) = read_infer_response(response).values()
    return Reply(
        latency,
        output=output,
        source=response.parameters["parm_source"].string_param,
        sources=tuple(sources.split(",")) if sources else (),
    )


async def call_all(
    stub: Any, requests: Sequence[pb.ModelInferRequest], concurrency: int
) -> list[Reply]:
    """Send ``requests`` with at most ``concurrency`` outstanding; replies in order."""
    replies: list[Reply | None] = [None] * len(requests)
    todo = iter(enumerate(requests))

    async def worker() -> None:
        for i, req in todo:
            replies[i] = await call(stub, req)

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    assert all(r is not None for r in replies)
    return [r for r in replies if r is not None]


# ---------------------------------------------------------------- observing the frontend


class SendLog:
    """Records every request the frontend sends to an instance's data path."""

    def __init__(self, service: ModelService) -> None:
        self.sent: list[tuple[str, bytes]] = []  # (instance, raw input of the request)
        for name, link in service.links.items():
            link.send = self._recording(name, link.send)  # type: ignore[method-assign, assignment]

    def _recording(
        self, name: str, send: Callable[[int, Outgoing], None]
    ) -> Callable[[int, Outgoing], None]:
        def record(task_id: int, req: Outgoing) -> None:
            self.sent.append((name, bytes(req.raw)))
            send(task_id, req)

        return record

    def count(self, instance: str) -> int:
        return sum(1 for name, _ in self.sent if name == instance)

    def rows_sent_to(self, instance: str, x: Array) -> list[int]:
        """Which rows of ``x`` were sent to ``instance`` (batch size 1: one row a request)."""
        raws = {raw for name, raw in self.sent if name == instance}
        return [i for i in range(len(x)) if x[i].tobytes() in raws]

    @property
    def instances(self) -> set[str]:
        return {name for name, _ in self.sent}
