"""Round-trip latency of one batch-1 request to a model container, per transport.

    python -m bench.container_rtt [--bundle DIR] [--requests 2000]

Starts ``python -m model_container`` on free loopback ports (with a tiny MLP bundle
unless ``--bundle`` is given), then sends sequential requests, one at a time, over
(a) unary gRPC ``ModelInfer``, (b) one ``ModelStreamInfer`` stream, (c) one framed TCP
connection (asyncio streams, TCP_NODELAY), and (d) unary gRPC from a synchronous client,
and prints percentiles of the round-trip time measured at the client.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np

from common.bundle import TensorSpec, read_manifest
from common.runtime import free_port
from model_container.config import ContainerConfig
from proto import inference_pb2 as pb
from proto.framing import FrameDecoder, encode_frame
from proto.tensors import dtype_of, make_infer_request

T = TypeVar("T")
SERVICE = "/inference.GRPCInferenceService/"
WARMUP = 200
IN_FEATURES, CLASSES = 64, 10  # the tiny bundle's MLP


def tiny_bundle(
    path: Path, name: str = "mlp", preprocessing: dict[str, list[float]] | None = None
) -> Path:
    """An MLP bundle 64 -> 16 -> 10 with fixed random weights; the tests serve it too."""
    import torch

    from common.models import build, save_bundle

    torch.manual_seed(0)
    arch_args = {"in_features": IN_FEATURES, "num_classes": CLASSES, "hidden": [16]}
    save_bundle(
        path,
        name=name,
        role="base",
        architecture="mlp",
        arch_args=arch_args,
        module=build("mlp", **arch_args),
        input_spec=TensorSpec("input", "FP32", (IN_FEATURES,)),
        output_spec=TensorSpec("output", "FP32", (CLASSES,)),
        preprocessing=preprocessing or {"mean": [0.0], "std": [1.0]},
    )
    return path


def start_container(bundle: Path, port: int, stream_port: int) -> subprocess.Popen[bytes]:
    """Start the container and block until its ready line appears on stderr."""
    config = ContainerConfig(bundle, port, stream_port=stream_port, device="cpu")
    cmd = [sys.executable, "-m", "model_container", *config.argv()]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    for line in proc.stderr:
        sys.stderr.buffer.write(line)
        if b"ready:" in line:
            # Keep draining, so a chatty container never blocks on a full pipe.
            drain = (proc.stderr, sys.stderr.buffer)
            threading.Thread(target=shutil.copyfileobj, args=drain, daemon=True).start()
            return proc
    raise RuntimeError(f"container exited with status {proc.wait()} before it was ready")


def _method(channel: Any, name: str) -> Any:
    """A v2 method's callable on a channel (grpc or grpc.aio: the same API), without stubs."""
    stream = name == "ModelStreamInfer"
    answer: Any = pb.ModelStreamInferResponse if stream else pb.ModelInferResponse
    return (channel.stream_stream if stream else channel.unary_unary)(
        SERVICE + name,
        request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=answer.FromString,
    )


async def _timed(n: int, call: Callable[[], Awaitable[None]]) -> list[float]:
    for _ in range(WARMUP):
        await call()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    return samples


async def unary_grpc(target: str, request: pb.ModelInferRequest, n: int) -> list[float]:
    """(a) ``ModelInfer`` over a grpc.aio channel."""
    async with grpc.aio.insecure_channel(target) as channel:
        infer = _method(channel, "ModelInfer")

        async def call() -> None:
            await infer(request)

        return await _timed(n, call)


async def stream_grpc(target: str, request: pb.ModelInferRequest, n: int) -> list[float]:
    """(b) One ``ModelStreamInfer`` stream: write a request, read its answer, repeat."""
    async with grpc.aio.insecure_channel(target) as channel:
        stream = _method(channel, "ModelStreamInfer")()

        async def call() -> None:
            await stream.write(request)
            answer = await stream.read()
            assert not answer.error_message, answer.error_message

        samples = await _timed(n, call)
        await stream.done_writing()
        return samples


async def framed_tcp(port: int, request: pb.ModelInferRequest, n: int) -> list[float]:
    """(c) The framed TCP port, asyncio streams with TCP_NODELAY."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    frame = encode_frame(request.SerializeToString())
    decoder = FrameDecoder()

    async def call() -> None:
        writer.write(frame)
        frames: list[bytes] = []
        while not frames:
            frames = decoder.feed(await reader.read(65536))
        answer = pb.ModelStreamInferResponse.FromString(frames[0])
        assert not answer.error_message, answer.error_message

    try:
        return await _timed(n, call)
    finally:
        writer.close()
        await writer.wait_closed()


def unary_grpc_sync(target: str, request: pb.ModelInferRequest, n: int) -> list[float]:
    """(d) ``ModelInfer`` from the synchronous grpc client, for comparison."""
    with grpc.insecure_channel(target) as channel:
        infer = _method(channel, "ModelInfer")
        for _ in range(WARMUP):
            infer(request)
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            infer(request)
            samples.append(time.perf_counter() - start)
        return samples


def summary(name: str, samples: list[float]) -> str:
    """One table row: median, p90, p99 in microseconds."""
    q = statistics.quantiles(samples, n=100)
    med = statistics.median(samples)
    return f"{name:<28} {med * 1e6:8.0f} {q[89] * 1e6:8.0f} {q[98] * 1e6:8.0f}"


async def measure_async(
    port: int, stream_port: int, request: pb.ModelInferRequest, n: int
) -> dict[str, list[float]]:
    """Run the three asyncio clients one after the other."""
    target = f"127.0.0.1:{port}"
    return {
        "(a) unary gRPC (aio)": await unary_grpc(target, request, n),
        "(b) ModelStreamInfer (aio)": await stream_grpc(target, request, n),
        "(c) framed TCP (asyncio)": await framed_tcp(stream_port, request, n),
    }


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", type=Path, default=None, help="bundle (default: a tiny MLP)")
    p.add_argument("--requests", type=int, default=2000, help="measured requests per transport")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle or tiny_bundle(Path(tmp) / "mlp")
        spec = read_manifest(bundle).inputs[0]
        x = np.zeros((1, *spec.shape), dtype=dtype_of(spec.datatype))
        request = make_infer_request(read_manifest(bundle).name, {spec.name: x}, request_id="b")
        port, stream_port = free_port(), free_port()
        proc = start_container(bundle, port, stream_port)
        try:
            results = _run(measure_async(port, stream_port, request, args.requests))
            results["(d) unary gRPC (sync)"] = unary_grpc_sync(
                f"127.0.0.1:{port}", request, args.requests
            )
        finally:
            proc.terminate()
            proc.wait()
    print(f"{'transport':<28} {'p50 us':>8} {'p90 us':>8} {'p99 us':>8}   (n={args.requests})")
    for name, samples in results.items():
        print(summary(name, samples))


if __name__ == "__main__":
    main()
