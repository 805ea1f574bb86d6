"""The shuffle sidecar as its own process, and the launcher that runs one per instance.

``python -m bench.contention.sidecar --host H --port P`` serves one
`bench.contention.shuffle.ShuffleServer` until SIGTERM or SIGINT, then exits 0; its
first line of output is the port it listens on (``--port 0``: any free port).  With
``--exit-with-parent PID`` the kernel stops it when the benchmark that started it dies,
so no sidecar outlives a benchmark.  `ShuffleSidecars` is that benchmark's side: one
sidecar per instance, started next to the cluster and stopped with it.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence

from bench.contention.shuffle import Endpoint, ShuffleServer

STOP_GRACE_S = 5.0
PR_SET_PDEATHSIG = 1


class SidecarError(RuntimeError):
    """A sidecar process that did not start."""


#: where an instance's sidecar runs: (command prefix, address), e.g. on a netns host
#: ``(["ip", "netns", "exec", "parm1-h0"], "10.213.1.2")``
Placement = Callable[[str], tuple[list[str], str]]


class ShuffleSidecars:
    """One sidecar process per instance name, started and stopped by a benchmark.

    ``async with ShuffleSidecars(names) as sidecars:`` starts them (each on a free
    port, which it reports on its first line of output) and stops them on exit:
    SIGTERM, then SIGKILL after a grace period.  ``place`` puts each next to its
    instance (on its netns host); by default all listen on ``host``.
    """

    def __init__(
        self, names: Sequence[str], host: str = "127.0.0.1", place: Placement | None = None
    ) -> None:
        self.names = list(names)
        self.place: Placement = place or (lambda name: ([], host))
        self.endpoints: dict[str, Endpoint] = {}
        self.processes: dict[str, asyncio.subprocess.Process] = {}

    @property
    def ports(self) -> dict[str, int]:
        """Each sidecar's port, by instance name."""
        return {name: port for name, (_, port) in self.endpoints.items()}

    async def start(self) -> Mapping[str, Endpoint]:
        """Start every sidecar; return where each listens, by instance name."""
        for name in self.names:
            prefix, address = self.place(name)
            self.processes[name] = proc = await asyncio.create_subprocess_exec(
                *prefix, sys.executable, "-m", "bench.contention.sidecar",
                "--host", address, "--port", "0", "--exit-with-parent", str(os.getpid()),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert proc.stdout is not None
            line = await proc.stdout.readline()
            if not line.strip().isdigit():
                raise SidecarError(f"shuffle sidecar for {name}: expected its port, got {line!r}")
            self.endpoints[name] = (address, int(line))
        return self.endpoints

    async def stop(self) -> dict[str, int]:
        """Stop every sidecar; return each one's exit status."""
        codes = await asyncio.gather(*(_terminate(p) for p in self.processes.values()))
        return dict(zip(self.processes, codes, strict=True))

    async def __aenter__(self) -> ShuffleSidecars:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _terminate(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
        except TimeoutError:
            proc.kill()
    return await proc.wait()


async def serve_sidecar(host: str, port: int) -> None:
    """Run one sidecar until SIGTERM or SIGINT; print the bound port first."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = ShuffleServer()
    print(await server.start(host, port), flush=True)
    try:
        await stop.wait()
    finally:
        await server.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.contention.sidecar``: one shuffle sidecar process."""
    p = argparse.ArgumentParser(prog="python -m bench.contention.sidecar", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=0, help="port (0: any free port, printed)")
    p.add_argument("--exit-with-parent", type=int, metavar="PID", help="exit when PID dies")
    args = p.parse_args(argv)
    if args.exit_with_parent is not None:
        # The kernel sends SIGTERM when the benchmark dies: no orphan sidecars.
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != args.exit_with_parent:
            return 0
    asyncio.run(serve_sidecar(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
