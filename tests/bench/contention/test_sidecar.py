"""Sidecar processes: started next to instances, moving bytes, exiting cleanly."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Sequence

from bench.contention.shuffle import MB, Shuffler, ShuffleSpec, sidecar_bytes
from bench.contention.sidecar import ShuffleSidecars
from tests.bench.contention.processes import DEADLINE_S, until


async def received(ports: Sequence[int]) -> int:
    return sum([(await sidecar_bytes(port))[0] for port in ports])


def test_sidecar_processes_copy_the_bytes_and_exit_cleanly():
    sidecars = ShuffleSidecars(["data-0", "data-1"])
    spec = ShuffleSpec(concurrency=1, min_mb=4, max_mb=4)

    async def scenario() -> tuple[dict[str, int], int, int]:
        async with sidecars:
            ports = list(sidecars.ports.values())
            assert all(p.pid != os.getpid() for p in sidecars.processes.values())
            assert [await sidecar_bytes(port) for port in ports] == [(0, 0), (0, 0)]
            shuffler = Shuffler(ports, spec, seed=0)
            shuffler.start()
            await until(lambda: shuffler.transfers >= 3)
            await shuffler.stop()
            sent = sum([(await sidecar_bytes(port))[1] for port in ports])
            # Every push is written; the sinks may still be reading the last bytes.
            deadline = time.monotonic() + DEADLINE_S
            while await received(ports) < shuffler.moved:
                assert time.monotonic() < deadline, "the sinks never got the bytes"
                await asyncio.sleep(0.01)
        return await sidecars.stop(), shuffler.moved, sent

    codes, moved, sent = asyncio.run(scenario())
    assert moved >= 3 * 4 * MB and sent >= moved
    assert codes == {"data-0": 0, "data-1": 0}  # SIGTERM: a clean exit


def test_a_sidecar_whose_launcher_is_gone_exits_at_once():
    # PID 1 is not its parent: the launcher it was told to follow has already died.
    done = subprocess.run(
        [sys.executable, "-m", "bench.contention.sidecar", "--exit-with-parent", "1"],
        capture_output=True,
        timeout=DEADLINE_S,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


def test_no_sidecars_is_a_no_op():
    async def scenario() -> dict[str, int]:
        async with ShuffleSidecars([]) as sidecars:
            assert sidecars.ports == {}
        return await sidecars.stop()

    assert asyncio.run(scenario()) == {}
