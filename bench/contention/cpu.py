"""CPU contention: busy-looping "hog" processes that share a core with an instance.

At start each target instance is pinned to one core (round robin over this process's
cores; the old affinity is restored at stop) and ``hogs`` spinning processes are started
per core, pinned there too and stopped (SIGSTOP) until needed.  An episode picks a random
target and lets the hogs of its core run (SIGCONT) for a drawn duration: the instance
then shares its core with them under the kernel's fair scheduler.  On a machine with
few cores every process pinned to that core is slowed, not only the target; benchmarks
say so.  Hogs die with this process (``PR_SET_PDEATHSIG``) and are killed at stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from bench.contention.pause import Episodes

# A spinner that the kernel kills when its parent dies: no orphan ever burns a core.
SPIN = "import ctypes, signal; ctypes.CDLL(None).prctl(1, signal.SIGKILL)\nwhile True: pass"


@dataclass(frozen=True)
class CpuSpec:
    hogs: int = 1  # spinning processes per core during an episode
    rate: float = 1.0  # episodes per second, whole cluster
    min_ms: float = 50.0
    max_ms: float = 150.0

    def __post_init__(self) -> None:
        if self.hogs < 1 or self.rate <= 0 or not 0 < self.min_ms <= self.max_ms:
            raise ValueError(f"invalid CPU contention settings: {self}")

    def describe(self) -> str:
        return (
            f"CPU contention: {self.hogs} busy-loop process(es) on a random instance's core "
            f"for {self.min_ms:g}-{self.max_ms:g} ms, {self.rate:g} episodes per second "
            f"(instances pinned one core each, round robin)"
        )


def spawn_hog(cpu: int) -> subprocess.Popen[bytes]:
    """Start one spinner pinned to ``cpu``, stopped until an episode resumes it."""
    proc = subprocess.Popen([sys.executable, "-c", SPIN], stdin=subprocess.DEVNULL)
    os.sched_setaffinity(proc.pid, {cpu})
    os.kill(proc.pid, signal.SIGSTOP)
    return proc


class CpuHogs(Episodes):
    """Pins ``pids`` to cores and runs hog episodes on their cores."""

    def __init__(self, pids: Sequence[int], spec: CpuSpec, seed: int = 0) -> None:
        if not pids:
            raise ValueError("CPU contention needs at least one target process")
        super().__init__(spec.rate, seed, "cpu-hogs")
        self.spec = spec
        cpus = sorted(os.sched_getaffinity(0))
        self.core_of = {pid: cpus[i % len(cpus)] for i, pid in enumerate(pids)}
        self.hogs: dict[int, list[subprocess.Popen[bytes]]] = {}
        self._saved: dict[int, set[int]] = {}
        self._running: Counter[int] = Counter()  # core -> episodes running on it

    def start(self) -> None:
        for pid, cpu in self.core_of.items():
            with contextlib.suppress(ProcessLookupError):
                self._saved[pid] = os.sched_getaffinity(pid)
                os.sched_setaffinity(pid, {cpu})
        for cpu in sorted(set(self.core_of.values())):
            self.hogs[cpu] = [spawn_hog(cpu) for _ in range(self.spec.hogs)]
        super().start()

    async def stop(self) -> None:
        """End the episodes, kill the hogs, give the targets their affinity back."""
        await self._end_schedule()
        for procs in self.hogs.values():
            for proc in procs:
                proc.kill()
                proc.wait()
        self.hogs.clear()
        for pid, cpus in self._saved.items():
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(pid, cpus)

    def _episode(self, loop: asyncio.AbstractEventLoop) -> None:
        cpu = self.core_of[self._rng.choice(sorted(self.core_of))]
        duration = self._duration_s(self.spec.min_ms, self.spec.max_ms)
        self._signal(cpu, signal.SIGCONT)
        self._running[cpu] += 1
        self.episodes += 1
        loop.call_later(duration, self._end, cpu)

    def _end(self, cpu: int) -> None:
        self._running[cpu] -= 1
        if self._running[cpu] == 0:
            self._signal(cpu, signal.SIGSTOP)

    def _signal(self, cpu: int, sig: int) -> None:
        for proc in self.hogs.get(cpu, []):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
