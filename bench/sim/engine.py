"""The discrete-event driver of the frontend's own coordinator, in simulated time.

``frontend.core.Coordinator`` decides everything a real frontend decides -- coding
groups, dispatch through the real ``frontend.policy`` policy, parity, reconstruction,
cancellation -- and this module only turns its actions into future events, as the
asyncio driver (``frontend.model``) turns them into I/O.  Time is a
``common.clock.SimClock`` that jumps from event to event.

The event heap is keyed ``(time, priority, seq)``: ``seq`` comes from the simulation's
own counter, so events at the same time and priority pop in the order they were
pushed, and a run is a pure function of its configuration and seed.

Payloads are ``None``: the coordinator treats inputs and outputs as opaque, and no
arithmetic is simulated.  A task's time on an instance is a draw from the configured
service-time distribution, stretched by that instance's contention episodes
(``bench.sim.episodes``); a fixed per-query overhead (client, frontend, network) is
added to every answer.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from bench.sim.episodes import Timeline, Transfers, Windows
from common.clock import SimClock
from frontend.config import assign_pools
from frontend.core import Coordinator
from frontend.events import (
    Action,
    Answer,
    CoreConfig,
    Fail,
    Hedged,
    InstanceSpec,
    InstanceUp,
    Mode,
    QueryArrived,
    Reconstruct,
    SendData,
    SendParity,
    SetTimer,
    TaskCompleted,
    Tick,
)

# Event kinds double as priorities: at equal times, results are taken in before the
# coordinator's timers fire, and both before new arrivals.
COMPLETE, TICK, ARRIVE = 0, 1, 2
ORIGINAL, RECONSTRUCTED, OTHER = 0, 1, 2  # answer sources, as small ints
ARRIVALS_STREAM = 0xA11

Sampler = Callable[[int], npt.NDArray[np.float64]]  # n draws of a duration (seconds)


class TransferReplayer(Protocol):
    def draw(self, transfer: int, side: int, phase: float) -> float | None:
        """A task time for a task sent ``phase`` s into a recorded transfer, if known."""
        ...


class Replayer(Protocol):
    def draw(self, t: float, busy: bool) -> float:
        """A task time for a task started at ``t`` on a busy (or idle) instance."""
        ...


@dataclass(frozen=True)
class SimSetup:
    """One simulated run."""

    k: int
    mode: Mode
    data: int  # instances in the data pool's role (mode decides how they are used)
    parity: int
    rate: float  # queries per second (Poisson)
    queries: int  # measured
    service: Sampler  # a task's time on an uncontended instance
    warmup: int = 0
    overhead_s: float = 0.0  # added to every answer: client, frontend and network
    group_timeout_s: float = 0.010
    policy: str = "single-queue"
    timelines: Sequence[Timeline] = ()  # per instance (data first), empty: no contention
    #: per instance, when it is busy with a shuffle transfer; tasks started then take
    #: ``busy_service`` draws (measured during transfers) instead of ``service`` ones
    busy: Sequence[Windows] = ()
    busy_service: Sampler | None = None
    #: per instance, the recorded transfers it replays (``bench.sim.episodes``); with
    #: ``profiles``, a busy task's time is what a task sent as far into that real
    #: transfer took, and ``busy_service`` is only the fallback
    transfers: Sequence[Transfers] = ()
    profiles: TransferReplayer | None = None
    #: task times replayed from a recorded trace by time instead of drawn independently
    replay: Replayer | None = None
    seed: int = 0
    #: the coordinator's decode grace, in seconds: 0 eager, None learned (auto)
    decode_grace: float | None = 0.0
    #: hedge mode's delay, in seconds: None learned (auto)
    hedge_delay: float | None = None
    #: queries in flight before new ones are refused, as a real front door refuses calls
    #: past its limit (``grpc_max_streams``); None: unbounded, overload shows as latency
    admission_limit: int | None = None


@dataclass
class SimResult:
    latency_s: npt.NDArray[np.float64]  # measured queries, in arrival order
    source: npt.NDArray[np.int8]
    failed: int = 0
    events: int = 0
    sim_time_s: float = 0.0
    stats: dict[str, float] = field(default_factory=dict)


def pools(setup: SimSetup) -> tuple[list[InstanceSpec], list[InstanceSpec]]:
    """Instances by pool as the asyncio frontend assigns them (``frontend.config.assign_pools``)."""
    data = [InstanceSpec(f"data-{i}") for i in range(setup.data)]
    parity = [InstanceSpec(f"parity-{i}") for i in range(setup.parity)]
    data_pool, parity_pool = assign_pools(setup.mode, data, parity)
    return list(data_pool), list(parity_pool)


class Simulation:
    """Runs one ``SimSetup`` to completion; ``run()`` returns the latencies."""

    def __init__(self, setup: SimSetup) -> None:
        from frontend.policy import POLICIES

        self.setup = setup
        self.clock = SimClock()
        data, parity = pools(setup)
        config = CoreConfig(
            k=setup.k,
            mode=setup.mode,
            group_timeout=setup.group_timeout_s,
            decode_grace=setup.decode_grace,
            hedge_delay=setup.hedge_delay,
        )
        config = _admission(config, setup.admission_limit)
        self.core = Coordinator(config, data, parity, policy=POLICIES[setup.policy])
        names = [f"data-{i}" for i in range(setup.data)]
        names += [f"parity-{i}" for i in range(setup.parity)]
        self._timeline = {name: tl for name, tl in zip(names, setup.timelines, strict=False)}
        self._busy = {name: w for name, w in zip(names, setup.busy, strict=False)}
        self._transfers = {name: t for name, t in zip(names, setup.transfers, strict=False)}
        self._up = [spec.name for spec in (*data, *parity)]
        self._heap: list[tuple[float, int, int, int, int, str]] = []
        self._seq = itertools.count()
        self._timer_at: float | None = None
        total = setup.warmup + setup.queries
        self._arrived = np.zeros(total)
        self._latency = np.full(total, np.nan)
        self._source = np.full(total, OTHER, np.int8)
        self._failed = 0
        self._hedges = 0
        self._tasks = 0  # instance requests, every kind: the extra load beyond one a query
        # Its own stream: a sampler seeded with the same number must not replay it.
        self._rng = np.random.default_rng([setup.seed, ARRIVALS_STREAM])
        self._service = Draws(setup.service)
        self._busy_service = Draws(setup.busy_service or setup.service)

    # -- the event heap -------------------------------------------------------------

    def _push(self, at: float, kind: int, ref: int = 0, name: str = "") -> None:
        heapq.heappush(self._heap, (at, kind, next(self._seq), kind, ref, name))

    def run(self) -> SimResult:
        setup = self.setup
        gaps = self._rng.exponential(1.0 / setup.rate, setup.warmup + setup.queries)
        arrivals = np.cumsum(gaps).tolist()
        self._arrived[:] = arrivals
        for name in self._up:
            self._act(self.core.handle(InstanceUp(name), 0.0))
        self._push(arrivals[0], ARRIVE, 0)
        events = self._loop(arrivals)
        measured = slice(setup.warmup, None)
        return SimResult(
            latency_s=self._latency[measured] + setup.overhead_s,
            source=self._source[measured],
            failed=self._failed,
            events=events,
            sim_time_s=self.clock.now(),
            stats=self._stats(),
        )

    def _stats(self) -> dict[str, float]:
        queries = self.setup.warmup + self.setup.queries
        stats = {"extra_load": self._tasks / max(1, queries) - 1}
        if self.setup.mode is Mode.HEDGE:
            stats["hedges"] = float(self._hedges)
        return stats

    def _loop(self, arrivals: list[float]) -> int:
        heap, core, clock, act = self._heap, self.core, self.clock, self._act
        total, events = len(arrivals), 0
        while heap:
            at, _, _, kind, ref, name = heapq.heappop(heap)
            clock.advance_to(at)
            events += 1
            if kind == COMPLETE:
                act(core.handle(TaskCompleted(ref, name, None), at))
            elif kind == ARRIVE:
                act(core.handle(QueryArrived(ref, None), at))
                if ref + 1 < total:
                    self._push(arrivals[ref + 1], ARRIVE, ref + 1)
            elif at == self._timer_at:  # a stale timer (replaced since) does nothing
                self._timer_at = None
                act(core.handle(Tick(), at))
        return events

    # -- actions ----------------------------------------------------------------------

    def _act(self, actions: list[Action]) -> None:
        now = self.clock.now()
        for action in actions:
            kind = type(action)
            if kind is SendData or kind is SendParity:
                self._start(action, now)  # type: ignore[arg-type]
            elif kind is Answer:
                self._answer(action.query_id, now, action.source.value)  # type: ignore[union-attr]
            elif kind is Reconstruct:
                for qid, _ in action.answers:  # type: ignore[union-attr]
                    self._answer(qid, now, "reconstructed")
            elif kind is SetTimer:
                at = max(action.at, now)  # type: ignore[union-attr]
                self._timer_at = at
                self._push(at, TICK)
            elif kind is Fail:
                self._failed += 1
            elif kind is Hedged:
                self._hedges += 1  # a backup copy: extra load

    def _start(self, action: SendData | SendParity, now: float) -> None:
        self._tasks += 1
        windows = self._busy.get(action.instance)
        busy = windows is not None and windows.covers(now)
        work = None
        if self.setup.replay is not None:
            work = self.setup.replay.draw(now, busy)
        elif busy and self.setup.profiles is not None:
            work = self._replayed(action.instance, now)
        if work is None:
            work = (self._busy_service if busy else self._service).next()
        timeline = self._timeline.get(action.instance)
        done = timeline.finish(now, work) if timeline is not None else now + work
        self._push(done, COMPLETE, action.task_id, action.instance)

    def _replayed(self, instance: str, now: float) -> float | None:
        transfers = self._transfers.get(instance)
        hit = transfers.at(now) if transfers is not None else None
        if hit is None or self.setup.profiles is None:
            return None
        return self.setup.profiles.draw(*hit)

    def _answer(self, qid: int, now: float, source: str) -> None:
        self._latency[qid] = now - self._arrived[qid]
        self._source[qid] = ORIGINAL if source == "original" else RECONSTRUCTED


class Draws:
    """Draws from a sampler, fetched in bulk (one NumPy call per 64Ki draws)."""

    def __init__(self, sampler: Sampler) -> None:
        self._sampler = sampler
        self._values: list[float] = []
        self._next = 0

    def next(self) -> float:
        if self._next >= len(self._values):
            self._values = self._sampler(65_536).tolist()
            self._next = 0
        value = self._values[self._next]
        self._next += 1
        return value


def _admission(config: CoreConfig, limit: int | None) -> CoreConfig:
    """The admission limit: none (a simulated overload shows as latency), or ``limit``."""
    from dataclasses import replace

    return replace(config, max_outstanding=1 << 30 if limit is None else limit)
