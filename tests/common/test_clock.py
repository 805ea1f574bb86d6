"""The clock seam: the loop's clock and its timers, virtual time and its timer heap."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from common.clock import LoopClock, SimClock, sleep


def test_sim_clock_fires_due_timers_in_time_then_set_order() -> None:
    clock = SimClock()
    fired: list[tuple[str, float]] = []

    def firing(name: str) -> Callable[[], None]:
        return lambda: fired.append((name, clock.now()))

    for name, at in (("c", 2.0), ("a", 1.0), ("b", 1.0), ("late", 5.0)):
        clock.call_at(at, firing(name))
    clock.advance_to(3.0)
    assert fired == [("a", 1.0), ("b", 1.0), ("c", 2.0)]
    assert clock.now() == 3.0
    assert clock.next_timer() == 5.0


def test_a_cancelled_timer_never_fires() -> None:
    clock = SimClock()
    fired: list[str] = []
    timer = clock.call_at(1.0, lambda: fired.append("x"))
    timer.cancel()
    assert clock.next_timer() is None
    clock.advance(2.0)
    assert fired == []


def test_a_timer_set_by_a_callback_fires_in_the_same_advance() -> None:
    clock = SimClock(start=10.0)
    fired: list[float] = []

    def first() -> None:
        fired.append(clock.now())
        clock.call_at(clock.now() + 0.5, lambda: fired.append(clock.now()))

    clock.call_at(11.0, first)
    clock.advance_to(12.0)
    assert fired == [11.0, 11.5]


def test_a_timer_in_the_past_fires_at_the_current_time() -> None:
    clock = SimClock(start=4.0)
    seen: list[float] = []
    clock.call_at(1.0, lambda: seen.append(clock.now()))
    clock.advance_to(4.0)
    assert seen == [4.0]


def test_sim_time_cannot_go_back() -> None:
    clock = SimClock(start=2.0)
    with pytest.raises(ValueError, match=r"cannot go back from 2\.0 to 1\.0"):
        clock.advance_to(1.0)


def test_sleep_on_a_sim_clock_wakes_when_time_passes_its_end() -> None:
    clock = SimClock()

    async def scenario() -> list[str]:
        events: list[str] = []

        async def sleeper() -> None:
            await sleep(clock, 1.0)
            events.append(f"woke at {clock.now()}")

        task = asyncio.create_task(sleeper())
        await asyncio.sleep(0)
        clock.advance_to(0.999)
        await asyncio.sleep(0)
        events.append("not yet")
        clock.advance_to(1.0)
        await task
        return events

    assert asyncio.run(scenario()) == ["not yet", "woke at 1.0"]


def test_a_cancelled_sleep_drops_its_timer() -> None:
    clock = SimClock()

    async def scenario() -> None:
        task = asyncio.create_task(sleep(clock, 1.0))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert clock.next_timer() is None


@pytest.mark.parametrize("bound", [True, False], ids=["given-loop", "running-loop"])
def test_loop_clock_reads_the_loop_and_sets_its_timers(bound: bool) -> None:
    async def scenario() -> tuple[float, float, bool]:
        loop = asyncio.get_running_loop()
        clock = LoopClock(loop if bound else None)
        fired = asyncio.Event()
        before = loop.time()
        now = clock.now()
        clock.call_at(now, fired.set)  # already due: runs at the loop's next turn
        await fired.wait()
        cancelled = clock.call_at(now + 3600, fired.clear)
        cancelled.cancel()
        return before, now, fired.is_set()

    before, now, fired = asyncio.run(scenario())
    assert now >= before and fired


def test_a_loop_clock_timer_already_due_runs_in_turn_not_on_the_loops_timer_wheel() -> None:
    """Due already: queued behind what is ready now, like ``call_soon`` (uvloop rounds a
    timer up to its next millisecond, which made "at once" up to 1 ms late)."""

    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        clock = LoopClock(loop)
        order: list[str] = []
        done = asyncio.Event()
        loop.call_soon(order.append, "ready before")
        handle = clock.call_at(clock.now() - 0.001, lambda: order.append("due"))
        loop.call_soon(order.append, "ready after")
        loop.call_soon(done.set)
        await done.wait()
        assert not isinstance(handle, asyncio.TimerHandle)
        return order

    assert asyncio.run(scenario()) == ["ready before", "due", "ready after"]
