"""When is an original *late*?  The decode-grace threshold, learned from healthy behaviour.

A reconstruction is an approximation, so the coordinator answers with one only when the
original is late by what healthy instances take (``frontend.core``: a decodable
reconstruction is *held* until its original is due).  This module says how long an
original may take before it counts as late: a fixed number of seconds, ``0`` (eager:
decode the moment k of the k+r outputs are in, as the papers do), or learned online
from the service times of originals (``auto``, the default of a served model).

The estimator (``auto``)
------------------------
The threshold is ``median + SPREAD * MAD`` over the last ``WINDOW`` service times of
originals (send to result, per data task), where MAD is the median absolute deviation
from the median, and never less than ``FLOOR_S``.

Why the median and the MAD: both have a breakdown point of 50%.  The samples include
the stragglers this whole mechanism exists to hide (their originals still arrive, late);
a mean, a standard deviation or a high quantile would follow them up (with 30% of tasks
delayed by 300 ms, the p95 *is* about 300 ms), and the threshold would grow until every
straggler counted as on time.  As long as fewer than half the samples are stragglers, the
median and the MAD stay within the healthy instances' own distribution, so the threshold
stays near their tail: for a normal distribution, median + 5 MAD is about mean + 3.4
sigma (0.03% of healthy tasks counted late).  The floor keeps a very tight healthy
distribution (loopback, sub-millisecond, with a 1 ms timer resolution in the driver)
from calling every scheduler hiccup a straggler: holding a reconstruction two
milliseconds costs nothing next to the stragglers it hides, which are tens to hundreds
of milliseconds late.

Warm-up: until ``MIN_SAMPLES`` service times have been seen, the threshold is
``WARMUP_S``: generous enough that a healthy instance is on time, short enough that a
straggler in the first queries is still hidden.

The estimate is recomputed every ``REFRESH`` samples (sorting a window of 256 floats
costs a few microseconds; doing it per query would cost more than the query's own
bookkeeping).  Nothing here reads a clock: service times are given to it.
"""

from __future__ import annotations

import statistics
from collections import deque

WINDOW = 256
MIN_SAMPLES = 32
REFRESH = 16
SPREAD = 5.0
FLOOR_S = 0.002
WARMUP_S = 0.010


class GraceEstimator:
    """The learned threshold: ``observe`` service times, read ``threshold``."""

    def __init__(
        self,
        *,
        window: int = WINDOW,
        min_samples: int = MIN_SAMPLES,
        refresh: int = REFRESH,
        spread: float = SPREAD,
        floor: float = FLOOR_S,
        warmup: float = WARMUP_S,
    ) -> None:
        if not 1 <= min_samples <= window or refresh < 1:
            raise ValueError(
                f"expected 1 <= min_samples <= window and refresh >= 1, got "
                f"min_samples={min_samples} window={window} refresh={refresh}"
            )
        self._samples: deque[float] = deque(maxlen=window)
        self._min_samples = min_samples
        self._refresh = refresh
        self._spread = spread
        self._floor = floor
        self._since = 0
        self.threshold = warmup  # seconds an original may take before it is late

    def observe(self, service_time: float) -> None:
        """One original's service time (seconds from send to result)."""
        self._samples.append(service_time)
        self._since += 1
        if len(self._samples) >= self._min_samples and self._since >= self._refresh:
            self._since = 0
            self.threshold = max(self._floor, robust_bound(self._samples, self._spread))


def robust_bound(samples: deque[float] | list[float], spread: float) -> float:
    """``median + spread * MAD`` of ``samples``."""
    median = statistics.median(samples)
    mad = statistics.median(abs(x - median) for x in samples)
    return median + spread * mad


class Grace:
    """The per-model setting: fixed seconds (``0``: eager) or learned (``None``: auto)."""

    def __init__(self, fixed: float | None, estimator: GraceEstimator | None = None) -> None:
        if fixed is not None and fixed < 0:
            raise ValueError(f"decode grace: expected >= 0 seconds or auto, got {fixed}")
        self.fixed = fixed
        self.estimator = estimator or GraceEstimator()

    @property
    def eager(self) -> bool:
        return self.fixed == 0

    @property
    def threshold(self) -> float:
        """Seconds an original may take, from its send, before it is late."""
        return self.estimator.threshold if self.fixed is None else self.fixed

    def observe(self, service_time: float) -> None:
        if self.fixed is None:
            self.estimator.observe(service_time)
