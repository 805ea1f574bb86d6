"""Send buffers are reused only once nothing holds them (frontend.buffers)."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import uvloop

from frontend.buffers import BufferPool


def test_a_free_buffer_is_reused() -> None:
    pool = BufferPool((2, 3), np.float32)
    first = pool.take()
    assert first.shape == (2, 3) and first.dtype == np.float32
    del first
    again = pool.take()
    assert len(pool) == 1
    del again


def test_a_buffer_with_a_view_somewhere_is_not_handed_out() -> None:
    pool = BufferPool((4,), np.float32)
    view = pool.take().data  # a send in flight
    other = pool.take()
    assert len(pool) == 2 and np.shares_memory(other, np.frombuffer(view, np.float32)) is False
    del other
    assert pool.take() is not np.frombuffer(view, np.float32).base


def test_past_its_size_the_pool_lends_buffers_it_does_not_keep() -> None:
    pool = BufferPool((1,), np.uint8, keep=1)
    held = [pool.take(), pool.take()]
    assert len(pool) == 1 and held[0] is not held[1]


class _Drained(asyncio.Protocol):
    def __init__(self) -> None:
        self.drained = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.set_write_buffer_limits(high=1, low=0)  # type: ignore[attr-defined]

    def pause_writing(self) -> None:
        self.drained.clear()

    def resume_writing(self) -> None:
        self.drained.set()


def test_uvloop_holds_a_buffer_it_could_not_write_until_the_socket_drains() -> None:
    """The real transport: a write the kernel does not take at once keeps the buffer."""

    async def scenario() -> None:
        reader, writer_end = socket.socketpair()
        writer_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_connection(_Drained, sock=writer_end)
        pool = BufferPool((1 << 20,), np.uint8)
        buffer = pool.take()
        buffer[:] = 7
        transport.write(buffer.data)  # far more than the socket takes at once
        del buffer
        assert transport.get_write_buffer_size() > 0
        second = pool.take()  # the first is still the transport's
        assert len(pool) == 2
        reader.setblocking(False)
        got = 0
        while got < 1 << 20:  # the peer reads everything: the write drains
            got += len(await loop.sock_recv(reader, 1 << 16))
        await asyncio.wait_for(protocol.drained.wait(), 30)
        transport.close()
        reader.close()
        assert pool.take() is not second and len(pool) == 2  # the first came back

    uvloop.run(scenario())
