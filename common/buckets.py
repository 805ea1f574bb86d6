"""Histogram buckets shared by the frontend and the model containers.

Both sides of an instance call use the same latency bounds, so their histograms line up
on one dashboard.  About twenty bounds each: a scrape costs in proportion to the number
of buckets (one exposition line each, per labelled child), and Prometheus interpolates
inside a bucket, so the bounds are dense where ParM's latencies live (a few to a few
tens of milliseconds) and sparse elsewhere.
"""

from __future__ import annotations

#: Upper bounds (seconds) for latencies: 0.5 ms to a minute (deadlines, stuck instances).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02,
    0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.5, 10.0, 60.0,
)  # fmt: skip

#: Upper bounds for the relative L2 error of a reconstruction against its late original.
ERROR_BUCKETS: tuple[float, ...] = (
    0.001, 0.003, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0,
)  # fmt: skip

#: Upper bounds (seconds) for encoding and decoding: ten microseconds to 100 ms.
COMPUTE_BUCKETS: tuple[float, ...] = (
    0.00001, 0.00002, 0.00003, 0.00005, 0.000075, 0.0001, 0.00015, 0.0002, 0.0003,
    0.0005, 0.00075, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
)  # fmt: skip
