"""The coding-group state machine, driven by events with a virtual clock."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from frontend.core import Coordinator
from frontend.events import (
    Action,
    Answer,
    Cancelled,
    CoreConfig,
    ErrorKind,
    Event,
    Fail,
    GroupClosed,
    InstanceDown,
    InstanceSpec,
    InstanceUp,
    LateOriginal,
    Mode,
    PartialPolicy,
    PoolKind,
    QueryAbandoned,
    QueryArrived,
    Reconstruct,
    SendData,
    SendParity,
    SetTimer,
    Source,
    TaskCompleted,
    TaskFailed,
    Tick,
)
from frontend.grace import Grace
from frontend.policy import RoundRobin


class Harness:
    """A coordinator plus helpers to feed it events and pick out actions."""

    def __init__(
        self,
        n_data: int = 2,
        n_parity: int = 1,
        up: bool = True,
        grace: Grace | None = None,
        **cfg: object,
    ) -> None:
        self.config = CoreConfig(**cfg)  # type: ignore[arg-type]
        policy = cfg.pop("policy", None)
        assert policy is None
        data = [InstanceSpec(f"data-{i}") for i in range(n_data)]
        parity = [InstanceSpec(f"parity-{i}") for i in range(n_parity)]
        self.core = Coordinator(self.config, data, parity, grace=grace)
        self.now = 0.0
        if up:
            for spec in [*data, *parity]:
                self.feed(InstanceUp(spec.name))

    def feed(self, event: Event, at: float | None = None) -> list[Action]:
        if at is not None:
            self.now = at
        return self.core.handle(event, self.now)

    def query(self, qid: int, **kw: object) -> list[Action]:
        return self.feed(QueryArrived(qid, f"x{qid}", **kw))  # type: ignore[arg-type]

    def done(self, task_id: int, instance: str, output: object = None) -> list[Action]:
        return self.feed(
            TaskCompleted(task_id, instance, output if output is not None else f"y{task_id}")
        )


def only(actions: list[Action], kind: type) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


def sends(actions: list[Action]) -> list[tuple[str, int, str]]:
    out = []
    for a in actions:
        if isinstance(a, SendData):
            out.append(("data", a.task_id, a.instance))
        elif isinstance(a, SendParity):
            out.append(("parity", a.task_id, a.instance))
    return out


# ---------------------------------------------------------------- the happy path


def test_each_query_is_dispatched_at_once_and_a_full_group_sends_its_parity() -> None:
    h = Harness(k=2)
    first = h.query(1)
    assert first[0] == SendData(0, "data-0", ("x1",))
    second = h.query(2)
    assert only(second, SendData) == [SendData(1, "data-1", ("x2",))]
    assert only(second, GroupClosed) == [GroupClosed(0, filled=2, fill_time=0.0, protected=True)]
    assert only(second, SendParity) == [SendParity(2, "parity-0", (("x1",), ("x2",)))]


def test_originals_answer_as_they_arrive_and_the_finished_parity_is_ignored() -> None:
    h = Harness(k=2)
    h.query(1)
    h.query(2)
    assert h.done(0, "data-0", "out1") == [Answer(1, Source.ORIGINAL, "out1", 0)]
    assert h.done(1, "data-1", "out2") == [Answer(2, Source.ORIGINAL, "out2", 0)]
    assert h.done(2, "parity-0") == []
    assert h.core.outstanding == 0


def test_a_straggler_is_reconstructed_and_its_late_original_only_checks_it() -> None:
    h = Harness(k=2)
    h.query(1)
    h.query(2)
    h.done(1, "data-1", "out2")
    actions = h.done(2, "parity-0", "par")
    assert actions == [Reconstruct(0, 0, ("par",), (None, "out2"), (1, 1), ((1, 0),), (0,), 0)]
    # no second answer: the late original comes back only to be compared (live check)
    assert h.done(0, "data-0", "late") == [LateOriginal(0, "late", ((1, 0),))]
    assert h.core.outstanding == 0


def test_parity_first_then_one_original_reconstructs_the_other() -> None:
    h = Harness(k=3, n_data=3)
    for q in (1, 2, 3):
        h.query(q)
    assert h.done(3, "parity-0", "p") == []
    h.done(0, "data-0")
    actions = h.done(2, "data-2")
    assert only(actions, Reconstruct) == [
        Reconstruct(0, 1, ("p",), ("y0", None, "y2"), (1, 1, 1), ((2, 0),), (1,), 1)
    ]


def test_queued_original_is_cancelled_once_reconstructed() -> None:
    h = Harness(k=2, n_data=2)
    h.feed(InstanceDown("data-1"))
    h.query(1)  # -> data-0
    actions = h.query(2)  # data-0 busy: queued; group closes, parity sent
    assert sends(actions) == [("parity", 2, "parity-0")]
    assert h.core.queue_depth(PoolKind.DATA) == 1
    h.done(2, "parity-0", "p")
    actions = h.done(0, "data-0", "o")
    assert only(actions, Reconstruct)[0].answers == ((2, 0),)
    assert only(actions, Cancelled) == [Cancelled(1, PoolKind.DATA, "no longer needed")]
    assert sends(actions) == []
    assert h.core.queue_depth(PoolKind.DATA) == 0


def test_queued_parity_is_cancelled_when_all_originals_arrive() -> None:
    h = Harness(k=2)
    h.feed(InstanceDown("parity-0"))
    h.query(1)
    h.query(2)
    assert h.core.queue_depth(PoolKind.PARITY) == 1
    h.done(0, "data-0")
    actions = h.done(1, "data-1")
    assert only(actions, Cancelled) == [Cancelled(2, PoolKind.PARITY, "no longer needed")]
    assert h.feed(InstanceUp("parity-0")) == []


# ---------------------------------------------------------------- partial groups and batches


def test_partial_group_is_padded_after_the_group_timeout() -> None:
    h = Harness(k=3, n_data=3, group_timeout=0.01)
    actions = h.query(1)
    assert only(actions, SetTimer) == [SetTimer(0.01)]
    actions = h.feed(Tick(), at=0.01)
    assert only(actions, GroupClosed) == [GroupClosed(0, 1, 0.01, protected=True)]
    assert only(actions, SendParity) == [SendParity(1, "parity-0", (("x1",),))]
    actions = h.done(1, "parity-0", "p")
    assert actions == [Reconstruct(0, 0, ("p",), (None,), (1,), ((1, 0),), (0,), 0)]


def test_partial_group_can_be_left_unprotected() -> None:
    h = Harness(k=2, partial=PartialPolicy.UNPROTECTED, group_timeout=0.01)
    h.query(1)
    actions = h.feed(Tick(), at=0.02)
    assert only(actions, GroupClosed) == [GroupClosed(0, 1, 0.02, protected=False)]
    assert sends(actions) == []


def test_group_whose_queries_are_all_answered_sends_no_parity() -> None:
    h = Harness(k=2, group_timeout=0.01)
    h.query(1)
    h.done(0, "data-0")
    actions = h.feed(Tick(), at=0.01)
    assert only(actions, GroupClosed)[0].protected is True
    assert sends(actions) == []


def test_batches_of_b_queries_are_coded_together() -> None:
    h = Harness(k=2, batch_size=2, dynamic_batching=False, batch_timeout=0.002, group_timeout=0.01)
    assert only(h.query(1), SetTimer) == [SetTimer(0.002)]
    assert sends(h.query(2)) == [("data", 0, "data-0")]
    h.query(3)
    actions = h.feed(Tick(), at=0.002)  # batch timeout: a short batch of one
    assert only(actions, SendData) == [SendData(1, "data-1", ("x3",))]
    assert only(actions, SendParity) == [SendParity(2, "parity-0", (("x1", "x2"), ("x3",)))]
    h.done(1, "data-1", "o3")
    actions = h.done(2, "parity-0", "p")
    assert actions == [Reconstruct(0, 0, ("p",), (None, "o3"), (2, 1), ((1, 0), (2, 1)), (0,), 0)]


def test_dynamic_batching_cuts_what_arrived_together_when_its_timer_fires() -> None:
    """Due at once: the driver fires it after the rest of its pass, so queries that
    came in together go together, and a lone query waits for nothing."""
    h = Harness(k=2, batch_size=4, group_timeout=0.01)
    actions = h.query(1)
    assert only(actions, SetTimer) == [SetTimer(0.0)]
    assert sends(actions) == []
    assert h.query(2) == []
    actions = h.feed(Tick())
    assert only(actions, SendData) == [SendData(0, "data-0", ("x1", "x2"))]
    h.now = 0.005
    assert only(h.query(3), SetTimer) == [SetTimer(0.005)]
    actions = h.feed(Tick())
    assert only(actions, SendData) == [SendData(1, "data-1", ("x3",))]


def test_dynamic_batches_grow_while_every_data_instance_is_busy() -> None:
    h = Harness(k=2, batch_size=4, group_timeout=1.0)
    for q in (1, 2):
        h.query(q)
        h.feed(Tick())  # one each: the group of two closes
    h.done(2, "parity-0", "p")
    for q in (3, 4, 5):
        h.query(q)
    assert sends(h.feed(Tick())) == []  # due, but no instance is free
    actions = h.done(0, "data-0")
    assert only(actions, SendData) == [SendData(3, "data-0", ("x3", "x4", "x5"))]
    h.query(6)
    assert sends(h.feed(Tick())) == []
    actions = h.done(1, "data-1")
    assert only(actions, SendData) == [SendData(4, "data-1", ("x6",))]
    parity = only(actions, SendParity)
    assert parity == [SendParity(5, "parity-0", (("x3", "x4", "x5"), ("x6",)))]


def test_a_full_dynamic_batch_is_cut_at_once_and_queued_if_no_instance_is_free() -> None:
    h = Harness(k=2, n_data=1, batch_size=2, group_timeout=1.0)
    h.query(1)
    assert only(h.query(2), SendData) == [SendData(0, "data-0", ("x1", "x2"))]  # full
    h.query(3)
    h.feed(Tick())
    actions = h.query(4)  # full: cut and queued behind the busy instance
    assert only(actions, SendData) == []  # (the group of two closed: its parity went)
    assert h.core.queue_depth(PoolKind.DATA) == 1
    h.query(5)  # a new batch fills behind the queued task
    actions = h.done(0, "data-0")
    assert only(actions, SendData) == [SendData(1, "data-0", ("x3", "x4"))]
    assert h.core.queue_depth(PoolKind.DATA) == 0


def test_group_timeout_flushes_a_filling_batch_first() -> None:
    h = Harness(k=2, batch_size=2, dynamic_batching=False, batch_timeout=0.05, group_timeout=0.01)
    h.query(1)
    h.query(2)  # task 0 full, group opened at 0
    h.query(3, deadline=None)  # filling batch
    actions = h.feed(Tick(), at=0.01)
    assert only(actions, SendData) == [SendData(1, "data-1", ("x3",))]
    assert only(actions, GroupClosed) == [GroupClosed(0, 2, 0.01, protected=True)]


def test_group_timeout_with_nothing_filling_closes_the_group() -> None:
    h = Harness(k=2, batch_size=2, dynamic_batching=False, batch_timeout=0.125, group_timeout=0.25)
    h.query(1)
    h.feed(Tick(), at=0.125)
    actions = h.feed(Tick(), at=0.375)
    assert only(actions, GroupClosed) == [GroupClosed(0, 1, 0.25, protected=True)]


# ---------------------------------------------------------------- deadlines and admission


@pytest.mark.parametrize("has_default", [True, False])
def test_deadline_gives_the_default_or_an_error(has_default: bool) -> None:
    h = Harness(k=2, has_default=has_default, group_timeout=1.0)
    actions = h.query(1, deadline=0.1)
    assert only(actions, SetTimer) == [SetTimer(0.1)]
    actions = h.feed(Tick(), at=0.1)
    expected = (
        Answer(1, Source.DEFAULT)
        if has_default
        else Fail(1, ErrorKind.DEADLINE_EXCEEDED, "no output was ready before the query's deadline")
    )
    assert only(actions, Answer) + only(actions, Fail) == [expected]
    assert only(actions, SetTimer) == [SetTimer(1.0)]  # the group timer remains
    assert h.done(0, "data-0") == []  # the late original is dropped


def test_expired_query_still_in_a_batch_is_removed_from_it() -> None:
    h = Harness(k=2, batch_size=4, dynamic_batching=False, batch_timeout=0.5)
    h.query(1, deadline=0.1)
    h.feed(Tick(), at=0.1)
    assert h.feed(Tick(), at=0.5) == []  # the batch timer finds nothing to send


def test_expired_query_cancels_its_queued_task_when_the_group_is_done() -> None:
    h = Harness(k=2, n_data=1, n_parity=1, group_timeout=1.0)
    h.feed(InstanceDown("data-0"))
    h.query(1, deadline=0.1)
    actions = h.feed(Tick(), at=0.1)
    assert only(actions, Cancelled) == [Cancelled(0, PoolKind.DATA, "no longer needed")]


def test_a_timer_that_fires_early_is_asked_for_again() -> None:
    h = Harness(k=2, group_timeout=2.0)
    h.query(1, deadline=1.0)
    assert h.feed(Tick(), at=0.999) == [SetTimer(1.0)]


def test_admission_is_bounded() -> None:
    h = Harness(k=2, max_outstanding=2)
    h.query(1)
    h.query(2)
    actions = h.query(3)
    assert only(actions, Fail) == [
        Fail(3, ErrorKind.RESOURCE_EXHAUSTED, "model is at its admission limit of 2 queries")
    ]
    h.done(0, "data-0")
    assert only(h.query(4), Fail) == []


def test_duplicate_query_ids_are_a_driver_bug() -> None:
    h = Harness()
    h.query(1)
    with pytest.raises(ValueError, match="already outstanding"):
        h.query(1)


# ---------------------------------------------------------------- provenance control


def test_require_original_is_never_reconstructed() -> None:
    h = Harness(k=2)
    h.query(1, require_original=True)
    h.query(2)
    h.done(1, "data-1")
    assert h.done(2, "parity-0") == []
    assert h.done(0, "data-0", "o") == [Answer(1, Source.ORIGINAL, "o", 0)]


def test_parity_is_not_sent_when_it_could_only_help_originals_only_queries() -> None:
    h = Harness(k=2, group_timeout=0.01)
    h.query(1, require_original=True)
    actions = h.feed(Tick(), at=0.01)
    assert sends(actions) == []


def test_abandoned_queries_need_no_answer() -> None:
    h = Harness(k=2, n_data=1)
    h.query(1)
    h.query(2)  # queued behind query 1
    actions = h.feed(QueryAbandoned(2))
    assert only(actions, Cancelled) == []  # query 1 still needs its group
    actions = h.feed(QueryAbandoned(1))
    assert only(actions, Cancelled) == [Cancelled(1, PoolKind.DATA, "no longer needed")]
    assert h.done(0, "data-0") == []
    assert h.feed(QueryAbandoned(99)) == []


def test_abandoned_query_in_a_filling_batch() -> None:
    h = Harness(k=2, batch_size=2, dynamic_batching=False)
    h.query(1)
    assert h.feed(QueryAbandoned(1)) == []
    assert h.core.outstanding == 0


# ---------------------------------------------------------------- failures


def test_failed_call_is_retried_at_the_front_on_another_instance() -> None:
    h = Harness(k=2, n_parity=0)
    h.query(1)
    h.query(2)
    h.query(3)  # queued
    h.feed(InstanceDown("data-1"))
    h.feed(InstanceUp("data-1"))  # task 1 was re-queued at the front, ahead of task 2
    actions = h.feed(TaskFailed(0, "data-0", "boom"))
    assert sends(actions) == [("data", 0, "data-0")]


def test_failures_beyond_the_attempt_limit_fail_the_query() -> None:
    h = Harness(k=2, n_parity=0, max_attempts=2)
    h.query(1)
    h.feed(TaskFailed(0, "data-0"))
    actions = h.feed(TaskFailed(0, "data-1"))
    assert only(actions, Fail) == [
        Fail(1, ErrorKind.UNAVAILABLE, "the model's instances failed this query 2 times")
    ]
    assert h.core.outstanding == 0


def test_failure_of_a_data_task_is_decoded_when_the_parity_is_in() -> None:
    h = Harness(k=2)
    h.query(1)
    h.query(2)
    h.done(1, "data-1")
    h.done(2, "parity-0", "p")  # query 1 reconstructed already
    assert h.feed(TaskFailed(0, "data-0")) == []
    h2 = Harness(k=2)
    h2.query(1, require_original=True)
    h2.query(2)
    h2.done(1, "data-1")
    h2.done(2, "parity-0", "p")
    # an originals-only query is retried (on the longest-idle instance), never decoded
    assert sends(h2.feed(TaskFailed(0, "data-0"))) == [("data", 0, "data-1")]


def test_failed_task_is_reconstructed_when_it_completes_the_group() -> None:
    h = Harness(k=2)
    h.query(1)
    h.query(2)
    h.done(2, "parity-0", "p")
    h.done(1, "data-1")
    # query 1 was already reconstructed by the two results above
    h3 = Harness(k=2, n_data=2)
    h3.query(1)
    h3.query(2)
    h3.done(1, "data-1", "o2")
    h3.feed(InstanceDown("parity-0"))  # parity re-queued, no parity instance left
    h3.feed(InstanceUp("parity-0"))
    actions = h3.done(2, "parity-0", "p")
    assert only(actions, Reconstruct)[0].answers == ((1, 0),)


def test_instance_down_requeues_and_stale_results_are_ignored() -> None:
    h = Harness(k=2, n_parity=0)
    h.query(1)
    h.feed(InstanceDown("data-0"))
    assert h.core.is_up("data-0") is False
    # re-queued and sent to the other instance at once
    h.feed(InstanceDown("data-0"))  # repeated: no effect
    assert h.core.inflight("data-1") == 1
    assert h.done(0, "data-0") == []  # result from before the instance went down
    assert h.done(0, "data-1", "o") == [Answer(1, Source.ORIGINAL, "o", 0)]


def test_failed_parity_is_dropped_when_useless() -> None:
    h = Harness(k=2)
    h.query(1)
    h.query(2)
    h.done(0, "data-0")
    h.done(1, "data-1")
    assert h.feed(TaskFailed(2, "parity-0")) == []


def test_unknown_instance_is_a_clear_error() -> None:
    h = Harness()
    with pytest.raises(KeyError, match="unknown instance 'data-9'"):
        h.feed(InstanceUp("data-9"))


# ---------------------------------------------------------------- other modes


@pytest.mark.parametrize("mode", [Mode.NONE, Mode.EQUAL_RESOURCES])
def test_uncoded_modes_send_no_parity(mode: Mode) -> None:
    h = Harness(k=2, mode=mode, n_data=3, n_parity=1)
    actions = h.query(1) + h.query(2)
    assert sends(actions) == [("data", 0, "data-0"), ("data", 1, "data-1")]
    assert only(actions, GroupClosed) == []


def test_replicate_sends_two_copies_and_first_answer_wins() -> None:
    h = Harness(k=2, mode=Mode.REPLICATE, n_data=3, n_parity=0)
    assert sends(h.query(1)) == [("data", 0, "data-0"), ("data", 1, "data-1")]
    assert sends(h.query(2)) == [("data", 2, "data-2")]  # its twin waits
    actions = h.done(1, "data-1", "o")
    assert only(actions, Answer) == [Answer(1, Source.ORIGINAL, "o", 0)]
    assert sends(actions) == [("data", 3, "data-1")]
    assert h.done(0, "data-0") == []  # the slower replica is ignored


def test_replica_copies_never_share_an_instance() -> None:
    h = Harness(k=2, mode=Mode.REPLICATE, n_data=2, n_parity=0)
    h.feed(InstanceDown("data-1"))
    assert sends(h.query(1)) == [("data", 0, "data-0")]
    h.done(0, "data-0")
    assert h.core.queue_depth(PoolKind.DATA) == 0  # queued twin cancelled


def test_replicate_retries_only_when_both_copies_failed() -> None:
    h = Harness(k=2, mode=Mode.REPLICATE, n_data=2, n_parity=0)
    h.query(1)
    assert h.feed(TaskFailed(0, "data-0")) == []  # the twin is still running
    actions = h.feed(TaskFailed(1, "data-1"))
    assert sends(actions) == [("data", 1, "data-0")]


def test_round_robin_policy_binds_tasks_to_instances() -> None:
    data = [InstanceSpec("data-0"), InstanceSpec("data-1")]
    core = Coordinator(CoreConfig(mode=Mode.NONE), data, policy=RoundRobin)
    for spec in data:
        core.handle(InstanceUp(spec.name), 0.0)
    placed = [sends(core.handle(QueryArrived(q, q), 0.0)) for q in range(3)]
    assert placed == [[("data", 0, "data-0")], [("data", 1, "data-1")], []]
    # task 2 waits for data-0 even though data-1 frees up first
    assert sends(core.handle(TaskCompleted(1, "data-1", None), 0.0)) == []
    assert sends(core.handle(TaskCompleted(0, "data-0", None), 0.0)) == [("data", 2, "data-0")]


# ---------------------------------------------------------------- construction and purity


def test_instance_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        Coordinator(CoreConfig(), [InstanceSpec("a")], [InstanceSpec("a")])


def test_instance_capacity_allows_several_in_flight() -> None:
    core = Coordinator(CoreConfig(mode=Mode.NONE), [InstanceSpec("d", max_inflight=2)])
    core.handle(InstanceUp("d"), 0.0)
    placed = [sends(core.handle(QueryArrived(q, q), 0.0)) for q in range(3)]
    assert placed == [[("data", 0, "d")], [("data", 1, "d")], []]
    assert core.inflight("d") == 2


def test_core_imports_no_io() -> None:
    allowed = {
        "__future__",
        "enum",
        "heapq",
        "itertools",
        "collections",
        "collections.abc",
        "dataclasses",
        "typing",
        "frontend.policy",
        "frontend.events",
        "frontend.grace",
        "math",
        "statistics",
    }
    for module in ("core", "policy", "events", "grace"):
        source = Path(__file__).parents[2] / "frontend" / f"{module}.py"
        tree = ast.parse(source.read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module or "")
        assert imported <= allowed, f"frontend/{module}.py imports {imported - allowed}"


# ---------------------------------------------------------------- corners


def test_batch_timer_is_set_once_per_filling_batch() -> None:
    h = Harness(k=2, batch_size=3, dynamic_batching=False, batch_timeout=0.5, group_timeout=1.0)
    assert only(h.query(1), SetTimer) == [SetTimer(0.5)]
    assert h.query(2) == []


def test_stale_timers_are_skipped_when_they_come_due_together() -> None:
    h = Harness(k=2, n_data=2, group_timeout=1.0)
    h.query(1, deadline=0.125)
    h.query(2, deadline=0.25)
    h.done(1, "data-1")  # query 2 answered; its deadline timer is now stale
    actions = h.feed(Tick(), at=0.5)
    assert only(actions, Fail) == [
        Fail(1, ErrorKind.DEADLINE_EXCEEDED, "no output was ready before the query's deadline")
    ]


def test_failure_reported_for_an_unknown_task_is_ignored() -> None:
    h = Harness(k=2)
    assert h.feed(TaskFailed(42, "data-0")) == []


def test_giving_up_skips_queries_already_answered() -> None:
    h = Harness(k=2, n_parity=0, batch_size=2, dynamic_batching=False, max_attempts=1)
    h.query(1)
    h.query(2)
    h.feed(QueryAbandoned(1))
    actions = h.feed(TaskFailed(0, "data-0"))
    assert [(a.query_id, a.error) for a in only(actions, Fail)] == [(2, ErrorKind.UNAVAILABLE)]


def test_instance_down_ignores_work_that_was_already_unwanted() -> None:
    h = Harness(k=2, mode=Mode.REPLICATE, n_data=2, n_parity=0)
    h.query(1)
    h.done(0, "data-0")  # the running twin on data-1 is now unwanted
    assert h.feed(InstanceDown("data-1")) == []
    assert h.core.outstanding == 0


# ---------------------------------------------------------------- r > 1 parities


def two_parities(**cfg: object) -> Coordinator:
    """k=2, r=2: parity-0 serves parity model 0, parity-1 model 1."""
    data = [InstanceSpec("data-0"), InstanceSpec("data-1")]
    parity = [InstanceSpec("parity-0", parity_index=0), InstanceSpec("parity-1", parity_index=1)]
    core = Coordinator(CoreConfig(k=2, r=2, **cfg), data, parity)  # type: ignore[arg-type]
    for spec in [*data, *parity]:
        core.handle(InstanceUp(spec.name), 0.0)
    return core


def test_each_parity_goes_to_an_instance_of_its_own_model() -> None:
    core = two_parities()
    core.handle(InstanceDown("parity-0"), 0.0)
    core.handle(QueryArrived(1, "a"), 0.0)
    actions = core.handle(QueryArrived(2, "b"), 0.0)
    assert only(actions, SendParity) == [SendParity(3, "parity-1", (("a",), ("b",)), index=1)]
    assert core.queue_depth(PoolKind.PARITY) == 1  # parity 0 waits for parity-0
    actions = core.handle(InstanceUp("parity-0"), 0.0)
    assert only(actions, SendParity) == [SendParity(2, "parity-0", (("a",), ("b",)), index=0)]


def test_two_parities_recover_two_missing_outputs() -> None:
    core = two_parities()
    core.handle(QueryArrived(1, "a"), 0.0)
    core.handle(QueryArrived(2, "b"), 0.0)
    assert core.handle(TaskCompleted(2, "parity-0", "p0"), 0.0) == []  # two erasures, one parity
    actions = core.handle(TaskCompleted(3, "parity-1", "p1"), 0.0)
    assert actions == [
        Reconstruct(0, 0, ("p0", "p1"), (None, None), (1, 1), ((1, 0),), (0, 1), 0),
        Reconstruct(0, 1, ("p0", "p1"), (None, None), (1, 1), ((2, 0),), (0, 1), 1),
    ]


def test_one_missing_output_needs_only_one_parity_and_the_other_is_cancelled() -> None:
    core = two_parities()
    core.handle(InstanceDown("parity-1"), 0.0)
    core.handle(QueryArrived(1, "a"), 0.0)
    core.handle(QueryArrived(2, "b"), 0.0)
    core.handle(TaskCompleted(1, "data-1", "o2"), 0.0)
    actions = core.handle(TaskCompleted(2, "parity-0", "p0"), 0.0)
    assert only(actions, Reconstruct) == [
        Reconstruct(0, 0, ("p0", None), (None, "o2"), (1, 1), ((1, 0),), (0,), 0)
    ]
    assert only(actions, Cancelled) == [Cancelled(3, PoolKind.PARITY, "no longer needed")]
    assert only(actions, Reconstruct)[0].parity_output == "p0"


def test_an_already_answered_slot_is_decoded_but_not_answered_again() -> None:
    core = two_parities()
    core.handle(QueryArrived(1, "a", require_original=True), 0.0)
    core.handle(QueryArrived(2, "b"), 0.0)
    core.handle(TaskCompleted(2, "parity-0", "p0"), 0.0)
    actions = core.handle(TaskCompleted(3, "parity-1", "p1"), 0.0)
    assert [a.missing for a in only(actions, Reconstruct)] == [1]
