"""The v2 ``GRPCInferenceService`` of a model container, over a `Container`.

Health and metadata are the shared `proto.servicer.InferenceServicer`; this adds the
container's model (`model`) and inference.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from importlib import metadata
from typing import Any

from model_container.container import Container
from model_container.runner import MODEL_VERSION, InferError
from proto import inference_pb2 as pb
from proto import servicer

SERVER_NAME = "parm-model-container"
PLATFORM = "pytorch"


def _server_version() -> str:
    try:
        return metadata.version("parm")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class InferenceServicer(servicer.InferenceServicer):
    """The v2 ``GRPCInferenceService`` (the seven RPCs in proto/inference.proto)."""

    # Triton's answer for a model it does not serve: not ready (rather than an error).
    unknown_model_ready = False

    def __init__(self, container: Container, extensions: Sequence[str]) -> None:
        super().__init__(SERVER_NAME, _server_version(), extensions)
        self._c = container

    @property
    def ready(self) -> bool:
        return self._c.ready

    def model(self, name: str, version: str) -> servicer.ModelInfo:
        if name != self._c.name:
            raise servicer.ModelNotFound(
                f"model {name!r} not found: this container serves {self._c.name!r}"
            )
        if version not in ("", MODEL_VERSION):
            raise servicer.ModelNotFound(
                f"model {name!r} version {version!r} not found: expected {MODEL_VERSION!r}"
            )
        m = self._c.manifest  # metadata comes from the manifest, before the weights load
        return servicer.ModelInfo(
            self._c.name, [MODEL_VERSION], PLATFORM, m.inputs, m.outputs, self._c.ready
        )

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Any
    ) -> pb.ModelInferResponse:
        response = pb.ModelInferResponse()
        try:
            await self._c.infer(request, response)
        except InferError as exc:
            await context.abort(exc.code, exc.message)
        return response

    async def ModelStreamInfer(
        self, requests: AsyncIterator[pb.ModelInferRequest], context: Any
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        # Sequential: one answer per request, in order; errors go into error_message
        # and the stream goes on.
        async for request in requests:
            yield await answer_stream_request(self._c, request)


async def answer_stream_request(
    container: Container, request: pb.ModelInferRequest
) -> pb.ModelStreamInferResponse:
    """The stream answer to one request: the result, or the error with the id echoed."""
    answer = pb.ModelStreamInferResponse()
    try:
        await container.infer(request, answer.infer_response)
    except InferError as exc:
        answer.Clear()
        answer.error_message = exc.stream_message()
        answer.infer_response.id = request.id
        answer.infer_response.model_name = request.model_name
    return answer
