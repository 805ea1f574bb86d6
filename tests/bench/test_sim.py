"""The simulator: closed-form queues, determinism, contention episodes, the real coordinator."""

from __future__ import annotations

import numpy as np
import pytest

from bench.sim.engine import ORIGINAL, RECONSTRUCTED, SimSetup, Simulation
from bench.sim.episodes import (
    Timeline,
    merge,
    poisson_episodes,
    shuffle_episodes,
    timeline,
    windows,
)
from bench.sim.service import constant, empirical, exponential
from frontend.events import Mode

MU = 100.0  # services per second: 10 ms mean


def one_server(rate: float, service_kind: str, seed: int = 7, queries: int = 20_000) -> SimSetup:
    service = exponential(1 / MU, seed) if service_kind == "M" else constant(1 / MU)
    return SimSetup(
        k=2, mode=Mode.NONE, data=1, parity=0, rate=rate, queries=queries, warmup=1000,
        service=service, seed=seed,
    )  # fmt: skip


@pytest.mark.parametrize("rho", [0.3, 0.6])
@pytest.mark.parametrize(
    ("kind", "waiting"),
    [
        ("M", lambda rho: rho / (MU * (1 - rho))),  # M/M/1: Wq = rho / (mu - lambda)
        ("D", lambda rho: rho / (2 * MU * (1 - rho))),  # M/D/1: Pollaczek-Khinchine
    ],
)
def test_mean_waiting_time_matches_the_closed_form(rho, kind, waiting):
    result = Simulation(one_server(rho * MU, kind)).run()
    wait = result.latency_s.mean() - 1 / MU
    assert wait == pytest.approx(waiting(rho), rel=0.08)
    assert (result.source == ORIGINAL).all()


@pytest.mark.parametrize("mode", [Mode.CODED, Mode.EQUAL_RESOURCES, Mode.REPLICATE])
def test_a_fixed_seed_gives_the_same_run(mode):
    def run(seed: int) -> np.ndarray:
        setup = SimSetup(
            k=2, mode=mode, data=4, parity=2, rate=300, queries=3000,
            service=exponential(0.008, seed, shift_s=0.002), seed=seed,
            timelines=merge(6, poisson_episodes(6, 5, 0.05, 0.1, 0.0, 20.0, seed)),
        )  # fmt: skip
        return Simulation(setup).run().latency_s

    assert np.array_equal(run(1), run(1))
    assert not np.array_equal(run(1), run(2))


def test_coded_mode_reconstructs_around_a_paused_instance():
    pause = [[(0.0, 100.0, 0.0)], [], []]  # data-0 never answers
    setup = SimSetup(
        k=2, mode=Mode.CODED, data=2, parity=1, rate=20, queries=400,
        service=constant(0.01), timelines=merge(3, pause),
    )  # fmt: skip
    result = Simulation(setup).run()
    assert (result.source == RECONSTRUCTED).any()
    assert np.nanmax(result.latency_s) < 0.2  # nobody waits for the paused instance


@pytest.mark.parametrize(
    ("intervals", "start", "work", "end"),
    [
        ([], 1.0, 0.5, 1.5),
        ([(2.0, 3.0, 0.0)], 1.5, 1.0, 3.5),  # paused mid-task
        ([(2.0, 4.0, 0.5)], 2.0, 0.5, 3.0),  # half speed throughout
        ([(1.0, 3.0, 0.5), (2.0, 4.0, 0.5)], 1.0, 1.0, 3.5),  # overlaps multiply
        ([(0.0, 1.0, 0.0)], 2.0, 0.5, 2.5),  # episode already over
    ],
)
def test_a_task_is_stretched_by_the_episodes_it_meets(intervals, start, work, end):
    assert timeline(intervals).finish(start, work) == pytest.approx(end)


def test_timelines_merge_adjacent_equal_segments():
    merged = timeline([(0.0, 1.0, 0.5), (1.0, 2.0, 0.5)])
    assert (merged.starts, merged.ends, merged.speeds) == ([0.0], [2.0], [0.5])
    assert isinstance(merged, Timeline)


def test_shuffles_keep_their_concurrency_on_distinct_pairs():
    per = shuffle_episodes(10, 3, [0.5], 0.4, 5.0, seed=1)
    busy = sum(1 for ivs in per for s, e, _ in ivs if s <= 2.2 < e)
    assert busy == 6  # 3 transfers, 2 instances each


def test_empirical_draws_come_from_the_samples():
    draws = empirical([0.01, 0.02], seed=0)(1000)
    assert set(np.unique(draws)) == {0.01, 0.02}


@pytest.mark.parametrize(("busy", "median"), [((0.0, 1000.0, 1.0), 0.05), ((0.0, 0.0, 1.0), 0.01)])
def test_tasks_started_in_a_busy_window_take_the_busy_draws(busy, median):
    setup = SimSetup(
        k=2, mode=Mode.NONE, data=1, parity=0, rate=2, queries=200,
        service=constant(0.01), busy=[windows([busy])], busy_service=constant(0.05),
    )  # fmt: skip
    assert np.median(Simulation(setup).run().latency_s) == pytest.approx(median)


@pytest.mark.parametrize(("t", "covered"), [(0.5, False), (1.0, True), (2.5, True), (4.0, False)])
def test_busy_windows_merge_overlaps(t, covered):
    assert windows([(1.0, 2.0, 1.0), (1.5, 3.0, 1.0)]).covers(t) is covered
