"""``python -m model_container``: serve one model bundle (see `model_container.server`)."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Sequence

from common.bundle import BundleError
from common.models import UnknownArchitectureError
from model_container.config import ContainerConfig, config_from, parser
from model_container.server import EXIT_BAD_BUNDLE, serve

log = logging.getLogger("model_container")

PR_SET_PDEATHSIG = 1


def parse_args(argv: Sequence[str] | None = None) -> ContainerConfig:
    """The container configuration from command-line arguments."""
    p = parser(description=__doc__)
    p.add_argument(
        "--exit-with-parent",
        type=int,
        metavar="PID",
        help="exit when process PID (the launcher) dies: no orphans (Linux)",
    )
    args = p.parse_args(argv)
    if args.exit_with_parent is not None:
        _exit_with_parent(args.exit_with_parent)
    return config_from(p, args)


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
    except BundleError as exc:  # one line, and a status that says the bundle is at fault
        log.error("cannot serve %s: %s", config.bundle, " ".join(str(exc).split()))
        return EXIT_BAD_BUNDLE
    except (ValueError, UnknownArchitectureError, OSError) as exc:
        log.error("cannot serve %s: %s", config.bundle, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
