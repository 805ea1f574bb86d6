"""Contention as a whole: parsed, described, started and stopped together, and what it
changes in an instance's container configuration."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.contention import ActiveContention, parse_contention
from model_container.config import ContainerConfig
from tests.bench.contention.processes import idle, state, until

__all__ = ["idle"]  # a fixture


def test_all_injectors_start_and_stop_together(idle):
    contention = parse_contention("pause:rate=100,min_ms=20,max_ms=40+cpu:rate=100")
    active = ActiveContention(contention, [idle.pid], [], seed=0)

    async def scenario() -> None:
        active.start()
        await until(lambda: all(v > 0 for v in active.stats().values()))
        await active.stop()

    asyncio.run(scenario())
    assert set(active.stats()) == {"pause_episodes", "cpu_episodes"}
    asyncio.run(until(lambda: state(idle.pid) != "T"))


@pytest.mark.parametrize(
    ("text", "described"),
    [
        ("none", "no injected contention"),
        ("shuffle", "4 concurrent 128-256 MB"),
        ("shuffle:concurrency=1,gap_ms=500", "mean gap 500 ms"),
        ("pause:rate=2,min_ms=10,max_ms=20", "10-20 ms"),
        ("cpu:hogs=2", "2 busy-loop"),
        ("delay:prob=0.1,mean_ms=30,dist=const", "constant draw of mean 30 ms"),
        ("shuffle+pause", "pause episodes"),
        ("cutoff:rate=0.5,min_ms=100,max_ms=300", "dropped both ways for 100-300 ms"),
    ],
)
def test_contention_is_parsed_and_described(text, described):
    contention = parse_contention(text)
    assert described in contention.describe()
    assert contention.text == text


@pytest.mark.parametrize(("link_mbit", "sizes"), [(1000.0, (128.0, 256.0)), (100.0, (12.8, 25.6))])
def test_shuffles_scale_to_the_link_rate(link_mbit, sizes):
    scaled = parse_contention("shuffle+pause").scaled_to(link_mbit)
    assert scaled.shuffle is not None
    assert (scaled.shuffle.min_mb, scaled.shuffle.max_mb) == pytest.approx(sizes)
    assert scaled.pause == parse_contention("pause").pause
    assert parse_contention("pause").scaled_to(10.0) == parse_contention("pause")


@pytest.mark.parametrize(
    "text", ["storm", "pause:rate", "pause:speed=2", "pause:rate=-1", "delay:dist=pareto"]
)
def test_bad_contention_is_refused(text):
    with pytest.raises(ValueError):
        parse_contention(text)


BASE = ContainerConfig(Path("b"), 0, seed=3, fail_prob=0.1, threads=2)


def test_delay_contention_sets_the_containers_delays_and_keeps_the_rest():
    config = parse_contention("shuffle+delay:prob=0.5,mean_ms=20").configure(BASE)
    assert config.argv()[4:] == [
        "--threads", "2", "--delay-ms", "20.0", "--delay-prob", "0.5", "--fail-prob", "0.1",
        "--seed", "3", "--delay-dist", "exp",
    ]  # fmt: skip


@pytest.mark.parametrize("text", ["none", "shuffle", "pause+cpu"])
def test_other_contention_leaves_the_container_alone(text):
    assert parse_contention(text).configure(BASE) == BASE
