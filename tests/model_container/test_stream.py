"""FramedServer in process, with a stand-in handler."""

import asyncio
import contextlib

from model_container.stream import FramedServer
from proto import inference_pb2 as pb
from proto.framing import HEADER, FrameDecoder, encode_frame


async def _echo(request: pb.ModelInferRequest) -> pb.ModelStreamInferResponse:
    answer = pb.ModelStreamInferResponse()
    answer.infer_response.id = request.id
    return answer


async def _read_answers(reader: asyncio.StreamReader, n: int) -> list[pb.ModelStreamInferResponse]:
    decoder = FrameDecoder()
    frames: list[bytes] = []
    while len(frames) < n:
        data = await reader.read(65536)
        assert data, "server closed the connection"
        frames += decoder.feed(data)
    return [pb.ModelStreamInferResponse.FromString(f) for f in frames]


def _frame(request_id: str) -> bytes:
    return encode_frame(pb.ModelInferRequest(id=request_id).SerializeToString())


async def _with_server(body) -> None:
    server = FramedServer(_echo)
    port = await server.start("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await body(server, reader, writer)
    finally:
        await _close(writer)
        await server.close(1.0)


def test_answers_in_order_including_split_and_pipelined_frames():
    async def body(server, reader, writer):
        data = b"".join(_frame(f"r{i}") for i in range(5))
        writer.write(data[:3])  # a header split across writes
        await writer.drain()
        writer.write(data[3:])
        answers = await _read_answers(reader, 5)
        assert [a.infer_response.id for a in answers] == [f"r{i}" for i in range(5)]

    asyncio.run(_with_server(body))


def test_garbage_payload_gets_an_error_and_the_connection_goes_on():
    async def body(server, reader, writer):
        writer.write(encode_frame(b"\xff\xff") + _frame("after"))
        bad, good = await _read_answers(reader, 2)
        assert bad.error_message.startswith("INVALID_ARGUMENT: frame is not a ModelInferRequest")
        assert good.infer_response.id == "after"

    asyncio.run(_with_server(body))


def test_oversized_frame_closes_the_connection():
    async def body(server, reader, writer):
        writer.write(HEADER.pack(2**31))
        assert await reader.read() == b""

    asyncio.run(_with_server(body))


def test_close_drops_idle_connections_at_once():
    async def body(server, reader, writer):
        writer.write(_frame("x"))
        await _read_answers(reader, 1)
        # The connection is idle now: close() must not wait out the grace period.
        await asyncio.wait_for(server.close(grace_s=60.0), timeout=10.0)
        assert await reader.read() == b""

    asyncio.run(_with_server(body))


def test_close_lets_a_busy_connection_finish():
    async def run() -> None:
        started, release = asyncio.Event(), asyncio.Event()

        async def slow(request: pb.ModelInferRequest) -> pb.ModelStreamInferResponse:
            started.set()
            await release.wait()
            return await _echo(request)

        server = FramedServer(slow)
        port = await server.start("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(_frame("busy"))
            await started.wait()
            closing = asyncio.ensure_future(server.close(grace_s=60.0))
            release.set()
            (answer,) = await _read_answers(reader, 1)
            assert answer.infer_response.id == "busy"
            await closing
        finally:
            await _close(writer)

    asyncio.run(run())


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
