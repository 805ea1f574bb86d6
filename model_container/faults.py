"""Injected faults, for experiments: a delay before some answers, a failure instead of others.

Every answer draws twice from one seeded generator, delay first, failure second, whatever
the outcome, so a seed fixes the whole sequence of faults a container injects.  A delayed
answer waits ``delay_ms`` (``const``) or an exponential draw of that mean (``exp``).
The waiting goes through an injected ``sleep``, so tests record the delays asked for
instead of timing them.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

DELAY_DISTS = ("const", "exp")


@dataclass(frozen=True)
class FaultSettings:
    """What to inject: ``delay_prob`` None means 1.0 when ``delay_ms`` is set, else 0."""

    delay_ms: float = 0.0
    delay_prob: float | None = None
    fail_prob: float = 0.0
    #: ``const``: every delayed answer waits ``delay_ms``; ``exp``: an exponential draw
    #: with mean ``delay_ms``
    delay_dist: str = "const"
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.delay_ms < 0:
            raise ValueError(f"delay_ms: expected >= 0, got {self.delay_ms}")
        for field, p in (("delay_prob", self.delay_prob), ("fail_prob", self.fail_prob)):
            if p is not None and not 0.0 <= p <= 1.0:
                raise ValueError(f"{field}: expected a probability in [0, 1], got {p}")
        if self.delay_dist not in DELAY_DISTS:
            raise ValueError(f"delay_dist: expected const or exp, got {self.delay_dist!r}")

    @property
    def effective_delay_prob(self) -> float:
        """The probability an answer is delayed, after applying the default."""
        if self.delay_prob is not None:
            return self.delay_prob
        return 1.0 if self.delay_ms > 0 else 0.0


@dataclass(frozen=True)
class Draw:
    """The faults of one answer: wait ``delay_s`` (0: none), then fail or not."""

    delay_s: float
    fail: bool


class Faults:
    """The fault draws of one container, and the waiting for drawn delays."""

    def __init__(
        self,
        settings: FaultSettings,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self._rng = random.Random(settings.seed)
        self._sleep = sleep
        self._delay_s = settings.delay_ms / 1000.0
        self._delay_prob = settings.effective_delay_prob

    def draw(self) -> Draw:
        """The next answer's faults."""
        # Draw both every time so a seed gives the same fault sequence whatever happens.
        delayed = self._rng.random() < self._delay_prob
        failed = self._rng.random() < self.settings.fail_prob
        return Draw(self._draw_delay() if delayed else 0.0, failed)

    async def inject(self) -> bool:
        """Draw, wait out the drawn delay; True when this answer must fail instead."""
        draw = self.draw()
        if draw.delay_s > 0:
            await self._sleep(draw.delay_s)
        return draw.fail

    def _draw_delay(self) -> float:
        if self.settings.delay_dist == "exp" and self._delay_s > 0:
            return self._rng.expovariate(1 / self._delay_s)
        return self._delay_s
