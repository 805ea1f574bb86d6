"""One container's shared state: the model runner once warm, fault draws, metrics.

Every inference, whatever the transport, goes through `Container.infer`: fault
injection (delay, failure), then `ModelRunner.infer` inline in the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import grpc

from common.bundle import Manifest
from common.models import load_model
from model_container.config import ContainerConfig
from model_container.metrics import ContainerMetrics
from model_container.runner import InferError, ModelRunner
from proto import inference_pb2 as pb

log = logging.getLogger(__name__)


class Container:
    """Shared state of one container process: the runner once warm, and fault draws."""

    def __init__(self, config: ContainerConfig, manifest: Manifest) -> None:
        self.config = config
        self.manifest = manifest
        self.name = config.name or manifest.name
        self.runner: ModelRunner | None = None
        self._rng = random.Random(config.seed)
        self._delay_s = config.delay_ms / 1000.0
        self._delay_prob = config.effective_delay_prob
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
        began = time.perf_counter()
        self.metrics.inflight.inc()
        try:
            await self._answer(request, response)
        except InferError as exc:
            self.metrics.failed(exc.code.name)
            raise
        finally:
            self.metrics.inflight.dec()
        rows = response.outputs[0].shape[0] if response.outputs else 0
        self.metrics.answered(time.perf_counter() - began, rows)

    async def _answer(self, request: pb.ModelInferRequest, response: pb.ModelInferResponse) -> None:
        """Answer one request into ``response``; raises `InferError` for an error answer.

        This is the one exception boundary for inference on every transport: anything
        unexpected becomes INTERNAL and is logged with its traceback.
        """
        runner = self.runner
        if runner is None:
            raise InferError(grpc.StatusCode.UNAVAILABLE, "model is loading")
        # Draw both every time so a seed gives the same fault sequence whatever happens.
        delayed = self._rng.random() < self._delay_prob
        failed = self._rng.random() < self.config.fail_prob
        if delayed:
            await asyncio.sleep(self._draw_delay())
        if failed:
            raise InferError(grpc.StatusCode.INTERNAL, "injected failure")
        began = time.perf_counter()
        try:
            runner.infer(request, response)
        except InferError:
            raise
        except Exception as exc:
            log.exception("inference failed for request id=%r", request.id)
            raise InferError(grpc.StatusCode.INTERNAL, f"inference failed: {exc}") from exc
        if self._service_s:  # pad to the configured (accelerator-like) service time
            left = self._service_s - (time.perf_counter() - began)
            if left > 0:
                await asyncio.sleep(left)

    def _draw_delay(self) -> float:
        if self.config.delay_dist == "exp" and self._delay_s > 0:
            return self._rng.expovariate(1 / self._delay_s)
        return self._delay_s
