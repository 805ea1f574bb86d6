"""Pause episodes: real processes stopped and resumed, signals counted.

Nothing here times anything: the assertions are on process states and the signals
sent.  How much contention slows a query is
a benchmark's figure (``parm bench latency``), not a test's.
"""

from __future__ import annotations

import asyncio
import signal

from bench.contention.pause import Pauser, PauseSpec
from tests.bench.contention.processes import idle, state, until

__all__ = ["idle"]  # a fixture


def test_a_pause_stops_a_real_process_and_stop_resumes_it(idle):
    pid = idle.pid
    pauser = Pauser([pid], PauseSpec(rate=200, min_ms=600_000, max_ms=600_000), seed=0)

    async def scenario() -> None:
        pauser.start()
        await until(lambda: state(pid) == "T")
        assert pauser.episodes == 1 and pauser.paused == {pid}  # never paused twice
        await pauser.stop()
        assert not pauser.paused

    asyncio.run(scenario())
    asyncio.run(until(lambda: state(pid) != "T"))


def test_every_pause_is_resumed_on_schedule_and_at_stop():
    sent: list[tuple[int, int]] = []
    pauser = Pauser(
        [101, 102, 103],
        PauseSpec(rate=500, min_ms=1, max_ms=3),
        seed=4,
        kill=lambda pid, sig: sent.append((pid, sig)),
    )

    async def scenario() -> None:
        pauser.start()
        await until(lambda: sent.count((101, signal.SIGCONT)) >= 2)
        await pauser.stop()

    asyncio.run(scenario())
    stops = [pid for pid, sig in sent if sig == signal.SIGSTOP]
    assert len(stops) == pauser.episodes and not pauser.paused
    for pid in (101, 102, 103):  # each process: stop, resume, stop, resume, ...
        mine = [sig for p, sig in sent if p == pid]
        assert mine == [signal.SIGSTOP, signal.SIGCONT] * (len(mine) // 2)
