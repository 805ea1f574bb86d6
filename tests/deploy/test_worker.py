"""One frontend worker's side of its supervisor's socket (the processes themselves run in
tests/deploy/test_workers.py)."""

from __future__ import annotations

import asyncio
import os
import socket

from deploy.worker import FOREVER_S, WorkerSpec, read_message, write_message
from frontend.config import FrontendConfig, InstanceAddress, ModelConfig


def test_messages_cross_the_socket_whole_and_in_order() -> None:
    big = "x" * (1 << 20)  # more than a socket buffer: read back whole

    async def scenario() -> list[object]:
        ours, theirs = socket.socketpair()
        reader, ours_writer = await asyncio.open_connection(sock=ours)
        _, writer = await asyncio.open_connection(sock=theirs)

        async def send() -> None:
            write_message(writer, "listening")
            write_message(writer, "metrics", 7, big)
            writer.close()
            await writer.wait_closed()  # once the reader has taken it all

        sending = asyncio.ensure_future(send())
        got: list[object] = [await read_message(reader) for _ in range(3)]
        await sending
        ours_writer.close()
        await ours_writer.wait_closed()
        return got

    first, second, end = asyncio.run(scenario())
    assert first == ["listening"]
    assert second == ["metrics", 7, big]
    assert end is None  # the other end is gone


def test_a_worker_spec_names_its_supervisor(tmp_path: object) -> None:
    model = ModelConfig("m", tmp_path, (InstanceAddress("data-0", "h:1"),))  # type: ignore[arg-type]
    spec = WorkerSpec(1, FrontendConfig((model,)))
    assert spec.parent == os.getpid() and spec.listen_at_once
    assert FOREVER_S > 3e7  # a year: as long as one frontend waits
