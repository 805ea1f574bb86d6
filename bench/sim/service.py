"""Service-time distributions of simulated instances, and the calibration they come from.

A *calibration* is what ``parm bench calibrate`` measured on this machine's real
instances (``bench.sim.calibrate``): round-trip times of one padded model container
over the frontend's own transport, idle and while it takes part in a network shuffle,
the durations of those transfers, and the fixed overhead the client and frontend add on
top.  The simulator draws task times from the measured round trips (bootstrap: each
draw is one measured sample), so a simulated instance has exactly the real one's
spread, timer granularity included.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.sim.engine import Sampler

#: the calibration measured on the development machine (see bench/RESULTS.md)
Floats = npt.NDArray[np.float64]
DEFAULT_CALIBRATION = Path(__file__).with_name("calibration.json")


def constant(seconds: float) -> Sampler:
    def draw(n: int) -> Floats:
        return np.full(n, seconds)

    return draw


def exponential(mean_s: float, seed: int, shift_s: float = 0.0) -> Sampler:
    rng = np.random.default_rng(seed)

    def draw(n: int) -> Floats:
        return shift_s + rng.exponential(mean_s, n)

    return draw


def empirical(samples_s: Sequence[float], seed: int, scale: float = 1.0) -> Sampler:
    """Bootstrap: each draw is one of ``samples_s`` (times ``scale``), uniformly."""
    pool = np.asarray(samples_s, dtype=np.float64) * scale
    if not pool.size:
        raise ValueError("an empirical distribution needs at least one sample")
    rng = np.random.default_rng(seed)

    def draw(n: int) -> Floats:
        return pool[rng.integers(0, pool.size, n)]

    return draw


@dataclass(frozen=True)
class Calibration:
    """Measured on real instances; everything the simulator needs to mimic them."""

    service_time_ms: float  # the padding the instances were given
    rtt_ms: tuple[float, ...]  # frontend-transport round trips of an idle instance
    overhead_ms: float  # client latency minus instance round trip, at no load
    shuffle_rtt_ms: tuple[float, ...] = ()  # round trips while in a shuffle transfer
    shuffle_transfer_s: tuple[float, ...] = ()  # durations of real shuffle transfers
    #: busy round trips by transfer: (index into shuffle_transfer_s, side 0 sending /
    #: 1 receiving, seconds into the transfer when sent, round trip ms)
    shuffle_profiles: tuple[tuple[int, int, float, float], ...] = ()
    #: per mode: (seconds since the recording began, round trip ms, busy 0/1), in order
    traces: dict[str, tuple[tuple[float, float, int], ...]] = field(default_factory=dict)
    #: per mode: the recorded run's client figures (p50_ms, p99_ms, p999_ms)
    real: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def service(self, seed: int) -> Sampler:
        """Task times of an idle instance: the measured round trips."""
        return empirical([ms / 1000 for ms in self.rtt_ms], seed)

    def busy_service(self, seed: int) -> Sampler:
        """Task times during a shuffle transfer (idle ones if none were measured)."""
        samples = self.shuffle_rtt_ms or self.rtt_ms
        return empirical([ms / 1000 for ms in samples], seed + 1)

    @staticmethod
    def pooled(cals: Sequence[Calibration]) -> Calibration:
        """Several recordings of one setup as one: their samples and transfers together.

        A recording holds a few dozen transfers; pooling recordings steadies what the
        simulator draws (the slow stretch of a transfer differs from one to the next).
        The overhead is the recordings' mean; traces and real figures are the first's.
        """
        if not cals:
            raise ValueError("pooling needs at least one calibration")
        first = cals[0]
        profiles: list[tuple[int, int, float, float]] = []
        durations: list[float] = []
        for cal in cals:
            if cal.service_time_ms != first.service_time_ms:
                raise ValueError(
                    f"recordings padded to {first.service_time_ms:g} and "
                    f"{cal.service_time_ms:g} ms cannot be pooled"
                )
            offset = len(durations)
            profiles += [(j + offset, side, t, ms) for j, side, t, ms in cal.shuffle_profiles]
            durations += cal.shuffle_transfer_s
        commands = [cal.notes.get("command", "?") for cal in cals]
        return replace(
            first,
            rtt_ms=tuple(ms for cal in cals for ms in cal.rtt_ms),
            overhead_ms=float(np.mean([cal.overhead_ms for cal in cals])),
            shuffle_rtt_ms=tuple(ms for cal in cals for ms in cal.shuffle_rtt_ms),
            shuffle_transfer_s=tuple(durations),
            shuffle_profiles=tuple(profiles),
            notes={**first.notes, "command": " + ".join(commands), "pooled": str(len(cals))},
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), separators=(",", ":")))

    @staticmethod
    def load(path: Path) -> Calibration:
        doc = json.loads(path.read_text())
        for key in ("rtt_ms", "shuffle_rtt_ms", "shuffle_transfer_s"):
            doc[key] = tuple(doc.get(key, ()))
        doc["shuffle_profiles"] = tuple(tuple(row) for row in doc.get("shuffle_profiles", ()))
        doc["traces"] = {
            mode: tuple(tuple(row) for row in rows) for mode, rows in doc.get("traces", {}).items()
        }
        return Calibration(**doc)


class Replay:
    """Task times replayed from a recorded trace by time, busy and idle apart.

    A task starting at simulated time t takes the round trip of one of the ``spread``
    recorded tasks sent nearest to t (modulo the recording's length) with the same busy
    state: tasks that overlap in simulated time draw from moments that overlapped in
    the real run, so a moment when the whole machine was slow is slow for all of them.
    """

    def __init__(self, cal: Calibration, mode: str, seed: int, spread: int = 4) -> None:
        trace = cal.traces.get(mode) or cal.traces.get("equal-resources")
        if not trace:
            raise ValueError(f"this calibration has no trace to replay for {mode}")
        self.period = trace[-1][0] + 1e-3
        self.spread = spread
        self._rng = np.random.default_rng([seed, 0x7ACE])
        self._times: dict[bool, list[float]] = {}
        self._rtts: dict[bool, list[float]] = {}
        for busy in (False, True):
            rows = [r for r in trace if bool(r[2]) is busy] or list(trace)
            self._times[busy] = [r[0] for r in rows]
            self._rtts[busy] = [r[1] / 1000 for r in rows]

    def draw(self, t: float, busy: bool) -> float:
        times, rtts = self._times[busy], self._rtts[busy]
        i = bisect.bisect_left(times, t % self.period)
        lo = max(0, i - self.spread // 2)
        hi = min(len(times), lo + self.spread)
        return rtts[int(self._rng.integers(lo, max(hi, lo + 1)))]


class Profiles:
    """Busy round trips replayed by transfer: what a task sent t seconds into it took.

    Rows come from `Calibration.shuffle_profiles`.  ``draw(transfer, side, t)`` picks one
    of the two recorded tasks of that transfer and side sent nearest to ``t`` (at
    random), so a simulated transfer is slow when and for as long as the real one was.
    """

    def __init__(self, rows: Sequence[tuple[int, int, float, float]], seed: int) -> None:
        self._phases: dict[tuple[int, int], list[float]] = {}
        self._rtts: dict[tuple[int, int], list[float]] = {}
        for transfer, side, phase, rtt_ms in sorted(rows):
            key = (int(transfer), int(side))
            self._phases.setdefault(key, []).append(phase)
            self._rtts.setdefault(key, []).append(rtt_ms / 1000)
        self._rng = np.random.default_rng([seed, 0x9F0])

    @property
    def transfers(self) -> list[int]:
        """The recorded transfers with a task on both sides."""
        sides: dict[int, int] = {}
        for transfer, _ in self._phases:
            sides[transfer] = sides.get(transfer, 0) + 1
        return sorted(t for t, count in sides.items() if count == 2)

    def draw(self, transfer: int, side: int, phase: float) -> float | None:
        """A round trip in seconds; None if that side of the transfer had no tasks."""
        phases = self._phases.get((transfer, side))
        if not phases:
            return None
        i = bisect.bisect_left(phases, phase)
        lo, hi = max(0, i - 1), min(len(phases) - 1, i)
        return self._rtts[(transfer, side)][int(self._rng.integers(lo, hi + 1))]


def summary(cal: Calibration) -> str:
    rtt = np.asarray(cal.rtt_ms)
    p50, p99 = np.percentile(rtt, [50, 99])
    line = (
        f"instance round trip (padded to {cal.service_time_ms:g} ms): p50 {p50:.2f} ms, "
        f"p99 {p99:.2f} ms over {rtt.size} samples; client+frontend overhead "
        f"{cal.overhead_ms:.2f} ms"
    )
    if cal.shuffle_rtt_ms:
        busy50, busy99 = np.percentile(cal.shuffle_rtt_ms, [50, 99])
        line += (
            f"; during a shuffle transfer the round trip is p50 {busy50:.2f} ms, p99 "
            f"{busy99:.2f} ms, and transfers last {np.median(cal.shuffle_transfer_s):.2f} s "
            "(median)"
        )
    return line
