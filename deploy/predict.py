"""``parm predict``: a few queries through the frontend, each answer with its provenance."""

from __future__ import annotations

import asyncio
import time

import grpc
import numpy as np
import numpy.typing as npt

from proto import inference_pb2 as pb
from proto import inference_pb2_grpc as pb_grpc
from proto.tensors import dtype_of, get_parameters, make_infer_request, read_infer_response

DIGITS_INPUT = [64]


def _inputs(
    model: str, shape: list[int], datatype: str, n: int
) -> tuple[npt.NDArray[np.generic], list[int] | None]:
    """Demo images with labels for the digits model, else random inputs of the right shape."""
    if model == "digits" and shape == DIGITS_INPUT:
        from train.data import load_digits

        split = load_digits()
        return split.x_test[:n].reshape(n, 1, *shape), [int(y) for y in split.y_test[:n]]
    rng = np.random.default_rng(0)
    return rng.random((n, 1, *shape)).astype(dtype_of(datatype)), None


async def predict(
    url: str, model: str, n: int, timeout_ms: float | None, require_original: bool
) -> int:
    async with grpc.aio.insecure_channel(url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        try:
            meta = await stub.ModelMetadata(pb.ModelMetadataRequest(name=model), timeout=5)
        except grpc.aio.AioRpcError as exc:
            print(f"cannot reach model {model!r} at {url}: {exc.code().name}: {exc.details()}")
            return 1
        spec = meta.inputs[0]
        inputs, labels = _inputs(model, list(spec.shape[1:]), spec.datatype, n)
        params: dict[str, bool | int | float | str] = {}
        if timeout_ms is not None:
            params["timeout_ms"] = timeout_ms
        if require_original:
            params["parm_require_original"] = True

        async def one(i: int) -> str:
            request = make_infer_request(
                model, {spec.name: inputs[i]}, request_id=str(i), parameters=params
            )
            began = time.perf_counter()
            try:
                response = await stub.ModelInfer(request)
            except grpc.aio.AioRpcError as exc:
                return f"query {i}: {exc.code().name}: {exc.details()}"
            ms = (time.perf_counter() - began) * 1000
            output = next(iter(read_infer_response(response).values()))[0]
            source = get_parameters(response.parameters).get("parm_source", "?")
            label = f"label {labels[i]} -> " if labels is not None else ""
            return f"query {i}: {label}predicted {int(np.argmax(output))}  [{source}]  {ms:.1f} ms"

        # Sent together, so that they fill coding groups the way concurrent clients do.
        for line in await asyncio.gather(*(one(i) for i in range(n))):
            print(line)
    return 0
