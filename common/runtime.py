"""Process-level helpers for entry points: parm's home folder, and running a coroutine."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: loopback ports `free_port` handed out in this process: never handed out twice
_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()
#: `free_port` draws from this port up to the ephemeral range (well-known services sit lower)
PORTS_FROM = 20000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_start() -> int:
    """The first port the kernel gives to outgoing connections (and to binds to port 0)."""
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0  # unknown: leave the choice to the kernel


def parm_home() -> Path:
    """Where parm caches demo bundles and writes logs (``$PARM_HOME``, else ~/.cache/parm)."""
    return Path(os.environ.get("PARM_HOME", Path.home() / ".cache" / "parm"))


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on uvloop when installed, else on plain asyncio."""
    try:
        import uvloop
    except ImportError:  # optional: plain asyncio works, a little slower
        return asyncio.run(coro)
    return uvloop.run(coro)


def free_port() -> int:
    """A loopback TCP port that was free a moment ago, and not one this process was given
    before.  (The kernel may give the port of a socket just closed to the next bind to
    port 0: two instances started one after the other once got the same port, one for
    gRPC and one for its stream.)

    Taken below the kernel's ephemeral range where there is room: a port from that range
    (what binding to port 0 gives) can be taken by any outgoing connection between now
    and the moment its server binds it, and stay taken (an instance then failed to bind
    its port three times in a row and its cluster gave up).
    """
    low = _ephemeral_start()
    with _handed_out_lock:
        while True:
            with socket.socket() as s:
                if low > PORTS_FROM + 1024:
                    try:
                        s.bind(("127.0.0.1", random.randrange(PORTS_FROM, low)))
                    except OSError:
                        continue  # in use: draw again
                else:
                    s.bind(("127.0.0.1", 0))
                port: int = s.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port
