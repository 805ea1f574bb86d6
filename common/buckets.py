"""Latency histogram buckets shared by the frontend and the model containers.

Both sides of an instance call use the same bounds, so their histograms line up on one
dashboard.
"""

from __future__ import annotations


def latency_buckets() -> tuple[float, ...]:
    """Upper bounds (seconds) for latencies: fine enough to read p99.9 to the millisecond.

    Prometheus interpolates linearly inside a bucket, so a quantile is off by at most
    one bucket's width: 0.25 ms up to 5 ms, 1 ms up to 50 ms, 5 ms up to 200 ms, 25 ms
    up to 1 s, then coarse steps to a minute (deadlines, stuck instances).
    """
    steps = ((0.00025, 0.005), (0.001, 0.050), (0.005, 0.200), (0.025, 1.0))
    bounds: list[float] = []
    low = 0.0
    for width, high in steps:
        count = round((high - low) / width)
        bounds += [round(low + width * (i + 1), 6) for i in range(count)]
        low = high
    return (*bounds, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)


LATENCY_BUCKETS = latency_buckets()
