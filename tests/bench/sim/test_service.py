"""Service-time distributions and the calibration they are drawn from."""

from __future__ import annotations

import numpy as np
import pytest

from bench.sim.service import Calibration, Replay, constant, empirical, exponential, summary
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
