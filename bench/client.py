"""A load client that runs in its own process: ``python -m bench.client ...``.

Closed loop: ``concurrency`` workers each send a query and wait for its answer, over
v2 gRPC unary calls, the way most clients talk to a server.  Latency is measured
here, at the client; warm-up queries are excluded.  Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from bench.closed_loop import Outcome, closed_loop
from bench.inputs import query_inputs
from proto import inference_pb2 as pb
from proto import inference_pb2_grpc as pb_grpc
from proto.tensors import dtype_of, make_infer_request


@dataclass(frozen=True)
class ClosedLoop:
    url: str
    model: str
    concurrency: int
    queries: int
    warmup: int = 200
    data: str | None = None  # a data set to sample inputs from (bench.inputs); None: noise
    #: gRPC connections, used in turn by the workers: several spread the calls over a
    #: frontend's worker processes (the kernel gives each connection to one of them)
    channels: int = 1


#: a channel of its own connection (gRPC shares one among a process's channels otherwise)
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


async def run_closed_loop(spec: ClosedLoop) -> dict[str, object]:
    channels = [grpc.aio.insecure_channel(spec.url, OWN_CONNECTION) for _ in range(spec.channels)]
    try:
        return await _run(spec, [pb_grpc.GRPCInferenceServiceStub(c) for c in channels])
    finally:
        for channel in channels:
            await channel.close()


async def _run(spec: ClosedLoop, stubs: list[Any]) -> dict[str, object]:
    stub = stubs[0]
    meta = await stub.ModelMetadata(pb.ModelMetadataRequest(name=spec.model), timeout=10)
    tensor = meta.inputs[0]
    shape = [1, *tensor.shape[1:]]
    xs = query_inputs(shape, dtype_of(tensor.datatype), 64, 0, spec.data)
    requests = [make_infer_request(spec.model, {tensor.name: x}) for x in xs]

    async def send(i: int) -> Outcome:
        try:
            on = stubs[i % len(stubs)]
            response = await on.ModelInfer(requests[i % len(requests)])
        except grpc.aio.AioRpcError as exc:
            return Outcome(error=exc.code().name)
        param = response.parameters.get("parm_source")
        return Outcome(param.string_param if param is not None else "original")

    return await closed_loop(
        send, concurrency=spec.concurrency, queries=spec.queries, warmup=spec.warmup
    )


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.client", description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--data", help="sample inputs from this data set (e.g. digits); default noise")
    p.add_argument("--channels", type=int, default=1, help="gRPC connections, used in turn")
    a = p.parse_args(argv)
    spec = ClosedLoop(a.url, a.model, a.concurrency, a.queries, a.warmup, a.data, a.channels)
    try:
        import uvloop

        result = uvloop.run(run_closed_loop(spec))
    except ImportError:
        result = asyncio.run(run_closed_loop(spec))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
