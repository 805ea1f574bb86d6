"""The one seam through which time enters the frontend.

The coordinator never reads a clock: its driver stamps every event with ``now()``
and asks for wake-ups in the same timebase.  The asyncio frontend uses the event
loop's monotonic clock; the simulator uses a ``SimClock`` it advances itself.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale (only differences mean anything)."""
        ...


class LoopClock:
    """The running event loop's clock, so that ``loop.call_at`` shares its timebase."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def now(self) -> float:
        return self._loop.time()


class SimClock:
    """Simulated time: it moves only when the simulator says so."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance_to(self, when: float) -> None:
        if when < self._now:
            raise ValueError(f"simulated time cannot go back from {self._now} to {when}")
        self._now = when
