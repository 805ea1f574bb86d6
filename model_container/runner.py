"""Validate a v2 inference request against a bundle's signature and run the model on it.

This is the per-request hot path shared by all three transports (unary gRPC, streaming
gRPC, framed TCP). It is synchronous and runs inline in the event loop: one model per
process, and requests on a connection are sequential anyway, so a thread hop would only
add latency. Errors are `InferError`s carrying the gRPC status the transports report.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from common.bundle import BundleError, Manifest
from proto import inference_pb2 as pb
from proto.tensors import (
    TensorError,
    check_batch,
    dtype_of,
    tensor_from_contents,
    tensor_from_raw,
)

log = logging.getLogger(__name__)

MODEL_VERSION = "1"


class InferError(Exception):
    """A request that gets an error answer: a gRPC status code and a message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def stream_message(self) -> str:
        """The ``error_message`` of a stream response: status name, colon, message."""
        return f"{self.code.name}: {self.message}"


class ModelRunner:
    """One loaded model behind the v2 request/response messages.

    ``name`` is the model name requests must use (the manifest's, unless overridden).
    """

    def __init__(self, manifest: Manifest, module: nn.Module, device: str, name: str) -> None:
        if len(manifest.inputs) != 1 or len(manifest.outputs) != 1:
            raise ValueError(
                f"bundle {manifest.name!r}: expected 1 input and 1 output, got "
                f"{len(manifest.inputs)} and {len(manifest.outputs)}"
            )
        self.manifest = manifest
        self.module = module
        self.device = torch.device(device)
        self.name = name
        self.input = manifest.inputs[0]
        self.output = manifest.outputs[0]
        # Raises TensorError at start-up, not per request, for datatypes we cannot carry.
        self._in_dtype = dtype_of(self.input.datatype)
        self._out_dtype = dtype_of(self.output.datatype)

    def warm_up(self) -> None:
        """Run the model once on a zero batch of one (first-call allocation, CUDA init).

        Raises `BundleError` when the network cannot run on the manifest's input shape or
        does not produce its output shape: a bundle that could answer no request.
        """
        zeros = np.zeros((1, *self.input.shape), dtype=self._in_dtype)
        try:
            self._forward(zeros)
        except (RuntimeError, InferError) as exc:  # torch's shape errors are RuntimeErrors
            message = " ".join(str(exc).split())  # one log line, not torch's several
            raise BundleError(
                f"bundle {self.manifest.name!r}: the network does not fit the manifest's "
                f"input {list(self.input.shape)} and output {list(self.output.shape)}: "
                f"{message}"
            ) from exc

    def infer(self, request: pb.ModelInferRequest, response: pb.ModelInferResponse) -> None:
        """Validate ``request``, run the model, fill ``response`` in place.

        Filling a caller-owned message lets the stream paths build the answer directly
        inside their ``ModelStreamInferResponse``, without copying it there afterwards.
        """
        self.check_model(request.model_name, request.model_version)
        self._check_outputs(request)
        array = self._input_array(request)
        out = self._forward(array)
        response.model_name = self.name
        response.model_version = MODEL_VERSION
        response.id = request.id
        response.outputs.add(name=self.output.name, datatype=self.output.datatype, shape=out.shape)
        response.raw_output_contents.append(out.tobytes())

    def check_model(self, name: str, version: str) -> None:
        """NOT_FOUND unless ``name``/``version`` designate the model served here."""
        if name != self.name:
            raise InferError(
                grpc.StatusCode.NOT_FOUND,
                f"model {name!r} not found: this container serves {self.name!r}",
            )
        if version not in ("", MODEL_VERSION):
            raise InferError(
                grpc.StatusCode.NOT_FOUND,
                f"model {name!r} version {version!r} not found: expected {MODEL_VERSION!r}",
            )

    def _check_outputs(self, request: pb.ModelInferRequest) -> None:
        for wanted in request.outputs:
            if wanted.name != self.output.name:
                raise _invalid(f"unknown output {wanted.name!r}: expected {self.output.name!r}")

    def _input_array(self, request: pb.ModelInferRequest) -> npt.NDArray[Any]:
        spec = self.input
        if len(request.inputs) != 1:
            got = [t.name for t in request.inputs]
            raise _invalid(f"expected 1 input {spec.name!r}, got {len(got)}: {got}")
        tensor = request.inputs[0]
        shape = list(tensor.shape)
        try:
            check_batch(spec, tensor.name, tensor.datatype, shape)
        except TensorError as exc:
            raise _invalid(str(exc)) from None
        where = f"input {spec.name!r}"
        raw = request.raw_input_contents
        try:
            if not raw:
                return tensor_from_contents(spec.datatype, shape, tensor.contents)
            if len(raw) != 1:
                raise _invalid(f"expected 1 raw_input_contents entry, got {len(raw)}")
            return tensor_from_raw(spec.datatype, shape, raw[0])
        except TensorError as exc:
            raise _invalid(f"{where}: {exc}") from None

    def _forward(self, array: npt.NDArray[Any]) -> npt.NDArray[Any]:
        # One small copy: wire bytes are read-only and torch wants writable memory (it
        # warns otherwise). On a GPU, .to() is the host->device copy; on a CPU, a no-op.
        host = np.array(array, dtype=np.float32)  # (B, *input)
        x = torch.from_numpy(host).to(self.device)
        with torch.inference_mode():
            y = self.module(x)  # (B, *output)
        out: npt.NDArray[Any] = y.to("cpu").numpy()  # no copy on CPU
        expected = (array.shape[0], *self.output.shape)
        if out.shape != expected:
            raise InferError(
                grpc.StatusCode.INTERNAL,
                f"model produced shape {list(out.shape)}, manifest says {list(expected)}",
            )
        return out.astype(self._out_dtype, copy=False)


def _invalid(message: str) -> InferError:
    return InferError(grpc.StatusCode.INVALID_ARGUMENT, message)
