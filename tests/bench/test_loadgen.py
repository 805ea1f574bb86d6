"""The open-loop load generator: Poisson arrivals, absolute scheduling, what it records."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from bench.loadgen import OpenLoop, Outcome, drive, poisson_schedule, run_open_loop


@pytest.mark.parametrize("rate", [50.0, 1000.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_arrivals_are_poisson(rate, seed):
    gaps = np.diff(poisson_schedule(rate, 20_001, seed))
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.03)  # exponential: CV = 1
    assert (gaps >= 0).all()


def test_the_schedule_is_fixed_by_its_seed():
    assert np.array_equal(poisson_schedule(100, 50, 3), poisson_schedule(100, 50, 3))
    assert not np.array_equal(poisson_schedule(100, 50, 3), poisson_schedule(100, 50, 4))
    assert poisson_schedule(100, 50, 3)[0] == 0.0  # the first query goes at once


class OversleepingClock:
    """Virtual time whose every sleep overshoots by ``late`` seconds."""

    def __init__(self, late: float) -> None:
        self.now, self.late, self.sleeps = 100.0, late, 0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds + self.late


@pytest.mark.parametrize("late", [0.0, 0.0005, 0.003])
def test_sends_keep_to_absolute_times_however_late_each_wake_up(late):
    clock = OversleepingClock(late)
    offsets = [i * 0.01 for i in range(500)]
    fired: list[tuple[float, float]] = []
    asyncio.run(drive(offsets, lambda i, at: fired.append((clock(), at)), clock, clock.sleep))
    lags = [sent - scheduled for sent, scheduled in fired]
    assert [at - 100.0 for _, at in fired] == pytest.approx(offsets)
    assert max(lags) == pytest.approx(late, abs=1e-9)  # no drift accumulates


def test_a_late_sender_catches_up_without_sleeping():
    clock = OversleepingClock(0.05)  # each wake-up is later than the next arrival
    fired: list[int] = []
    asyncio.run(drive([0.0, 0.01, 0.02, 0.03], lambda i, at: fired.append(i), clock, clock.sleep))
    assert fired == [0, 1, 2, 3]
    assert clock.sleeps == 1


class SlowTransport:
    """Answers after ``delay`` seconds, counting how many queries are in flight at once."""

    def __init__(self, delay: float, fail_every: int = 0) -> None:
        self.delay, self.fail_every = delay, fail_every
        self.inflight = self.most = 0

    async def infer(self, index: int, timeout_s: float) -> str:
        self.inflight += 1
        self.most = max(self.most, self.inflight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.inflight -= 1
        if self.fail_every and index % self.fail_every == 0:
            raise ConnectionError("refused")
        return "reconstructed" if index % 4 == 0 else "original"


def test_open_loop_sends_without_waiting_for_answers():
    transport = SlowTransport(delay=0.2)
    spec = OpenLoop("unused", "m", rate=2000, queries=100, warmup=20, seed=1)
    outcome = asyncio.run(run_open_loop(spec, transport))
    assert transport.most > 10  # a closed loop would never have more than one
    summary = outcome.summary(elapsed_s=1.0)
    assert summary["count"] == 100  # warm-up excluded
    assert summary["p50_ms"] >= 200
    assert summary["sources"]["reconstructed"] + summary["sources"]["original"] == 100


def test_errors_are_counted_not_measured():
    transport = SlowTransport(delay=0.001, fail_every=10)
    spec = OpenLoop("unused", "m", rate=5000, queries=100, warmup=0, seed=0)
    outcome = asyncio.run(run_open_loop(spec, transport))
    summary = outcome.summary(elapsed_s=1.0)
    assert summary["errors"] == {"ConnectionError": 10}
    assert summary["count"] == 90
    assert len(outcome.raw()["latency_ms"]) == 90


def test_source_shares_and_the_warmup_cut():
    outcome = Outcome(total=6, warmup=2)
    for i, source in enumerate(["x", "x", "original", "original", "original", "reconstructed"]):
        outcome.record(i, 0.010 * (i + 1), 0.0, source)
    summary = outcome.summary(elapsed_s=1.0)
    assert summary["sources"] == {"original": 3, "reconstructed": 1}
    assert summary["source_share"] == {"original": 0.75, "reconstructed": 0.25}
    assert summary["mean_ms"] == pytest.approx(45.0)


@pytest.mark.parametrize(
    ("rate", "queries", "warmup"), [(0.0, 10, 0), (10.0, 0, 0), (10.0, 10, -1)]
)
def test_an_impossible_run_is_refused(rate, queries, warmup):
    with pytest.raises(ValueError, match="need rate"):
        OpenLoop("u", "m", rate, queries, warmup)


async def _serve_open_loop(
    infer: Any, rate: float, queries: int, timeout_s: float, pool: int = 100, before: Any = None
) -> dict[str, Any]:
    """An open loop of ``HttpTransport`` against an aiohttp server answering the v2
    metadata of model ``m`` and ``infer`` for its inferences; the loop's summary.
    ``before`` runs once the client is connected, before the loop."""
    from aiohttp import web

    from bench.loadgen import HttpTransport

    async def metadata(request: web.Request) -> web.Response:
        return web.json_response({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]})

    app = web.Application()
    app.router.add_get("/v2/models/m", metadata)
    app.router.add_post("/v2/models/m/infer", infer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    spec = OpenLoop(f"http://127.0.0.1:{port}", "m", rate, queries, warmup=0, timeout_s=timeout_s)
    try:
        async with HttpTransport(spec.url, "m", connections=pool) as transport:
            if before is not None:
                before()
            outcome = await run_open_loop(spec, transport)
    finally:
        await runner.cleanup()
    return outcome.summary(elapsed_s=1.0)


def test_the_http_transport_records_each_answers_provenance():
    from aiohttp import web

    seen: list[str] = []

    async def infer(request: web.Request) -> web.Response:
        seen.append(request.headers["Parm-Timeout-Ms"])
        await request.read()
        if len(seen) == 3:  # answered after the client's 0.5 s deadline (same loop: its
            await asyncio.sleep(1.0)  # timer fires first, however slow the machine)
        if len(seen) % 5 == 0:
            return web.Response(status=429)
        return web.json_response({"parameters": {"parm_source": "reconstructed"}})

    summary = asyncio.run(_serve_open_loop(infer, rate=500, queries=20, timeout_s=0.5))
    assert summary["sources"] == {"reconstructed": 15}
    assert summary["errors"] == {"HTTP_429": 4, "HTTP_504": 1}  # a late answer is a miss
    assert set(seen) == {"500"}


@pytest.mark.parametrize(("pool", "connections"), [(2, 2), (0, 6)])
def test_the_http_client_keeps_to_its_pool_of_connections(pool: int, connections: int) -> None:
    """Six queries at once: a pool of two carries them over two connections (the rest
    wait for one), no pool opens one each.  The server holds every request until as
    many as the pool allows are in progress, so the count cannot depend on timing."""
    from aiohttp import web

    peers: set[object] = set()
    in_progress: list[int] = []
    gate = asyncio.Event()

    async def infer(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        in_progress.append(1)
        if len(in_progress) == connections:
            gate.set()
        await gate.wait()
        await request.read()
        return web.json_response({"parameters": {"parm_source": "original"}})

    # the metadata request's connection is reused or not: count from the loop on
    run = _serve_open_loop(infer, 1e6, queries=6, timeout_s=60, pool=pool, before=peers.clear)
    summary = asyncio.run(run)
    assert summary["sources"] == {"original": 6}
    assert len(peers) == connections
