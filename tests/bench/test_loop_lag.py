"""The loop-lag benchmark's parts: its bundles, its probe's record, its table."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.loop_lag import LagProbe, image_bundles, lag_summary, report
from common.bundle import check_parity_for, read_manifest


def test_the_image_bundles_are_a_parity_pair_for_the_sum_code(tmp_path: Path) -> None:
    base, parity = image_bundles(tmp_path, 3)
    b, p = read_manifest(base), read_manifest(parity)
    assert b.inputs[0].shape == (3, 224, 224) and p.role == "parity"
    check_parity_for(b, p, k=3, code="sum")


def test_the_probe_records_how_late_the_loop_ran_its_callback() -> None:
    async def scenario() -> list[float]:
        probe = LagProbe(asyncio.get_running_loop())
        probe._ran(0.0, 0.0)  # posted at the clocks' origins: ran very late
        return [*probe.lags, *probe.busy]

    lag, busy = asyncio.run(scenario())
    assert lag > 0 and busy > 0


def test_lags_are_summarised_in_milliseconds() -> None:
    summary = lag_summary([0.001] * 99 + [0.010])
    assert summary["p50"] == pytest.approx(1.0) and summary["max"] == pytest.approx(10.0)


def test_the_table_has_a_row_per_k() -> None:
    lag = {"p50": 0.05, "p99": 0.5, "p999": 0.9, "max": 1.5}
    row = {"k": 2, "concurrency": 8, "throughput_qps": 140.2, "p50_ms": 50.0, "idle": lag,
           "busy": lag, "cpu": lag, "sources": {"original": 10}}  # fmt: skip
    text = report([row], "parm bench codes --loop-lag")
    assert (
        "| 2 | 8 | 140 | 50.00 | 0.05 / 0.50 / 1.50 | 0.05 / 0.50 / 0.90 / 1.50 "
        "| 0.05 / 0.50 / 0.90 / 1.50 | original 10 |"
    ) in text
