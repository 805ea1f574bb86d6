"""Cut-off episodes: hosts cut and healed on schedule, all healed at stop.

A recording switchboard stands in for the network here (``tests/deploy/test_netns.py``
cuts real namespaces; ``tests/deploy/test_local_netns.py`` serves through a cut).
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from bench.contention import ActiveContention, parse_contention
from bench.contention.cutoff import CutoffSpec, Cutter
from tests.bench.contention.processes import until


class Board:
    """Records cuts and heals; ``down`` is what is cut right now.  With ``gated``, a cut
    (an iptables call, in its thread) lands only when the test opens ``gate``."""

    def __init__(self, gated: bool = False) -> None:
        self.log: list[tuple[str, str]] = []
        self.down: set[str] = set()
        self.cutting = threading.Event()
        self.gate = threading.Event()
        if not gated:
            self.gate.set()

    def cut(self, name: str) -> None:
        assert name not in self.down, f"{name} cut twice"
        self.cutting.set()
        self.gate.wait()
        self.down.add(name)
        self.log.append(("cut", name))

    def heal(self, name: str) -> None:
        self.down.discard(name)
        self.log.append(("heal", name))


def test_every_cut_host_is_healed_after_its_episode() -> None:
    board = Board()
    cutter = Cutter(board, ["a", "b", "c"], CutoffSpec(rate=500, min_ms=1, max_ms=3), seed=2)

    async def scenario() -> None:
        cutter.start()
        await until(lambda: sum(kind == "heal" for kind, _ in board.log) >= 10)
        await cutter.stop()

    asyncio.run(scenario())
    assert board.down == set() and cutter.cut == set()
    assert cutter.episodes == sum(kind == "cut" for kind, _ in board.log)
    assert {name for _, name in board.log} <= {"a", "b", "c"}


def test_stop_heals_hosts_cut_for_long() -> None:
    board = Board()
    cutter = Cutter(board, ["a", "b"], CutoffSpec(rate=500, min_ms=6e5, max_ms=6e5), seed=1)

    async def scenario() -> None:
        cutter.start()
        await until(lambda: board.down == {"a", "b"})  # both cut, neither twice
        await cutter.stop()

    asyncio.run(scenario())
    assert board.down == set()


def test_a_cut_under_way_when_stopping_is_healed_after_it_lands() -> None:
    board = Board(gated=True)
    cutter = Cutter(board, ["a"], CutoffSpec(rate=500, min_ms=6e5, max_ms=6e5), seed=1)

    async def scenario() -> None:
        cutter.start()
        await until(board.cutting.is_set)  # the cut is in its thread, held at the gate
        stopping = asyncio.ensure_future(cutter.stop())  # cancels the episode mid-cut
        for _ in range(50):  # stop() runs as far as it can (loop turns, no wall time)
            await asyncio.sleep(0)
        board.gate.set()  # the cut lands now: the heal must come after it
        await stopping

    asyncio.run(scenario())
    assert board.log == [("cut", "a"), ("heal", "a")] and board.down == set()


def test_cutoffs_need_a_network() -> None:
    with pytest.raises(ValueError, match="needs hosts on a network"):
        ActiveContention(parse_contention("cutoff"), [], [], seed=0)
    with pytest.raises(ValueError, match="at least one host"):
        Cutter(Board(), [], CutoffSpec())


def test_cutoffs_are_counted_with_the_other_injectors() -> None:
    board = Board()
    active = ActiveContention(
        parse_contention("cutoff:rate=500,min_ms=1,max_ms=2"), [], [], 0, board, ["a"]
    )

    async def scenario() -> None:
        active.start()
        await until(lambda: active.stats()["cutoff_episodes"] >= 3)
        await active.stop()

    asyncio.run(scenario())
    assert board.down == set()
