"""``parm bench overload``'s arithmetic and report, with tiny made-up runs (no cluster)."""

from __future__ import annotations

import asyncio
import dataclasses
import os

import pytest

from bench.overload import (
    QUICK,
    Peak,
    _cpus,
    goodput_row,
    live_objects,
    report,
    resources,
    server_cpus,
)

RUN = {"rate": 300.0, "queries": 600, "count": 480, "p99_ms": 12.0}


def test_goodput_is_answers_per_second_as_a_share_of_capacity() -> None:
    errors = {"RESOURCE_EXHAUSTED": 90, "DEADLINE_EXCEEDED": 20, "UNAVAILABLE": 10, "X": 3}
    row = goodput_row("grpc", 3.0, 100.0, {**RUN, "errors": errors})
    assert row["goodput_qps"] == pytest.approx(240.0)  # 480 answers over 2 s
    assert row["goodput_share"] == pytest.approx(2.4)
    # UNAVAILABLE: a stream gRPC refused (REFUSED_STREAM) over the connection's limit
    assert (row["refused"], row["missed"], row["other_errors"]) == (100, 20, 3)


def test_http_statuses_count_as_refusals_and_misses() -> None:
    errors = {"HTTP_429": 3, "HTTP_503": 4, "HTTP_504": 2}
    row = goodput_row("http", 1.0, 100.0, {**RUN, "errors": errors})
    assert (row["refused"], row["missed"], row["other_errors"]) == (7, 2, 0)


def test_resources_are_read_from_proc() -> None:
    now = resources(os.getpid())
    assert now["rss_mb"] > 0 and now["fds"] > 0


def test_peak_keeps_the_highest_sample() -> None:
    async def scenario() -> dict[str, int]:
        async with Peak() as peak:
            peak.peak = {"rss_mb": 10**9, "fds": 0}
            await asyncio.sleep(0)
        return peak.peak

    peak = asyncio.run(scenario())
    assert peak["rss_mb"] == 10**9 and peak["fds"] > 0


def test_the_report_has_a_row_per_run_and_the_fairness_share() -> None:
    res = {"rss_mb": 100, "fds": 30}
    figures = {
        "capacity_qps": {"grpc": 100.0, "http": 60.0},
        "runs": [goodput_row("grpc", 3.0, 100.0, {**RUN, "errors": {}})],
        "resources": {"before": res, "peak": res, "after": res},
        "fairness": {
            "solo": {"throughput_qps": 200.0},
            "beside": {"throughput_qps": 150.0},
            "hostile": {"answered_rows": 1024, "refused": 7, "other": 0},
        },
    }
    text = report(figures, QUICK, "parm bench overload --quick")
    assert "| grpc | 3x | 300 | 240 | 240% | 480 | 0 | 0 | 0 | 12.0 |" in text
    assert "made 200 q/s alone and 150 q/s (75%) beside" in text
    assert "Command: `parm bench overload --quick`" in text
    assert "Capacity (closed loop, concurrency 16): grpc 100 q/s, http 60 q/s" in text
    assert "after 100 / 30." in text  # no object counts, none reported
    counted = {"before": {**res, "objects": 1000}, "peak": res, "after": {**res, "objects": 1250}}
    text = report({**figures, "resources": counted}, QUICK, "parm bench overload --quick")
    assert "live Python objects before 1,000, after 1,250 (+250)." in text


def test_live_objects_counts_what_the_collector_tracks() -> None:
    before = live_objects()
    kept: list[list[int]] = [[] for _ in range(1000)]
    assert live_objects() >= before + 1000
    del kept


@pytest.mark.parametrize(
    ("transport", "front_door"), [("grpc", "grpc"), ("http", "http"), ("http-storm", "http")]
)
def test_each_load_goes_through_its_front_door(transport: str, front_door: str) -> None:
    from bench.overload import door

    assert door(transport) == front_door


def test_the_storm_has_no_pool_limit_and_the_pooled_client_has_one() -> None:
    from bench.loadgen import POOL
    from bench.overload import POOLS

    assert POOLS == {"http": POOL, "http-storm": 0} and POOL > 0


def test_the_clients_cpus_are_taken_from_the_frontends_while_it_measures() -> None:
    every = os.sched_getaffinity(0)
    last = max(every)
    plan = dataclasses.replace(QUICK, client_cpus=(last,))
    if len(every) > 1:
        assert plan.server_cpus() == every - {last}
        with server_cpus(plan):
            assert os.sched_getaffinity(0) == every - {last}
        assert f"the load clients on CPU {last} only" in _cpus(plan)
    assert os.sched_getaffinity(0) == every
    with server_cpus(QUICK):  # no split: nothing changes
        assert os.sched_getaffinity(0) == every
    assert "the load clients, the frontend and 3 instances" in _cpus(QUICK)


@pytest.mark.parametrize("cpus", ["every", "unknown"])
def test_the_clients_cpus_must_leave_some_and_exist(cpus: str) -> None:
    every = os.sched_getaffinity(0)
    chosen = tuple(every) if cpus == "every" else (max(every) + 1,)
    with pytest.raises(ValueError, match="must be some, not all"):
        dataclasses.replace(QUICK, client_cpus=chosen).server_cpus()
