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
    assert asyncio.run(overhead.client("127.0.0.1:9", "digits", 16, 300)) == {"p50_ms": 1.0}
    assert calls == [
        (
            "bench.client", "--url", "127.0.0.1:9", "--model", "digits", "--concurrency", "16",
            "--queries", "300",
        )
    ]  # fmt: skip


def row(path: str, mode: str, concurrency: int, p50: float) -> dict[str, Any]:
    return {
        "path": path, "mode": mode, "concurrency": concurrency, "p50_ms": p50, "p99_ms": 2.0,
        "p999_ms": 3.0, "mean_ms": 1.5, "throughput_qps": 999.6, "sources": {"original": 5},
    }  # fmt: skip


def test_the_frontends_added_median_is_coded_minus_direct_at_concurrency_one():
    rows = [
        row("frontend", "coded", 1, 1.75),
        row("frontend", "coded", 16, 9.0),
        row("instance", "direct", 1, 0.5),
        row("frontend", "none", 1, 1.5),
    ]
    text = overhead.report(rows, "parm bench overhead --queries 10")
    assert "Frontend-added p50 at concurrency 1 (coded minus direct): 1.25 ms" in text
    assert "| frontend | coded | 16 | 9.00 | 2.00 | 3.00 | 1.50 | 1000 | original 5 |" in text
    assert "`parm bench overhead --queries 10`" in text
