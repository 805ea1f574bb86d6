"""Service-time distributions and the calibration they are drawn from."""

from __future__ import annotations

import numpy as np
import pytest

from bench.sim.service import (
    Calibration,
    Profiles,
    Replay,
    constant,
    empirical,
    exponential,
    summary,
)
from tests.bench.sim.calibrations import CAL


def test_empirical_draws_come_from_the_samples():
    draws = empirical([0.01, 0.02], seed=0)(1000)
    assert set(np.unique(draws)) == {0.01, 0.02}


def test_an_empirical_distribution_needs_a_sample():
    with pytest.raises(ValueError, match="at least one sample"):
        empirical([], seed=0)


def test_constant_and_shifted_exponential_draws():
    assert constant(0.25)(3).tolist() == [0.25, 0.25, 0.25]
    draws = exponential(0.01, seed=1, shift_s=0.002)(10_000)
    assert draws.min() >= 0.002
    assert np.array_equal(draws, exponential(0.01, seed=1, shift_s=0.002)(10_000))


def test_a_calibration_round_trips_through_json(tmp_path):
    path = tmp_path / "cal.json"
    CAL.save(path)
    assert Calibration.load(path) == CAL
    assert "during a shuffle transfer the round trip is p50 21.50 ms" in summary(CAL)
    assert CAL.busy_service(0)(100).min() == pytest.approx(0.0204)


def test_without_busy_samples_the_busy_service_draws_idle_times():
    idle_only = Calibration(10.0, (10.0, 12.0), 1.0)
    assert set(idle_only.busy_service(0)(100).tolist()) <= {0.010, 0.012}
    assert "shuffle" not in summary(idle_only)


TRACE = ((0.0, 10.0, 0), (0.1, 30.0, 1), (1.0, 11.0, 0), (1.1, 31.0, 1), (2.0, 12.0, 0))


@pytest.mark.parametrize(
    ("t", "busy", "allowed"),
    [(0.0, False, {0.010, 0.011}), (2.0, False, {0.011, 0.012}), (1.0, True, {0.030, 0.031})],
)
def test_replay_draws_a_recorded_round_trip_sent_near_that_time(t, busy, allowed):
    cal = Calibration(10.0, (10.0,), 1.0, traces={"coded": TRACE})
    replay = Replay(cal, "coded", seed=0, spread=2)
    assert {replay.draw(t, busy) for _ in range(50)} <= allowed


def test_replay_falls_back_to_equal_resources_and_needs_a_trace():
    cal = Calibration(10.0, (10.0,), 1.0, traces={"equal-resources": TRACE})
    assert Replay(cal, "coded", seed=0).period == pytest.approx(2.001)
    with pytest.raises(ValueError, match="no trace to replay for coded"):
        Replay(CAL, "coded", seed=0)


ROWS = (
    (0, 0, 0.10, 50.0), (0, 0, 0.20, 52.0), (0, 0, 0.90, 10.0), (0, 1, 0.3, 11.0), (1, 0, 0.1, 9.0),
)  # fmt: skip


@pytest.mark.parametrize(
    ("phase", "allowed"),
    [(0.0, {0.050}), (0.15, {0.050, 0.052}), (0.5, {0.052, 0.010}), (5.0, {0.010})],
)
def test_a_replayed_transfer_gives_a_round_trip_recorded_near_that_phase(phase, allowed):
    profiles = Profiles(ROWS, seed=1)
    assert {profiles.draw(0, 0, phase) for _ in range(40)} <= allowed


def test_only_transfers_seen_from_both_sides_are_replayed():
    profiles = Profiles(ROWS, seed=1)
    assert profiles.transfers == [0]  # transfer 1's receiver took no task
    assert profiles.draw(1, 1, 0.2) is None
    assert profiles.draw(1, 0, 0.2) == pytest.approx(0.009)


def test_recorded_transfers_round_trip_through_json(tmp_path):
    cal = Calibration(10.0, (10.0,), 1.0, (20.0,), (1.0, 2.0), shuffle_profiles=ROWS)
    cal.save(tmp_path / "cal.json")
    assert Calibration.load(tmp_path / "cal.json") == cal


def test_pooled_recordings_keep_every_sample_and_name_their_transfers_apart():
    one = Calibration(10.0, (10.0, 11.0), 1.0, (20.0,), (1.0, 2.0), shuffle_profiles=ROWS)
    two = Calibration(10.0, (12.0,), 3.0, (30.0,), (5.0,), shuffle_profiles=((0, 0, 0.1, 40.0),))
    pooled = Calibration.pooled([one, two])
    assert pooled.rtt_ms == (10.0, 11.0, 12.0) and pooled.shuffle_rtt_ms == (20.0, 30.0)
    assert pooled.shuffle_transfer_s == (1.0, 2.0, 5.0) and pooled.overhead_ms == 2.0
    assert pooled.shuffle_profiles[-1] == (2, 0, 0.1, 40.0)  # the second's transfer 0 is 2
    assert pooled.notes["pooled"] == "2"
    assert Calibration.pooled([one]).shuffle_profiles == one.shuffle_profiles


def test_only_recordings_of_one_padding_pool():
    with pytest.raises(ValueError, match="10 and 20 ms"):
        Calibration.pooled([Calibration(10.0, (10.0,), 1.0), Calibration(20.0, (20.0,), 1.0)])
    with pytest.raises(ValueError, match="at least one"):
        Calibration.pooled([])
