"""The closed-loop driver shared by the gRPC and HTTP load clients.

``concurrency`` workers each send a query, wait for its answer, and send the next,
until ``warmup + queries`` have been sent; the first ``warmup`` answers are not
measured.  Latency is taken around ``send`` alone, at the client.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bench.stats import summarize


@dataclass(frozen=True)
class Outcome:
    """One answer: its provenance, or the name of the error it got."""

    source: str = "original"
    error: str | None = None


#: ``send(i)`` sends query number ``i`` and returns what came back.
Send = Callable[[int], Awaitable[Outcome]]


async def closed_loop(
    send: Send, *, concurrency: int, queries: int, warmup: int
) -> dict[str, object]:
    """Latency summary, throughput, source and error counts of a closed-loop run."""
    latencies: list[float] = []
    sources: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    remaining = warmup + queries

    async def worker(offset: int) -> None:
        nonlocal remaining
        i = offset
        while remaining > 0:
            remaining -= 1
            measured = remaining < queries
            began = time.perf_counter()
            outcome = await send(i)
            elapsed = time.perf_counter() - began
            i += 1
            if outcome.error is not None:
                errors[outcome.error] += 1
            elif measured:
                latencies.append(elapsed)
                sources[outcome.source] += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - began
    # Warm-up queries ran inside the timed span too: count only the measured share.
    measured_share = queries / (queries + warmup)
    result = summarize(latencies)
    result.update(
        concurrency=concurrency,
        throughput_qps=len(latencies) / (elapsed * measured_share) if latencies else 0.0,
        sources=dict(sources),
        errors=dict(errors),
    )
    return result
