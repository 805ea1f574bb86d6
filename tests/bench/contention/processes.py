"""Real helper processes for the contention tests: an idle child, its state, a deadline."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

IDLE = "import time; time.sleep(600)"
#: a deadline for conditions that must come true, far beyond any machine's slowness
DEADLINE_S = 30.0


def state(pid: int) -> str:
    """The process's state letter from /proc (T: stopped)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@pytest.fixture
def idle() -> Iterator[subprocess.Popen[bytes]]:
    """A child process that only sleeps: a target to pause or pin."""
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
