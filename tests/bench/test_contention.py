"""Contention injectors: what each does to real processes, counted, and that each stops.

Nothing here times anything: the assertions are on process states, affinities, signals
sent, episodes counted and bytes moved.  How much contention slows a query is a
benchmark's figure (``parm bench latency``), not a test's.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.contention import ActiveContention, parse_contention
from bench.contention.cpu import CpuHogs, CpuSpec
from bench.contention.pause import Pauser, PauseSpec
from bench.contention.shuffle import (
    MB,
    Shuffler,
    ShuffleServer,
    ShuffleSidecars,
    ShuffleSpec,
    sidecar_bytes,
)
from model_container.config import ContainerConfig

IDLE = "import time; time.sleep(600)"
#: a deadline for conditions that must come true, far beyond any machine's slowness
DEADLINE_S = 30.0


def state(pid: int) -> str:
    """The process's state letter from /proc (T: stopped)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@pytest.fixture
def idle() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", IDLE])
    yield proc
    proc.kill()
    proc.wait()


async def until(predicate: Callable[[], bool]) -> None:
    """Wait until ``predicate`` holds; fail only if it never does."""
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < deadline, "condition never reached"
        await asyncio.sleep(0.01)


def test_a_pause_stops_a_real_process_and_stop_resumes_it(idle):
    pid = idle.pid
    pauser = Pauser([pid], PauseSpec(rate=200, min_ms=600_000, max_ms=600_000), seed=0)

    async def scenario() -> None:
        pauser.start()
        await until(lambda: state(pid) == "T")
        assert pauser.episodes == 1 and pauser.paused == {pid}  # never paused twice
        await pauser.stop()
        assert not pauser.paused

    asyncio.run(scenario())
    asyncio.run(until(lambda: state(pid) != "T"))


def test_every_pause_is_resumed_on_schedule_and_at_stop():
    sent: list[tuple[int, int]] = []
    pauser = Pauser(
        [101, 102, 103],
        PauseSpec(rate=500, min_ms=1, max_ms=3),
        seed=4,
        kill=lambda pid, sig: sent.append((pid, sig)),
    )

    async def scenario() -> None:
        pauser.start()
        await until(lambda: sent.count((101, signal.SIGCONT)) >= 2)
        await pauser.stop()

    asyncio.run(scenario())
    stops = [pid for pid, sig in sent if sig == signal.SIGSTOP]
    assert len(stops) == pauser.episodes and not pauser.paused
    for pid in (101, 102, 103):  # each process: stop, resume, stop, resume, ...
        mine = [sig for p, sig in sent if p == pid]
        assert mine == [signal.SIGSTOP, signal.SIGCONT] * (len(mine) // 2)


def test_cpu_hogs_run_on_the_target_core_and_go_away(idle):
    target = idle.pid
    before = os.sched_getaffinity(target)
    hogs = CpuHogs([target], CpuSpec(hogs=1, rate=1000, min_ms=600_000, max_ms=600_000))

    async def scenario() -> list[subprocess.Popen[bytes]]:
        hogs.start()
        core = hogs.core_of[target]
        assert os.sched_getaffinity(target) == {core}
        procs = hogs.hogs[core]
        assert [os.sched_getaffinity(p.pid) for p in procs] == [{core}]
        await until(lambda: hogs.episodes > 0)
        await until(lambda: all(state(p.pid) == "R" for p in procs))  # resumed, spinning
        await hogs.stop()
        return procs

    procs = asyncio.run(scenario())
    assert all(p.poll() is not None for p in procs)  # killed
    assert os.sched_getaffinity(target) == before


def test_cpu_hogs_wait_stopped_between_episodes(idle):
    hogs = CpuHogs([idle.pid], CpuSpec(rate=1e-9))  # the first episode is ages away

    async def scenario() -> None:
        hogs.start()
        (hog,) = hogs.hogs[hogs.core_of[idle.pid]]
        await until(lambda: state(hog.pid) == "T")
        await hogs.stop()

    asyncio.run(scenario())
    assert hogs.episodes == 0


def drawn_sizes(seed: int, ports: list[int], spec: ShuffleSpec, n: int) -> list[int]:
    """The transfer sizes a one-worker `Shuffler` draws from ``seed``, in order."""
    rng = random.Random(seed)
    sizes = []
    for _ in range(n):
        rng.sample(ports, 2)
        sizes.append(int(rng.uniform(spec.min_mb, spec.max_mb) * MB))
    return sizes


def test_shuffles_move_the_drawn_bytes_between_sidecars_and_stop_cleanly():
    spec = ShuffleSpec(concurrency=1, min_mb=1, max_mb=3)

    async def scenario() -> None:
        servers = [ShuffleServer() for _ in range(3)]
        ports = [await s.start("127.0.0.1", 0) for s in servers]
        shuffler = Shuffler(ports, spec, seed=5)
        shuffler.start()
        await until(lambda: shuffler.transfers >= 4)
        await shuffler.stop()
        await until(lambda: all(not s._tasks for s in servers))  # pushes aborted, sinks ended
        sizes = drawn_sizes(5, ports, spec, shuffler.transfers)
        assert shuffler.moved == sum(sizes) and len(shuffler.durations) == shuffler.transfers
        received = sum(s.received for s in servers)
        assert received >= sum(s.sent for s in servers) >= shuffler.moved
        assert sum(shuffler.active.values()) == 0
        for server in servers:
            await server.close()

    asyncio.run(scenario())


def test_sidecar_processes_copy_the_bytes_and_exit_cleanly():
    sidecars = ShuffleSidecars(["data-0", "data-1"])
    spec = ShuffleSpec(concurrency=1, min_mb=4, max_mb=4)

    async def scenario() -> tuple[dict[str, int], int, list[tuple[int, int]]]:
        async with sidecars:
            ports = list(sidecars.ports.values())
            assert all(p.pid != os.getpid() for p in sidecars.processes.values())
            shuffler = Shuffler(ports, spec, seed=0)
            shuffler.start()
            await until(lambda: shuffler.transfers >= 3)
            await shuffler.stop()
            counts = [await sidecar_bytes(port) for port in ports]
        return await sidecars.stop(), shuffler.moved, counts

    codes, moved, counts = asyncio.run(scenario())
    assert moved >= 3 * 4 * MB
    assert sum(received for received, _ in counts) >= moved
    assert sum(sent for _, sent in counts) >= moved
    assert codes == {"data-0": 0, "data-1": 0}  # SIGTERM: a clean exit


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
    ],
)
def test_contention_is_parsed_and_described(text, described):
    contention = parse_contention(text)
    assert described in contention.describe()
    assert contention.text == text


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
