"""Latency statistics as the papers report them."""

from __future__ import annotations

import pytest

from bench.stats import summarize


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("p50_ms", 500.5),
        ("p99_ms", 990.01),
        ("p995_ms", 995.005),
        ("p999_ms", 999.001),
        ("mean_ms", 500.5),
        ("gap_p999_p50_ms", 498.501),
    ],
)
def test_percentiles_interpolate_linearly(key, expected):
    summary = summarize([ms / 1000 for ms in range(1, 1001)])
    assert summary[key] == pytest.approx(expected)
    assert summary["count"] == 1000


def test_no_latencies_summarise_to_a_count_of_zero():
    assert summarize([]) == {"count": 0}
