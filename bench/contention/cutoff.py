"""Cut-off episodes: a host is cut off the network for a drawn time, then healed.

Needs a netns network (``deploy.netns``): a cut drops every packet in and out of the
host (iptables DROP inside its namespace: no RST, no FIN), so the frontend's connection
to the instance neither answers nor breaks, as when a cable is pulled or a switch port
fails.  Episodes start as a Poisson process over the cluster (``rate`` per second); each
picks a random host that is not already cut and a duration drawn uniformly from
``min_ms..max_ms``.  The rules are changed in one worker thread (an ``iptables`` call
takes milliseconds; the benchmark's event loop is the frontend's), in the order asked:
a heal never overtakes the cut it undoes, even when ``stop()`` cancels an episode while
its cut is under way.  ``stop()`` heals every host.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar, Protocol

from bench.contention.pause import Episodes, EpisodeSpec


@dataclass(frozen=True)
class CutoffSpec(EpisodeSpec):
    kind: ClassVar[str] = "cutoff"
    rate: float = 0.2  # episodes per second, whole cluster
    min_ms: float = 200.0
    max_ms: float = 1000.0

    def describe(self) -> str:
        return f"host cut-offs: a random host's packets dropped both ways for {self.schedule()}"


class Switchboard(Protocol):
    """What cuts hosts off: ``deploy.netns.HostNetwork``."""

    def cut(self, name: str) -> None: ...

    def heal(self, name: str) -> None: ...


class Cutter(Episodes):
    """Cuts random hosts of ``hosts`` off ``network`` on a seeded random schedule."""

    def __init__(
        self, network: Switchboard, hosts: Sequence[str], spec: CutoffSpec, seed: int = 0
    ) -> None:
        if not hosts:
            raise ValueError("cut-off episodes need at least one host")
        super().__init__(spec.rate, seed, "cutoffs")
        self.network = network
        self.hosts = list(hosts)
        self.spec = spec
        self.cut: set[str] = set()
        self._episodes: set[asyncio.Task[None]] = set()
        self._rules = ThreadPoolExecutor(1, thread_name_prefix="cutoffs")  # one, in order

    async def stop(self) -> None:
        """End the schedule, cancel the episodes under way and heal every host."""
        await self._end_schedule()
        for task in list(self._episodes):
            task.cancel("cutoffs stopping")
        await asyncio.gather(*self._episodes, return_exceptions=True)
        for host in list(self.cut):
            await self._apply(self.network.heal, host)  # after any cut still under way
            self.cut.discard(host)
        self._rules.shutdown()

    def _episode(self, loop: asyncio.AbstractEventLoop) -> None:
        duration = self._duration_s(self.spec.min_ms, self.spec.max_ms)
        free = [host for host in self.hosts if host not in self.cut]
        if not free:
            return
        host = self._rng.choice(free)
        self.cut.add(host)
        self.episodes += 1
        task = loop.create_task(self._cut_for(host, duration), name=f"cutoff-{host}")
        self._episodes.add(task)
        task.add_done_callback(self._episodes.discard)

    async def _cut_for(self, host: str, duration: float) -> None:
        await self._apply(self.network.cut, host)
        await asyncio.sleep(duration)
        await self._apply(self.network.heal, host)
        self.cut.discard(host)

    async def _apply(self, change: Callable[[str], None], host: str) -> None:
        await asyncio.get_running_loop().run_in_executor(self._rules, change, host)
