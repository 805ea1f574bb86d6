"""Hedge mode in the coordinator ("The Tail at Scale"): a backup copy once the first
has run past the hedge delay, the first answer wins, the loser is cancelled if queued.

Virtual time throughout.  Hedge mode serves from one pool of data instances (the parity
instances join it, as in equal-resources); each query is its own data task.
"""

from __future__ import annotations

from typing import Any

import pytest

from frontend.events import (
    Answer,
    Cancelled,
    CoreConfig,
    ErrorKind,
    Fail,
    Hedged,
    InstanceDown,
    Mode,
    PoolKind,
    SetTimer,
    Source,
    TaskFailed,
    Tick,
)
from frontend.grace import HEDGE_QUANTILE, Grace
from tests.frontend.test_core import Harness, only, sends

DELAY = 0.125  # exact in binary: times compare equal


def hedging(n_data: int = 2, delay: float | None = DELAY, **cfg: Any) -> Harness:
    return Harness(mode=Mode.HEDGE, n_data=n_data, n_parity=0, hedge_delay=delay, **cfg)


def test_a_backup_goes_to_another_instance_after_the_delay_and_the_first_answer_wins() -> None:
    h = hedging()
    actions = h.query(1)
    assert sends(actions) == [("data", 0, "data-0")]
    assert SetTimer(DELAY) in actions
    early = h.feed(Tick(), at=DELAY / 2)  # an early tick: nothing due yet
    assert only(early, Hedged) == [] and sends(early) == []
    actions = h.feed(Tick(), at=DELAY)
    assert only(actions, Hedged) == [Hedged(0, 1, DELAY)]
    assert sends(actions) == [("data", 1, "data-1")]
    actions = h.done(1, "data-1", "backup")
    assert only(actions, Answer) == [Answer(1, Source.ORIGINAL, "backup", 0)]
    assert h.done(0, "data-0", "first") == []  # the loser's answer is dropped
    assert h.core.outstanding == 0


def test_an_answer_before_the_delay_sends_no_backup() -> None:
    h = hedging()
    h.query(1)
    assert only(h.done(0, "data-0", "y"), Answer) == [Answer(1, Source.ORIGINAL, "y", 0)]
    actions = h.feed(Tick(), at=DELAY)
    assert only(actions, Hedged) == [] and sends(actions) == []


def test_a_queued_backup_is_cancelled_when_the_first_copy_answers() -> None:
    h = hedging(n_data=2)
    h.query(1)
    h.query(2)  # both instances busy: query 1's backup must wait in the queue
    actions = h.feed(Tick(), at=DELAY)
    assert [a.task_id for a in only(actions, Hedged)] == [0, 1]
    assert sends(actions) == [] and h.core.queue_depth(PoolKind.DATA) == 2
    actions = h.done(0, "data-0", "y")
    assert only(actions, Answer) == [Answer(1, Source.ORIGINAL, "y", 0)]
    # query 1's backup is cancelled; query 2's backup takes the free instance (data-0)
    assert only(actions, Cancelled)[0].task_id == 2
    assert sends(actions) == [("data", 3, "data-0")]


def test_the_backup_never_shares_the_first_copys_instance() -> None:
    h = hedging(n_data=2)
    h.feed(InstanceDown("data-1"))
    h.query(1)
    h.feed(Tick(), at=DELAY)
    assert h.core.queue_depth(PoolKind.DATA) == 1  # data-0 is busy with the first copy


def test_a_failed_copy_leaves_the_other_to_carry_on() -> None:
    h = hedging()
    h.query(1)
    h.feed(Tick(), at=DELAY)
    assert h.feed(TaskFailed(0, "data-0")) == []  # the backup is running
    actions = h.done(1, "data-1", "y")
    assert only(actions, Answer) == [Answer(1, Source.ORIGINAL, "y", 0)]


def test_a_retried_first_copy_is_hedged_from_its_new_send() -> None:
    h = hedging(n_data=1)
    h.query(1)
    actions = h.feed(TaskFailed(0, "data-0"), at=DELAY / 2)  # re-sent at once
    assert sends(actions) == [("data", 0, "data-0")]
    actions = h.feed(Tick(), at=DELAY)  # the first send's timer: not due any more
    assert only(actions, Hedged) == []
    actions = h.feed(Tick(), at=DELAY * 1.5)
    assert only(actions, Hedged) == [Hedged(0, 1, DELAY)]


def test_a_task_requeued_by_its_instance_going_down_is_not_hedged() -> None:
    h = hedging(n_data=1)
    h.query(1)
    h.feed(InstanceDown("data-0"))  # back in the queue, waiting for an instance
    assert only(h.feed(Tick(), at=DELAY), Hedged) == []
    assert h.core.queue_depth(PoolKind.DATA) == 1


def test_a_query_answered_at_its_deadline_is_not_hedged() -> None:
    h = hedging()
    h.query(1, deadline=DELAY)
    actions = h.feed(Tick(), at=DELAY)
    assert only(actions, Fail)[0].error is ErrorKind.DEADLINE_EXCEEDED
    assert only(actions, Hedged) == [] and sends(actions) == []


def test_auto_delay_is_the_robust_p95_of_service_times() -> None:
    h = hedging(n_data=2, delay=None)
    assert h.core.hedge is not None
    hedge: Grace = h.core.hedge
    assert hedge.fixed is None and hedge.estimator._quantile == HEDGE_QUANTILE
    for q in range(64):  # service times 1..64 ms, all on time
        h.query(q)
        h.done(q, "data-0" if q % 2 == 0 else "data-1", "y")
        h.now += 0.001 * (q + 1)
    assert hedge.threshold > 0


@pytest.mark.parametrize("mode", [Mode.CODED, Mode.NONE, Mode.REPLICATE])
def test_other_modes_never_hedge(mode: Mode) -> None:
    h = Harness(mode=mode, n_data=2, n_parity=1)
    assert h.core.hedge is None
    h.query(1)
    h.query(2)
    assert only(h.feed(Tick(), at=1.0), Hedged) == []


def test_a_negative_hedge_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="hedge_delay must be >= 0"):
        CoreConfig(mode=Mode.HEDGE, hedge_delay=-1.0)
