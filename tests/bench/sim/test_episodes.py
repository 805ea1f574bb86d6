"""Contention in simulated time: timelines that stretch tasks, busy windows, shuffles."""

from __future__ import annotations

import pytest

from bench.sim.episodes import (
    Timeline,
    Transfers,
    merge,
    poisson_episodes,
    replayed_transfers,
    shuffle_episodes,
    timeline,
    windows,
)


@pytest.mark.parametrize(
    ("intervals", "start", "work", "end"),
    [
        ([], 1.0, 0.5, 1.5),
        ([(2.0, 3.0, 0.0)], 1.5, 1.0, 3.5),  # paused mid-task
        ([(2.0, 4.0, 0.5)], 2.0, 0.5, 3.0),  # half speed throughout
        ([(1.0, 3.0, 0.5), (2.0, 4.0, 0.5)], 1.0, 1.0, 3.5),  # overlaps multiply
        ([(0.0, 1.0, 0.0)], 2.0, 0.5, 2.5),  # episode already over
    ],
)
def test_a_task_is_stretched_by_the_episodes_it_meets(intervals, start, work, end):
    assert timeline(intervals).finish(start, work) == pytest.approx(end)


def test_timelines_merge_adjacent_equal_segments():
    merged = timeline([(0.0, 1.0, 0.5), (1.0, 2.0, 0.5)])
    assert (merged.starts, merged.ends, merged.speeds) == ([0.0], [2.0], [0.5])
    assert isinstance(merged, Timeline)


def test_shuffles_keep_their_concurrency_on_distinct_pairs():
    per = shuffle_episodes(10, 3, [0.5], 0.4, 5.0, seed=1)
    busy = sum(1 for ivs in per for s, e, _ in ivs if s <= 2.2 < e)
    assert busy == 6  # 3 transfers, 2 instances each


@pytest.mark.parametrize(("t", "covered"), [(0.5, False), (1.0, True), (2.5, True), (4.0, False)])
def test_busy_windows_merge_overlaps(t, covered):
    assert windows([(1.0, 2.0, 1.0), (1.5, 3.0, 1.0)]).covers(t) is covered


def test_poisson_episodes_are_seeded_and_stay_within_their_bounds():
    per = poisson_episodes(4, 50.0, 0.01, 0.02, 0.25, 10.0, seed=3)
    assert per == poisson_episodes(4, 50.0, 0.01, 0.02, 0.25, 10.0, seed=3)
    flat = [iv for ivs in per for iv in ivs]
    assert len(per) == 4 and flat
    assert all(0.01 <= e - s <= 0.02 + 1e-12 and speed == 0.25 for s, e, speed in flat)


def test_merged_sources_give_one_timeline_per_instance():
    pauses = [[(1.0, 2.0, 0.0)], []]
    slow = [[(1.5, 3.0, 0.5)], [(0.0, 1.0, 0.5)]]
    first, second = merge(2, pauses, slow)
    assert first.finish(1.0, 0.5) == pytest.approx(3.0)  # stopped to 2.0, then half speed
    assert second.finish(0.0, 1.0) == pytest.approx(1.5)


def test_an_instance_is_in_the_last_transfer_it_began_until_that_one_ends():
    t = Transfers([0.0, 1.0, 1.5], [2.0, 1.2, 3.0], [4, 5, 6], [0, 1, 0])
    assert t.at(0.5) == (4, 0, 0.5)
    assert t.at(1.125) == (5, 1, 0.125)  # overlapping: the later one
    assert t.at(1.3) == (4, 0, 1.3)
    assert t.at(2.5) == (6, 0, 1.0)
    assert t.at(3.0) is None and t.cursor == 3  # over: never looked at again


def test_replayed_transfers_last_as_recorded_with_a_sender_and_a_receiver():
    per = replayed_transfers(5, 2, [0, 2], [0.5, 9.0, 0.25], 4.0, seed=1)
    rows = [(s, e, j, side) for t in per for s, e, j, side in zip(
        t.starts, t.ends, t.transfers, t.sides, strict=True)]  # fmt: skip
    assert {j for _, _, j, _ in rows} == {0, 2}  # transfer 1 is never drawn
    assert all(e - s == pytest.approx([0.5, 9.0, 0.25][j]) for s, e, j, _ in rows)
    assert sum(side == 0 for *_, side in rows) == sum(side == 1 for *_, side in rows)
    assert all(t.starts == sorted(t.starts) for t in per)
    assert per == replayed_transfers(5, 2, [0, 2], [0.5, 9.0, 0.25], 4.0, seed=1)
