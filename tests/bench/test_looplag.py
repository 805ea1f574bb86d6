"""The frontend process's loop lag, sampled while a run is watched."""

from __future__ import annotations

import asyncio

from bench.looplag import LoopLag


def test_nothing_watched_summarises_to_nothing():
    assert LoopLag().summary() == {}


def test_a_watched_stall_shows_as_lag_and_the_watcher_stops():
    lag = LoopLag()

    async def scenario() -> None:
        async with lag.watching():
            while len(lag.lags) < 3:  # the watcher's own ticks, not a wall-clock wait
                await asyncio.sleep(0)
        count = len(lag.lags)
        await asyncio.sleep(0)
        assert len(lag.lags) == count  # stopped with the run

    asyncio.run(scenario())
    summary = lag.summary()
    assert set(summary) == {
        "loop_lag_p99_ms", "loop_lag_max_ms", "frontend_cpu_cores", "frontend_gc_max_ms",
    }  # fmt: skip
    assert summary["loop_lag_max_ms"] >= summary["loop_lag_p99_ms"]
