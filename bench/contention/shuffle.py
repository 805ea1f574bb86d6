"""Background network load as in the papers: bulk transfers between random instance pairs.

The papers ran "shuffles" -- 4 concurrent 128-256 MB transfers between random pairs of
instances -- so that some instances' network was busy at any moment.  On one machine
the transfers go over loopback, where there is no NIC to share; what a transfer really
competes for is the machine's cores and memory bandwidth, which the instances share.
The two ends of every transfer are sidecar processes, one next to each instance:

- ``ShuffleServer`` is the sidecar, its own process (``python -m bench.contention.sidecar
  --host H --port P``, started by the benchmark with `ShuffleSidecars` from
  ``bench.contention.sidecar``; the model container knows nothing of it).  A connection
  that starts with ``SINK`` is read to the end and discarded; one that starts with
  ``PUSH <bytes> <host> <port>`` makes this process send that many bytes to the peer's
  sidecar, and answers ``DONE <bytes> <seconds>``; ``STAT`` answers ``<bytes
  received> <bytes sent>``.
- ``Shuffler`` is the controller: ``concurrency`` workers, each of which keeps asking a
  random sidecar to push a random-size transfer to another random sidecar.

Sidecars are addressed by *endpoint*, ``(host, port)`` (a bare port means loopback).  On
a netns network (``deploy.netns``) each sidecar runs on its instance's host, so a
transfer crosses the sender's and the receiver's rate-limited links, as in the papers.

Stopping is clean: the controller's workers are cancelled, which closes their control
connections; a sidecar aborts a push whose control connection closed, and a sink ends
at EOF.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

SEND, RECEIVE = 0, 1  # a sidecar's role in a transfer
CHUNK = 1 << 20  # bytes per write; reads take what the socket has, up to this
MB = 1 << 20

Endpoint = tuple[str, int]  # a sidecar's (host, port)


def endpoint(where: int | Endpoint) -> Endpoint:
    """``(host, port)``; a bare port is on loopback."""
    return ("127.0.0.1", where) if isinstance(where, int) else where


class ShuffleServer:
    """The per-instance sidecar: sinks incoming transfers and pushes outgoing ones."""

    def __init__(self) -> None:
        self.received = 0  # bytes sunk so far
        self.sent = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: set[asyncio.StreamWriter] = set()
        self._chunk = bytes(CHUNK)

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: any free port); return the bound port."""
        self._server = await asyncio.start_server(self._serve, host, port, limit=CHUNK)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def close(self) -> None:
        """Stop accepting and end every transfer in progress."""
        if self._server is not None:
            self._server.close()
        # Cut the connections rather than cancel their handlers: a handler then ends
        # like any transfer cut short (asyncio 3.11 logs a cancelled handler's task
        # as an error).
        for writer in list(self._connections):
            writer.transport.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._connections.add(writer)
        try:
            header = (await reader.readline()).split()
            if header[:1] == [b"SINK"]:
                await self._sink(reader)
            elif header[:1] == [b"PUSH"] and len(header) == 4:
                peer = (header[2].decode(), int(header[3]))
                await self._push_for(reader, writer, int(header[1]), peer)
            elif header[:1] == [b"STAT"]:
                writer.write(f"{self.received} {self.sent}\n".encode())
                await writer.drain()
        except (ConnectionError, ValueError, asyncio.IncompleteReadError):
            pass  # a transfer cut short is simply over
        finally:
            self._tasks.discard(task)
            self._connections.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _sink(self, reader: asyncio.StreamReader) -> None:
        while data := await reader.read(CHUNK):
            self.received += len(data)

    async def _push_for(
        self, control: asyncio.StreamReader, answer: asyncio.StreamWriter, size: int, peer: Endpoint
    ) -> None:
        """Push ``size`` bytes to the sidecar at ``peer``; abort when ``control`` closes."""
        began = time.perf_counter()
        push = asyncio.ensure_future(self._push(size, peer))
        hangup = asyncio.ensure_future(control.read(1))  # EOF: the controller gave up
        done, _ = await asyncio.wait({push, hangup}, return_when=asyncio.FIRST_COMPLETED)
        for pending in (push, hangup):
            pending.cancel()
        await asyncio.gather(push, hangup, return_exceptions=True)
        if push in done and push.exception() is None:
            answer.write(f"DONE {size} {time.perf_counter() - began:.6f}\n".encode())
            await answer.drain()

    async def _push(self, size: int, peer: Endpoint) -> None:
        _, writer = await asyncio.open_connection(*peer)
        try:
            writer.write(b"SINK\n")
            left = size
            while left > 0:
                n = min(left, CHUNK)
                writer.write(self._chunk[:n] if n < CHUNK else self._chunk)
                await writer.drain()
                left -= n
                self.sent += n
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@dataclass(frozen=True)
class ShuffleSpec:
    """The papers' background shuffles: ``concurrency`` transfers of min..max MB at a time."""

    concurrency: int = 4
    min_mb: float = 128.0
    max_mb: float = 256.0
    #: idle time between a worker's transfers (mean of an exponential; 0: back to back)
    gap_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.concurrency < 1 or not 0 < self.min_mb <= self.max_mb or self.gap_ms < 0:
            raise ValueError(f"invalid shuffle settings: {self}")

    def describe(self) -> str:
        gap = f", mean gap {self.gap_ms:g} ms" if self.gap_ms else ""
        return (
            f"network shuffles: {self.concurrency} concurrent {self.min_mb:g}-{self.max_mb:g} MB "
            f"transfers between random instance pairs, through a sidecar process next to "
            f"each instance (over loopback, or on a netns network through both hosts' "
            f"links){gap}"
        )


class Shuffler:
    """Keeps ``spec.concurrency`` transfers going between random pairs of sidecar ports."""

    def __init__(
        self, sidecars: Sequence[int | Endpoint], spec: ShuffleSpec, seed: int = 0
    ) -> None:
        if len(sidecars) < 2:
            raise ValueError(f"shuffles need at least 2 instances, got {len(sidecars)}")
        self.sidecars = [endpoint(s) for s in sidecars]
        self.spec = spec
        self.moved = 0  # bytes of completed transfers
        self.transfers = 0
        self.durations: list[float] = []  # seconds each completed transfer took
        #: the transfer each duration belongs to (its number in start order)
        self.completed: list[int] = []
        self.active: Counter[Endpoint] = Counter()  # sidecar -> its transfers right now
        #: sidecar -> (transfer number, SEND or RECEIVE, perf_counter at its start) of
        #: the last transfer it joined and is still in
        self.current: dict[Endpoint, tuple[int, int, float]] = {}
        self._started = 0
        self._rng = random.Random(seed)
        self._workers: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for i in range(self.spec.concurrency):
            task = loop.create_task(self._worker(), name=f"shuffle-{i}")
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)

    async def stop(self) -> None:
        for task in list(self._workers):
            task.cancel("shuffles stopping")
        await asyncio.gather(*self._workers, return_exceptions=True)

    async def _worker(self) -> None:
        while True:
            src, dst = self._rng.sample(self.sidecars, 2)
            size = int(self._rng.uniform(self.spec.min_mb, self.spec.max_mb) * MB)
            gap = self._rng.expovariate(1000 / self.spec.gap_ms) if self.spec.gap_ms else 0.0
            try:
                await self._transfer(src, dst, size)
            except (ConnectionError, OSError):
                await asyncio.sleep(0.1)  # an instance restarting; try another pair
            if gap:
                await asyncio.sleep(gap)

    async def _transfer(self, src: Endpoint, dst: Endpoint, size: int) -> None:
        reader, writer = await asyncio.open_connection(*src)
        number, began = self._started, time.perf_counter()
        self._started += 1
        self.active.update((src, dst))
        self.current[src] = (number, SEND, began)
        self.current[dst] = (number, RECEIVE, began)
        try:
            writer.write(f"PUSH {size} {dst[0]} {dst[1]}\n".encode())
            await writer.drain()
            answer = (await reader.readline()).split()
            if answer[:1] == [b"DONE"]:
                self.moved += size
                self.transfers += 1
                self.durations.append(float(answer[2]))
                self.completed.append(number)
        finally:
            self.active.subtract((src, dst))
            for end in (src, dst):
                if self.current.get(end, (None,))[0] == number:
                    del self.current[end]
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def sidecar_bytes(where: int | Endpoint) -> tuple[int, int]:
    """(bytes received, bytes sent) so far by the sidecar at ``where``."""
    reader, writer = await asyncio.open_connection(*endpoint(where))
    try:
        writer.write(b"STAT\n")
        received, sent = (await reader.readline()).split()
        return int(received), int(sent)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
