"""Instance links without sockets: answer matching, the framed protocol, addresses.

The links' connecting and health checking run against real containers in
``test_server`` and ``test_failures``; here the pieces that need no peer are driven
directly: a link's transport is a recording fake, the framed protocol is fed bytes.
"""

from __future__ import annotations

import asyncio

import pytest

from common.clock import SimClock
from frontend.config import InstanceAddress
from frontend.instances import InstanceLink, _FramedProtocol, _split
from frontend.outgoing import Outgoing
from proto import inference_pb2 as pb
from proto.framing import FrameDecoder, encode_frame


class Listener:
    def __init__(self) -> None:
        self.results: list[tuple[int, str]] = []

    def link_up(self, name: str) -> None: ...

    def link_down(self, name: str, reason: str) -> None: ...

    def link_result(self, name: str, task_id: int, response: pb.ModelStreamInferResponse) -> None:
        self.results.append((task_id, response.infer_response.id or response.error_message))


def request(task_id: int) -> Outgoing:
    return Outgoing.of(task_id, "mlp", "input", "FP32", (1, 2), bytes(8))


class Transport:
    def __init__(self) -> None:
        self.sent: list[pb.ModelInferRequest] = []
        self.closed: list[str] = []

    def send(self, request: Outgoing) -> None:
        self.sent.append(request.message())

    def close(self, reason: str) -> None:
        self.closed.append(reason)

    async def finished(self) -> str:
        return "never"


def connected() -> tuple[InstanceLink, Listener, Transport]:
    listener, transport = Listener(), Transport()
    link = InstanceLink(InstanceAddress("data-0", "h:1"), "mlp", listener, SimClock())
    link._transport = transport  # as run() sets it once the data connection is open
    for task_id in (3, 4):
        link.send(task_id, request(task_id))
    return link, listener, transport


def answer(task_id: str = "", error: str = "") -> pb.ModelStreamInferResponse:
    return pb.ModelStreamInferResponse(
        error_message=error, infer_response=pb.ModelInferResponse(id=task_id)
    )


def test_answers_are_matched_by_their_echoed_id() -> None:
    link, listener, transport = connected()
    link._on_response(answer("4"))
    link._on_response(answer("4"))  # not in flight any more: dropped
    link._on_response(answer("3"))
    assert listener.results == [(4, "4"), (3, "3")]
    assert [r.id for r in transport.sent] == ["3", "4"] and link.up


def test_an_error_without_an_id_belongs_to_the_oldest_request() -> None:
    link, listener, _ = connected()
    link._on_response(answer(error="out of memory"))
    assert listener.results == [(3, "out of memory")]


@pytest.mark.parametrize(
    ("response", "reason"),
    [(answer("x1"), "an id we never sent: 'x1'"), (answer(), "answer without an id")],
    ids=["foreign-id", "no-id"],
)
def test_a_bad_answer_takes_the_link_down(
    response: pb.ModelStreamInferResponse, reason: str
) -> None:
    link, listener, transport = connected()
    link._on_response(response)
    assert listener.results == [] and reason in transport.closed[0]


def test_sending_to_a_link_that_is_down_is_a_bug() -> None:
    link = InstanceLink(InstanceAddress("data-0", "h:1"), "mlp", Listener(), SimClock())
    assert not link.up
    link.fail("nothing to close")  # a no-op while down
    with pytest.raises(RuntimeError, match="data-0 is down"):
        link.send(1, request(1))


class FakeTcp:
    def __init__(self) -> None:
        self.written: list[list[bytes]] = []
        self.aborted = False

    def writelines(self, data: list[bytes]) -> None:
        self.written.append(data)

    def abort(self) -> None:
        self.aborted = True


def test_the_framed_protocol_splits_frames_and_reports_its_end() -> None:
    async def scenario() -> tuple[list[str], str, FakeTcp]:
        got: list[str] = []
        protocol = _FramedProtocol(
            lambda r: got.append(r.infer_response.id), asyncio.get_running_loop()
        )
        tcp = FakeTcp()
        protocol.connection_made(tcp)  # type: ignore[arg-type]
        protocol.send(request(7))
        frames = b"".join(encode_frame(answer(i).SerializeToString()) for i in ("1", "2"))
        protocol.data_received(frames[:5])
        protocol.data_received(frames[5:])
        protocol.connection_lost(None)
        return got, await protocol.finished(), tcp

    got, reason, tcp = asyncio.run(scenario())
    assert got == ["1", "2"] and reason == "connection closed by the instance"
    assert len(tcp.written) == 1  # one frame, written as its head and the input beside it
    (frame,) = FrameDecoder().feed(b"".join(tcp.written[0]))
    assert pb.ModelInferRequest.FromString(frame).id == "7"


@pytest.mark.parametrize(
    ("address", "split"),
    [("127.0.0.1:8001", ("127.0.0.1", 8001)), ("[::1]:9", ("::1", 9))],
)
def test_addresses_split_into_host_and_port(address: str, split: tuple[str, int]) -> None:
    assert _split(address) == split


@pytest.mark.parametrize("address", ["localhost", "host:port"])
def test_an_address_without_a_port_is_refused(address: str) -> None:
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        _split(address)
