"""The one seam through which time enters the frontend.

The coordinator never reads a clock: its driver stamps every event with ``now()``
and asks for wake-ups in the same timebase with ``call_at``.  The asyncio frontend
uses the event loop's monotonic clock (`LoopClock`); tests and the simulator use a
`SimClock`, virtual time that moves only when told to and fires its timers in
order as it passes them.  ``sleep`` waits on either, so retry loops can be driven by
virtual time too.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None:
        """The callback will not be called (a no-op once it has been)."""
        ...


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale (only differences mean anything)."""
        ...

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle:
        """Call ``callback()`` once the clock reads ``when`` (at once if it is past)."""
        ...


class LoopClock:
    """``time.monotonic()``, and the event loop's timers.

    Not ``loop.time()``: uvloop's is libuv's cached loop time, truncated to whole
    milliseconds, and service times of a millisecond measured with it are 0, 1 or 2 ms
    (the decode-grace estimator saw a median absolute deviation of exactly 0).  Both
    read CLOCK_MONOTONIC, so timers set with ``loop.call_at`` share this timebase; such a
    timer may fire up to a millisecond before ``now()`` reaches its time, which the
    caller allows for (``frontend.model`` stamps the wake-up with the timer's time).

    Without a loop it uses the running one at each call, so it can be made before the
    loop starts (the frontend's services are built outside it).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop

    def now(self) -> float:
        return time.monotonic()

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle:
        loop = self._loop or asyncio.get_running_loop()
        if when <= self.now():
            # due already: the loop's next pass (uvloop would round a timer up to its
            # millisecond, so a wake-up "at once" would come up to 1 ms late)
            return loop.call_soon(callback)
        return loop.call_at(when, callback)


class SimTimer:
    """A timer of a `SimClock`."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class SimClock:
    """Simulated time: it moves only when told to, firing due timers on the way.

    Timers are kept in a heap keyed ``(time, seq)``, ``seq`` from the clock's own
    counter: timers due at the same time fire in the order they were set, so a run
    is deterministic.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._timers: list[tuple[float, int, SimTimer]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], object]) -> SimTimer:
        timer = SimTimer(when, callback)
        heapq.heappush(self._timers, (when, next(self._seq), timer))
        return timer

    def next_timer(self) -> float | None:
        """When the earliest pending timer is due; None if there is none."""
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def advance_to(self, when: float) -> None:
        """Move to ``when``, firing every timer due by then in (time, seq) order.

        While a callback runs the clock reads its timer's time (never earlier than
        now: a timer set in the past fires at once); timers that callbacks set, due by
        ``when``, fire in the same call.
        """
        if when < self._now:
            raise ValueError(f"simulated time cannot go back from {self._now} to {when}")
        timers = self._timers
        while timers and timers[0][0] <= when:
            at, _, timer = heapq.heappop(timers)
            if not timer.cancelled:
                self._now = max(self._now, at)
                timer.cancelled = True  # fired: cancelling it later is a no-op
                timer.callback()
        self._now = when

    def advance(self, seconds: float) -> None:
        """Move ``seconds`` forward (see `advance_to`)."""
        self.advance_to(self._now + seconds)


async def sleep(clock: Clock, seconds: float) -> None:
    """Wait until ``clock`` has moved ``seconds`` on (the asyncio task's view of it)."""
    woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if not woken.done():
            woken.set_result(None)

    timer = clock.call_at(clock.now() + seconds, wake)
    try:
        await woken
    finally:
        timer.cancel()
