"""The code micro-benchmark: every operation timed, and the table built from given numbers."""

from __future__ import annotations

import pytest

from bench.micro import measure, report

NAMES = ("encode", "encode_serving", "copy_floor", "decode")


@pytest.mark.parametrize("k", [2, 4])
def test_the_micro_benchmark_times_every_operation(k):
    row = measure(k, repeats=5, pool_bytes=8 << 20)
    assert set(row) == {f"{n}_{q}_us" for n in NAMES for q in ("p50", "p99")}
    for name in NAMES:
        assert 0 < row[f"{name}_p50_us"] <= row[f"{name}_p99_us"]


def test_the_table_sets_each_k_beside_the_papers_and_the_copy_floor():
    row = {f"{n}_{q}_us": v for n in NAMES for q, v in (("p50", 100.0), ("p99", 150.0))}
    text = report({3: {**row, "copy_floor_p50_us": 50.0}, 2: row}, "parm bench codes")
    assert "`parm bench codes`" in text
    two, three = (line for line in text.splitlines() if line.startswith(("| 2 |", "| 3 |")))
    assert two == (
        "| 2 | 100 (150) | 100 (150) | 100 (150) | 1.00x | 1.00x | 93 | 100.0 (150.0) | 8 |"
    )
    assert "| 50 (150) | 2.00x | 2.00x | 153 |" in three
