"""The simulator's scenarios: the same contention for every mode, the tail it protects."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bench.contention import DelaySpec, parse_contention
from bench.sim.cli import result_row
from bench.sim.engine import Simulation
from bench.sim.scenarios import SCENARIOS, episodes_for, setup_for, shuffles_for, with_delays
from bench.sim.service import Calibration, constant
from frontend.events import Mode
from tests.bench.sim.calibrations import CAL


@pytest.mark.parametrize("scenario", ["local", "papers", "scale", "netns"])
def test_every_mode_of_a_run_meets_the_same_contention(scenario):
    sc = SCENARIOS[scenario]
    coded = setup_for(sc, 2, Mode.CODED, sc.rates[0], 0, CAL, seed=1, queries=1000)
    er = setup_for(sc, 2, Mode.EQUAL_RESOURCES, sc.rates[0], 0, CAL, seed=1, queries=1000)
    assert coded.timelines == er.timelines and coded.busy == er.busy
    assert coded.data + coded.parity == 3 * sc.groups
    assert len(coded.busy) == 3 * sc.groups


def test_a_small_papers_run_protects_the_tail():
    sc = SCENARIOS["papers"]
    heavy = Calibration(10.0, CAL.rtt_ms, 1.5, (12.0, 15.0, 20.0, 40.0, 90.0, 150.0), (0.5, 1.0))
    rows = {}
    for mode in (Mode.CODED, Mode.EQUAL_RESOURCES):
        setup = setup_for(sc, 2, mode, 390.0, 0, heavy, seed=0, queries=20_000)
        rows[mode] = result_row(Simulation(setup).run())
    assert rows[Mode.CODED]["p999_ms"] < rows[Mode.EQUAL_RESOURCES]["p999_ms"]
    assert rows[Mode.CODED]["sources"]["reconstructed"] > 0


def test_injected_delays_lengthen_some_tasks():
    draws = with_delays(constant(0.01), DelaySpec(prob=0.1, mean_ms=20.0), seed=0)(10_000)
    assert draws.min() == 0.01
    assert 0.05 < float(np.mean(draws > 0.01)) < 0.15


def test_constant_delays_add_exactly_their_mean():
    spec = DelaySpec(prob=1.0, mean_ms=20.0, dist="const")
    assert with_delays(constant(0.01), spec, seed=0)(5).tolist() == pytest.approx([0.03] * 5)
    assert with_delays(constant(0.01), None, seed=0)(2).tolist() == [0.01, 0.01]


def test_pauses_stop_and_cpu_hogs_share_a_core():
    contention = parse_contention("pause:rate=50+cpu:rate=50,hogs=3")
    speeds = {s for tl in episodes_for(contention, 4, 10.0, seed=0) for s in tl.speeds}
    assert 0.0 in speeds and 0.25 in speeds  # a pause; 1 / (1 + 3 hogs)
    assert episodes_for(parse_contention("none"), 4, 10.0, seed=0) == []


def test_shuffles_without_measured_transfers_take_the_link_rate():
    contention = parse_contention("shuffle:concurrency=1,min_mb=125,max_mb=125")
    busy, named = shuffles_for(contention, 4, Calibration(10.0, (10.0,), 1.0), 0.05, seed=0)
    spans = [(w.starts, w.ends) for w in busy if w.starts]
    assert len(spans) == 2  # one transfer, two instances, for 1 Gbit at 10 Gbit/s
    assert all(starts == [0.0] and ends == pytest.approx([0.1]) for starts, ends in spans)
    assert named == []  # nothing recorded to replay
    assert shuffles_for(parse_contention("pause"), 2, CAL, 50.0, seed=0) == ([], [])


#: two recorded transfers (1.0 and 2.0 s): the sender slow for its first 0.3 s
PROFILED = Calibration(
    10.0, (10.0,), 1.0, (20.0,), (1.0, 2.0),
    shuffle_profiles=(
        (0, 0, 0.1, 50.0), (0, 0, 0.5, 10.0), (0, 1, 0.2, 11.0),
        (1, 0, 0.2, 50.0), (1, 0, 1.5, 10.0), (1, 1, 0.4, 12.0),
    ),
)  # fmt: skip


def test_with_recorded_transfers_each_simulated_one_replays_one_of_them():
    contention = parse_contention("shuffle:concurrency=1")
    busy, named = shuffles_for(contention, 4, PROFILED, 10.0, seed=3)
    assert len(busy) == len(named) == 4
    for windows_, t in zip(busy, named, strict=True):
        for start, end, j in zip(t.starts, t.ends, t.transfers, strict=True):
            assert end - start == pytest.approx(PROFILED.shuffle_transfer_s[j])
            assert windows_.covers(start)
    sides = sorted(side for t in named for side in t.sides)
    assert sides.count(0) == sides.count(1) > 3  # a sender and a receiver each time


def test_a_busy_task_takes_what_a_task_as_far_into_the_real_transfer_took():
    sc = dataclasses.replace(SCENARIOS["netns"], groups=1)
    setup = setup_for(sc, 2, Mode.EQUAL_RESOURCES, 5.0, 0, PROFILED, seed=2, queries=400)
    assert setup.profiles is not None and setup.transfers
    latency_ms = Simulation(setup).run().latency_s * 1000 - PROFILED.overhead_ms
    assert set(np.round(latency_ms).astype(int)) <= {10, 11, 12, 50}  # recorded, no other
    assert (np.round(latency_ms) == 50).any()  # the senders' slow start was replayed


def test_the_netns_scenario_mimics_the_study_at_k2_in_simulated_time():
    sc = SCENARIOS["netns"]
    assert (sc.groups, sc.rates, sc.contention) == (
        2,
        (120.0, 220.0, 320.0),
        "shuffle:concurrency=1",
    )
    assert sc.calibration.name == "calibration-netns.json"
    # the real front door refuses calls past 32 in flight on the client's connection
    assert setup_for(sc, 2, Mode.CODED, 120.0, 0, CAL, seed=0).admission_limit == 32
    assert setup_for(SCENARIOS["papers"], 2, Mode.CODED, 150.0, 0, CAL, 0).admission_limit is None
    # a host whose link carries a transfer answers late (its link queue), as measured there
    links = Calibration(10.0, CAL.rtt_ms, 1.5, (15.0, 40.0, 80.0, 110.0), (0.4, 0.8))
    rows = {}
    for mode, grace in ((Mode.CODED, 0.0), (Mode.EQUAL_RESOURCES, 0.0), (Mode.HEDGE, 0.0)):
        setup = setup_for(sc, 2, mode, 120.0, 0, links, seed=0, queries=6_000)
        rows[mode] = result_row(Simulation(dataclasses.replace(setup, decode_grace=grace)).run())
    coded, er, hedge = rows[Mode.CODED], rows[Mode.EQUAL_RESOURCES], rows[Mode.HEDGE]
    assert coded["p999_ms"] < er["p999_ms"] and hedge["p999_ms"] < er["p999_ms"]
    assert coded["extra_load"] == pytest.approx(0.5, abs=0.05)  # one parity per k=2 queries
    assert 0 < hedge["extra_load"] < 0.2 and er["extra_load"] == 0


def test_the_netns_scenario_ships_a_calibration_recorded_on_netns_hosts():
    cal = Calibration.load(SCENARIOS["netns"].calibration)
    assert "netns host" in cal.notes["configuration"]
    assert cal.shuffle_rtt_ms and cal.shuffle_transfer_s  # the links' slow moments, measured
    assert {"coded", "coded, grace=0", "equal-resources", "hedge"} <= set(cal.real)
