"""``python -m model_container``: serve one model bundle (see `model_container.server`)."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from common.models import UnknownArchitectureError
from model_container.config import ContainerConfig
from model_container.server import serve

log = logging.getLogger("model_container")

PR_SET_PDEATHSIG = 1


def parse_args(argv: Sequence[str] | None = None) -> ContainerConfig:
    """The container configuration from command-line arguments."""
    p = argparse.ArgumentParser(prog="python -m model_container", description=__doc__)
    p.add_argument("--bundle", type=Path, required=True, help="model bundle folder")
    p.add_argument("--port", type=int, required=True, help="v2 gRPC port (0: any free port)")
    p.add_argument("--stream-port", type=int, default=0, help="framed TCP port (0: off)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--delay-ms", type=float, default=0.0, help="injected response delay")
    p.add_argument(
        "--delay-prob", type=float, default=None, help="delay probability (1 with --delay-ms)"
    )
    p.add_argument("--fail-prob", type=float, default=0.0, help="injected failure probability")
    p.add_argument(
        "--delay-dist", default="const", choices=["const", "exp"], help="of the injected delay"
    )
    p.add_argument(
        "--service-time-ms",
        type=float,
        default=0.0,
        help="pad each inference to this time (an accelerator's, on a CPU machine)",
    )
    p.add_argument(
        "--shuffle-port", type=int, default=0, help="benchmarks: network-contention sidecar port"
    )
    p.add_argument("--metrics-port", type=int, default=0, help="Prometheus /metrics (0: off)")
    p.add_argument("--seed", type=int, default=None, help="seed of the fault draws")
    p.add_argument("--name", default=None, help="model name to serve (default: manifest's)")
    p.add_argument(
        "--exit-with-parent",
        type=int,
        metavar="PID",
        help="exit when process PID (the launcher) dies: no orphans (Linux)",
    )
    args = vars(p.parse_args(argv))
    parent = args.pop("exit_with_parent")
    if parent is not None:
        _exit_with_parent(parent)
    try:
        return ContainerConfig(**args)
    except ValueError as exc:
        p.error(str(exc))


def _exit_with_parent(pid: int) -> None:
    """Ask the kernel for SIGTERM when our parent dies, then check it has not already."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        log.warning("cannot follow the launcher's lifetime: prctl failed")
    if os.getppid() != pid:  # the launcher died before prctl took effect
        sys.exit(0)


def _run(config: ContainerConfig) -> None:
    try:
        import uvloop
    except ImportError:  # uvloop is optional: plain asyncio works, a little slower
        asyncio.run(serve(config))
    else:
        uvloop.run(serve(config))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = parse_args(argv)
    try:
        _run(config)
    except (ValueError, UnknownArchitectureError, OSError) as exc:  # BundleError included
        log.error("cannot serve %s: %s", config.bundle, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
