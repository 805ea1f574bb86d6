"""What the frontend's Prometheus metrics cost: per scrape, and per observation.

``python -m bench.scrape`` builds the metrics of a realistic frontend (``--models``
models of ``--instances`` instances each, coded, k=2), records ``--queries`` queries'
worth of observations per model (latencies, queueing, instance service times, groups,
encode and decode, answers by source), then times ``Metrics.render`` (one scrape) and
one histogram observation and one counter increment on a pre-resolved child.

Three exposition paths, side by side in one process:

- ``prometheus-client`` with the shared buckets of ``common.buckets`` (what the frontend
  uses);
- ``prometheus-client`` with the earlier 134-bound latency layout (``--baseline``'s
  ``common/buckets.py``): the layout that made a scrape slow;
- the earlier hand-written exposition (``--baseline``'s ``frontend/metrics.py``, read
  from git, with its own buckets).

Figures are medians of ``--repeat`` timed scrapes and best-of-five rounds for the
per-observation costs.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from frontend import metrics as frontend_metrics
from frontend.events import GroupClosed, PoolKind, Source

#: the last commit with the hand-written exposition and the 134-bound latency buckets
BASELINE = "c1e8253"
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class FakeModel:
    """A served model's gauge state: both the `GaugeSource` of today and what the
    baseline read (``core`` and ``links``)."""

    name: str
    names: list[str]
    ready: bool = True
    outstanding: int = 3
    links: dict[str, None] = field(init=False)

    def __post_init__(self) -> None:
        self.links = dict.fromkeys(self.names)

    @property
    def core(self) -> FakeModel:
        return self

    @property
    def instances(self) -> Iterable[str]:
        return self.names

    def queue_depth(self, pool: PoolKind) -> int:
        return 1

    def instance_up(self, name: str) -> bool:
        return True

    is_up = instance_up

    def instance_inflight(self, name: str) -> int:
        return 1

    inflight = instance_inflight


def from_git(commit: str, path: str, name: str) -> ModuleType:
    """``path`` as it was at ``commit``, imported as the module ``name``."""
    text = subprocess.run(
        ["git", "show", f"{commit}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    text = text.replace("from common.buckets import", "from baseline_buckets import")
    module = ModuleType(name)
    sys.modules[name] = module
    exec(compile(text, f"{commit}:{path}", "exec"), module.__dict__)
    return module


def filled(metrics: Any, models: int, instances: int, queries: int) -> tuple[Any, list[Any]]:
    """``metrics`` after ``queries`` queries per model; and the models' children."""
    rng = np.random.default_rng(0)
    children, sources = [], []
    for m in range(models):
        names = [f"data-{i}" for i in range(instances - instances // 4)]
        parity = [f"parity-{i}" for i in range(instances // 4)]
        model = metrics.model(f"model-{m}", 2, names, parity)
        children.append(model)
        sources.append(FakeModel(f"model-{m}", names + parity))
        latency = rng.lognormal(np.log(0.008), 0.6, queries).tolist()
        compute = rng.lognormal(np.log(0.00005), 0.5, queries).tolist()
        for q in range(queries):
            source = Source.RECONSTRUCTED if q % 50 == 0 else Source.ORIGINAL
            model.answered([source], latency[q])
            model.answers[source].inc()
            model.queueing.observe(latency[q] / 10)
            model.service_time[(names + parity)[q % instances]].observe(latency[q] * 0.8)
            if q % 2:
                model.group_closed(GroupClosed(q, 2, latency[q] / 4, protected=True))
                model.encode.observe(compute[q])
            if q % 50 == 0:
                model.decode.observe(compute[q])
    metrics.watch(lambda: sources)
    return metrics, children


def scrape_ms(render: Callable[[], str], repeat: int) -> tuple[float, int, int]:
    """Median milliseconds per scrape; lines and bytes of one scrape."""
    text = render()
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        render()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1e3, text.count("\n"), len(text)


def per_call_us(call: Callable[[], object]) -> float:
    """Best-of-five microseconds per call."""
    timer = timeit.Timer(call)
    number, _ = timer.autorange()
    return min(timer.repeat(5, number)) / number * 1e6


def measure(metrics: Any, a: argparse.Namespace) -> list[str]:
    metrics, children = filled(metrics, a.models, a.instances, a.queries)
    ms, lines, size = scrape_ms(metrics.render, a.repeat)
    child = children[0]
    observe = per_call_us(lambda: child.latency[Source.ORIGINAL].observe(0.0123))
    inc = per_call_us(lambda: child.answers[Source.ORIGINAL].inc())
    return [f"{ms:.2f}", str(lines), f"{size / 1024:.0f}", f"{observe:.2f}", f"{inc:.2f}"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=int, default=4)
    p.add_argument("--instances", type=int, default=8, help="per model; a quarter parity")
    p.add_argument("--queries", type=int, default=20_000, help="observed per model")
    p.add_argument("--repeat", type=int, default=50, help="timed scrapes")
    p.add_argument("--baseline", default=BASELINE, help="commit of the hand-written exposition")
    p.add_argument("--no-baseline", action="store_true", help="time today's metrics only")
    a = p.parse_args(argv)
    rows: list[tuple[str, Callable[[], Any]]] = [
        ("prometheus-client, common.buckets", frontend_metrics.Metrics)
    ]
    if not a.no_baseline:
        old = from_git(a.baseline, "common/buckets.py", "baseline_buckets")

        def fine() -> Any:
            return frontend_metrics.Metrics(old.LATENCY_BUCKETS)

        hand = from_git(a.baseline, "frontend/metrics.py", "baseline_metrics")
        rows += [
            (f"prometheus-client, {len(old.LATENCY_BUCKETS)} latency bounds", fine),
            (f"hand-written ({a.baseline})", hand.Metrics),
        ]
    print(f"{a.models} models x {a.instances} instances, {a.queries} queries observed per model\n")
    print("| exposition | ms per scrape | lines | KiB | us per observe | us per inc |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, make in rows:
        print(f"| {label} | " + " | ".join(measure(make(), a)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
