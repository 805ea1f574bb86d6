"""The live check of reconstructions: every late original is compared with what was sent.

When a query was answered with a reconstruction and its original arrives after all, the
two are compared: for a classification output, whether the top-1 class agrees; for any
output, the relative L2 error ``||decoded - original|| / ||original||``.  The driver
turns each comparison into metrics; this module keeps the recent agreement rate over a
window and says when it has fallen below the configured level, at most once per
``warn_every`` seconds, so a degraded parity model is loud in the log without flooding
it.  The caller passes the time in: nothing here reads a clock.

Memory is bounded: a reconstruction waits for its original in a table of at most
``capacity`` entries (the oldest is dropped when full: an original that never comes,
because its instance died, must not pin memory).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]

WINDOW = 200
MIN_CHECKS = 20
WARN_EVERY_S = 60.0
CAPACITY = 4096


@dataclass(frozen=True)
class Comparison:
    """One row's check: did the top-1 class agree, and the relative L2 error."""

    agree: bool
    relative_error: float


def compare(decoded: Array, original: Array) -> Comparison:
    """Compare one reconstructed output row with its original."""
    d = np.asarray(decoded, np.float64).ravel()
    o = np.asarray(original, np.float64).ravel()
    norm = float(np.linalg.norm(o))
    diff = float(np.linalg.norm(d - o))
    error = diff / norm if norm > 0 else (0.0 if diff == 0 else float("inf"))
    agree = bool(np.argmax(d) == np.argmax(o)) if o.size > 1 else error <= 0.1
    return Comparison(agree, error)


class QualityWatch:
    """Reconstructions waiting for their originals, and the recent agreement rate."""

    def __init__(
        self,
        *,
        level: float = 0.9,
        window: int = WINDOW,
        min_checks: int = MIN_CHECKS,
        warn_every: float = WARN_EVERY_S,
        capacity: int = CAPACITY,
    ) -> None:
        if not 0.0 <= level <= 1.0:
            raise ValueError(f"agreement level: expected a fraction in [0, 1], got {level}")
        self.level = level
        self._recent: deque[bool] = deque(maxlen=window)
        self._min_checks = min_checks
        self._warn_every = warn_every
        self._last_warned: float | None = None
        self._pending: OrderedDict[int, dict[int, Array]] = OrderedDict()
        self._capacity = capacity

    def remember(self, task_id: int, rows: dict[int, Array]) -> None:
        """Keep the reconstructed ``rows`` (row -> output) of data task ``task_id``."""
        self._pending[task_id] = rows
        self._pending.move_to_end(task_id)
        while len(self._pending) > self._capacity:
            self._pending.popitem(last=False)

    def check(self, task_id: int, original: Array) -> list[Comparison]:
        """The original output (B, ...) of ``task_id`` came: compare each reconstructed row."""
        rows = self._pending.pop(task_id, None)
        if rows is None:
            return []
        out = [compare(decoded, original[row]) for row, decoded in sorted(rows.items())]
        self._recent.extend(c.agree for c in out)
        return out

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def agreement(self) -> float | None:
        """The share of recent checks that agreed; None before ``min_checks`` checks."""
        if len(self._recent) < self._min_checks:
            return None
        return sum(self._recent) / len(self._recent)

    def should_warn(self, now: float) -> bool:
        """True when agreement is below the level and no warning was given recently."""
        rate = self.agreement
        if rate is None or rate >= self.level:
            return False
        if self._last_warned is not None and now - self._last_warned < self._warn_every:
            return False
        self._last_warned = now
        return True
