"""The frontend-overhead benchmark's pure parts: the client's arguments, the table."""

from __future__ import annotations

import asyncio
from typing import Any

import bench.overhead as overhead


def test_the_client_runs_in_its_own_process_with_the_runs_settings(monkeypatch):
    calls: list[tuple[str, ...]] = []

    async def fake(*argv: str) -> dict[str, Any]:
        calls.append(argv)
        return {"p50_ms": 1.0}

    monkeypatch.setattr(overhead, "run_client_process", fake)
    result = asyncio.run(overhead.client("127.0.0.1:9", "digits", 16, 300))
    assert result["p50_ms"] == 1.0 and result["cpu_us"] >= 0
    asyncio.run(overhead.client("http://h:1", "digits", 1, 300, "v2-binary"))
    assert calls == [
        (
            "bench.client", "--url", "127.0.0.1:9", "--model", "digits", "--concurrency", "16",
            "--queries", "300", "--data", "digits",
        ),
        (
            "bench.http_client", "--url", "http://h:1", "--model", "digits", "--concurrency",
            "1", "--queries", "300", "--protocol", "v2-binary",
        ),
    ]  # fmt: skip


def row(
    path: str, mode: str, concurrency: int, p50: float, reconstructed: int = 0
) -> dict[str, Any]:
    sources = {"original": 5 - reconstructed, "reconstructed": reconstructed}
    return {
        "path": path, "mode": mode, "concurrency": concurrency, "p50_ms": p50, "p99_ms": 2.0,
        "p999_ms": 3.0, "mean_ms": 1.5, "throughput_qps": 999.6 if path != "instance" else 1250,
        "sources": sources, "cpu_us": 432.1,
    }  # fmt: skip


ROWS = [
    row("frontend", "coded", 1, 1.75),
    row("frontend", "coded", 16, 9.0),
    row("frontend", "coded, eager", 1, 1.70, reconstructed=1),
    row("frontend", "coded, eager", 16, 9.5, reconstructed=2),
    row("instance", "direct", 1, 0.5),
    row("instance", "direct", 16, 5.0),
    row("frontend", "none", 1, 1.5),
]


def test_the_frontends_added_median_is_coded_minus_direct_at_concurrency_one():
    text = overhead.report(ROWS, "parm bench overhead --queries 10")
    assert "Frontend-added p50 at concurrency 1 (coded minus direct): 1.25 ms" in text
    assert (
        "| frontend | coded | 16 | 9.00 | 2.00 | 3.00 | 1.50 | 1000 | 432 | 0.0% "
        "| original 5, reconstructed 0 |"
    ) in text
    assert "| instance | direct | 16 | 5.00 | 2.00 | 3.00 | 1.50 | 1250 | - | 0.0% |" in text
    assert "over one instance called directly: 0.80x" in text
    assert "`parm bench overhead --queries 10`" in text


def test_decode_grace_is_compared_with_eager_decoding_at_each_concurrency():
    text = overhead.report(ROWS, "parm bench overhead")
    assert (
        "Decode grace at concurrency 1: reconstructed 0.0% (auto) vs 20.0% (eager); p50 +0.05 ms"
        in text
    )
    assert (
        "Decode grace at concurrency 16: reconstructed 0.0% (auto) vs 40.0% (eager); p50 -0.50 ms"
        in text
    )


def test_the_served_default_eager_decoding_and_batching_run_side_by_side():
    assert [(label, settings) for label, _, settings in overhead.VARIANTS] == [
        ("coded", {"decode_grace": "auto"}),
        ("coded, eager", {"decode_grace": 0.0}),
        ("coded, batches <= 8", {"decode_grace": "auto", "batch_size": 8}),
        ("none", {"decode_grace": "auto"}),
    ]
    assert overhead.HTTP_VARIANTS == ("coded", "coded, batches <= 8")


def test_dynamic_batching_is_compared_with_one_query_per_request_on_each_door():
    batched = [
        {**row("frontend", "coded, batches <= 8", 16, 5.0), "cpu_us": 216.05},
        {**row("frontend", "coded, batches <= 8", 1, 1.80)},
        {**row("frontend (HTTP)", "coded", 16, 9.0), "throughput_qps": 500.0},
        {**row("frontend (HTTP)", "coded, batches <= 8", 16, 4.0), "cpu_us": 108.0},
    ]
    text = overhead.report([*ROWS, *batched], "parm bench overhead")
    assert (
        "Dynamic batching (<= 8) at concurrency 16, frontend: frontend CPU 216 vs 432 us/query "
        "(0.50x), throughput 1.00x, p50 at concurrency 1 1.80 vs 1.75 ms  "
    ) in text
    assert (
        "Dynamic batching (<= 8) at concurrency 16, frontend (HTTP): frontend CPU 108 vs 432 "
        "us/query (0.25x), throughput 2.00x, p50 at concurrency 1 - vs - ms  "
    ) in text
    assert "Dynamic batching (<= 8) at concurrency 16, frontend (HTTP)" not in overhead.report(
        ROWS, "parm bench overhead"
    )
