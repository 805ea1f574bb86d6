"""``parm bench workers``: its accounting and report (the measurement itself is a benchmark)."""

from __future__ import annotations

import os

import pytest

from bench.workers import Run, _process_cpu_s, report, sim_cpu_us, simulated_scaling


def run(workers: int, round_: int, qps: float, cpu_s: float) -> Run:
    result = {"throughput_qps": qps, "p50_ms": 1.0, "p99_ms": 2.0, "errors": {}}
    return Run(workers, round_, result, cpu_s, sent=1000)


def test_the_report_compares_each_round_as_ratios() -> None:
    runs = [run(1, 0, 400, 0.7), run(2, 0, 600, 0.8), run(1, 1, 500, 0.9), run(2, 1, 500, 0.9)]
    assert runs[0].cpu_us_per_query == pytest.approx(700)
    assert sim_cpu_us(runs) == pytest.approx(800)  # the median of the 1-worker runs
    text = report(runs, [], "parm bench workers", 800)
    assert "Round 0: 2 workers / 1 worker throughput = 1.50x; CPU per query 1.14x." in text
    assert "Round 1: 2 workers / 1 worker throughput = 1.00x; CPU per query 1.00x." in text
    assert "| 0 | 2 | 600 | 1.00 | 2.00 | 800 | - |" in text


def test_the_cpu_time_of_a_process_is_read_from_proc() -> None:
    assert _process_cpu_s(os.getpid()) >= 0.0


def test_simulated_workers_take_the_rate_of_their_load() -> None:
    rows = simulated_scaling(1000.0, queries=200)
    assert len(rows) == 15
    one = next(r for r in rows if r["workers"] == 4 and r["load"] == 0.5)
    assert one["qps"] == pytest.approx(2000)  # 4 workers at 50% of 1 ms each
    assert all(r["p50_us"] >= 1000.0 for r in rows)  # never under the service time
