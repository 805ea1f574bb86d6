"""CPU hogs: pinned next to their target, resumed for episodes, killed at stop.

Nothing here times anything: the assertions are on affinities, process states and
episodes counted.  How much contention slows a query is
a benchmark's figure (``parm bench latency``), not a test's.
"""

from __future__ import annotations

import asyncio
import os
import subprocess

from bench.contention.cpu import CpuHogs, CpuSpec
from tests.bench.contention.processes import idle, state, until

__all__ = ["idle"]  # a fixture


def test_cpu_hogs_run_on_the_target_core_and_go_away(idle):
    target = idle.pid
    before = os.sched_getaffinity(target)
    hogs = CpuHogs([target], CpuSpec(hogs=1, rate=1000, min_ms=600_000, max_ms=600_000))

    async def scenario() -> list[subprocess.Popen[bytes]]:
        hogs.start()
        core = hogs.core_of[target]
        assert os.sched_getaffinity(target) == {core}
        procs = hogs.hogs[core]
        assert [os.sched_getaffinity(p.pid) for p in procs] == [{core}]
        await until(lambda: hogs.episodes > 0)
        await until(lambda: all(state(p.pid) == "R" for p in procs))  # resumed, spinning
        await hogs.stop()
        return procs

    procs = asyncio.run(scenario())
    assert all(p.poll() is not None for p in procs)  # killed
    assert os.sched_getaffinity(target) == before


def test_cpu_hogs_wait_stopped_between_episodes(idle):
    hogs = CpuHogs([idle.pid], CpuSpec(rate=1e-9))  # the first episode is ages away

    async def scenario() -> None:
        hogs.start()
        (hog,) = hogs.hogs[hogs.core_of[idle.pid]]
        await until(lambda: state(hog.pid) == "T")
        await hogs.stop()

    asyncio.run(scenario())
    assert hogs.episodes == 0
