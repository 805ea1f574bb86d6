"""The simulator's driver: closed-form queues, determinism, reconstruction, busy draws."""

from __future__ import annotations

import numpy as np
import pytest

from bench.sim.engine import (
    ORIGINAL,
    RECONSTRUCTED,
    Draws,
    SimResult,
    SimSetup,
    Simulation,
    pools,
)
from bench.sim.episodes import merge, poisson_episodes, windows
from bench.sim.service import constant, exponential
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


def test_hedge_mode_sends_backups_around_a_paused_instance_and_counts_them():
    pause = [[(0.0, 100.0, 0.0)], [], []]  # data-0 never answers
    setup = SimSetup(
        k=2, mode=Mode.HEDGE, data=2, parity=1, rate=20, queries=400,
        service=constant(0.01), timelines=merge(3, pause), hedge_delay=0.02,
    )  # fmt: skip
    result = Simulation(setup).run()
    assert (result.source == ORIGINAL).all()
    assert np.nanmax(result.latency_s) < 0.2  # a backup answers for what data-0 holds
    # data-0 takes one task and never gives it back: exactly one backup was needed
    assert result.stats == {"hedges": 1.0, "extra_load": pytest.approx(1 / 400)}


@pytest.mark.parametrize(("mode", "extra"), [(Mode.CODED, 0.5), (Mode.REPLICATE, 1.0)])
def test_extra_load_counts_every_instance_request_beyond_one_a_query(mode, extra):
    setup = SimSetup(
        k=2, mode=mode, data=2, parity=1, rate=20, queries=400, service=constant(0.001),
        group_timeout_s=1.0,  # groups fill: one parity per two queries
    )  # fmt: skip
    assert Simulation(setup).run().stats == {"extra_load": pytest.approx(extra)}


@pytest.mark.parametrize(("busy", "median"), [((0.0, 1000.0, 1.0), 0.05), ((0.0, 0.0, 1.0), 0.01)])
def test_tasks_started_in_a_busy_window_take_the_busy_draws(busy, median):
    setup = SimSetup(
        k=2, mode=Mode.NONE, data=1, parity=0, rate=2, queries=200,
        service=constant(0.01), busy=[windows([busy])], busy_service=constant(0.05),
    )  # fmt: skip
    assert np.median(Simulation(setup).run().latency_s) == pytest.approx(median)


def test_the_overhead_is_added_to_every_answer_and_warmup_is_cut():
    setup = SimSetup(
        k=2, mode=Mode.NONE, data=1, parity=0, rate=1, queries=50, warmup=7,
        service=constant(0.01), overhead_s=0.002,
    )  # fmt: skip
    result = Simulation(setup).run()
    assert result.latency_s.size == 50
    assert np.median(result.latency_s) == pytest.approx(0.012)


@pytest.mark.parametrize(
    ("mode", "data", "parity"),
    [
        (Mode.CODED, ["data-0", "data-1"], ["parity-0"]),
        (Mode.EQUAL_RESOURCES, ["data-0", "data-1", "parity-0"], []),
    ],
)
def test_pools_are_assigned_as_the_frontend_assigns_them(mode, data, parity):
    setup = SimSetup(k=2, mode=mode, data=2, parity=1, rate=1, queries=1, service=constant(1))
    data_pool, parity_pool = pools(setup)
    assert [s.name for s in data_pool] == data
    assert [s.name for s in parity_pool] == parity


def test_draws_come_in_the_samplers_order_across_refills():
    calls: list[int] = []

    def sampler(n: int) -> np.ndarray:
        calls.append(n)
        return np.arange(len(calls) * n, (len(calls) + 1) * n, dtype=np.float64)

    draws = Draws(sampler)
    first = [draws.next() for _ in range(65_537)]
    assert first[:2] == [65_536.0, 65_537.0]
    assert first[-1] == 2 * 65_536.0  # the second batch begins where the first ran out
    assert calls == [65_536, 65_536]


def test_an_admission_limit_refuses_what_an_overloaded_pool_cannot_hold():
    def overloaded(limit: int | None) -> SimResult:
        setup = SimSetup(
            k=2, mode=Mode.NONE, data=1, parity=0, rate=200, queries=400,
            service=constant(0.01), admission_limit=limit,
        )  # fmt: skip
        return Simulation(setup).run()

    unbounded, limited = overloaded(None), overloaded(4)
    assert unbounded.failed == 0 and np.nanmax(unbounded.latency_s) > 1.0  # queued
    assert limited.failed > 0 and np.nanmax(limited.latency_s) <= 4 * 0.01 + 1e-9
