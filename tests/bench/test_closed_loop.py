import asyncio

import pytest

from bench.closed_loop import Outcome, closed_loop, run_client_process


def test_warm_up_is_not_measured_and_errors_are_counted_apart() -> None:
    sent: list[int] = []

    async def send(i: int) -> Outcome:
        sent.append(i)
        await asyncio.sleep(0)
        if i % 5 == 4:
            return Outcome(error="UNAVAILABLE")
        return Outcome("reconstructed" if i % 2 else "original")

    result = asyncio.run(closed_loop(send, concurrency=3, queries=20, warmup=10))
    assert len(sent) == 30
    errors = result["errors"]
    sources = result["sources"]
    assert isinstance(errors, dict) and isinstance(sources, dict)
    assert sum(sources.values()) + errors.get("UNAVAILABLE", 0) <= 30
    assert result["count"] == sum(sources.values())
    assert 0 < sum(sources.values()) <= 20  # only the last 20 sends are measured
    assert result["concurrency"] == 3
    assert isinstance(result["throughput_qps"], float) and result["throughput_qps"] > 0


def test_a_client_process_gives_its_json_summary(tmp_path) -> None:
    summary = tmp_path / "summary.json"
    summary.write_text('{"p50_ms": 1.5, "sources": {"original": 3}}')
    result = asyncio.run(run_client_process("json.tool", str(summary)))
    assert result == {"p50_ms": 1.5, "sources": {"original": 3}}


def test_a_failing_client_process_is_an_error() -> None:
    with pytest.raises(RuntimeError, match=r"load client json\.tool failed with exit code [12]"):
        asyncio.run(run_client_process("json.tool", "/nonexistent/summary.json"))


def test_a_client_process_runs_on_the_cpus_it_is_given_and_this_one_keeps_its_own():
    import os

    every = sorted(os.sched_getaffinity(0))
    result = asyncio.run(run_client_process("tests.bench.affinity", cpus=(every[-1],)))
    assert result == {"cpus": [every[-1]]}
    assert sorted(os.sched_getaffinity(0)) == every
    assert asyncio.run(run_client_process("tests.bench.affinity")) == {"cpus": every}
