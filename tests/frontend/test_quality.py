"""The live check of reconstructions against late originals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from frontend.quality import Comparison, QualityWatch, compare


@pytest.mark.parametrize(
    ("decoded", "original", "agree", "error"),
    [
        ([0.1, 0.9, 0.0], [0.2, 0.8, 0.0], True, math.hypot(0.1, 0.1) / math.hypot(0.2, 0.8)),
        ([0.9, 0.1, 0.0], [0.2, 0.8, 0.0], False, math.hypot(0.7, 0.7) / math.hypot(0.2, 0.8)),
        ([1.0], [1.05], True, 0.05 / 1.05),  # one value: agreement means within 10%
        ([1.0], [2.0], False, 0.5),
        ([0.0, 0.0], [0.0, 0.0], True, 0.0),
        ([0.0, 1.0], [0.0, 0.0], False, math.inf),
    ],
)
def test_compare(decoded: list[float], original: list[float], agree: bool, error: float) -> None:
    c = compare(np.array(decoded), np.array(original))
    assert c.agree is agree
    assert c.relative_error == pytest.approx(error)


def test_a_late_original_is_compared_row_by_row_and_only_once() -> None:
    watch = QualityWatch()
    watch.remember(7, {1: np.array([0.0, 1.0]), 0: np.array([1.0, 0.0])})
    original = np.array([[0.9, 0.1], [0.8, 0.2]])  # row 1 disagrees
    assert [c.agree for c in watch.check(7, original)] == [True, False]
    assert watch.check(7, original) == []  # once
    assert watch.check(99, original) == []  # never reconstructed
    assert watch.pending == 0


def test_waiting_reconstructions_are_bounded() -> None:
    watch = QualityWatch(capacity=2)
    for task in range(3):
        watch.remember(task, {0: np.zeros(2)})
    assert watch.pending == 2
    assert watch.check(0, np.zeros((1, 2))) == []  # the oldest was dropped


def test_warning_when_agreement_falls_below_the_level_rate_limited() -> None:
    watch = QualityWatch(level=0.9, window=10, min_checks=10, warn_every=60.0)
    agree, disagree = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    for task in range(10):
        watch.remember(task, {0: np.array([1.0, 0.0])})
        assert not watch.should_warn(float(task))  # too few checks yet, or all agree
        watch.check(task, agree if task < 8 else disagree)
    assert watch.agreement == pytest.approx(0.8)
    assert watch.should_warn(100.0)
    assert not watch.should_warn(130.0)  # within a minute of the last warning
    assert watch.should_warn(161.0)


def test_no_warning_while_agreement_holds() -> None:
    watch = QualityWatch(level=0.5, window=4, min_checks=2)
    for task in range(4):
        watch.remember(task, {0: np.array([1.0, 0.0])})
        watch.check(task, np.array([[1.0, 0.0]]))
    assert watch.agreement == 1.0 and not watch.should_warn(0.0)


def test_a_bad_level_is_refused() -> None:
    with pytest.raises(ValueError, match="agreement level: expected a fraction in"):
        QualityWatch(level=1.5)


def test_comparison_is_a_value() -> None:
    assert Comparison(True, 0.0) == Comparison(True, 0.0)
