"""Retry delays: exponential back-off with full jitter.

One helper for every retry loop (reconnecting to an instance, restarting a crashed
process, asking for F(0)), so they all back off the same way.  Jitter spreads the
retries of many clients that failed together ("full jitter": a uniform draw between
zero and the exponential bound), so a recovering instance is not hit by all of them in
the same millisecond.  The randomness is injected, so tests see exact delays.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays for successive retries: ``next()`` after a failure, ``reset()`` after a success.

    The n-th delay (from 0) is drawn from ``[first * jitter_floor, 1] * min(first *
    2**n, cap)``; ``jitter_floor`` 1.0 gives plain exponential back-off.
    """

    first: float
    cap: float
    jitter_floor: float = 0.5
    draw: Callable[[], float] = field(default=random.random, repr=False)
    _bound: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.cap:
            raise ValueError(f"expected 0 < first <= cap, got first={self.first} cap={self.cap}")
        if not 0.0 <= self.jitter_floor <= 1.0:
            raise ValueError(
                f"jitter_floor: expected a fraction in [0, 1], got {self.jitter_floor}"
            )
        self._bound = self.first

    def next(self) -> float:
        """The delay before the next retry; each call doubles the bound, up to ``cap``."""
        bound = self._bound
        self._bound = min(bound * 2, self.cap)
        return bound * (self.jitter_floor + (1.0 - self.jitter_floor) * self.draw())

    def reset(self) -> None:
        """After a success: the next failure starts again from ``first``."""
        self._bound = self.first
