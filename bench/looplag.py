"""How late the benchmark process's event loop (the frontend's) wakes up during a run.

A stall of the frontend process (descheduled on a busy machine, a long garbage
collection) delays every query at once, whatever the mode; ``LoopLag`` separates such
stalls from what the instances do, and reports the cores the process used meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from collections.abc import AsyncIterator


class LoopLag:
    """Samples this process's loop lag every ``PERIOD_S`` while ``watching()``."""

    PERIOD_S = 0.005

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.cpu_share = 0.0  # cores this process used while watching
        self.gc_max_s = 0.0  # the longest garbage collection meanwhile
        self._gc_began = 0.0

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(self._watch())
        cpu, wall = _cpu_seconds(), time.perf_counter()
        gc.callbacks.append(self._on_gc)
        try:
            yield
        finally:
            gc.callbacks.remove(self._on_gc)
            self.cpu_share = (_cpu_seconds() - cpu) / (time.perf_counter() - wall)
            task.cancel("run over")
            await asyncio.gather(task, return_exceptions=True)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._gc_began = now
        else:
            self.gc_max_s = max(self.gc_max_s, now - self._gc_began)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.PERIOD_S
            await asyncio.sleep(self.PERIOD_S)
            self.lags.append(loop.time() - due)

    def summary(self) -> dict[str, float]:
        if not self.lags:
            return {}
        ms = sorted(lag * 1000 for lag in self.lags)
        return {
            "loop_lag_p99_ms": ms[int(0.99 * (len(ms) - 1))],
            "loop_lag_max_ms": ms[-1],
            "frontend_cpu_cores": self.cpu_share,
            "frontend_gc_max_ms": self.gc_max_s * 1000,
        }


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system
