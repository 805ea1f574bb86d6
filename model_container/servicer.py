"""The v2 ``GRPCInferenceService`` of a model container, over a `Container`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib import metadata
from typing import Any

import grpc

from common.bundle import TensorSpec
from model_container.container import Container
from model_container.runner import MODEL_VERSION, InferError
from proto import inference_pb2 as pb

SERVICE = "inference.GRPCInferenceService"
SERVER_NAME = "parm-model-container"
PLATFORM = "pytorch"


def _tensor_metadata(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=spec.name, datatype=spec.datatype, shape=[-1, *spec.shape]
    )


def _server_version() -> str:
    try:
        return metadata.version("parm")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class InferenceServicer:
    """The v2 ``GRPCInferenceService`` (the seven RPCs in proto/inference.proto)."""

    def __init__(self, container: Container, extensions: list[str]) -> None:
        self._c = container
        self._metadata = pb.ServerMetadataResponse(
            name=SERVER_NAME, version=_server_version(), extensions=extensions
        )

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Any
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Any
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._c.ready)

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Any
    ) -> pb.ModelReadyResponse:
        ready = self._c.ready and request.name == self._c.name
        return pb.ModelReadyResponse(ready=ready and request.version in ("", MODEL_VERSION))

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Any
    ) -> pb.ServerMetadataResponse:
        return self._metadata

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Any
    ) -> pb.ModelMetadataResponse:
        if request.name != self._c.name:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"model {request.name!r} not found: this container serves {self._c.name!r}",
            )
        m = self._c.manifest
        return pb.ModelMetadataResponse(
            name=self._c.name,
            versions=[MODEL_VERSION],
            platform=PLATFORM,
            inputs=[_tensor_metadata(s) for s in m.inputs],
            outputs=[_tensor_metadata(s) for s in m.outputs],
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


def _inference_handler(servicer: InferenceServicer) -> Any:
    """The service's method table, as ``add_GRPCInferenceServiceServicer_to_server`` builds.

    Written out because the generated ``inference_pb2_grpc`` is untyped; the method
    paths (``/inference.GRPCInferenceService/<rpc>``) are what Triton's clients call.
    """
    unary = grpc.unary_unary_rpc_method_handler
    rpcs: dict[str, Any] = {
        name: unary(
            getattr(servicer, name),
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )
        for name, request, response in (
            ("ServerLive", pb.ServerLiveRequest, pb.ServerLiveResponse),
            ("ServerReady", pb.ServerReadyRequest, pb.ServerReadyResponse),
            ("ModelReady", pb.ModelReadyRequest, pb.ModelReadyResponse),
            ("ServerMetadata", pb.ServerMetadataRequest, pb.ServerMetadataResponse),
            ("ModelMetadata", pb.ModelMetadataRequest, pb.ModelMetadataResponse),
            ("ModelInfer", pb.ModelInferRequest, pb.ModelInferResponse),
        )
    }
    rpcs["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(
        servicer.ModelStreamInfer,
        request_deserializer=pb.ModelInferRequest.FromString,
        response_serializer=pb.ModelStreamInferResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(SERVICE, rpcs)
