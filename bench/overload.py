"""``parm bench overload``: goodput under 1x-3x offered load, and fairness to a small client.

One local cluster of the demo model (k=2, 2 data + 1 parity instances, coded), the
frontend in this process.  First its capacity through each front door is measured: a
closed loop at concurrency 16 over gRPC, and over HTTP (KServe v2 REST, binary tensors:
what the open-loop client sends).  Then open loops (``bench.loadgen``, its own process)
offer 1x, 2x and 3x that door's capacity, each query with a deadline; *goodput* is the
queries answered (within their deadline: later ones are errors) per second, as a share
of that capacity.  Refusals (RESOURCE_EXHAUSTED / HTTP 429) and deadline
misses are counted, and the frontend's RSS and open descriptors are read before the
runs, at their peak during them, and after.

Fairness: a well-behaved client (``bench.client``, concurrency 4, one row per query)
alone, then beside a hostile one (``python -m bench.overload``: batches of the largest
valid size, ``max_outstanding`` rows, back to back, whatever the answer); the
well-behaved client's throughput beside it as a share of its solo throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gc
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.closed_loop import run_client_process
from bench.loadgen import POOL
from bench.report import publish

MODEL = "digits"
MULTIPLES = (1.0, 2.0, 3.0)
#: targets of issue 10
GOODPUT_TARGET = 0.8
FAIRNESS_TARGET = 0.5


@dataclass(frozen=True)
class OverloadPlan:
    """What ``parm bench overload`` runs."""

    seconds: float = 10.0  # offered-load run length
    deadline_s: float = 0.25  # each open-loop query's deadline
    capacity_queries: int = 6000
    fair_queries: int = 4000  # the well-behaved client's, solo and beside the hostile
    hostile_rows: int = 1024  # the model's max_outstanding: the largest valid batch
    #: the front doors' clients: gRPC (one channel), HTTP (a pool of keep-alive
    #: connections, as HTTP/1.1 clients keep), and HTTP with a connection per query in
    #: flight (a connection storm: no pool limit)
    transports: tuple[str, ...] = ("grpc", "http", "http-storm")
    multiples: tuple[float, ...] = MULTIPLES
    #: CPUs of the load clients; the frontend and the instances get the others. Empty:
    #: everything shares every CPU, and a client offering 3x takes cores the frontend
    #: would have (a client on another machine would not)
    client_cpus: tuple[int, ...] = ()

    def server_cpus(self) -> set[int]:
        """The CPUs left to the frontend and its instances."""
        every = os.sched_getaffinity(0)
        left = every - set(self.client_cpus)
        if self.client_cpus and (not left or not set(self.client_cpus) <= every):
            raise ValueError(
                f"client CPUs {list(self.client_cpus)} must be some, not all, of {sorted(every)}"
            )
        return left


QUICK = OverloadPlan(seconds=4.0, capacity_queries=2000, fair_queries=1500)


# ---------------------------------------------------------------- the frontend's resources


def resources(pid: int | None = None) -> dict[str, int]:
    """The process's resident memory (MB) and open descriptors (Linux /proc)."""
    base = Path(f"/proc/{pid or os.getpid()}")
    rss_kb = 0
    for line in (base / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    return {"rss_mb": rss_kb // 1024, "fds": len(os.listdir(base / "fd"))}


def live_objects() -> int:
    """Objects the garbage collector tracks in this process (the frontend), after a
    collection.  The frontend freezes what it made at start (``gc.freeze``), so this
    counts objects made since and still alive: if they are back to their count before
    the load, memory the process keeps afterwards is the allocator's, not objects left
    behind."""
    gc.collect()
    return len(gc.get_objects())


class Peak:
    """The highest RSS and descriptor count seen while it runs (sampled every 100 ms)."""

    def __init__(self) -> None:
        self.peak = resources()
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            now = resources()
            self.peak = {k: max(v, now[k]) for k, v in self.peak.items()}
            await asyncio.sleep(0.1)

    async def __aenter__(self) -> Peak:
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


# ---------------------------------------------------------------- the runs


def goodput_row(
    transport: str, multiple: float, capacity: float, result: dict[str, Any]
) -> dict[str, Any]:
    """One open-loop run's figures: goodput as a share of capacity, refusals, misses."""
    errors: dict[str, int] = result.get("errors", {})
    sent = int(result["queries"])
    answered = int(result.get("count", 0))
    duration = sent / result["rate"]
    # refusals: by the admission (429), or by the front door's limits before any work
    # (gRPC's REFUSED_STREAM is UNAVAILABLE; HTTP's limit of requests in progress, 503)
    refused = sum(
        errors.get(name, 0)
        for name in ("RESOURCE_EXHAUSTED", "HTTP_429", "UNAVAILABLE", "HTTP_503")
    )
    missed = errors.get("DEADLINE_EXCEEDED", 0) + errors.get("HTTP_504", 0)
    return {
        "transport": transport,
        "multiple": multiple,
        "offered_qps": result["rate"],
        "goodput_qps": answered / duration,
        "goodput_share": answered / duration / capacity,
        "answered": answered,
        "refused": refused,
        "missed": missed,
        "other_errors": sum(errors.values()) - refused - missed,
        "p99_ms": result.get("p99_ms", float("nan")),
    }


#: the HTTP client's pool size of each HTTP load (``bench.loadgen --connections``)
POOLS = {"http": POOL, "http-storm": 0}


def door(transport: str) -> str:
    """The front door a load of ``transport`` goes through: grpc or http."""
    return "http" if transport in POOLS else transport


async def open_loop(url: str, transport: str, rate: float, plan: OverloadPlan) -> dict[str, Any]:
    queries = max(1, int(rate * plan.seconds))
    args = ["--url", url, "--transport", door(transport), "--model", MODEL]
    args += ["--rate", f"{rate:.1f}"]
    if transport in POOLS:
        args += ["--connections", str(POOLS[transport])]
    args += ["--queries", str(queries), "--warmup", "0", "--timeout-s", str(plan.deadline_s)]
    result = await run_client_process("bench.loadgen", *args, cpus=plan.client_cpus)
    return {**result, "queries": queries}


async def closed(
    url: str, concurrency: int, queries: int, transport: str = "grpc", cpus: Sequence[int] = ()
) -> dict[str, Any]:
    args = ["--url", url, "--model", MODEL, "--concurrency", str(concurrency)]
    args += ["--queries", str(queries)]
    if transport == "http":
        args += ["--protocol", "v2-binary"]
        return await run_client_process("bench.http_client", *args, cpus=cpus)
    return await run_client_process("bench.client", *args, cpus=cpus)


async def fairness(url: str, plan: OverloadPlan) -> dict[str, Any]:
    """The well-behaved client alone, then beside the hostile one."""
    # Its two clients are not confined to the client CPUs: on one core together, the
    # hostile client's work would slow the other in the client, which is not the
    # frontend's sharing being measured.  Solo and beside run alike, so the share holds.
    solo = await closed(url, 4, plan.fair_queries)
    seconds = 2 * plan.fair_queries / max(solo["throughput_qps"], 1.0) + 5
    args = ["--url", url, "--model", MODEL, "--rows", str(plan.hostile_rows)]
    args += ["--seconds", f"{seconds:.1f}"]
    hostile = asyncio.ensure_future(run_client_process("bench.overload", *args))
    await asyncio.sleep(1.0)  # the hostile client is at it before the other starts
    beside = await closed(url, 4, plan.fair_queries)
    return {"solo": solo, "beside": beside, "hostile": await hostile}


async def measure(plan: OverloadPlan, home: Path) -> dict[str, Any]:
    from deploy.local import LocalCluster
    from deploy.spec import Deployment, ModelDeployment
    from train.demo import ensure_demo

    demo = ensure_demo(2, home / "demo")
    model = ModelDeployment(
        MODEL, demo.base_dir, demo.parity_dir, k=2, data_instances=2, parity_instances=1
    )
    cluster = LocalCluster(Deployment((model,), grpc_port=0, http_port=0), home / "logs")
    with server_cpus(plan):
        return await _measure(plan, cluster)


@contextlib.contextmanager
def server_cpus(plan: OverloadPlan) -> Iterator[None]:
    """This process (the frontend) and what it starts (the instances) on the server CPUs."""
    if not plan.client_cpus:
        yield
        return
    every = os.sched_getaffinity(0)
    os.sched_setaffinity(0, plan.server_cpus())
    try:
        yield
    finally:
        os.sched_setaffinity(0, every)


async def _measure(plan: OverloadPlan, cluster: Any) -> dict[str, Any]:
    async with cluster:
        front = cluster.frontend
        urls = {
            "grpc": f"127.0.0.1:{front.grpc_port}",
            "http": f"http://127.0.0.1:{front.http_port}",
        }
        before = {**resources(), "objects": live_objects()}
        doors = sorted({door(t) for t in plan.transports})
        capacity = {
            d: (await closed(urls[d], 16, plan.capacity_queries, d, plan.client_cpus))[
                "throughput_qps"
            ]
            for d in doors
        }
        rows = []
        async with Peak() as peak:
            for t in plan.transports:
                rate = capacity[door(t)]
                for multiple in plan.multiples:
                    result = await open_loop(urls[door(t)], t, multiple * rate, plan)
                    rows.append(goodput_row(t, multiple, rate, result))
            await asyncio.sleep(2.0)  # answers and connections of the last run settle
        after = {**resources(), "objects": live_objects()}
        fair = await fairness(urls["grpc"], plan)
    return {
        "capacity_qps": capacity,
        "runs": rows,
        "resources": {"before": before, "peak": peak.peak, "after": after},
        "fairness": fair,
    }


# ---------------------------------------------------------------- the report


def report(figures: dict[str, Any], plan: OverloadPlan, command: str) -> str:
    today = datetime.date.today().isoformat()
    capacity = ", ".join(f"{t} {q:.0f} q/s" for t, q in figures["capacity_qps"].items())
    lines = [
        f"### Overload and fairness ({today})",
        "",
        f"Command: `{command}`  ",
        f"Machine: 2-core shared VM, CPU only; {_cpus(plan)}.  ",
        f"Capacity (closed loop, concurrency 16): {capacity}; open-loop runs of "
        f"{plan.seconds:g} s, deadline {plan.deadline_s * 1000:.0f} ms per query.",
        "",
        "| transport | offered | offered q/s | goodput q/s | goodput / capacity | answered "
        "| refused | deadline misses | other errors | p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in figures["runs"]:
        lines.append(
            f"| {r['transport']} | {r['multiple']:g}x | {r['offered_qps']:.0f} | "
            f"{r['goodput_qps']:.0f} | {r['goodput_share']:.0%} | {r['answered']} | "
            f"{r['refused']} | {r['missed']} | {r['other_errors']} | {r['p99_ms']:.1f} |"
        )
    res = figures["resources"]
    lines += [
        "",
        "Frontend (this process) RSS MB / open descriptors: before "
        f"{res['before']['rss_mb']} / {res['before']['fds']}, peak {res['peak']['rss_mb']} / "
        f"{res['peak']['fds']}, after {res['after']['rss_mb']} / {res['after']['fds']}"
        + _objects(res)
        + ".",
    ]
    fair = figures["fairness"]
    solo, beside = fair["solo"]["throughput_qps"], fair["beside"]["throughput_qps"]
    hostile = fair["hostile"]
    lines += [
        "",
        f"Fairness: a client at concurrency 4 (1 row per query) made {solo:.0f} q/s alone and "
        f"{beside:.0f} q/s ({beside / max(solo, 1e-9):.0%}) beside one sending "
        f"{plan.hostile_rows}-row batches back to back over gRPC (target >= "
        f"{FAIRNESS_TARGET:.0%}); the hostile client got {hostile['answered_rows']} rows "
        f"answered, {hostile['refused']} batches refused, {hostile['other']} other errors. "
        f"Goodput target at 3x: >= {GOODPUT_TARGET:.0%} of capacity.",
    ]
    return "\n".join([*lines, ""])


def _objects(res: dict[str, dict[str, int]]) -> str:
    if "objects" not in res["before"]:
        return ""
    before, after = res["before"]["objects"], res["after"]["objects"]
    return f"; live Python objects before {before:,}, after {after:,} ({after - before:+,})"


def _cpus(plan: OverloadPlan) -> str:
    what = "the frontend and 3 instances (demo digits model, k=2, coded)"
    if not plan.client_cpus:
        return f"the load clients, {what} share it"
    return (
        f"the load clients on CPU {','.join(map(str, plan.client_cpus))} only, {what} on "
        f"CPU {','.join(map(str, sorted(plan.server_cpus())))} (sched_setaffinity)"
    )


async def run_overload(plan: OverloadPlan, results: Path | None, home: Path, command: str) -> int:
    figures = await measure(plan, home)
    print(json.dumps(figures))
    publish(report(figures, plan, command), results)
    return 0


# ---------------------------------------------------------------- the hostile client


async def hostile(url: str, model: str, rows: int, seconds: float) -> dict[str, int]:
    """Send ``rows``-row batches back to back for ``seconds``; count what came back."""
    import grpc
    import numpy as np

    from proto import inference_pb2 as pb
    from proto import inference_pb2_grpc as pb_grpc
    from proto.tensors import dtype_of, make_infer_request

    counts = {"answered_rows": 0, "refused": 0, "other": 0}
    async with grpc.aio.insecure_channel(url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        meta = await stub.ModelMetadata(pb.ModelMetadataRequest(name=model), timeout=10)
        tensor = meta.inputs[0]
        x = np.zeros((rows, *tensor.shape[1:]), dtype_of(tensor.datatype))
        request = make_infer_request(model, {tensor.name: x})
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                await stub.ModelInfer(request, timeout=30)
                counts["answered_rows"] += rows
            except grpc.aio.AioRpcError as exc:
                refused = exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                counts["refused" if refused else "other"] += 1
    return counts


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.overload", description="hostile client")
    p.add_argument("--url", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--rows", type=int, default=1024)
    p.add_argument("--seconds", type=float, default=10.0)
    a = p.parse_args(argv)
    print(json.dumps(asyncio.run(hostile(a.url, a.model, a.rows, a.seconds))))


if __name__ == "__main__":
    main()
