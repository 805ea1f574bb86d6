"""Decode grace in the coordinator: originals first, reconstructions only when late.

Virtual time throughout: every event carries ``now``; the coordinator's ``SetTimer``
says when the next ``Tick`` is due.  With k=2, 2 data and 1 parity instance: queries 1
and 2 become data tasks 0 (data-0) and 1 (data-1), sent at t=0, and parity task 2
(parity-0).
"""

from __future__ import annotations

from typing import Any

import pytest

from frontend.events import (
    Answer,
    ErrorKind,
    Fail,
    GraceEnded,
    InstanceDown,
    InstanceUp,
    LateOriginal,
    QueryAbandoned,
    QueryArrived,
    Reconstruct,
    SetTimer,
    Source,
    TaskCompleted,
    TaskFailed,
    Tick,
)
from frontend.grace import Grace, GraceEstimator
from tests.frontend.test_core import Harness, only, two_parities

GRACE = 0.005


def ended(actions: list[Any]) -> tuple[Any, ...]:
    """The one GraceEnded among ``actions``, as (task_id, waited, source)."""
    (grace,) = only(actions, GraceEnded)
    return grace.task_id, grace.waited, grace.source


def _straggling(h: Harness, deadline: float = 1.0) -> None:
    """Queries 1 and 2 sent at t=0; data-1 and the parity answer at t=1 ms."""
    h.query(1, deadline=deadline)
    h.query(2, deadline=1.0)
    h.now = 0.001
    h.done(1, "data-1", "out2")


def test_an_original_within_grace_is_answered_and_the_reconstruction_dropped() -> None:
    h = Harness(k=2, decode_grace=GRACE)
    _straggling(h)
    held = h.done(2, "parity-0", "par")
    assert only(held, Reconstruct) == [] and only(held, Answer) == []
    assert SetTimer(GRACE) in held  # due 5 ms after data-0's send at t=0
    h.now = 0.004
    actions = h.done(0, "data-0", "orig")
    assert only(actions, Answer) == [Answer(1, Source.ORIGINAL, "orig", 0)]
    assert ended(actions) == (0, pytest.approx(0.003), Source.ORIGINAL)
    assert only(actions, LateOriginal) == []
    assert only(h.feed(Tick(), at=GRACE), Reconstruct) == []  # nothing left to release


def test_a_late_original_is_reconstructed_at_the_grace_boundary() -> None:
    h = Harness(k=2, decode_grace=GRACE)
    _straggling(h)
    h.done(2, "parity-0", "par")
    assert only(h.feed(Tick(), at=GRACE - 1e-6), Reconstruct) == []  # an early timer: no
    actions = h.feed(Tick(), at=GRACE)
    assert only(actions, Reconstruct) == [
        Reconstruct(0, 0, ("par",), (None, "out2"), (1, 1), ((1, 0),), (0,), 0)
    ]
    assert ended(actions) == (0, pytest.approx(GRACE - 0.001), Source.RECONSTRUCTED)
    # the original, when it comes, is handed back for the live check, never answered
    assert h.done(0, "data-0", "late") == [LateOriginal(0, "late", ((1, 0),))]


def test_a_deadline_before_the_grace_ends_answers_the_reconstruction_at_the_deadline() -> None:
    h = Harness(k=2, decode_grace=0.050)
    _straggling(h, deadline=0.010)
    h.done(2, "parity-0", "par")
    actions = h.feed(Tick(), at=0.010)
    assert [type(a) for a in actions if not isinstance(a, SetTimer)] == [GraceEnded, Reconstruct]
    assert only(actions, Reconstruct)[0].answers == ((1, 0),)


def test_a_held_query_that_requires_the_original_gets_its_deadline_error() -> None:
    h = Harness(k=2, decode_grace=0.050)
    h.query(1, deadline=0.010, require_original=True)
    h.query(2, deadline=1.0)
    h.now = 0.001
    h.done(1, "data-1", "out2")
    h.done(2, "parity-0", "par")
    actions = h.feed(Tick(), at=0.010)
    assert only(actions, Fail)[0].error is ErrorKind.DEADLINE_EXCEEDED
    assert only(actions, Reconstruct) == []


@pytest.mark.parametrize(
    "event", [TaskFailed(0, "data-0", "boom"), InstanceDown("data-0")], ids=["failed", "down"]
)
def test_a_held_task_that_fails_is_reconstructed_at_once(event: object) -> None:
    h = Harness(k=2, decode_grace=GRACE)
    _straggling(h)
    h.done(2, "parity-0", "par")
    actions = h.feed(event, at=0.002)  # type: ignore[arg-type]
    assert only(actions, Reconstruct)[0].answers == ((1, 0),)
    assert ended(actions) == (0, pytest.approx(0.001), Source.RECONSTRUCTED)


def test_eager_grace_reconstructs_at_once_and_never_holds() -> None:
    h = Harness(k=2, decode_grace=0.0)
    _straggling(h)
    actions = h.done(2, "parity-0", "par")
    assert only(actions, Reconstruct)[0].answers == ((1, 0),)
    assert only(actions, GraceEnded) == []


def _queued_behind(h: Harness) -> list[Any]:
    """Only data-1 is up: task 1 waits in the queue while task 0 runs; the parity comes
    at 1 ms; task 0's answer at 2 ms makes task 1 decodable while still queued."""
    for name in ("data-1", "parity-0"):
        h.feed(InstanceUp(name))
    h.query(1, deadline=1.0)  # task 0 -> data-1 at t=0
    h.query(2, deadline=1.0)  # task 1 queued; the group closes: parity task 2
    h.now = 0.001
    h.done(2, "parity-0", "par")  # two outputs missing, one parity: nothing to decode
    h.now = 0.002
    return h.done(0, "data-1", "out1")  # frees data-1, which takes task 1 at once


def test_a_queued_task_is_held_until_sent_and_due_a_grace_after_its_send() -> None:
    """A loaded cluster is not a slow one: waiting in the frontend's queue is not late."""
    h = Harness(k=2, decode_grace=GRACE, up=False)
    actions = _queued_behind(h)
    assert SetTimer(0.002 + GRACE) in actions  # set when task 1 was sent, at 2 ms
    assert only(actions, Reconstruct) == []
    assert only(h.feed(Tick(), at=0.002 + GRACE), Reconstruct)[0].answers == ((2, 0),)


def test_eager_grace_decodes_a_queued_task_at_once() -> None:
    h = Harness(k=2, decode_grace=0.0, up=False)
    actions = _queued_behind(h)
    assert only(actions, Reconstruct)[0].answers == ((2, 0),)


def test_a_held_reconstruction_nobody_waits_for_is_not_answered() -> None:
    h = Harness(k=2, decode_grace=GRACE)
    _straggling(h)
    h.done(2, "parity-0", "par")
    h.feed(QueryAbandoned(1))
    actions = h.feed(Tick(), at=GRACE)
    assert only(actions, Reconstruct) == [] and only(actions, Answer) == []


def test_a_threshold_that_grew_while_held_holds_again() -> None:
    h = Harness(k=2, decode_grace=GRACE)
    _straggling(h)
    h.done(2, "parity-0", "par")
    h.core.grace.fixed = 0.010  # e.g. an auto threshold that learned a slower cluster
    actions = h.feed(Tick(), at=GRACE)
    assert only(actions, Reconstruct) == [] and SetTimer(0.010) in actions
    assert only(h.feed(Tick(), at=0.010), Reconstruct)[0].answers == ((1, 0),)


def test_auto_grace_learns_from_the_service_times_of_originals() -> None:
    estimator = GraceEstimator(min_samples=1, refresh=1, floor=0.0)
    h = Harness(k=2, decode_grace=None, grace=Grace(None, estimator))
    _straggling(h)  # data-1 answered 1 ms after its send
    assert h.core.grace.threshold == pytest.approx(0.001)
    actions = h.done(2, "parity-0", "par")  # data-0, sent at 0, is due at 1 ms: late now
    assert only(actions, Reconstruct)[0].answers == ((1, 0),)


def test_auto_is_the_coordinator_default_when_asked_for() -> None:
    h = Harness(k=2, decode_grace=None)
    assert h.core.grace.fixed is None and not h.core.grace.eager


def test_a_second_parity_does_not_hold_a_held_reconstruction_again() -> None:
    """k=2, r=2: one output missing is decodable with parity 0; parity 1 changes nothing."""
    core = two_parities(decode_grace=GRACE)
    core.handle(QueryArrived(1, "a", deadline=1.0), 0.0)
    core.handle(QueryArrived(2, "b", deadline=1.0), 0.0)
    core.handle(TaskCompleted(1, "data-1", "o2"), 0.001)
    assert SetTimer(GRACE) in core.handle(TaskCompleted(2, "parity-0", "p0"), 0.001)
    assert core.handle(TaskCompleted(3, "parity-1", "p1"), 0.002) == []
    actions = core.handle(Tick(), GRACE)
    assert only(actions, Reconstruct)[0].answers == ((1, 0),)
