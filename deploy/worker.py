"""One frontend worker process: what `deploy.workers` starts N of (the spawn context).

A worker is a whole `frontend.server.Frontend` whose client ports are bound with
SO_REUSEPORT.  It talks to its supervisor over one duplex pipe: it says when it
``listening``, ``ready`` (every model can answer) and ``all_up`` (every instance is
up), and answers each ``("scrape", seq)`` with ``("metrics", seq, text)``.  SIGTERM
drains it (`Frontend.stop`); it ignores SIGINT (its supervisor stops it in order) and
stops when the supervisor dies (the kernel's parent-death signal, or the pipe's end).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from common.runtime import run_loop
from frontend.config import FrontendConfig
from frontend.metrics import Metrics
from frontend.server import Frontend

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
#: a worker waits for its instances as long as a single frontend would: until stopped
FOREVER_S = 365 * 24 * 3600.0


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker is started with (pickled by the spawn context)."""

    index: int
    #: the worker's own configuration (`deploy.workers.worker_config`)
    config: FrontendConfig
    #: open the client ports at once (first start: answer UNAVAILABLE until ready, as
    #: one frontend does) or only once ready (a restart: its siblings are serving)
    listen_at_once: bool = True
    #: the supervisor: the worker stops when it dies
    parent: int = field(default_factory=os.getpid)


def worker_main(spec: WorkerSpec, conn: Connection) -> None:
    """The worker process's entry point; exits 0 after a drain, 1 when it failed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s frontend-worker-{spec.index} %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not exit_with_parent(spec.parent):
        sys.exit(0)
    try:
        code = run_loop(serve_worker(spec, conn))
    except (OSError, RuntimeError, ValueError) as exc:
        log.error("frontend worker %d failed: %s", spec.index, exc)
        code = 1
    sys.exit(code)


def exit_with_parent(pid: int) -> bool:
    """Ask the kernel for SIGTERM when the parent dies; False if it already has."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        log.warning("cannot follow the supervisor's lifetime: prctl failed")
    return os.getppid() == pid


class _Pipe:
    """The worker's end of the supervisor's pipe."""

    def __init__(self, conn: Connection, metrics: Metrics, stop: asyncio.Event) -> None:
        self.conn, self.metrics, self.stop = conn, metrics, stop

    def tell(self, *message: Any) -> None:
        with contextlib.suppress(OSError):  # the supervisor is gone: stop is set
            self.conn.send(message)

    def readable(self) -> None:
        try:
            _, seq = self.conn.recv()
        except (EOFError, OSError):  # the supervisor is gone
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
            self.stop.set()
            return
        self.tell("metrics", seq, self.metrics.render())


async def serve_worker(spec: WorkerSpec, conn: Connection) -> int:
    """Serve until SIGTERM (or the supervisor's end), then drain; the exit status."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    frontend = Frontend(spec.config)
    pipe = _Pipe(conn, frontend.metrics, stop)
    loop.add_reader(conn.fileno(), pipe.readable)
    progress: asyncio.Task[None] | None = None
    status = 0
    try:
        await frontend.start(listen=spec.listen_at_once)
        if spec.listen_at_once:
            pipe.tell("listening")
        progress = loop.create_task(_announce(frontend, spec, pipe), name="announce")
        stopped = loop.create_task(stop.wait(), name="stop")
        done, _ = await asyncio.wait({progress, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if progress in done and (error := progress.exception()) is not None:
            log.error("frontend worker %d cannot serve", spec.index, exc_info=error)
            status = 1
        else:
            await stopped
        log.info("frontend worker %d stopping", spec.index)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(conn.fileno())
        if progress is not None:
            progress.cancel("worker stopping")
            with contextlib.suppress(asyncio.CancelledError):
                await progress
        await frontend.stop()
    return status


async def _announce(frontend: Frontend, spec: WorkerSpec, pipe: _Pipe) -> None:
    """Tell the supervisor each step; a restarted worker opens its ports once ready."""
    await frontend.wait_ready(FOREVER_S)
    if not spec.listen_at_once:
        await frontend.listen()
        pipe.tell("listening")
    pipe.tell("ready")
    await frontend.wait_ready(FOREVER_S, every_instance=True)
    pipe.tell("all_up")
