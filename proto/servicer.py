"""The v2 ``GRPCInferenceService`` parts every server of this project answers alike.

The frontend and the model containers both speak the KServe v2 / Open Inference
Protocol.  Health and metadata (``ServerLive``, ``ServerReady``, ``ServerMetadata``,
``ModelReady``, ``ModelMetadata``) are written once here, over two hooks a server
provides: whether it is `ready`, and the `model` it serves under a name.  Inference
(``ModelInfer``, ``ModelStreamInfer``) is each server's own.  `register` adds the
service to a gRPC server with the generated registration, so the method paths are the
ones Triton's clients call.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from common.bundle import TensorSpec
from proto import inference_pb2 as pb
from proto import inference_pb2_grpc as pb_grpc


@dataclass(frozen=True)
class ModelInfo:
    """What the metadata RPCs say about one served model."""

    name: str
    versions: Sequence[str]
    platform: str
    inputs: Sequence[TensorSpec]
    outputs: Sequence[TensorSpec]
    ready: bool


class ModelNotFound(LookupError):
    """No model of that name (or version) is served here; the message says what is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def tensor_metadata(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    """A spec as the metadata RPC writes it: batch dimension -1."""
    return pb.ModelMetadataResponse.TensorMetadata(
        name=spec.name, datatype=spec.datatype, shape=[-1, *spec.shape]
    )


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer, abc.ABC):  # type: ignore[misc]
    """Health and metadata of the v2 service; subclasses add inference and the hooks.

    ``unknown_model_ready``: what ``ModelReady`` answers for a model not served here;
    None aborts with NOT_FOUND, as ``ModelMetadata`` always does.
    """

    unknown_model_ready: bool | None = None

    def __init__(self, name: str, version: str, extensions: Sequence[str]) -> None:
        self._metadata = pb.ServerMetadataResponse(
            name=name, version=version, extensions=list(extensions)
        )

    # -- hooks --------------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def ready(self) -> bool:
        """Whether the server can answer inference requests now."""

    @abc.abstractmethod
    def model(self, name: str, version: str) -> ModelInfo:
        """The model served as ``name`` (``version`` "" means any); raises ModelNotFound."""

    # -- the shared RPCs ------------------------------------------------------------------

    def register(self, server: Any) -> None:
        """Serve this servicer on ``server`` (a ``grpc.aio.Server``)."""
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(self, server)

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Any
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Any
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.ready)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Any
    ) -> pb.ServerMetadataResponse:
        return self._metadata

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Any
    ) -> pb.ModelReadyResponse:
        if self.unknown_model_ready is not None:
            try:
                info = self.model(request.name, request.version)
            except ModelNotFound:
                return pb.ModelReadyResponse(ready=self.unknown_model_ready)
        else:
            info = await self._model(request.name, request.version, context)
        return pb.ModelReadyResponse(ready=info.ready)

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Any
    ) -> pb.ModelMetadataResponse:
        info = await self._model(request.name, request.version, context)
        return pb.ModelMetadataResponse(
            name=info.name,
            versions=list(info.versions),
            platform=info.platform,
            inputs=[tensor_metadata(s) for s in info.inputs],
            outputs=[tensor_metadata(s) for s in info.outputs],
        )

    async def _model(self, name: str, version: str, context: Any) -> ModelInfo:
        try:
            return self.model(name, version)
        except ModelNotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, exc.message)
            raise  # unreachable: abort raises
