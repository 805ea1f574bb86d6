"""Contention in simulated time: per-instance episodes of reduced speed.

An instance normally works at speed 1: a task that needs ``w`` seconds of service takes
``w`` seconds.  During an episode it works at ``speed`` < 1 (a shuffle or a CPU hog
slowing it) or not at all (``speed`` 0: a pause).  Overlapping episodes multiply, so two
transfers through one instance slow it twice over and a pause stops it whatever else
goes on.  The generators mirror the real injectors in ``bench.contention``, drawing the
same kinds of schedules: Poisson pause and CPU episodes, and ``concurrency`` shuffle
workers that keep transfers going between random pairs.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

Interval = tuple[float, float, float]  # (start, end, speed)


@dataclass
class Timeline:
    """Non-overlapping slow segments of one instance, in time order."""

    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    speeds: list[float] = field(default_factory=list)
    cursor: int = 0  # tasks on one instance start in time order: never look back

    def finish(self, start: float, work: float) -> float:
        """When a task that starts at ``start`` and needs ``work`` seconds ends."""
        ends, i, n = self.ends, self.cursor, len(self.ends)
        while i < n and ends[i] <= start:
            i += 1
        self.cursor = i
        t, left = start, work
        while i < n:
            seg_start = self.starts[i]
            if seg_start >= t + left:
                break
            if seg_start > t:
                left -= seg_start - t
                t = seg_start
            speed, span = self.speeds[i], ends[i] - t
            if speed > 0 and span * speed >= left:
                return t + left / speed
            left -= span * speed
            t = ends[i]
            i += 1
        return t + left


@dataclass
class Windows:
    """When one instance is busy with something (a transfer): merged intervals in order."""

    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    cursor: int = 0  # queried in time order: never look back

    def covers(self, t: float) -> bool:
        ends, i = self.ends, self.cursor
        while i < len(ends) and ends[i] <= t:
            i += 1
        self.cursor = i
        return i < len(ends) and self.starts[i] <= t


@dataclass
class Transfers:
    """One instance's part in shuffle transfers, by start: which recorded transfer each is.

    ``transfers[i]`` indexes the calibration's recorded transfers and ``sides[i]`` is
    this instance's side of it (``bench.contention.shuffle.SEND`` or ``RECEIVE``).
    """

    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    transfers: list[int] = field(default_factory=list)
    sides: list[int] = field(default_factory=list)
    cursor: int = 0  # queried in time order: transfers over before it never matter again

    def at(self, t: float) -> tuple[int, int, float] | None:
        """(recorded transfer, side, seconds into it) of the last one begun and not over."""
        starts, ends, i = self.starts, self.ends, self.cursor
        while i < len(ends) and ends[i] <= t:
            i += 1
        self.cursor = i
        hit = None
        while i < len(starts) and starts[i] <= t:
            if ends[i] > t:
                hit = i
            i += 1
        if hit is None:
            return None
        return self.transfers[hit], self.sides[hit], t - starts[hit]


def replayed_transfers(
    n: int,
    concurrency: int,
    recorded: Sequence[int],
    durations: Sequence[float],
    horizon: float,
    seed: int,
) -> list[Transfers]:
    """As `shuffle_episodes`, each transfer being one of the ``recorded`` ones, replayed.

    A transfer between random instances a (sending) and b (receiving) is a recorded
    transfer drawn from ``recorded`` (indices into ``durations``) and lasts as long.
    """
    rng = random.Random(seed)
    items: list[tuple[int, tuple[float, float, int, int]]] = []
    for _ in range(concurrency):
        t = 0.0
        while t < horizon:
            a, b = rng.sample(range(n), 2)
            j = rng.choice(recorded)
            d = durations[j]
            items += [(a, (t, t + d, j, 0)), (b, (t, t + d, j, 1))]
            t += d
    out = [Transfers() for _ in range(n)]
    for i, (start, end, j, side) in sorted(items, key=lambda item: item[1][0]):
        out[i].starts.append(start)
        out[i].ends.append(end)
        out[i].transfers.append(j)
        out[i].sides.append(side)
    return out


def windows(intervals: Sequence[Interval]) -> Windows:
    """The union of the intervals (their speeds are ignored)."""
    out = Windows()
    for start, end, _ in sorted(intervals):
        if out.ends and start <= out.ends[-1]:
            out.ends[-1] = max(out.ends[-1], end)
        else:
            out.starts.append(start)
            out.ends.append(end)
    return out


def timeline(intervals: Sequence[Interval]) -> Timeline:
    """Merge possibly overlapping intervals into segments whose speeds multiply."""
    edges = sorted([(s, 1, v) for s, _, v in intervals] + [(e, -1, v) for _, e, v in intervals])
    active: Counter[float] = Counter()
    out = Timeline()
    for j, (t, sign, v) in enumerate(edges):
        active[v] += sign
        if j + 1 < len(edges) and edges[j + 1][0] == t:
            continue  # apply every edge at this instant first
        speed = math.prod(s**c for s, c in active.items() if c)
        end = edges[j + 1][0] if j + 1 < len(edges) else t
        if speed == 1.0 or end <= t:
            continue
        if out.ends and out.ends[-1] == t and out.speeds[-1] == speed:
            out.ends[-1] = end  # extend the previous segment
        else:
            out.starts.append(t)
            out.ends.append(end)
            out.speeds.append(speed)
    return out


def _by_instance(n: int, items: list[tuple[int, Interval]]) -> list[list[Interval]]:
    per: list[list[Interval]] = [[] for _ in range(n)]
    for index, interval in items:
        per[index].append(interval)
    return per


def poisson_episodes(
    n: int, rate: float, min_s: float, max_s: float, speed: float, horizon: float, seed: int
) -> list[list[Interval]]:
    """Episodes at ``rate``/s over the cluster; each on a random instance not already in one."""
    rng = random.Random(seed)
    busy_until = [0.0] * n
    items: list[tuple[int, Interval]] = []
    t = rng.expovariate(rate)
    while t < horizon:
        duration = rng.uniform(min_s, max_s)
        free = [i for i in range(n) if busy_until[i] <= t]
        if free:
            i = rng.choice(free)
            busy_until[i] = t + duration
            items.append((i, (t, t + duration, speed)))
        t += rng.expovariate(rate)
    return _by_instance(n, items)


def shuffle_episodes(
    n: int,
    concurrency: int,
    durations: Sequence[float],
    speed: float,
    horizon: float,
    seed: int,
) -> list[list[Interval]]:
    """``concurrency`` workers, each moving transfers between random pairs back to back.

    A transfer's duration is drawn from ``durations`` (measured ones, or size over
    bandwidth); both of its instances run at ``speed`` meanwhile.
    """
    rng = random.Random(seed)
    items: list[tuple[int, Interval]] = []
    for _ in range(concurrency):
        t = 0.0
        while t < horizon:
            a, b = rng.sample(range(n), 2)
            d = rng.choice(durations)
            items += [(a, (t, t + d, speed)), (b, (t, t + d, speed))]
            t += d
    return _by_instance(n, items)


def merge(n: int, *sources: list[list[Interval]]) -> list[Timeline]:
    """One timeline per instance from every source of episodes."""
    return [timeline([iv for src in sources for iv in src[i]]) for i in range(n)]
