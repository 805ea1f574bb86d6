"""Contention injectors: each really slows real processes, and each stops cleanly."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from bench.contention import ActiveContention, parse_contention
from bench.contention.cpu import CpuHogs, CpuSpec
from bench.contention.pause import Pauser, PauseSpec
from bench.contention.shuffle import MB, Shuffler, ShuffleServer, ShuffleSpec

TICK = os.sysconf("SC_CLK_TCK")
HEARTBEAT = (
    "import sys, time\nwhile True:\n    sys.stdout.write('.'); sys.stdout.flush()\n"
    "    time.sleep(0.005)"
)
SPIN = "while True: pass"
SIDECAR = """
import asyncio, sys
from bench.contention.shuffle import ShuffleServer
async def main():
    server = ShuffleServer()
    print(await server.start("127.0.0.1", 0), flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""


def stat(pid: int) -> tuple[str, float]:
    """(state letter, CPU seconds) of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return fields[0], (int(fields[11]) + int(fields[12])) / TICK


def child(code: str, stdout: int | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code], stdout=stdout)


@pytest.fixture
def heartbeat() -> Iterator[subprocess.Popen[bytes]]:
    proc = child(HEARTBEAT, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.read(1)  # blocks until the child is up and beating
    os.set_blocking(proc.stdout.fileno(), False)
    yield proc
    proc.kill()
    proc.wait()
    proc.stdout.close()


def beats(proc: subprocess.Popen[bytes], seconds: float) -> int:
    """Heartbeats written during the next ``seconds``."""
    assert proc.stdout is not None
    proc.stdout.read()  # drop what came before
    time.sleep(seconds)
    return len(proc.stdout.read() or b"")


async def until(predicate: object, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("stop_while_paused", [True, False])
def test_a_pause_really_stops_a_process_and_stop_resumes_it(heartbeat, stop_while_paused):
    pid = heartbeat.pid
    long = PauseSpec(rate=200, min_ms=400, max_ms=400)
    short = PauseSpec(rate=200, min_ms=50, max_ms=50)

    async def scenario() -> None:
        pauser = Pauser([pid], long if stop_while_paused else short, seed=0)
        pauser.start()
        await until(lambda: stat(pid)[0] == "T")
        assert beats(heartbeat, 0.03) == 0  # stopped: not one heartbeat
        if not stop_while_paused:
            await until(lambda: stat(pid)[0] != "T")  # SIGCONT came on schedule
        await pauser.stop()
        assert pauser.episodes >= 1 and not pauser.paused

    asyncio.run(scenario())
    assert stat(pid)[0] != "T"
    assert beats(heartbeat, 0.1) > 0  # running again


def test_cpu_hogs_share_the_target_core_and_go_away():
    target = child(SPIN)
    try:
        hogs = CpuHogs([target.pid], CpuSpec(hogs=1, rate=1000, min_ms=5000, max_ms=5000))
        before = os.sched_getaffinity(target.pid)

        async def scenario() -> tuple[float, float]:
            alone = share(target.pid, 0.3)
            hogs.start()
            core = hogs.core_of[target.pid]
            assert os.sched_getaffinity(target.pid) == {core}
            hog = hogs.hogs[core][0]
            assert os.sched_getaffinity(hog.pid) == {core}
            await until(lambda: hogs.episodes > 0)
            shared = share(target.pid, 0.3)
            await hogs.stop()
            assert hog.poll() is not None  # killed
            return alone, shared

        alone, shared = asyncio.run(scenario())
        assert shared < 0.85 * alone  # the target really lost CPU time to the hog
        assert os.sched_getaffinity(target.pid) == before
    finally:
        target.kill()
        target.wait()


def share(pid: int, seconds: float) -> float:
    """Share of one core ``pid`` used over the next ``seconds`` (blocking on purpose)."""
    start = stat(pid)[1]
    time.sleep(seconds)
    return (stat(pid)[1] - start) / seconds


def test_shuffles_move_bytes_between_sidecars_and_stop_cleanly():
    async def scenario() -> None:
        servers = [ShuffleServer() for _ in range(3)]
        ports = [await s.start("127.0.0.1", 0) for s in servers]
        shuffler = Shuffler(ports, ShuffleSpec(concurrency=2, min_mb=2, max_mb=4), seed=0)
        shuffler.start()
        await until(lambda: shuffler.transfers >= 4)
        await shuffler.stop()
        await until(lambda: all(not s._tasks for s in servers))  # pushes aborted, sinks ended
        received = sum(s.received for s in servers)
        assert received >= shuffler.moved >= 4 * 2 * MB
        assert sum(s.sent for s in servers) >= shuffler.moved
        assert len(shuffler.durations) == shuffler.transfers
        await asyncio.sleep(0.1)
        assert sum(s.received for s in servers) == received  # nothing moves any more
        for server in servers:
            await server.close()

    asyncio.run(scenario())


def test_shuffle_bytes_are_copied_by_the_instance_processes_themselves():
    sidecars = [child(SIDECAR, stdout=subprocess.PIPE) for _ in range(2)]
    try:
        ports = [int(p.stdout.readline()) for p in sidecars]  # type: ignore[union-attr]
        cpu_before = [stat(p.pid)[1] for p in sidecars]

        async def scenario() -> Shuffler:
            shuffler = Shuffler(ports, ShuffleSpec(concurrency=1, min_mb=32, max_mb=32))
            shuffler.start()
            await until(lambda: shuffler.transfers >= 4, timeout=20)
            await shuffler.stop()
            return shuffler

        shuffler = asyncio.run(scenario())
        assert shuffler.moved >= 4 * 32 * MB
        spent = [stat(p.pid)[1] - before for p, before in zip(sidecars, cpu_before, strict=True)]
        assert min(spent) > 0.02  # both processes did the copying work
    finally:
        for proc in sidecars:
            proc.kill()
            proc.wait()
            proc.stdout.close()  # type: ignore[union-attr]


def test_all_injectors_start_and_stop_together(heartbeat):
    contention = parse_contention("pause:rate=100,min_ms=20,max_ms=40+cpu:rate=100")

    async def scenario() -> dict[str, float]:
        active = ActiveContention(contention, [heartbeat.pid], [], seed=0)
        active.start()
        await asyncio.sleep(0.2)
        await active.stop()
        return active.stats()

    stats = asyncio.run(scenario())
    assert stats["pause_episodes"] > 0 and stats["cpu_episodes"] > 0
    assert stat(heartbeat.pid)[0] != "T"


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


def test_container_options_follow_the_contention():
    contention = parse_contention("shuffle+delay:prob=0.5,mean_ms=20")
    args = contention.container_args(4242)
    assert args[:2] == ["--shuffle-port", "4242"]
    assert args[2:] == ["--delay-ms", "20.0", "--delay-prob", "0.5", "--delay-dist", "exp"]
