"""The shared histogram buckets: few enough for a cheap scrape, dense where latencies live."""

from __future__ import annotations

import itertools

import pytest

from common.buckets import COMPUTE_BUCKETS, LATENCY_BUCKETS


@pytest.mark.parametrize("bounds", [LATENCY_BUCKETS, COMPUTE_BUCKETS], ids=["latency", "compute"])
def test_about_twenty_increasing_bounds(bounds: tuple[float, ...]) -> None:
    assert 15 <= len(bounds) <= 22
    assert all(a < b for a, b in itertools.pairwise(bounds))


def test_latency_buckets_are_dense_up_to_twenty_milliseconds() -> None:
    """Prometheus interpolates inside a bucket: at most 2.5 ms wide up to 10 ms, 5 ms to 20 ms."""
    widths = {b: b - a for a, b in zip((0.0, *LATENCY_BUCKETS), LATENCY_BUCKETS, strict=False)}
    assert max(w for b, w in widths.items() if b <= 0.010) <= 0.0025 + 1e-12
    assert max(w for b, w in widths.items() if b <= 0.020) <= 0.005 + 1e-12
    assert LATENCY_BUCKETS[0] <= 0.001 and LATENCY_BUCKETS[-1] == 60.0


def test_compute_buckets_span_microseconds_to_a_tenth_of_a_second() -> None:
    assert COMPUTE_BUCKETS[0] <= 1e-5 and COMPUTE_BUCKETS[-1] == 0.1
