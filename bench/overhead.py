"""``parm bench overhead``: what the frontend costs, measured at the client.

The demo MLP on 2 data + 1 parity instances, in ``coded`` mode (k=2; also with dynamic
batching of up to 8 queries per instance request) and in ``none`` mode, closed loop at
concurrency 1 and 16, through the frontend; and the same client calling one instance
directly, so the frontend's added latency is a difference of
two medians taken in the same run.  The load client is a separate process
(``bench.client``; ``bench.http_client`` for the v2 REST door with binary tensors), so
it does not share the frontend's event loop.  The frontend runs in this process and the
instances in their own, so this process's CPU time over the queries answered is the
frontend's CPU per query.  ``--baseline`` sets other checkouts' frontends beside this
one's (`bench.overhead_compare`).
"""

from __future__ import annotations

import datetime
import platform
import time
from pathlib import Path
from typing import Any

from bench.closed_loop import run_client_process
from bench.report import publish
from deploy.local import LocalCluster
from deploy.spec import Deployment, ModelDeployment
from frontend.events import Mode

MODEL = "digits"
CONCURRENCY = (1, 16)
HTTP_DOOR = "v2-binary"  # KServe v2 REST with binary tensors (bench.http_client)
#: dynamic batching's largest batch in the ``BATCHED`` variant
BATCH = 8
BATCHED = f"coded, batches <= {BATCH}"
#: (label, mode, model settings): the served default, the papers' eager decoding beside
#: it (reconstructions answer the moment they are decodable), dynamic batching (queries
#: that arrive together or while every data instance is busy share a request), and no
#: redundancy at all
VARIANTS: tuple[tuple[str, Mode, dict[str, Any]], ...] = (
    ("coded", Mode.CODED, {"decode_grace": "auto"}),
    ("coded, eager", Mode.CODED, {"decode_grace": 0.0}),
    (BATCHED, Mode.CODED, {"decode_grace": "auto", "batch_size": BATCH}),
    ("none", Mode.NONE, {"decode_grace": "auto"}),
)
#: the variants measured through the HTTP door too
HTTP_VARIANTS = ("coded", BATCHED)


WARMUP = 200  # queries each load client sends before it measures (its default)


async def client(
    url: str, model: str, concurrency: int, queries: int, door: str = "grpc"
) -> dict[str, Any]:
    """Run a load client in its own process and return its JSON summary, with
    ``cpu_us``: this process's CPU time per query sent (the frontend's, when it runs here)."""
    args = ["--url", url, "--model", model, "--concurrency", str(concurrency)]
    args += ["--queries", str(queries)]
    cpu = time.process_time()
    if door == "grpc":
        # real digits: the demo's parity model reconstructs them as users would see
        result = await run_client_process("bench.client", *args, "--data", "digits")
    else:
        result = await run_client_process("bench.http_client", *args, "--protocol", door)
    return {**result, "cpu_us": (time.process_time() - cpu) / (queries + WARMUP) * 1e6}


async def measure(base: Path, parity: Path, queries: int, log_dir: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for label, mode, settings in VARIANTS:
        model = ModelDeployment(
            MODEL, base, parity, k=2, mode=mode, data_instances=2, parity_instances=1,
            settings=settings,
        )  # fmt: skip
        deployment = Deployment((model,), grpc_port=0, http_port=0, metrics_port=None)
        async with LocalCluster(deployment, log_dir) as cluster:
            url = f"127.0.0.1:{cluster.frontend.grpc_port}"
            for concurrency in CONCURRENCY:
                result = await client(url, MODEL, concurrency, queries)
                rows.append({"path": "frontend", "mode": label, **result})
            if label in HTTP_VARIANTS:
                http = f"http://127.0.0.1:{cluster.frontend.http_port}"
                for concurrency in CONCURRENCY:
                    result = await client(http, MODEL, concurrency, queries, HTTP_DOOR)
                    rows.append({"path": "frontend (HTTP)", "mode": label, **result})
            if label == "coded":
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
        "| frontend CPU us/query | reconstructed | sources |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        sources = ", ".join(f"{k} {v}" for k, v in sorted(r.get("sources", {}).items()))
        lines.append(
            f"| {r['path']} | {r['mode']} | {r['concurrency']} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['p999_ms']:.2f} | {r['mean_ms']:.2f} | "
            f"{r['throughput_qps']:.0f} | {_cpu(r)} | {reconstructed_share(r):.1%} | {sources} |"
        )
    by = {(r["path"], r["mode"], r["concurrency"]): r for r in rows}
    added = by["frontend", "coded", 1]["p50_ms"] - by["instance", "direct", 1]["p50_ms"]
    lines += ["", f"Frontend-added p50 at concurrency 1 (coded minus direct): {added:.2f} ms  "]
    through, direct = by["frontend", "coded", 16], by["instance", "direct", 16]
    lines.append(
        "Throughput at concurrency 16 through the frontend (coded, gRPC) over one instance "
        f"called directly: {through['throughput_qps'] / direct['throughput_qps']:.2f}x  "
    )
    for path in ("frontend", "frontend (HTTP)"):
        one, batched = by.get((path, "coded", 16)), by.get((path, BATCHED, 16))
        if one is None or batched is None:
            continue
        lines.append(
            f"Dynamic batching (<= {BATCH}) at concurrency 16, {path}: frontend CPU "
            f"{batched['cpu_us']:.0f} vs {one['cpu_us']:.0f} us/query "
            f"({batched['cpu_us'] / one['cpu_us']:.2f}x), throughput "
            f"{batched['throughput_qps'] / one['throughput_qps']:.2f}x, p50 at concurrency 1 "
            f"{_p50(by, path, BATCHED)} vs {_p50(by, path, 'coded')} ms  "
        )
    for c in CONCURRENCY:
        auto, eager = by["frontend", "coded", c], by["frontend", "coded, eager", c]
        lines.append(
            f"Decode grace at concurrency {c}: reconstructed {reconstructed_share(auto):.1%} "
            f"(auto) vs {reconstructed_share(eager):.1%} (eager); p50 "
            f"{auto['p50_ms'] - eager['p50_ms']:+.2f} ms"
        )
    return "\n".join([*lines, ""])


def _p50(by: dict[tuple[str, str, int], dict[str, Any]], path: str, mode: str) -> str:
    row = by.get((path, mode, 1))
    return "-" if row is None else f"{row['p50_ms']:.2f}"


def _cpu(row: dict[str, Any]) -> str:
    """The frontend's CPU per query; none for a client calling an instance directly."""
    return f"{row['cpu_us']:.0f}" if row["path"] != "instance" and "cpu_us" in row else "-"


def reconstructed_share(row: dict[str, Any]) -> float:
    """The share of a run's answers that were reconstructions."""
    sources: dict[str, int] = row.get("sources", {})
    total = sum(sources.values())
    return sources.get("reconstructed", 0) / total if total else 0.0


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


async def run_overhead(queries: int, results: Path | None, home: Path) -> int:
    from train.demo import ensure_demo

    demo = ensure_demo(2, home / "demo")
    rows = await measure(demo.base_dir, demo.parity_dir, queries, home / "logs")
    publish(report(rows, f"parm bench overhead --queries {queries}"), results)
    return 0
