"""``python -m bench.http_overhead``: the HTTP front doors against gRPC, at the client.

The demo MLP on 2 data + 1 parity instances in ``coded`` mode (k=2); closed loop at
concurrency 1 (latency) and 16 (throughput) through each front door of one frontend:
v2 gRPC (`bench.client`), KServe v2 REST with JSON and with binary tensors, and
Clipper's REST (`bench.http_client`).  The clients run in processes of their own, so
they do not share the frontend's event loop.  Appends a table to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from bench.closed_loop import run_client_process
from bench.report import publish
from deploy.local import LocalCluster
from deploy.spec import Deployment, ModelDeployment

MODEL = "digits"
CONCURRENCY = (1, 16)
FRONT_DOORS = ("grpc", "v2-binary", "v2-json", "clipper")
WARMUP = 200  # queries each load client sends before it measures (its default)


async def client(
    door: str, cluster: LocalCluster, concurrency: int, queries: int
) -> dict[str, Any]:
    """Run one load client process against ``door`` and return its JSON summary."""
    common = ["--model", MODEL, "--concurrency", str(concurrency), "--queries", str(queries)]
    if door == "grpc":
        url = f"127.0.0.1:{cluster.frontend.grpc_port}"
        return await run_client_process("bench.client", "--url", url, *common)
    url = f"http://127.0.0.1:{cluster.frontend.http_port}"
    return await run_client_process("bench.http_client", "--url", url, "--protocol", door, *common)


async def measure(base: Path, parity: Path, queries: int, log_dir: Path) -> list[dict[str, Any]]:
    model = ModelDeployment(MODEL, base, parity, k=2, data_instances=2, parity_instances=1)
    deployment = Deployment((model,), grpc_port=0, http_port=0, metrics_port=0)
    rows = []
    async with LocalCluster(deployment, log_dir) as cluster:
        for concurrency in CONCURRENCY:
            for door in FRONT_DOORS:
                # The frontend runs in this process: its CPU time per query is a cost that
                # other jobs on a busy machine distort far less than latency.
                cpu = time.process_time()
                result = await client(door, cluster, concurrency, queries)
                sent = queries + WARMUP  # the clients' default warm-up, answered too
                cpu_us = (time.process_time() - cpu) / sent * 1e6
                rows.append({"door": door, "cpu_us": cpu_us, **result})
    return rows


def report(rows: list[dict[str, Any]], command: str, load: float) -> str:
    lines = [
        f"### HTTP front doors against gRPC ({datetime.date.today().isoformat()})",
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, CPU only; the load client, the frontend and 3 "
        "instances (coded, k=2, demo MLP) share the machine. Closed loop, one query per "
        "request; aiohttp clients for HTTP, grpc.aio for gRPC. Load average before the run: "
        f"{load:.1f} (other jobs on the machine count too).",
        "",
        "| front door | concurrency | p50 ms | p99 ms | p99.9 ms | queries/s "
        "| frontend CPU us/query | sources | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        sources = ", ".join(f"{k} {v}" for k, v in sorted(r.get("sources", {}).items()))
        errors = ", ".join(f"{k} {v}" for k, v in sorted(r.get("errors", {}).items())) or "-"
        lines.append(
            f"| {r['door']} | {r['concurrency']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['p999_ms']:.2f} | {r['throughput_qps']:.0f} | {r['cpu_us']:.0f} | {sources} "
            f"| {errors} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.http_overhead", description=__doc__)
    p.add_argument("--queries", type=int, default=3000, help="measured queries per point")
    p.add_argument("--results", type=Path, default=Path("bench/RESULTS.md"))
    p.add_argument("--no-append", action="store_true", help="print only")
    args = p.parse_args(argv)
    from common.runtime import parm_home, run_loop
    from train.demo import ensure_demo

    home = parm_home()
    demo = ensure_demo(2, home / "demo")
    load = os.getloadavg()[0]
    rows = run_loop(measure(demo.base_dir, demo.parity_dir, args.queries, home / "logs"))
    text = report(rows, f"python -m bench.http_overhead --queries {args.queries}", load)
    publish(text, None if args.no_append else args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
