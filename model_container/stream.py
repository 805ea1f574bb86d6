"""The framed TCP server of a model container (see proto/framing.py for the format).

Each connection is served sequentially: read a frame, answer it, write the answer, so a
delayed request holds back the ones behind it on the same connection, exactly as on a
slow server. Requests that arrive together are answered in order. Malformed protobuf
gets an error answer and the connection goes on; a frame over the size limit closes the
connection, since the byte stream can no longer be trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable

from google.protobuf.message import DecodeError

from proto import inference_pb2 as pb
from proto.framing import FrameDecoder, FrameError, encode_frame

log = logging.getLogger(__name__)

READ_CHUNK = 256 * 1024
Handler = Callable[[pb.ModelInferRequest], Awaitable[pb.ModelStreamInferResponse]]


def set_nodelay(writer: asyncio.StreamWriter) -> None:
    """Disable Nagle's algorithm: small answers must leave at once, not after 40 ms."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class FramedServer:
    """Serves ModelInferRequest frames with ModelStreamInferResponse frames via ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        # Connection task -> whether it is answering a request right now.
        self._busy: dict[asyncio.Task[None], bool] = {}
        self._closing = False

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: any free port); return the bound port."""
        self._server = await asyncio.start_server(self._serve_connection, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def close(self, grace_s: float) -> None:
        """Stop accepting; drop idle connections; give busy ones ``grace_s`` to finish."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for task, busy in list(self._busy.items()):
            if not busy:
                task.cancel("container shutting down")
        pending = set(self._busy)
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace_s)
            for task in late:
                task.cancel("container shutdown grace expired")
            await asyncio.gather(*late, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None  # start_server runs each connection in its own task
        self._busy[task] = False
        set_nodelay(writer)
        try:
            await self._answer_frames(task, reader, writer)
        except FrameError as exc:
            log.warning("closing connection from %s: %s", writer.get_extra_info("peername"), exc)
        except ConnectionError:
            pass  # the peer went away; nothing to answer
        finally:
            del self._busy[task]
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer_frames(
        self, task: asyncio.Task[None], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        decoder = FrameDecoder()
        while not self._closing:
            data = await reader.read(READ_CHUNK)
            if not data:
                return
            self._busy[task] = True
            for payload in decoder.feed(data):
                writer.write(encode_frame(await self._answer(payload)))
            await writer.drain()
            self._busy[task] = False

    async def _answer(self, payload: bytes) -> bytes:
        try:
            request = pb.ModelInferRequest.FromString(payload)
        except DecodeError as exc:
            answer = pb.ModelStreamInferResponse(
                error_message=f"INVALID_ARGUMENT: frame is not a ModelInferRequest: {exc}"
            )
            return answer.SerializeToString()
        return (await self._handler(request)).SerializeToString()
