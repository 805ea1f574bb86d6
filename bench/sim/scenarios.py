"""Simulated clusters: the local benchmark's, the papers', and one far beyond a machine.

Contention is written exactly as for the real benchmark (``bench.contention`` syntax)
and turned into per-instance episodes: a shuffle keeps both of its instances busy for a
transfer duration drawn from the measured ones, and a task started on a busy instance
takes a round trip drawn from those measured during real transfers; a pause stops an
instance (speed 0); a CPU episode shares its core with ``hogs`` spinners (speed
1/(1+hogs)); injected delays are added to task times.  Every mode of one (k, rate,
repeat) sees the same episodes on the same instance indices, as the real benchmark
gives every mode the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.contention import Contention, DelaySpec, parse_contention
from bench.sim.engine import Sampler, SimSetup
from bench.sim.episodes import (
    Interval,
    Timeline,
    Transfers,
    Windows,
    merge,
    poisson_episodes,
    replayed_transfers,
    shuffle_episodes,
    windows,
)
from bench.sim.service import DEFAULT_CALIBRATION, Calibration, Profiles, Replay
from frontend.events import Mode


@dataclass(frozen=True)
class Scenario:
    name: str
    groups: int  # instances: k * groups data + groups parity
    rates: tuple[float, ...]
    queries: int
    warmup: int
    contention: str
    about: str
    calibration: Path = DEFAULT_CALIBRATION  # unless --calibration says otherwise
    #: queries in flight before refusals (the real front door's limit); None: unbounded
    admission_limit: int | None = None


SCENARIOS = {
    "local": Scenario(
        "local", 4, (120.0,), 6_000, 400, "shuffle:concurrency=1",
        "this machine's --quick benchmark: k*4 + 4 instances, one shuffle at a time",
    ),
    "papers": Scenario(
        "papers", 6, (150.0, 230.0, 310.0, 390.0), 100_000, 5_000, "shuffle:concurrency=4",
        "the papers' GPU cluster: 12 data + 6 parity instances (k=2) vs 18, 150-390 q/s, "
        "4 concurrent shuffles",
    ),
    "scale": Scenario(
        "scale", 1200, (100_000.0,), 300_000, 20_000, "shuffle:concurrency=800",
        "beyond one machine: 2,400 data + 1,200 parity instances (k=2) vs 3,600, "
        "100,000 q/s, shuffles keeping the papers' share of instances busy",
    ),
    "netns": Scenario(
        "netns", 2, (120.0, 220.0, 320.0), 3_000, 300, "shuffle:concurrency=1",
        "this machine's netns study at k=2 (parm bench latency --network netns): 4 data + "
        "2 parity hosts vs 6, 30-80% of capacity, one link-level shuffle at a time; task "
        "times from a netns run's round trips, busy (the host's link in a transfer) or idle",
        DEFAULT_CALIBRATION.with_name("calibration-netns.json"),
        32,  # the benchmark client's one gRPC connection: grpc_max_streams calls at once
    ),
}  # fmt: skip


def shuffles_for(
    contention: Contention, n: int, cal: Calibration, horizon: float, seed: int
) -> tuple[list[Windows], list[Transfers]]:
    """Per instance, when it takes part in a shuffle transfer, and which recorded one.

    With recorded transfers (`Calibration.shuffle_profiles`) each simulated transfer
    replays one of them; otherwise transfers last calibrated durations and no transfer
    is named (the second list is empty).
    """
    spec = contention.shuffle
    if spec is None:
        return [], []
    concurrency = min(spec.concurrency, n // 2)
    recorded = Profiles(cal.shuffle_profiles, seed).transfers
    if recorded:
        per = replayed_transfers(n, concurrency, recorded, cal.shuffle_transfer_s, horizon, seed)
        spans = [[(s, e, 1.0) for s, e in zip(t.starts, t.ends, strict=True)] for t in per]
        return [windows(intervals) for intervals in spans], per
    durations = list(cal.shuffle_transfer_s) or _size_over_bandwidth(spec.min_mb, spec.max_mb)
    per_instance = shuffle_episodes(n, concurrency, durations, 1.0, horizon, seed)
    return [windows(intervals) for intervals in per_instance], []


def episodes_for(contention: Contention, n: int, horizon: float, seed: int) -> list[Timeline]:
    """Per-instance timelines of the pause and CPU episodes, for ``n`` instances."""
    sources: list[list[list[Interval]]] = []
    if contention.pause is not None:
        p = contention.pause
        sources.append(
            poisson_episodes(n, p.rate, p.min_ms / 1e3, p.max_ms / 1e3, 0.0, horizon, seed + 1)
        )
    if contention.cpu is not None:
        c = contention.cpu
        speed = 1 / (1 + c.hogs)
        sources.append(
            poisson_episodes(n, c.rate, c.min_ms / 1e3, c.max_ms / 1e3, speed, horizon, seed + 2)
        )
    return merge(n, *sources) if sources else []


def _size_over_bandwidth(min_mb: float, max_mb: float, gbps: float = 10.0) -> list[float]:
    """Without a measurement: transfers at a 10 Gbit/s link rate."""
    return [mb * 8 / 1000 / gbps for mb in np.linspace(min_mb, max_mb, 17)]


def with_delays(service: Sampler, delay: DelaySpec | None, seed: int) -> Sampler:
    """Task times plus the injected delays (probability ``prob``, mean ``mean_ms``)."""
    if delay is None:
        return service
    rng = np.random.default_rng(seed + 3)

    def draw(n: int) -> npt.NDArray[np.float64]:
        hit = rng.random(n) < delay.prob
        extra = (
            rng.exponential(delay.mean_ms / 1e3, n)
            if delay.dist == "exp"
            else np.full(n, delay.mean_ms / 1e3)
        )
        return service(n) + hit * extra

    return draw


def setup_for(
    scenario: Scenario,
    k: int,
    mode: Mode,
    rate: float,
    repeat: int,
    cal: Calibration,
    seed: int,
    queries: int | None = None,
    replay: bool = False,
) -> SimSetup:
    """One run of ``scenario``; the same episodes for every mode at this (k, rate, repeat)."""
    contention = parse_contention(scenario.contention)
    run_seed = seed + 1000 * repeat
    n = k * scenario.groups + scenario.groups
    queries = queries or scenario.queries
    horizon = (queries + scenario.warmup) / rate * 1.5 + 1.0
    busy, transfers = shuffles_for(contention, n, cal, horizon, run_seed)
    return SimSetup(
        k=k,
        mode=mode,
        data=k * scenario.groups,
        parity=scenario.groups,
        rate=rate,
        queries=queries,
        warmup=scenario.warmup,
        service=with_delays(cal.service(run_seed), contention.delay, run_seed),
        overhead_s=cal.overhead_ms / 1000,
        timelines=episodes_for(contention, n, horizon, run_seed),
        busy=busy,
        transfers=transfers,
        profiles=Profiles(cal.shuffle_profiles, run_seed) if transfers else None,
        busy_service=with_delays(cal.busy_service(run_seed), contention.delay, run_seed),
        replay=Replay(cal, mode.value, run_seed) if replay else None,
        seed=run_seed,
        admission_limit=scenario.admission_limit,
    )
