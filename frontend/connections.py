"""Transport-level guards of the front doors: connections, descriptors, shutdown.

A client that opens connections and sends nothing, or trickles its request a byte at a
time, holds a file descriptor and a little memory each; enough of them took the whole
process to its descriptor limit, and then no port (gRPC, HTTP, metrics) could accept
anything.  Hence, for HTTP (`frontend.http.GuardedHttp`, uvicorn's httptools protocol
with three additions, under `ConnectionLimits`):

- a cap on open connections per port: one past it is answered a canned 503 and closed
  as soon as it is accepted, which costs no parsing and frees its descriptor at once;
- an idle timeout: a connection with no request in progress is closed (uvicorn only
  times out a connection after its first response, never one that sent nothing);
- a read timeout: a request's headers and body must arrive within it from its first
  byte, however slowly the bytes keep coming (a 408, then the connection is closed).

The process's descriptor soft limit is raised to its hard limit at start
(`raise_descriptor_limit`), and the caps are kept under it (`connection_cap`), so one
abused port leaves descriptors for the others.  gRPC has its own settings for the same
(`frontend.server`).

Shutdown (`Calls`): the calls in flight at either front door are tracked; on stop the
doors stop accepting, the calls get the grace period to finish, and the rest are
cancelled with `SHUTTING_DOWN`, which their handlers answer UNAVAILABLE / 503 with a
message (instead of gRPC's CANCELLED or uvicorn's bare 500 text).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: the cancellation message of calls still running when the grace period ends
SHUTTING_DOWN = "the frontend is shutting down"
#: descriptors kept back from the HTTP caps: gRPC, instance links, bundles, logs
RESERVED_DESCRIPTORS = 256
#: where the hard limit is unlimited, the soft limit is raised this far
UNLIMITED_TARGET = 1 << 20


def raise_descriptor_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; the new soft
    limit (the old one where the system refuses)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError) as exc:  # e.g. above the kernel's nr_open
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, target, exc)
    return soft


def connection_cap(wanted: int, descriptors: int, ports: int) -> int:
    """The connection cap of one of ``ports`` HTTP ports: ``wanted``, but together no
    more than the descriptors left after `RESERVED_DESCRIPTORS`."""
    room = max(1, (descriptors - RESERVED_DESCRIPTORS) // max(1, ports))
    if wanted > room:
        log.warning(
            "HTTP connection cap lowered from %d to %d: the open-files limit is %d",
            wanted,
            room,
            descriptors,
        )
    return min(wanted, room)


# ---------------------------------------------------------------- HTTP connections


@dataclass(frozen=True)
class ConnectionLimits:
    """The limits of one HTTP port (`frontend.config.FrontendConfig` has the settings)."""

    max_connections: int
    idle_timeout_s: float
    read_timeout_s: float
    #: requests in progress on the port; one more is answered 503 before it is routed
    max_requests: int = 32


def canned(status: int, reason: str, message: str) -> bytes:
    """A complete response that closes its connection, written without the application."""
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


# ---------------------------------------------------------------- calls and shutdown


class Calls:
    """The calls in flight at the front doors, each its own task; drained at shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._none = asyncio.Event()
        self._none.set()

    def __len__(self) -> int:
        return len(self._tasks)

    def held(self) -> _Held:
        """Count the current task as a call in flight while the block runs."""
        task = asyncio.current_task()
        assert task is not None, "a call runs in a task"
        return _Held(self, task)

    def _enter(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        self._none.clear()

    def _leave(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._none.set()

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the calls in flight to end, then cancel the
        rest with `SHUTTING_DOWN` (their handlers answer it; see `shut_out`)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._none.wait()
        if self._tasks:
            log.info("frontend: %d calls still running after %.1f s", len(self._tasks), grace)
        for task in self._tasks:
            task.cancel(SHUTTING_DOWN)


class _Held:
    """`Calls.held`'s block: a plain context manager, once per call (a generator-based
    one costs a generator and its frames per query)."""

    __slots__ = ("_calls", "_task")

    def __init__(self, calls: Calls, task: asyncio.Task[Any]) -> None:
        self._calls, self._task = calls, task

    def __enter__(self) -> None:
        self._calls._enter(self._task)

    def __exit__(self, *exc: object) -> None:
        self._calls._leave(self._task)


def shut_out(exc: asyncio.CancelledError) -> bool:
    """Whether ``exc`` is `Calls.drain` ending a call; if so the current task's
    cancellation is withdrawn, for its handler to answer instead."""
    if exc.args != (SHUTTING_DOWN,):
        return False
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    return True
