"""When is an original *late*?  The decode-grace threshold, learned from healthy behaviour.

A reconstruction is an approximation, so the coordinator answers with one only when the
original is late by what healthy instances take (``frontend.core``: a decodable
reconstruction is *held* until its original is due).  This module says how long an
original may take before it counts as late: a fixed number of seconds, ``0`` (eager:
decode the moment k of the k+r outputs are in, as the papers do), or learned online
from the service times of originals (``auto``, the default of a served model).

The estimator (``auto``)
------------------------
Over the last ``WINDOW`` service times of originals (send to result, per data task):
first drop the gross outliers, every sample above ``median + TRIM * MAD`` (MAD: the
median absolute deviation from the median); the threshold is then the ``QUANTILE``
(99.5%) of what is left, but at most ``CAP`` (5) times the median, and never less than
``FLOOR_S``.

Why two steps.  The samples include the stragglers this whole mechanism exists to hide
(their originals still arrive, late).  A plain high quantile would follow them: with
30% of tasks delayed by 300 ms, the p99.5 *is* about 300 ms, and every straggler would
count as on time.  The median and the MAD have a breakdown point of 50%: as long as
fewer than half the samples are stragglers, they describe the healthy instances alone,
so the cut at 50 MADs removes the stragglers (hundreds of milliseconds late) and keeps
the healthy instances' own tail.  The healthy tail is then measured, not assumed: on a
busy machine an instance's time is stretched by the scheduler (a task of 0.3 ms of CPU
sometimes takes 4 ms of wall time), and a threshold of median + a few MADs called 4% of
healthy answers late (``parm bench overhead``, concurrency 16); the 99.5% quantile of the
inliers calls about 0.5% late, by construction.  The floor keeps a very tight healthy
distribution (loopback, sub-millisecond, with a 1 ms timer resolution in the driver)
from calling every scheduler hiccup a straggler: holding a reconstruction two
milliseconds costs nothing next to the stragglers it hides, which are tens to hundreds
of milliseconds late.

Why the cap.  When most instances are slowed at once -- network shuffles congesting two
thirds of the hosts' links, as on the papers' clusters (``parm bench latency --network
netns``) -- the median itself is a congested sample, the MAD is wide, and the cut at 50
MADs keeps the stragglers: the threshold rose to about 150 ms while originals took 18 ms
at the median, and reconstructions were held until the stragglers had mostly answered
anyway (p99.9 196 ms, against 84 ms decoding eagerly; bench/RESULTS.md).  An original
that takes five times the median is late whatever the spread: the healthy scheduler
tail above (1 ms median, 4% at 3-5 ms) stays under it.

Warm-up: until ``MIN_SAMPLES`` service times have been seen, the threshold is
``WARMUP_S``: generous enough that a healthy instance is on time, short enough that a
straggler in the first queries is still hidden.

The estimate is recomputed every ``REFRESH`` samples (sorting a window of 512 floats
costs tens of microseconds; doing it per query would cost more than the query's own
bookkeeping).  Nothing here reads a clock: service times are given to it.
"""

from __future__ import annotations

import math
import statistics
from collections import deque

WINDOW = 512
MIN_SAMPLES = 32
REFRESH = 32
TRIM = 50.0
#: an original taking more than this many times the median is late, whatever the spread
CAP = 5.0
QUANTILE = 0.995
#: hedge mode's delay: "The Tail at Scale" sends the backup after the 95th percentile
HEDGE_QUANTILE = 0.95
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
        trim: float = TRIM,
        quantile: float = QUANTILE,
        cap: float = CAP,
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
        self._trim = trim
        self._quantile = quantile
        self._cap = cap
        self._floor = floor
        self._since = 0
        self.threshold = warmup  # seconds an original may take before it is late

    def observe(self, service_time: float) -> None:
        """One original's service time (seconds from send to result)."""
        self._samples.append(service_time)
        self._since += 1
        if len(self._samples) >= self._min_samples and self._since >= self._refresh:
            self._since = 0
            bound = robust_bound(list(self._samples), self._trim, self._quantile, self._cap)
            self.threshold = max(self._floor, bound)


def robust_bound(
    samples: list[float], trim: float, quantile: float, cap: float = math.inf
) -> float:
    """The ``quantile`` of ``samples`` once those above ``median + trim * MAD`` are
    dropped (the nearest-rank quantile: a value that occurred; the MAD at least a
    tenth of the median), and at most ``cap`` times the median."""
    median = statistics.median(samples)
    # A MAD of 0 (identical times, or a clock that ticks in milliseconds) would make
    # every sample above the median an outlier: the spread is at least a tenth of it.
    spread = max(statistics.median(abs(x - median) for x in samples), median / 10)
    inliers = sorted(x for x in samples if x <= median + trim * spread)
    rank = min(len(inliers) - 1, max(0, math.ceil(quantile * len(inliers)) - 1))
    return min(inliers[rank], cap * median)


class Grace:
    """The per-model setting: fixed seconds (``0``: eager) or learned (``None``: auto)."""

    def __init__(self, fixed: float | None, estimator: GraceEstimator | None = None) -> None:
        if fixed is not None and fixed < 0:
            raise ValueError(f"decode grace: expected >= 0 seconds or auto, got {fixed}")
        self.fixed = fixed
        self.estimator = estimator or GraceEstimator()

    @classmethod
    def hedge(cls, fixed: float | None) -> Grace:
        """Hedge mode's delay: the same robust estimate at ``HEDGE_QUANTILE`` (the
        stragglers, which are what hedging hides, are cut before the quantile is read)."""
        return cls(fixed, GraceEstimator(quantile=HEDGE_QUANTILE))

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
