"""Admission's bookkeeping on its own: shares, the round robin, the service rate."""

from __future__ import annotations

import pytest

from frontend.admission import ACTIVE_S, Admission, RateMeter


def test_a_window_under_one_query_is_refused() -> None:
    with pytest.raises(ValueError, match="admission window: expected >= 1 queries, got 0"):
        Admission(8, window=0)


def test_departed_clients_give_their_share_back() -> None:
    admission: Admission[str] = Admission(8, window=2)
    assert admission.share("a", now=0.0) == 8
    assert admission.share("b", now=0.5) == 4
    assert admission.share("b", now=0.5 + ACTIVE_S) == 8  # a was last seen a period ago


def test_a_client_holding_rows_stays_active() -> None:
    admission: Admission[str] = Admission(8, window=2, per_client=3)
    admission.admit("a", "request", 2)
    assert admission.share("b", now=10.0) == 3  # the fixed cap: under the split of 4
    admission.finished("a", 1)
    assert admission.outstanding == 1
    admission.finished("a", 1)
    assert admission.outstanding == 0


def test_rows_go_round_robin_while_the_window_has_room() -> None:
    admission: Admission[str] = Admission(8, window=2)
    admission.admit("a", "a1", 2)
    admission.admit("a", "a2", 1)
    admission.admit("b", "b1", 1)
    assert admission.next_row(running=2) is None  # the coordinator's window is full
    taken = [admission.next_row(running=0) for _ in range(5)]
    assert taken == [("a1", 0), ("b1", 0), ("a1", 1), ("a2", 0), None]


def test_dropping_what_is_not_queued_drops_nothing() -> None:
    admission: Admission[str] = Admission(8, window=2)
    assert admission.drop("a", "x") == 0
    admission.admit("a", "a1", 2)
    admission.admit("a", "a2", 1)
    assert admission.drop("a", "x") == 0
    assert admission.drop("a", "a1") == 2
    assert admission.next_row(running=0) == ("a2", 0)
    assert admission.waiting == 0


def test_the_rate_is_a_moving_average_of_busy_windows() -> None:
    meter = RateMeter()
    meter.served(1, now=0.0, backlogged=True)  # starts a window
    meter.served(10, now=0.1, backlogged=True)
    assert meter.rate == pytest.approx(100.0)
    meter.served(40, now=0.2, backlogged=True)
    assert meter.rate == pytest.approx(0.3 * 400 + 0.7 * 100)
    meter.served(1, now=0.25, backlogged=False)  # idle: the window restarts
    meter.served(1, now=0.3, backlogged=True)
    meter.served(99, now=0.35, backlogged=True)  # under a window: not counted yet
    assert meter.rate == pytest.approx(190.0)
