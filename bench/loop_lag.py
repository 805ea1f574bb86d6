"""``parm bench codes --loop-lag``: how long the frontend's event loop stalls on big inputs.

A linear model of 3x224x224 float32 images (602 KB a query) and its parity bundle are
served coded (k data + 1 parity instances) by a frontend in this process; a load client
in its own process sends random images over gRPC, closed loop.  Meanwhile a probe thread
asks the loop, every millisecond, to run a callback (``call_soon_threadsafe``) and
records how long the loop took to get to it: a callback or step that holds the loop
(encoding a parity, copying an input) delays the probe by as long.  On a busy 2-core
machine the load client and the instances also take the CPU away from the frontend,
which delays the probe as much; so the probe also reads the loop thread's CPU clock when
it posts and when its callback runs: the CPU time the loop spent in between is how long
the frontend's own work held the loop.  The same probe on the idle frontend first gives
the machine's own wake-up delay, for scale.
"""

from __future__ import annotations

import asyncio
import datetime
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.closed_loop import run_client_process
from bench.report import machine

SHAPE = (3, 224, 224)
CLASSES = 10
MODEL = "images"


def image_bundles(root: Path, k: int) -> tuple[Path, Path]:
    """A linear 3x224x224 -> 10 model and its parity model for the sum code at ``k``."""
    import torch

    from common.bundle import ParityInfo, TensorSpec
    from common.models import build, save_bundle

    torch.manual_seed(0)
    arch = {"in_features": int(np.prod(SHAPE)), "num_classes": CLASSES, "hidden": []}
    parity: ParityInfo | None = None
    for role in ("base", "parity"):
        manifest = save_bundle(
            root / role,
            name=MODEL if role == "base" else f"{MODEL}-parity",
            role=role,
            architecture="mlp",
            arch_args=arch,
            module=build("mlp", **arch),
            input_spec=TensorSpec("input", "FP32", SHAPE),
            output_spec=TensorSpec("output", "FP32", (CLASSES,)),
            preprocessing={"mean": [0.0], "std": [1.0]},
            parity=parity,
        )
        parity = ParityInfo(k, "sum", manifest.weights_sha256, MODEL)
    return root / "base", root / "parity"


class LagProbe:
    """A thread that, every ``period`` seconds, times how long the loop takes to run a
    callback it is handed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, period: float = 0.001) -> None:
        """Made in the loop's thread: its CPU clock tells busy from preempted."""
        self.loop, self.period = loop, period
        self.lags: list[float] = []  # wall-clock seconds from posting to running
        self.busy: list[float] = []  # of which the loop's thread was on a CPU
        self._cpu_clock = time.pthread_getcpuclockid(threading.get_ident())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-probe", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            cpu = time.clock_gettime(self._cpu_clock)
            self.loop.call_soon_threadsafe(self._ran, time.perf_counter(), cpu)

    def _ran(self, posted: float, cpu: float) -> None:
        self.lags.append(time.perf_counter() - posted)
        self.busy.append(time.thread_time() - cpu)

    def __enter__(self) -> LagProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def lag_summary(lags: list[float]) -> dict[str, float]:
    """p50, p99, p99.9 and the largest lag, in milliseconds."""
    ms = np.asarray(lags) * 1000
    p50, p99, p999 = np.percentile(ms, [50, 99, 99.9])
    return {"p50": float(p50), "p99": float(p99), "p999": float(p999), "max": float(ms.max())}


async def measure(k: int, queries: int, concurrency: int, root: Path) -> dict[str, Any]:
    """Loop lag idle and under load, and the load client's summary."""
    from deploy.local import LocalCluster
    from deploy.spec import Deployment, ModelDeployment

    base, parity = image_bundles(root / f"k{k}", k)
    model = ModelDeployment(MODEL, base, parity, k=k, data_instances=k, parity_instances=1)
    loop = asyncio.get_running_loop()
    async with LocalCluster(Deployment((model,), grpc_port=0), root / "logs") as cluster:
        with LagProbe(loop) as idle:
            await asyncio.sleep(2.0)  # the idle frontend: the machine's own delay
        url = f"127.0.0.1:{cluster.frontend.grpc_port}"
        args = ["--url", url, "--model", MODEL, "--concurrency", str(concurrency)]
        with LagProbe(loop) as busy:
            client = await run_client_process(
                "bench.client", *args, "--queries", str(queries), "--warmup", "50"
            )
    return {
        "k": k,
        "idle": lag_summary(idle.lags),
        "busy": lag_summary(busy.lags),
        "cpu": lag_summary(busy.busy),
        **client,
    }


def report(rows: list[dict[str, Any]], command: str) -> str:
    lines = [
        f"### Event-loop lag serving 3x224x224 queries ({datetime.date.today().isoformat()})",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine()}; 2-core shared VM, busy: other work ran at the same time.  "
        "A linear 3x224x224 -> 10 model, coded (k data + 1 parity instances), gRPC load "
        "client in its own process; lag: how late a callback handed to the frontend's loop "
        "every millisecond ran (idle: before the load, the machine's own delay).",
        "",
        "| k | concurrency | queries/s | p50 ms | lag idle p50 / p99 / max ms "
        "| lag serving p50 / p99 / p99.9 / max ms "
        "| of which the loop's own CPU p50 / p99 / p99.9 / max ms | sources |",
        "| ---: | ---: | ---: | ---: | --- | --- | --- | --- |",
    ]
    for r in rows:
        i, b, c = r["idle"], r["busy"], r["cpu"]
        sources = ", ".join(f"{s} {n}" for s, n in sorted(r.get("sources", {}).items()))
        lines.append(
            f"| {r['k']} | {r['concurrency']} | {r['throughput_qps']:.0f} | {r['p50_ms']:.2f} "
            f"| {i['p50']:.2f} / {i['p99']:.2f} / {i['max']:.2f} "
            f"| {b['p50']:.2f} / {b['p99']:.2f} / {b['p999']:.2f} / {b['max']:.2f} "
            f"| {c['p50']:.2f} / {c['p99']:.2f} / {c['p999']:.2f} / {c['max']:.2f} | {sources} |"
        )
    return "\n".join([*lines, ""])


async def run_loop_lag(
    ks: tuple[int, ...], queries: int, concurrency: int, home: Path
) -> list[dict[str, Any]]:
    return [await measure(k, queries, concurrency, home / "loop-lag") for k in ks]
