"""The decode-grace threshold: fixed, eager, or learned robustly from service times."""

from __future__ import annotations

import random

import pytest

from frontend.grace import FLOOR_S, WARMUP_S, Grace, GraceEstimator, robust_bound


def _stream(n: int, straggler_share: float, seed: int = 0) -> list[float]:
    """Healthy service times around 10 ms (+-1 ms), a share of them delayed by 300 ms."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        t = rng.gauss(0.010, 0.001)
        if rng.random() < straggler_share:
            t += 0.300
        out.append(t)
    return out


def test_warm_up_threshold_until_enough_samples() -> None:
    est = GraceEstimator(min_samples=32, refresh=16)
    for t in _stream(31, 0.0):
        est.observe(t)
    assert est.threshold == WARMUP_S
    est.observe(0.010)  # the 32nd sample: learned from now on
    assert est.threshold != WARMUP_S


@pytest.mark.parametrize("share", [0.0, 0.1, 0.3, 0.45])
def test_stragglers_do_not_inflate_the_learned_threshold(share: float) -> None:
    """With up to 45% of tasks 300 ms late, the threshold stays near the healthy tail."""
    est = GraceEstimator()
    for t in _stream(2000, share):
        est.observe(t)
    # the healthy instances' own p99.5 is 10 + 2.58 * 1 ms; the stragglers are at 310 ms
    assert 0.0115 < est.threshold < 0.0140, est.threshold


def test_a_mean_or_high_quantile_would_have_followed_the_stragglers() -> None:
    """Why the estimator is robust: the p95 of the same stream is a straggler's time."""
    samples = sorted(_stream(2000, 0.3))
    assert samples[int(0.95 * len(samples))] > 0.25


def test_the_floor_holds_for_a_very_tight_distribution() -> None:
    est = GraceEstimator()
    for _ in range(64):
        est.observe(0.0003)
    assert est.threshold == FLOOR_S


def test_the_estimate_is_refreshed_every_refresh_samples() -> None:
    est = GraceEstimator(min_samples=4, refresh=4, floor=0.0)
    for _ in range(4):
        est.observe(0.010)
    assert est.threshold == pytest.approx(0.010)
    for _ in range(3):
        est.observe(0.050)
    assert est.threshold == pytest.approx(0.010)  # not yet refreshed
    est.observe(0.050)
    assert est.threshold == pytest.approx(0.050)  # half at 50 ms: no longer outliers


def test_robust_bound_drops_gross_outliers_then_takes_the_quantile() -> None:
    samples = [float(x) for x in range(1, 101)] + [10_000.0] * 30
    # median 65.5, MAD 32.5: the cut at 65.5 + 2 * 32.5 = 130.5 drops the 10,000s
    assert robust_bound(samples, 2.0, 0.99) == 99.0
    assert robust_bound(samples, 2.0, 1.0) == 100.0
    assert robust_bound(samples, 2.0, 0.0) == 1.0


def test_a_coarse_clock_does_not_make_the_healthy_tail_outliers() -> None:
    """Times in whole milliseconds: the MAD is 0, the spread is a tenth of the median."""
    samples = [0.001] * 90 + [0.002] * 6 + [0.004] * 3 + [0.5]
    assert robust_bound(samples, 50.0, 0.99) == 0.004


def test_a_heavy_healthy_tail_is_measured_not_assumed() -> None:
    """Scheduler-stretched service times: about 1 ms, 4% stretched to 3-5 ms by a time
    slice.  Median + a few MADs would call those 4% late; the estimator measures them."""
    rng = random.Random(3)
    samples = [
        rng.uniform(0.003, 0.005) if rng.random() < 0.04 else 0.0008 + rng.expovariate(1 / 3e-4)
        for _ in range(512)
    ]
    est = GraceEstimator()
    for t in samples:
        est.observe(t)
    late = sum(t > est.threshold for t in samples) / len(samples)
    assert late <= 0.01 and est.threshold < 0.006, (late, est.threshold)


def test_when_most_instances_are_slowed_an_original_five_medians_long_is_late() -> None:
    """Shuffles congesting two thirds of the links: the median is a congested sample and
    the MAD is wide, so the 50-MAD cut keeps the TCP-retransmission stragglers (200-300
    ms); the cap at five medians calls them late all the same."""
    rng = random.Random(5)

    def draw() -> float:
        u = rng.random()
        if u < 0.03:
            return rng.uniform(0.2, 0.3)  # a retransmission timeout
        return rng.uniform(0.015, 0.06) if u < 0.7 else rng.uniform(0.010, 0.012)

    samples = [draw() for _ in range(512)]
    est = GraceEstimator()
    for t in samples:
        est.observe(t)
    median = sorted(samples)[256]
    assert robust_bound(samples, 50.0, 0.995) > 0.2  # the cut alone keeps them on time
    assert est.threshold == pytest.approx(5 * median, rel=0.05)
    assert all(t > est.threshold for t in samples if t >= 0.2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"min_samples": 0}, "min_samples"), ({"window": 8, "min_samples": 9}, "min_samples"),
     ({"refresh": 0}, "refresh")],
)  # fmt: skip
def test_bad_estimator_settings_are_refused(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GraceEstimator(**kwargs)


def test_fixed_grace_ignores_samples_and_auto_learns() -> None:
    fixed, auto = Grace(0.004), Grace(None, GraceEstimator(min_samples=1, refresh=1, floor=0))
    for g in (fixed, auto):
        g.observe(0.5)
    assert fixed.threshold == 0.004 and not fixed.eager
    assert auto.threshold == pytest.approx(0.5)
    assert Grace(0.0).eager


def test_negative_grace_is_refused() -> None:
    with pytest.raises(ValueError, match="decode grace: expected >= 0 seconds or auto, got -1"):
        Grace(-1.0)
