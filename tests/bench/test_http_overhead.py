"""The HTTP front-door benchmark's pure parts: which client each door gets, the table."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

import bench.http_overhead as http_overhead

CLUSTER: Any = SimpleNamespace(frontend=SimpleNamespace(grpc_port=7001, http_port=7002))


@pytest.mark.parametrize(
    ("door", "module", "url"),
    [
        ("grpc", "bench.client", "127.0.0.1:7001"),
        ("v2-json", "bench.http_client", "http://127.0.0.1:7002"),
        ("clipper", "bench.http_client", "http://127.0.0.1:7002"),
    ],
)
def test_each_door_gets_its_client_on_its_port(monkeypatch, door, module, url):
    calls: list[tuple[str, ...]] = []

    async def fake(*argv: str) -> dict[str, Any]:
        calls.append(argv)
        return {"ok": True}

    monkeypatch.setattr(http_overhead, "run_client_process", fake)
    assert asyncio.run(http_overhead.client(door, CLUSTER, 16, 500)) == {"ok": True}
    ((name, *args),) = calls
    assert name == module
    assert args[args.index("--url") + 1] == url
    assert args[args.index("--concurrency") + 1] == "16"
    assert args[args.index("--queries") + 1] == "500"
    assert ("--protocol" in args) == (door != "grpc")


ROW = {
    "door": "v2-binary", "concurrency": 16, "p50_ms": 1.234, "p99_ms": 5.0, "p999_ms": 9.5,
    "throughput_qps": 812.4, "cpu_us": 151.6, "sources": {"reconstructed": 2, "original": 9},
    "errors": {},
}  # fmt: skip


def test_the_table_has_a_row_per_measurement():
    text = http_overhead.report([ROW, {**ROW, "errors": {"503": 2}}], "cmd", load=0.5)
    assert "Command: `cmd`" in text and "Load average before the run: 0.5" in text
    rows = [line for line in text.splitlines() if line.startswith("| v2-binary")]
    assert rows == [
        "| v2-binary | 16 | 1.23 | 5.00 | 9.50 | 812 | 152 | original 9, reconstructed 2 | - |",
        "| v2-binary | 16 | 1.23 | 5.00 | 9.50 | 812 | 152 | original 9, reconstructed 2 | 503 2 |",
    ]
