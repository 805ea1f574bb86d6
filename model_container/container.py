"""One container's shared state: the model runner once warm, fault draws, metrics.

Every inference, whatever the transport, goes through `Container.infer`: fault
injection (`model_container.faults`: delay, failure), then `ModelRunner.infer` inline
in the event loop, then padding to the configured service time.  Time enters through
the injected ``sleep`` and ``clock``, so tests see the waits asked for, not timings.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import grpc

from common.bundle import Manifest
from common.models import load_model
from model_container.config import ContainerConfig
from model_container.faults import Faults
from model_container.metrics import ContainerMetrics
from model_container.runner import InferError, ModelRunner
from proto import inference_pb2 as pb

log = logging.getLogger(__name__)


class Container:
    """Shared state of one container process: the runner once warm, and fault draws."""

    def __init__(
        self,
        config: ContainerConfig,
        manifest: Manifest,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.config = config
        self.manifest = manifest
        self.name = config.name or manifest.name
        self.runner: ModelRunner | None = None
        self.faults = Faults(config.faults, sleep)
        self._sleep = sleep
        self._clock = clock
        self._service_s = config.service_time_ms / 1000.0
        self.metrics = ContainerMetrics(self.name, lambda: self.ready)

    @property
    def ready(self) -> bool:
        """True once the model is loaded and warmed up."""
        return self.runner is not None

    def load(self, device: str) -> ModelRunner:
        """Load and warm the model (blocking: call in a worker thread), then return it."""
        manifest, module = load_model(self.config.bundle, device=device)
        runner = ModelRunner(manifest, module, device, self.name)
        runner.warm_up()
        return runner

    async def infer(self, request: pb.ModelInferRequest, response: pb.ModelInferResponse) -> None:
        """Answer one request into ``response``, counted in `metrics`; raises `InferError`."""
        began = self._clock()
        self.metrics.inflight.inc()
        try:
            await self._answer(request, response)
        except InferError as exc:
            self.metrics.failed(exc.code.name)
            raise
        finally:
            self.metrics.inflight.dec()
        rows = response.outputs[0].shape[0] if response.outputs else 0
        self.metrics.answered(self._clock() - began, rows)

    async def _answer(self, request: pb.ModelInferRequest, response: pb.ModelInferResponse) -> None:
        """Answer one request into ``response``; raises `InferError` for an error answer.

        This is the one exception boundary for inference on every transport: anything
        unexpected becomes INTERNAL and is logged with its traceback.
        """
        runner = self.runner
        if runner is None:
            raise InferError(grpc.StatusCode.UNAVAILABLE, "model is loading")
        if await self.faults.inject():
            raise InferError(grpc.StatusCode.INTERNAL, "injected failure")
        began = self._clock()
        try:
            runner.infer(request, response)
        except InferError:
            raise
        except Exception as exc:
            log.exception("inference failed for request id=%r", request.id)
            raise InferError(grpc.StatusCode.INTERNAL, f"inference failed: {exc}") from exc
        if self._service_s:  # pad to the configured (accelerator-like) service time
            left = self._service_s - (self._clock() - began)
            if left > 0:
                await self._sleep(left)
