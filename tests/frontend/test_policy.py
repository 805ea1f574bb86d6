import pytest

from frontend.policy import POLICIES, RoundRobin, SingleQueue


def anything(task: str, instance: str) -> bool:
    return True


def test_single_queue_is_shared_fifo_with_front_insertion() -> None:
    q: SingleQueue[str] = SingleQueue()
    q.instance_up("a")
    q.push("t1")
    q.push("t2")
    q.push("t0", front=True)
    assert len(q) == 3
    assert [q.pull("a", anything), q.pull("b", anything)] == ["t0", "t1"]
    q.instance_down("a")
    assert q.pull("b", anything) == "t2"
    assert q.pull("b", anything) is None


def test_single_queue_skips_tasks_the_instance_may_not_run() -> None:
    q: SingleQueue[str] = SingleQueue()
    q.push("mine")
    q.push("yours")
    assert q.pull("b", lambda task, inst: task == "yours") == "yours"
    assert q.pull("b", lambda task, inst: False) is None
    assert q.discard("mine") is True
    assert q.discard("mine") is False


def test_round_robin_deals_tasks_in_turn() -> None:
    rr: RoundRobin[str] = RoundRobin()
    rr.instance_up("a")
    rr.instance_up("b")
    for t in ("t0", "t1", "t2"):
        rr.push(t)
    rr.push("urgent", front=True)  # dealt to b, ahead of t1
    assert len(rr) == 4
    assert rr.pull("b", anything) == "urgent"
    assert rr.pull("a", anything) == "t0"
    assert rr.pull("a", anything) == "t2"
    assert rr.pull("a", anything) is None
    assert rr.pull("nobody", anything) is None
    assert rr.pull("b", lambda task, inst: False) is None
    assert rr.pull("b", anything) == "t1"


def test_round_robin_backlog_waits_for_an_instance_and_orphans_are_dealt_again() -> None:
    rr: RoundRobin[str] = RoundRobin()
    rr.push("early")
    assert len(rr) == 1
    assert rr.discard("early") is True
    rr.push("early")
    rr.instance_up("a")
    rr.instance_up("b")
    assert rr.pull("b", anything) is None
    rr.instance_down("a")
    assert rr.pull("b", anything) == "early"
    assert rr.discard("missing") is False
    rr.instance_down("never-up")


@pytest.mark.parametrize("name", ["single-queue", "round-robin"])
def test_policies_by_name(name: str) -> None:
    assert len(POLICIES[name]()) == 0
