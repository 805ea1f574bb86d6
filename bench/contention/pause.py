"""Pause episodes: an instance process is stopped (SIGSTOP) for a drawn time, then resumed.

This is the straggler at its starkest -- a garbage-collection pause, a VM descheduled, a
machine swapping: the process holds its in-flight query and makes no progress at all.
Episodes start as a Poisson process over the whole cluster (``rate`` per second); each
picks a random instance that is not already paused and a duration drawn uniformly from
``min_ms..max_ms``.  ``stop()`` resumes every paused process, so nothing is left stopped.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import random
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class EpisodeSpec:
    """Episodes over a cluster: ``rate`` per second (Poisson), each lasting a uniform
    draw from ``min_ms..max_ms``."""

    kind: ClassVar[str] = "episode"
    rate: float = 1.0  # episodes per second, whole cluster
    min_ms: float = 50.0
    max_ms: float = 150.0

    def __post_init__(self) -> None:
        if self.rate <= 0 or not 0 < self.min_ms <= self.max_ms:
            raise ValueError(f"invalid {self.kind} settings: {self}")

    def schedule(self) -> str:
        return (
            f"{self.min_ms:g}-{self.max_ms:g} ms (uniform), {self.rate:g} per second over the "
            f"cluster (Poisson)"
        )


@dataclass(frozen=True)
class PauseSpec(EpisodeSpec):
    kind: ClassVar[str] = "pause"

    def describe(self) -> str:
        return f"pause episodes: SIGSTOP of a random instance for {self.schedule()}"


class Episodes(abc.ABC):
    """A seeded Poisson schedule of episodes over a cluster, ``rate`` per second.

    The schedule is a task this object owns: ``start()`` begins it on the running loop
    and ``_end_schedule()`` cancels it.  A subclass says what an episode does.
    """

    def __init__(self, rate: float, seed: int, name: str) -> None:
        self.episodes = 0
        self._rate = rate
        self._name = name
        self._rng = random.Random(seed)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def _end_schedule(self) -> None:
        if self._task is not None:
            self._task.cancel(f"{self._name} stopping")
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._rng.expovariate(self._rate))
            self._episode(loop)

    @abc.abstractmethod
    def _episode(self, loop: asyncio.AbstractEventLoop) -> None:
        """One episode of contention, started now (its end scheduled on ``loop``)."""

    def _duration_s(self, min_ms: float, max_ms: float) -> float:
        return self._rng.uniform(min_ms, max_ms) / 1000


class Pauser(Episodes):
    """Stops and resumes processes from ``pids`` on a seeded random schedule."""

    def __init__(
        self,
        pids: Sequence[int],
        spec: PauseSpec,
        seed: int = 0,
        kill: Callable[[int, int], None] = os.kill,
    ) -> None:
        if not pids:
            raise ValueError("pause episodes need at least one process")
        super().__init__(spec.rate, seed, "pauses")
        self.pids = list(pids)
        self.spec = spec
        self.paused: set[int] = set()
        self._kill = kill  # injected, so tests can record the signals
        self._resumes: dict[int, asyncio.TimerHandle] = {}

    async def stop(self) -> None:
        """End the schedule and resume every process still paused."""
        await self._end_schedule()
        for handle in self._resumes.values():
            handle.cancel()
        for pid in list(self.paused):
            self._resume(pid)

    def _episode(self, loop: asyncio.AbstractEventLoop) -> None:
        duration = self._duration_s(self.spec.min_ms, self.spec.max_ms)
        free = [pid for pid in self.pids if pid not in self.paused]
        if not free:
            return
        pid = self._rng.choice(free)
        try:
            self._kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            return  # the instance is restarting
        self.paused.add(pid)
        self.episodes += 1
        self._resumes[pid] = loop.call_later(duration, self._resume, pid)

    def _resume(self, pid: int) -> None:
        self.paused.discard(pid)
        self._resumes.pop(pid, None)
        with contextlib.suppress(ProcessLookupError):
            self._kill(pid, signal.SIGCONT)
