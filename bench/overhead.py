"""``parm bench overhead``: what the frontend costs, measured at the client.

The demo MLP on 2 data + 1 parity instances, in ``coded`` mode (k=2) and in ``none``
mode, closed loop at concurrency 1 and 16, through the frontend; and the same client
calling one instance directly, so the frontend's added latency is a difference of
two medians taken in the same run.  The load client is a separate process
(``bench.client``), so it does not share the frontend's event loop.
"""

from __future__ import annotations

import datetime
import platform
from pathlib import Path
from typing import Any

from bench.closed_loop import run_client_process
from bench.report import publish
from deploy.local import LocalCluster
from deploy.spec import Deployment, ModelDeployment
from frontend.events import Mode

MODEL = "digits"
CONCURRENCY = (1, 16)
MODES = (Mode.CODED, Mode.NONE)


async def client(url: str, model: str, concurrency: int, queries: int) -> dict[str, Any]:
    """Run ``bench.client`` in its own process and return its JSON summary."""
    args = ("--url", url, "--model", model, "--concurrency", str(concurrency))
    return await run_client_process("bench.client", *args, "--queries", str(queries))


async def measure(base: Path, parity: Path, queries: int, log_dir: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for mode in MODES:
        model = ModelDeployment(
            MODEL, base, parity, k=2, mode=mode, data_instances=2, parity_instances=1
        )
        cluster = LocalCluster(Deployment((model,), grpc_port=0), log_dir)
        async with cluster:
            url = f"127.0.0.1:{cluster.frontend.grpc_port}"
            for concurrency in CONCURRENCY:
                result = await client(url, MODEL, concurrency, queries)
                rows.append({"path": "frontend", "mode": mode.value, **result})
            if mode is Mode.CODED:
                direct = f"127.0.0.1:{cluster.instances[MODEL, 'data-0'].grpc_port}"
                for concurrency in CONCURRENCY:
                    result = await client(direct, MODEL, concurrency, queries)
                    rows.append({"path": "instance", "mode": "direct", **result})
    return rows


def report(rows: list[dict[str, Any]], command: str) -> str:
    today = datetime.date.today().isoformat()
    lines = [
        f"### Frontend overhead ({today})",
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.machine()}, {_cpus()} cores, Python {platform.python_version()}, "
        "CPU only; client, frontend and 3 instances share the machine.",
        "",
        "| path | mode | concurrency | p50 ms | p99 ms | p99.9 ms | mean ms | queries/s "
        "| sources |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        sources = ", ".join(f"{k} {v}" for k, v in sorted(r.get("sources", {}).items()))
        lines.append(
            f"| {r['path']} | {r['mode']} | {r['concurrency']} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['p999_ms']:.2f} | {r['mean_ms']:.2f} | "
            f"{r['throughput_qps']:.0f} | {sources} |"
        )
    by = {(r["path"], r["mode"], r["concurrency"]): r for r in rows}
    added = by["frontend", "coded", 1]["p50_ms"] - by["instance", "direct", 1]["p50_ms"]
    lines += ["", f"Frontend-added p50 at concurrency 1 (coded minus direct): {added:.2f} ms", ""]
    return "\n".join(lines)


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


async def run_overhead(queries: int, results: Path | None, home: Path) -> int:
    from train.demo import ensure_demo

    demo = ensure_demo(2, home / "demo")
    rows = await measure(demo.base_dir, demo.parity_dir, queries, home / "logs")
    publish(report(rows, f"parm bench overhead --queries {queries}"), results)
    return 0
