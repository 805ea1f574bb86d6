"""One frontend worker process: what `deploy.workers` starts N of (the spawn context).

A worker is a whole `frontend.server.Frontend` whose client ports are bound with
SO_REUSEPORT.  It talks to its supervisor over one socket (a socketpair, read and
written as asyncio streams: small length-prefixed JSON messages): it says when it is
``listening``, ``ready`` (every model can answer) and ``all_up`` (every instance is
up), and answers each ``("scrape", seq)`` with ``("metrics", seq, text)``.  SIGTERM
drains it (`Frontend.stop`); it ignores SIGINT (its supervisor stops it in order) and
stops when the supervisor dies (the kernel's parent-death signal, or the socket's end).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
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


def worker_main(spec: WorkerSpec, sock: socket.socket) -> None:
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
        code = run_loop(serve_worker(spec, sock))
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


async def read_message(reader: asyncio.StreamReader) -> list[Any] | None:
    """The next message on a supervisor's socket (a 4-byte length, then JSON); None at
    its end."""
    try:
        header = await reader.readexactly(4)
        body = await reader.readexactly(int.from_bytes(header, "big"))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    message: list[Any] = json.loads(body)
    return message


def write_message(writer: asyncio.StreamWriter, *message: Any) -> None:
    """Queue ``message`` on a supervisor's socket (lost if the other end is gone)."""
    body = json.dumps(message).encode()
    writer.write(len(body).to_bytes(4, "big") + body)


async def _answer_scrapes(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, metrics: Metrics
) -> None:
    """Answer each ``("scrape", seq)``; return when the supervisor is gone."""
    while (request := await read_message(reader)) is not None:
        write_message(writer, "metrics", request[1], metrics.render())


async def serve_worker(spec: WorkerSpec, sock: socket.socket) -> int:
    """Serve until SIGTERM (or the supervisor's end), then drain; the exit status."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    frontend = Frontend(spec.config)
    reader, writer = await asyncio.open_connection(sock=sock)
    scrapes = loop.create_task(_answer_scrapes(reader, writer, frontend.metrics), name="scrapes")
    scrapes.add_done_callback(lambda _: stop.set())  # the supervisor is gone
    progress: asyncio.Task[None] | None = None
    status = 0
    try:
        await frontend.start(listen=spec.listen_at_once)
        if spec.listen_at_once:
            write_message(writer, "listening")
        progress = loop.create_task(_announce(frontend, spec, writer), name="announce")
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
        for task in (progress, scrapes):
            if task is not None:
                task.cancel("worker stopping")
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await frontend.stop()
        writer.close()
    return status


async def _announce(frontend: Frontend, spec: WorkerSpec, writer: asyncio.StreamWriter) -> None:
    """Tell the supervisor each step; a restarted worker opens its ports once ready."""
    await frontend.wait_ready(FOREVER_S)
    if not spec.listen_at_once:
        await frontend.listen()
        write_message(writer, "listening")
    write_message(writer, "ready")
    await frontend.wait_ready(FOREVER_S, every_instance=True)
    write_message(writer, "all_up")
