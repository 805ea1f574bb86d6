"""The closed-loop driver shared by the gRPC and HTTP load clients.

``concurrency`` workers each send a query, wait for its answer, and send the next,
until ``warmup + queries`` have been sent; the first ``warmup`` answers are not
measured.  Latency is taken around ``send`` alone, at the client.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

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


async def run_client_process(module: str, *args: str, cpus: Collection[int] = ()) -> dict[str, Any]:
    """Run a load client (``python -m module args``) in its own process; its JSON summary.

    Its own process, so the client does not share the event loop or the CPU time of
    the frontend it measures; with ``cpus``, only on those CPUs (as a client on another
    machine would not take the server's cores).
    """
    mine = os.sched_getaffinity(0)
    if cpus:  # the child is born with this thread's CPUs: no moment on the others
        os.sched_setaffinity(0, set(cpus))
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, *args, stdout=asyncio.subprocess.PIPE
        )
    finally:
        os.sched_setaffinity(0, mine)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"load client {module} failed with exit code {proc.returncode}")
    result: dict[str, Any] = json.loads(out)
    return result
