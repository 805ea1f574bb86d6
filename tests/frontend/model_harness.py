"""A model service on virtual time and in-memory instances, for ``test_model``.

`FakeLink` records the requests the service sends it, and the test decides when it
comes up, goes down, answers or fails.  The "instances" are linear, ``F(x) = W x + b``,
and the parity instance computes ``P(x) = W x + 2 b`` (the sum of two base outputs for
a k=2 sum code), so a reconstruction ``P(x0 + x1) - F(x1)`` is exactly ``F(x0)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client.parser import text_string_to_metric_families

from common.clock import Clock, SimClock
from frontend.config import InstanceAddress, ModelConfig
from frontend.events import Mode
from frontend.metrics import Metrics
from frontend.model import ModelService, Result
from frontend.outgoing import Outgoing
from proto import inference_pb2 as pb
from tests.model_container.container_process import CLASSES, IN_FEATURES

Array = npt.NDArray[np.float32]
_rng = np.random.default_rng(0)
W = _rng.standard_normal((CLASSES, IN_FEATURES)).astype(np.float32)
BIAS = _rng.standard_normal(CLASSES).astype(np.float32)


def base_model(x: Array) -> Array:
    return x @ W.T + BIAS  # (N, 64) -> (N, 10)


def parity_model(x: Array) -> Array:
    return x @ W.T + 2 * BIAS  # what F(x0) + F(x1) is when x = x0 + x1


def rows(n: int, seed: int) -> Array:
    return np.random.default_rng(seed).standard_normal((n, IN_FEATURES)).astype(np.float32)


def response(task_id: int, out: Array) -> pb.ModelInferResponse:
    answer = pb.ModelInferResponse(model_name="m", id=str(task_id))
    answer.outputs.add(name="output", datatype="FP32", shape=list(out.shape))
    answer.raw_output_contents.append(out.astype(np.float32).tobytes())
    return answer


def input_of(request: pb.ModelInferRequest) -> Array:
    shape = request.inputs[0].shape
    return np.frombuffer(request.raw_input_contents[0], np.float32).reshape(shape)


class FakeLink:
    """An instance in memory: it records what it is sent; the test makes it act."""

    def __init__(self, address: InstanceAddress, model_name: str, listener: ModelService) -> None:
        self.name = address.name
        self.model_name = model_name
        self.listener = listener
        self.up = False
        self.sent: dict[int, pb.ModelInferRequest] = {}  # task id -> request, in send order
        self.calls: list[asyncio.Future[pb.ModelInferResponse]] = []  # F(0) asks
        self.failures: list[str] = []

    # -- what the service calls

    def send(self, task_id: int, request: Outgoing) -> None:
        assert self.up, f"{self.name} was sent a request while down"
        self.sent[task_id] = request.message()

    def fail(self, reason: str) -> None:
        self.failures.append(reason)

    async def infer(self, request: pb.ModelInferRequest, timeout: float) -> pb.ModelInferResponse:
        assert input_of(request).shape == (1, IN_FEATURES) and not input_of(request).any()
        call: asyncio.Future[pb.ModelInferResponse] = asyncio.get_running_loop().create_future()
        self.calls.append(call)
        return await call

    async def run(self) -> None:
        await asyncio.Event().wait()  # until cancelled

    # -- what the test makes it do

    def go_up(self) -> None:
        self.up = True
        self.listener.link_up(self.name)

    def go_down(self, reason: str = "lost") -> None:
        self.up = False
        self.listener.link_down(self.name, reason)

    def answer(self, task_id: int, model: Callable[[Array], Array] = base_model) -> None:
        out = model(input_of(self.sent[task_id]))
        self.deliver(task_id, pb.ModelStreamInferResponse(infer_response=response(task_id, out)))

    def deliver(self, task_id: int, message: pb.ModelStreamInferResponse) -> None:
        self.listener.link_result(self.name, task_id, message)

    def answer_zero(self) -> None:
        self.calls[-1].set_result(response(-1, base_model(np.zeros((1, IN_FEATURES), np.float32))))


@dataclasses.dataclass
class Bundles:
    base: Path
    parity: Path


def plain(b: Bundles, data: int = 1, **settings: Any) -> ModelConfig:
    addresses = tuple(InstanceAddress(f"data-{i}", "fake:1") for i in range(data))
    return ModelConfig("m", b.base, addresses, mode=Mode.NONE, **settings)


def coded(b: Bundles, **settings: Any) -> ModelConfig:
    data = (InstanceAddress("data-0", "fake:1"), InstanceAddress("data-1", "fake:2"))
    parity = (InstanceAddress("parity-0", "fake:3"),)
    return ModelConfig("m", b.base, data, parity=parity, parity_bundle=b.parity, **settings)


async def settle() -> None:
    """Let every task that can run, run (no time passes)."""
    for _ in range(20):
        await asyncio.sleep(0)


class Harness:
    """A service on a SimClock and fake links, its run() task, and its metrics."""

    def __init__(self, config: ModelConfig) -> None:
        self.clock = SimClock()
        self.links: dict[str, FakeLink] = {}
        self.metrics = Metrics()
        self.service = ModelService(config, self.clock, self._link, self.metrics)
        self.metrics.watch(lambda: [self.service])

    def _link(
        self, address: InstanceAddress, model: str, listener: ModelService, clock: Clock
    ) -> FakeLink:
        assert clock is self.clock
        self.links[address.name] = link = FakeLink(address, model, listener)
        return link

    async def ask(self, x: Array, timeout_s: float = 1.0, **kw: Any) -> asyncio.Task[list[Result]]:
        """A client's request, admitted at the current time."""
        rows = [r.tobytes() for r in x]
        client = asyncio.ensure_future(self.service.infer(rows, timeout_s, **kw))
        await settle()
        return client

    async def up(self) -> None:
        """Every instance up, and F(0) answered where the model needs it."""
        for link in self.links.values():
            link.go_up()
        await settle()
        for link in self.links.values():
            if link.calls:
                link.answer_zero()
        await settle()
        assert self.service.ready

    async def advance_to(self, when: float) -> None:
        self.clock.advance_to(when)
        await settle()

    def value(self, name: str, **labels: str) -> float:
        for family in text_string_to_metric_families(self.metrics.render()):
            for s in family.samples:
                if s.name == name and s.labels == {"model": "m", **labels}:
                    return float(s.value)
        raise KeyError(name, labels)


def drive(config: ModelConfig, scenario: Callable[[Harness], Awaitable[None]]) -> None:
    async def main() -> None:
        async with running(Harness(config)) as h:
            await scenario(h)

    asyncio.run(main())


@contextlib.asynccontextmanager
async def running(h: Harness) -> AsyncIterator[Harness]:
    task = asyncio.ensure_future(h.service.run())
    await settle()
    try:
        yield h
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def only(link: FakeLink) -> int:
    """The task id of the one request the link was sent."""
    (task_id,) = link.sent
    return task_id
