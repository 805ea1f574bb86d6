"""Shuffles between sidecars in this process: the bytes moved and the sizes drawn.

Nothing here times anything: the assertions are on the bytes moved and the sizes drawn
for a seed.  How much contention slows a query is
a benchmark's figure (``parm bench latency``), not a test's.
"""

from __future__ import annotations

import asyncio
import random

from bench.contention.shuffle import MB, Shuffler, ShuffleServer, ShuffleSpec
from tests.bench.contention.processes import until


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
        await until(lambda: len(shuffler.current) == 2)
        [(number, send, began), (same, receive, began_too)] = sorted(shuffler.current.values())
        assert (number, send, began) == (same, 0, began_too) and receive == 1  # both sides
        await until(lambda: shuffler.transfers >= 4)
        await shuffler.stop()
        assert shuffler.current == {}  # no sidecar is left in a transfer
        assert shuffler.completed == sorted(set(shuffler.completed))  # numbered in order
        await until(lambda: all(not s._tasks for s in servers))  # pushes aborted, sinks ended
        sizes = drawn_sizes(5, ports, spec, shuffler.transfers)
        assert shuffler.moved == sum(sizes) and len(shuffler.durations) == shuffler.transfers
        received = sum(s.received for s in servers)
        assert received >= sum(s.sent for s in servers) >= shuffler.moved
        assert sum(shuffler.active.values()) == 0
        for server in servers:
            await server.close()

    asyncio.run(scenario())


def test_closing_a_sidecar_cuts_its_transfers_without_errors(caplog):
    async def scenario() -> list[ShuffleServer]:
        servers = [ShuffleServer() for _ in range(2)]
        ports = [await s.start("127.0.0.1", 0) for s in servers]
        endless = ShuffleSpec(concurrency=2, min_mb=1e6, max_mb=1e6)  # a terabyte each
        shuffler = Shuffler(ports, endless)
        shuffler.start()
        await until(lambda: sum(s.received for s in servers) > 0)  # under way
        for server in servers:
            await server.close()
        await shuffler.stop()
        assert shuffler.transfers == 0  # cut short, never DONE
        return servers

    servers = asyncio.run(scenario())
    assert [len(s._tasks) for s in servers] == [0, 0]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    # not the gRPC poller of an earlier test's closed loop, which may say so when it wakes
    assert [m for m in errors if "PollerCompletionQueue" not in m] == []
