"""``parm bench workers``: throughput through 1 and N frontend processes, side by side.

The demo MLP, coded (k=2) on 2 data + 1 parity instances, as ``parm up`` runs it; the
frontend in this process (1 worker) or in N worker processes sharing the port
(``--frontend-workers N``).  The same closed-loop client (its own process, 16 calls at
once over 16 connections, so the kernel spreads them over the workers) measures
throughput and latency; the frontend's CPU per query is its processes' CPU time
(``/proc``) over the queries sent.  The variants alternate over ``rounds``, so a busy
machine's drift shows as spread between rounds rather than as a difference.

`simulated_scaling` is the many-core picture, from the discrete-event simulator: each
worker a server whose service time is the measured CPU per query, queries spread round
robin (as connections are), at the same per-worker load for every N.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.closed_loop import run_client_process
from bench.report import publish
from bench.sim.engine import SimSetup, Simulation
from bench.sim.service import constant
from deploy.local import LocalCluster
from deploy.spec import Deployment, ModelDeployment
from deploy.workers import FrontendWorkers
from frontend.events import Mode
from frontend.server import Frontend

MODEL = "digits"
CONCURRENCY = 16
CHANNELS = 16
#: worker counts of the simulated many-core host, and the per-worker loads
SIM_WORKERS = (1, 2, 4, 8, 16)
SIM_LOADS = (0.5, 0.8, 0.9)


@dataclass(frozen=True)
class Run:
    workers: int
    round: int
    result: dict[str, Any]
    cpu_s: float  # the frontend processes' CPU time over the run
    sent: int  # queries the client sent (warm-up included)

    @property
    def cpu_us_per_query(self) -> float:
        return self.cpu_s / self.sent * 1e6


def frontend_cpu_s(front: Frontend | FrontendWorkers) -> float:
    """CPU seconds used so far by the frontend: this process (the in-process frontend,
    or the supervisor) and every worker process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime
    if isinstance(front, FrontendWorkers):
        total += sum(_process_cpu_s(w.pid) for w in front.workers if w.pid is not None)
    return total


def _process_cpu_s(pid: int) -> float:
    """A process's user + system CPU time, from ``/proc/<pid>/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


async def measure(
    base: Path, parity: Path, workers: int, queries: int, rounds: int, log_dir: Path
) -> list[Run]:
    """Each round: the same client against 1 worker, then against ``workers``."""
    runs: list[Run] = []
    for r in range(rounds):
        for n in (1, workers):
            runs.append(await _one(base, parity, n, queries, r, log_dir))
    return runs


async def _one(base: Path, parity: Path, n: int, queries: int, r: int, log_dir: Path) -> Run:
    model = ModelDeployment(MODEL, base, parity, k=2, data_instances=2, parity_instances=1)
    deployment = Deployment((model,), grpc_port=0, frontend_workers=n)
    async with LocalCluster(deployment, log_dir) as cluster:
        front = cluster.front
        args = ["--url", f"127.0.0.1:{front.grpc_port}", "--model", MODEL]
        args += ["--concurrency", str(CONCURRENCY), "--channels", str(CHANNELS)]
        warmup = 200
        args += ["--queries", str(queries), "--warmup", str(warmup), "--data", "digits"]
        before = frontend_cpu_s(front)
        result = await run_client_process("bench.client", *args)
        cpu = frontend_cpu_s(front) - before
    return Run(n, r, result, cpu, queries + warmup)


def simulated_scaling(cpu_us: float, queries: int = 20_000) -> list[dict[str, float]]:
    """Each worker count at each per-worker load: throughput and the p50/p99 latency the
    frontend's CPU adds (instances not simulated: each worker is one 'instance' whose
    service time is ``cpu_us``)."""
    rows = []
    service = cpu_us / 1e6
    for n in SIM_WORKERS:
        for load in SIM_LOADS:
            rate = load * n / service
            setup = SimSetup(
                k=1, mode=Mode.NONE, data=n, parity=0, rate=rate, queries=queries,
                service=constant(service), policy="round-robin", warmup=queries // 10,
            )  # fmt: skip
            latency = Simulation(setup).run().latency_s
            rows.append(
                {
                    "workers": n,
                    "load": load,
                    "qps": rate,
                    "p50_us": float(np.percentile(latency, 50) * 1e6),
                    "p99_us": float(np.percentile(latency, 99) * 1e6),
                }
            )
    return rows


def report(runs: list[Run], sim: list[dict[str, float]], command: str, sim_cpu_us: float) -> str:
    lines = [
        "### Frontend workers: 1 vs N processes sharing the port (2026-12-03)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {os.cpu_count()}-core shared VM, busy: other work ran at the same time; "
        "client, frontend workers and 3 instances share it.  Demo MLP, coded k=2, 2 data + "
        f"1 parity instances, closed loop at concurrency {CONCURRENCY} over {CHANNELS} "
        "connections.",
        "",
        "| round | workers | queries/s | p50 ms | p99 ms | frontend CPU us/query | errors |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for run in runs:
        r = run.result
        lines.append(
            f"| {run.round} | {run.workers} | {r['throughput_qps']:.0f} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {run.cpu_us_per_query:.0f} | {r['errors'] or '-'} |"
        )
    lines += ["", *_ratios(runs), ""]
    lines += [
        f"Simulated many-core host (`bench.sim`): each worker serves {sim_cpu_us:.0f} us of "
        "CPU per query (the 1-worker figure above), queries spread round robin; latency is "
        "what the frontend's CPU adds (queueing + service), instances not included.",
        "",
        "| workers | per-worker load | queries/s | p50 us | p99 us |",
        "| ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {s['workers']:.0f} | {s['load']:.0%} | {s['qps']:,.0f} | {s['p50_us']:.0f} | "
            f"{s['p99_us']:.0f} |"
            for s in sim
        ),
        "",
    ]
    return "\n".join(lines)


def _ratios(runs: list[Run]) -> list[str]:
    out = []
    for r in sorted({run.round for run in runs}):
        one = next(x for x in runs if x.round == r and x.workers == 1)
        for many in (x for x in runs if x.round == r and x.workers > 1):
            ratio = many.result["throughput_qps"] / one.result["throughput_qps"]
            out.append(
                f"Round {r}: {many.workers} workers / 1 worker throughput = {ratio:.2f}x; "
                f"CPU per query {many.cpu_us_per_query / one.cpu_us_per_query:.2f}x."
            )
    return out


def sim_cpu_us(runs: list[Run]) -> float:
    """The 1-worker runs' median CPU per query: the simulator's service time."""
    return float(np.median([run.cpu_us_per_query for run in runs if run.workers == 1]))


async def run_workers(
    workers: int, queries: int, rounds: int, results: Path | None, home: Path
) -> int:
    from train.demo import ensure_demo

    demo = ensure_demo(2, home / "demo")
    runs = await measure(demo.base_dir, demo.parity_dir, workers, queries, rounds, home / "logs")
    cpu = sim_cpu_us(runs)
    command = f"parm bench workers --workers {workers} --queries {queries} --rounds {rounds}"
    publish(report(runs, simulated_scaling(cpu), command, cpu), results)
    return 0
