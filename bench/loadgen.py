"""An open-loop load generator that runs in its own process: ``python -m bench.loadgen``.

Queries arrive as a Poisson process at ``rate`` per second.  The whole arrival schedule
is drawn up front from a seeded generator and each query is sent at its *absolute*
time (start + offset), so a late wake-up never pushes the later arrivals back: there is
no drift from sleeping between sends, and a slow answer never delays the next send
(open loop: the client does not wait for answers before sending more).  Queries go
over v2 gRPC (``ModelInfer``) or, with ``--transport http``, KServe v2 REST with
binary tensors (``bench.http_client``'s encoding).

Latency is measured here, at the client, from the moment a query is handed to the
transport to the moment its answer is back; how late each send was against its
schedule (``lag``) is reported too, so a client that could not keep up shows.  The
first ``warmup`` queries are sent but not measured.  Each answer's provenance (the
``parm_source`` response parameter) is counted.  Prints one JSON object; ``--raw``
also writes every measured latency (ms) and source, for CDF plots.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from bench.inputs import query_inputs
from bench.stats import summarize

#: latency above which a query counts as an error rather than waiting forever
DEFAULT_TIMEOUT_S = 30.0
#: the HTTP client's keep-alive connections at most (aiohttp's default)
POOL = 100


@dataclass(frozen=True)
class OpenLoop:
    """One open-loop run: ``warmup + queries`` Poisson arrivals at ``rate`` per second."""

    url: str
    model: str
    rate: float
    queries: int
    warmup: int = 500
    seed: int = 0
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.queries < 1 or self.warmup < 0:
            raise ValueError(
                f"need rate > 0, queries >= 1, warmup >= 0; got {self.rate}, "
                f"{self.queries}, {self.warmup}"
            )


def poisson_schedule(rate: float, count: int, seed: int) -> npt.NDArray[np.float64]:
    """Arrival offsets (seconds from the start) of ``count`` Poisson arrivals at ``rate``/s."""
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, count)
    offsets: npt.NDArray[np.float64] = np.cumsum(gaps) - gaps[0]  # the first query at once
    return offsets


async def drive(
    offsets: Sequence[float],
    fire: Callable[[int, float], None],
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
) -> None:
    """Call ``fire(i, scheduled_at)`` at absolute time start + offsets[i], for each i.

    Every wait is computed from the absolute target, never from the previous send, so
    an oversleep delays only the one send it hits.
    """
    start = clock()
    for i, offset in enumerate(offsets):
        target = start + offset
        wait = target - clock()
        if wait > 0:
            await sleep(wait)
        fire(i, target)


class Transport(Protocol):
    """Sends one query; returns its answer's provenance (raises on an error answer)."""

    async def infer(self, index: int, timeout_s: float) -> str: ...


class Outcome:
    """What came back for the measured queries."""

    def __init__(self, total: int, warmup: int) -> None:
        self.warmup = warmup
        self.latency_s = np.full(total, np.nan)
        self.lag_s = np.zeros(total)
        self.sources: list[str] = [""] * total
        self.errors: Counter[str] = Counter()

    def record(self, index: int, latency_s: float, lag_s: float, source: str) -> None:
        self.latency_s[index] = latency_s
        self.lag_s[index] = lag_s
        self.sources[index] = source

    def summary(self, elapsed_s: float) -> dict[str, Any]:
        lat = self.latency_s[self.warmup :]
        ok = lat[~np.isnan(lat)]
        out = summarize(ok.tolist())
        counts = Counter(s for s in self.sources[self.warmup :] if s)
        out["sources"] = dict(sorted(counts.items()))
        out["source_share"] = {k: v / max(len(ok), 1) for k, v in sorted(counts.items())}
        out["errors"] = dict(self.errors)
        lag_ms = self.lag_s[self.warmup :] * 1000
        out["lag_p50_ms"] = float(np.percentile(lag_ms, 50))
        out["lag_p99_ms"] = float(np.percentile(lag_ms, 99))
        out["achieved_rate"] = len(self.latency_s) / elapsed_s if elapsed_s > 0 else 0.0
        return out

    def raw(self) -> dict[str, list[Any]]:
        """Measured latencies (ms, 3 decimals) and sources, in send order; errors left out."""
        lat = self.latency_s[self.warmup :]
        keep = ~np.isnan(lat)
        sources = [s for s, k in zip(self.sources[self.warmup :], keep, strict=True) if k]
        return {"latency_ms": np.round(lat[keep] * 1000, 3).tolist(), "source": sources}


async def run_open_loop(spec: OpenLoop, transport: Transport) -> Outcome:
    """Send every query on schedule; wait (bounded) for the answers; return what came."""
    total = spec.warmup + spec.queries
    offsets = poisson_schedule(spec.rate, total, spec.seed)
    outcome = Outcome(total, spec.warmup)
    pending: set[asyncio.Task[None]] = set()

    async def one(index: int, scheduled: float) -> None:
        began = time.perf_counter()
        lag = began - scheduled
        try:
            source = await transport.infer(index, spec.timeout_s)
        except Exception as exc:  # any failed query is counted, the run goes on
            if index >= spec.warmup:
                outcome.errors[_error_name(exc)] += 1
            return
        outcome.record(index, time.perf_counter() - began, lag, source)

    def fire(index: int, scheduled: float) -> None:
        task = asyncio.get_running_loop().create_task(one(index, scheduled))
        pending.add(task)
        task.add_done_callback(pending.discard)

    await drive(offsets.tolist(), fire, time.perf_counter, asyncio.sleep)
    if pending:  # bounded: each query carries its own deadline, plus a margin here
        await asyncio.wait(set(pending), timeout=spec.timeout_s + 5.0)
    return outcome


def _error_name(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if callable(code):
        return str(getattr(code(), "name", code()))
    return type(exc).__name__


# ---------------------------------------------------------------- transports


class GrpcTransport:
    """v2 gRPC unary ``ModelInfer`` over one channel (many calls in flight on it)."""

    def __init__(
        self, url: str, model: str, inputs: int = 64, seed: int = 0, data: str | None = None
    ) -> None:
        self.url, self.model, self.seed, self.inputs = url, model, seed, inputs
        self.data = data  # a data set to sample inputs from (bench.inputs); None: noise
        self._channel: Any = None
        self._stub: Any = None
        self._requests: list[Any] = []

    async def __aenter__(self) -> GrpcTransport:
        import grpc

        from proto import inference_pb2 as pb
        from proto import inference_pb2_grpc as pb_grpc
        from proto.tensors import dtype_of, make_infer_request

        self._channel = grpc.aio.insecure_channel(self.url)
        self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)
        meta = await self._stub.ModelMetadata(pb.ModelMetadataRequest(name=self.model), timeout=10)
        tensor = meta.inputs[0]
        shape = [1, *tensor.shape[1:]]
        dtype = dtype_of(tensor.datatype)
        xs = query_inputs(shape, dtype, self.inputs, self.seed, self.data)
        self._requests = [make_infer_request(self.model, {tensor.name: x}) for x in xs]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._channel.close()

    async def infer(self, index: int, timeout_s: float) -> str:
        request = self._requests[index % len(self._requests)]
        response = await self._stub.ModelInfer(request, timeout=timeout_s)
        param = response.parameters.get("parm_source")
        return str(param.string_param) if param is not None else "original"


class HttpError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status

    def code(self) -> str:  # named like a gRPC error's code, for the error counts
        return f"HTTP_{self.status}"


class HttpTransport:
    """KServe v2 REST ``POST /v2/models/<m>/infer`` (binary tensors) over keep-alive HTTP."""

    def __init__(
        self, url: str, model: str, protocol: str = "v2-binary", connections: int = POOL
    ) -> None:
        self.url, self.model, self.protocol = url, model, protocol
        self.connections = connections
        self._session: Any = None
        self._path = ""
        self._bodies: list[tuple[bytes, dict[str, str]]] = []

    async def __aenter__(self) -> HttpTransport:
        import aiohttp

        from bench.http_client import HttpLoop, requests

        # A pool of keep-alive connections, as HTTP/1.1 clients keep (aiohttp's and
        # urllib3's default is 100 at most): a query that finds every connection busy waits
        # for one, and that wait counts against its deadline.  0: a connection for every
        # query in flight, a connection storm under overload.
        connector = aiohttp.TCPConnector(limit=self.connections)
        self._session = aiohttp.ClientSession(self.url, connector=connector)
        async with self._session.get(f"/v2/models/{self.model}") as r:
            tensor = (await r.json())["inputs"][0]
        spec = HttpLoop(self.url, self.model, self.protocol, 1, 1)
        features = int(np.prod(tensor["shape"][1:]))
        self._path, self._bodies = requests(spec, tensor["name"], features)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.close()

    async def infer(self, index: int, timeout_s: float) -> str:
        from bench.http_client import source_of

        body, headers = self._bodies[index % len(self._bodies)]
        headers = {**headers, "Parm-Timeout-Ms": str(int(timeout_s * 1000))}
        try:  # the client's own deadline, as a gRPC client has: a late answer is a miss
            async with asyncio.timeout(timeout_s):
                async with self._session.post(self._path, data=body, headers=headers) as r:
                    content = await r.read()
        except TimeoutError:
            raise HttpError(504) from None
        if r.status != 200:
            raise HttpError(r.status)
        return source_of(self.protocol, content, r.headers)


async def measure(
    spec: OpenLoop,
    raw: Path | None = None,
    transport: str = "grpc",
    data: str | None = None,
    connections: int = POOL,
) -> dict[str, Any]:
    """Run ``spec``; the summary (and, with ``raw``, every latency written there).

    ``data``: gRPC queries sample this data set's test inputs (HTTP ones are noise);
    ``connections``: the HTTP client's pool (0: unlimited)."""
    client: GrpcTransport | HttpTransport = (
        HttpTransport(spec.url, spec.model, connections=connections)
        if transport == "http"
        else GrpcTransport(spec.url, spec.model, seed=spec.seed, data=data)
    )
    async with client:
        began = time.perf_counter()
        outcome = await run_open_loop(spec, client)
        elapsed = time.perf_counter() - began
    result = outcome.summary(elapsed)
    result.update(rate=spec.rate, seed=spec.seed, warmup=spec.warmup, transport=transport)
    if raw is not None:
        raw.write_text(json.dumps(outcome.raw()))
    return result


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    p.add_argument("--url", required=True, help="gRPC host:port, or http://host:port")
    p.add_argument("--transport", choices=["grpc", "http"], default="grpc")
    p.add_argument("--model", required=True)
    p.add_argument("--rate", type=float, required=True, help="queries per second (Poisson)")
    p.add_argument("--queries", type=int, default=10_000, help="measured queries")
    p.add_argument("--warmup", type=int, default=500, help="queries sent first, not measured")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT_S)
    p.add_argument("--raw", type=Path, help="write every measured latency here (JSON)")
    p.add_argument("--data", help="sample inputs from this data set (e.g. digits); default noise")
    p.add_argument(
        "--connections",
        type=int,
        default=POOL,
        help=f"HTTP: keep-alive connections at most (default {POOL}; 0: one per query in flight)",
    )
    a = p.parse_args(argv)
    spec = OpenLoop(a.url, a.model, a.rate, a.queries, a.warmup, a.seed, a.timeout_s)
    try:
        import uvloop
    except ImportError:  # optional: plain asyncio works, a little slower
        result = asyncio.run(measure(spec, a.raw, a.transport, a.data, a.connections))
    else:
        result = uvloop.run(measure(spec, a.raw, a.transport, a.data, a.connections))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
