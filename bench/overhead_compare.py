"""``parm bench overhead --baseline DIR``: frontend CPU per query beside other commits'.

Each checkout's frontend (this one, and each ``DIR``: a checkout of an earlier commit,
e.g. ``git worktree add /tmp/old <commit>``) serves the demo MLP (coded, k=2, 2 data
+ 1 parity instances) in a process of its own, started with ``PYTHONPATH`` at that
checkout, so it runs that commit's code.  A load client (its own process) measures, at
each point: gRPC at concurrency 16, v2 REST (binary tensors) at 16, gRPC at 1.  The
frontend's process CPU time over the queries it answered is its CPU per query.  The
checkouts take turns, ``rounds`` times, so a busy machine's drift falls on all alike;
the table gives each one's median, its ratio to the first baseline and to the row
before (the baselines in the order given, oldest first, then this checkout).

The program run in each checkout (`PROGRAM`) uses only what every commit of the
frontend has (``deploy.local``, ``bench.closed_loop``, ``train.demo``).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.report import machine

HERE = Path(__file__).resolve().parents[1]
#: (front door, concurrency): the points measured in each checkout
POINTS = (("grpc", 16), ("v2-binary", 16), ("grpc", 1))

PROGRAM = """
import asyncio, json, os, sys, time
from bench.closed_loop import run_client_process
from common.runtime import parm_home, run_loop
from deploy.local import LocalCluster
from deploy.spec import Deployment, ModelDeployment
from train.demo import ensure_demo

queries, points = int(sys.argv[1]), json.loads(sys.argv[2])

async def main():
    home = parm_home()
    demo = ensure_demo(2, home / "demo")
    model = ModelDeployment("digits", demo.base_dir, demo.parity_dir, k=2,
                            data_instances=2, parity_instances=1)
    deployment = Deployment((model,), grpc_port=0, http_port=0)
    rows = []
    async with LocalCluster(deployment, home / "logs") as cluster:
        for door, concurrency in points:
            args = ["--model", "digits", "--concurrency", str(concurrency),
                    "--queries", str(queries)]
            if door == "grpc":
                url = f"127.0.0.1:{cluster.frontend.grpc_port}"
                args = ["bench.client", "--url", url, "--data", "digits", *args]
            else:
                url = f"http://127.0.0.1:{cluster.frontend.http_port}"
                args = ["bench.http_client", "--url", url, "--protocol", door, *args]
            cpu = time.process_time()
            result = await run_client_process(*args)
            result["cpu_us"] = (time.process_time() - cpu) / (queries + 200) * 1e6
            rows.append({"door": door, **result})
    print("ROWS " + json.dumps(rows))

run_loop(main())
"""


def revision(checkout: Path) -> str:
    """The short commit of a checkout (its folder name if it is no git checkout)."""
    done = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or checkout.name


async def measure(checkout: Path, queries: int) -> list[dict[str, Any]]:
    """One round of every point against ``checkout``'s frontend."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "GRPC_ENABLE_FORK_SUPPORT": "false"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PROGRAM, str(queries), json.dumps(POINTS),
        cwd=checkout, env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    for line in out.decode().splitlines():
        if line.startswith("ROWS "):
            rows: list[dict[str, Any]] = json.loads(line[5:])
            return rows
    raise RuntimeError(f"the frontend of {checkout} gave no results (exit {proc.returncode})")


async def compare(checkouts: list[Path], queries: int, rounds: int) -> dict[str, list[Any]]:
    """Each checkout's rows, ``rounds`` times, the checkouts taking turns."""
    runs: dict[str, list[Any]] = {revision(c): [] for c in checkouts}
    for _ in range(rounds):
        for checkout in checkouts:
            runs[revision(checkout)].append(await measure(checkout, queries))
    return runs


def report(runs: dict[str, list[Any]], command: str, load: float) -> str:
    """The table: per point and checkout, median CPU/query, p50 and throughput, with
    ratios to the first checkout and to the one before."""
    revs = list(runs)
    lines = [
        f"### Frontend CPU per query beside earlier commits ({datetime.date.today().isoformat()})",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine()}; 2-core shared VM, busy: other work ran at the same time "
        f"(load average {load:.1f} before the run).  Demo MLP, coded k=2, 2 data + 1 parity "
        "instances; each commit's frontend in a process of its own, the load client in "
        f"another; the commits took turns, {len(runs[revs[0]])} rounds, medians shown.",
        "",
        "| door | concurrency | commit | frontend CPU us/query | vs first | vs previous "
        "| p50 ms | queries/s |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for i, (door, concurrency) in enumerate(POINTS):
        first = previous = None
        for rev in revs:
            cpu = statistics.median(r[i]["cpu_us"] for r in runs[rev])
            p50 = statistics.median(r[i]["p50_ms"] for r in runs[rev])
            qps = statistics.median(r[i]["throughput_qps"] for r in runs[rev])
            first = cpu if first is None else first
            previous = cpu if previous is None else previous
            lines.append(
                f"| {door} | {concurrency} | {rev} | {cpu:.0f} | {cpu / first:.2f}x | "
                f"{cpu / previous:.2f}x | {p50:.2f} | {qps:.0f} |"
            )
            previous = cpu
    return "\n".join([*lines, ""])


async def run_compare(
    baselines: list[Path], queries: int, rounds: int, results: Path | None, command: str
) -> int:
    from bench.report import publish

    load = os.getloadavg()[0]
    runs = await compare([*baselines, HERE], queries, rounds)
    publish(report(runs, command, load), results)
    return 0
