"""``parm bench calibrate``: measure a real run so the simulator can mimic it.

The measurement is a real benchmark run -- the ``--quick`` configuration by default
(instances padded to the service time, the same contention, the same open-loop Poisson
load), each mode in turn -- watched from inside the frontend: a recorder
wraps the frontend's coordinator (``frontend.core.Coordinator``) and notes the time
of every ``SendData`` action and of the ``TaskCompleted`` event that answers it.  That
difference is a task's round trip *as the frontend sees it*: the instance's padded
service, its transport, and everything the busy machine does to both.  Each round trip
is filed as *busy* when its instance's sidecar (``bench.contention.sidecar``) was
taking part in a shuffle transfer at the moment of sending (the shuffle controller
knows), else *idle*; a busy one also notes which transfer, the instance's side of it
(sending or receiving) and how far into it the task was sent.

The simulator then draws a task's time from the idle round trips, or, when its instance
is in a simulated transfer, replays one real transfer: each simulated transfer is one
recorded transfer (its duration too), and a task sent t seconds into it takes the round
trip of a real task sent about t seconds into that transfer from the same side.  A
link-level transfer is not uniformly slow: for a few hundred milliseconds of it a host's
round trips are 50 ms, and an instance that holds one request at a time takes only a
few requests in that stretch whatever the load, so independent draws (which the
simulator falls back to without these records) overstate the slow share at high load.
To every answer it adds the median client latency minus the median
time the frontend held a query (client, gRPC and front-door overhead).  The round trips
are also kept as a *trace* in send order: replaying it by time (``--replay``) keeps
what independent draws lose, that on one shared machine slow moments hit every task in
flight at once.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.contention.shuffle import Shuffler
from bench.latency import (
    MODEL,
    LatencyPlan,
    ModeCluster,
    clusters_for,
    contention_for,
    demo_bundles,
    load_client,
)
from bench.sim.service import Calibration, summary
from frontend.events import Action, Answer, Event, Mode, QueryArrived, SendData, TaskCompleted

InTransfer = tuple[int, int, float]  # (transfer number, side, perf_counter at its start)


class Recorder:
    """Stands in for a coordinator: passes everything through and times tasks and queries."""

    def __init__(self, core: Any, busy: Callable[[str], InTransfer | None]) -> None:
        self._core = core
        self._busy = busy
        self._sent: dict[int, tuple[float, InTransfer | None]] = {}
        self._arrived: dict[int, float] = {}
        self.idle_s: list[float] = []
        self.busy_s: list[float] = []
        self.trace: list[tuple[float, float, bool]] = []  # (sent at, round trip, busy)
        #: busy tasks: (transfer number, side, seconds into the transfer, round trip)
        self.phases: list[tuple[int, int, float, float]] = []
        self.held_s: list[float] = []  # arrival to answer, inside the frontend

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)

    def handle(self, event: Event, now: float) -> list[Action]:
        # Its own clock: the event loop's (``now``) ticks in whole milliseconds on uvloop.
        clock = time.perf_counter()
        if isinstance(event, TaskCompleted) and event.task_id in self._sent:
            sent, transfer = self._sent.pop(event.task_id)
            busy = transfer is not None
            (self.busy_s if busy else self.idle_s).append(clock - sent)
            self.trace.append((sent, clock - sent, busy))
            if transfer is not None:
                number, side, began = transfer
                self.phases.append((number, side, sent - began, clock - sent))
        elif isinstance(event, QueryArrived):
            self._arrived[event.query_id] = clock
        actions: list[Action] = self._core.handle(event, now)
        for action in actions:
            if isinstance(action, SendData):
                self._sent[action.task_id] = (clock, self._busy(action.instance))
            elif isinstance(action, Answer) and action.query_id in self._arrived:
                self.held_s.append(clock - self._arrived.pop(action.query_id))
        return actions


@dataclass
class Recorded:
    """One mode's recorded run: the recorder, the client's summary, the transfers."""

    recorder: Recorder
    client: dict[str, Any]
    durations: list[float]
    completed: list[int]  # the transfer number of each duration


async def record(mc: ModeCluster, plan: LatencyPlan, rate: float, seed: int, raw: Path) -> Recorded:
    """One real run of ``mc`` at ``rate``, with a recorder in its frontend."""
    active = contention_for(mc, plan, seed)
    shufflers = [i for i in active.injectors if isinstance(i, Shuffler)]

    def busy(instance: str) -> InTransfer | None:
        sidecar = mc.sidecars_at[instance]
        for s in shufflers:
            if sidecar in s.current:
                return s.current[sidecar]
        return None

    service = mc.cluster.frontend.services[MODEL]
    recorder = Recorder(service.core, busy)
    service.core = recorder  # type: ignore[assignment]
    active.start()
    try:
        await asyncio.sleep(plan.settle_s)
        url = mc.url("grpc")
        client = await load_client(url, rate, plan.queries, plan.warmup, seed, raw, "grpc")
    finally:
        await active.stop()
        service.core = recorder._core
    one = shufflers[0] if len(shufflers) == 1 else None  # numbers are per controller
    return Recorded(
        recorder,
        client,
        [d for s in shufflers for d in s.durations],
        one.completed if one is not None else [],
    )


async def calibrate(plan: LatencyPlan, home: Path, seed: int = 7) -> Calibration:
    """Record one run per variant of ``plan`` (its first k and rate), equal-resources first.

    The modes' clusters are up together and run one after the other with the same
    seed, as in the benchmark; the round-trip distributions for independent draws come
    from the equal-resources run, a trace per mode is kept for replay, and each mode's
    real client figures are kept for the simulator to be checked against.
    """
    k = plan.ks[0]
    rate = plan.rates_for(k)[0]
    modes = sorted(plan.modes, key=lambda m: m is not Mode.EQUAL_RESOURCES)
    plan = replace(plan, modes=tuple(modes))
    logs = home / "logs" / "calibrate"
    bundles = demo_bundles([k], home)[k]
    runs: dict[str, Recorded] = {}
    async with clusters_for(k, plan, bundles, logs) as running:
        for mc in running:
            raw = logs / f"{mc.label.replace(' ', '')}.json"
            runs[mc.label] = await record(mc, plan, rate, seed, raw)
    er = runs[Mode.EQUAL_RESOURCES.value]
    keys = ("p50_ms", "p99_ms", "p999_ms")
    return Calibration(
        service_time_ms=plan.service_time_ms,
        rtt_ms=_ms(er.recorder.idle_s),
        overhead_ms=float(er.client["p50_ms"]) - float(np.median(er.recorder.held_s)) * 1000,
        shuffle_rtt_ms=_ms(er.recorder.busy_s),
        shuffle_transfer_s=tuple(round(d, 4) for d in er.durations),
        shuffle_profiles=_profiles(er),
        traces={mode: _trace(run.recorder.trace) for mode, run in runs.items()},
        real={
            mode: {"k": k, "rate": rate, **{key: float(run.client[key]) for key in keys}}
            for mode, run in runs.items()
        },
        notes={
            "machine": _machine(),
            "command": "parm " + " ".join(sys.argv[1:]),
            "configuration": f"k={k}, {plan.instances(k)} instances, {rate:g} q/s, "
            f"contention {plan.contention.text}, {plan.queries} queries per mode, "
            f"{_network(plan)}",
            "method": __doc__.split("\n\n", 1)[1].strip() if __doc__ else "",
        },
    )


def _profiles(run: Recorded) -> tuple[tuple[int, int, float, float], ...]:
    """(index into the durations, side, seconds into the transfer, round trip ms) rows.

    Only transfers that completed (so have a duration) are kept.
    """
    index = {number: i for i, number in enumerate(run.completed)}
    return tuple(
        (index[number], side, round(phase, 6), round(rtt * 1000, 3))
        for number, side, phase, rtt in sorted(run.recorder.phases)
        if number in index
    )


def _trace(records: list[tuple[float, float, bool]]) -> tuple[tuple[float, float, int], ...]:
    """(seconds since the first send, round trip in ms, busy 0/1), in send order."""
    records = sorted(records)
    start = records[0][0] if records else 0.0
    return tuple((round(t - start, 6), round(rtt * 1000, 3), int(b)) for t, rtt, b in records)


def _ms(seconds: list[float]) -> tuple[float, ...]:
    return tuple(round(s * 1000, 3) for s in seconds)


def _network(plan: LatencyPlan) -> str:
    if plan.network != "netns":
        return "instances on loopback"
    return (
        f"each instance on a netns host of its own, links {plan.link_mbit:g} Mbit/s with "
        f"{plan.link_queue_ms:g} ms of queue"
    )


def _machine() -> str:
    from bench.report import machine

    return machine()


async def run_calibrate(plan: LatencyPlan, out: Path, home: Path) -> int:
    cal = await calibrate(plan, home)
    cal.save(out)
    print(summary(cal))
    print(f"wrote {out}")
    return 0
