"""Requests to instances written by hand: the same message protobuf would write."""

from __future__ import annotations

import numpy as np
import pytest

from frontend.outgoing import Outgoing, varint
from proto import inference_pb2 as pb
from proto.framing import FrameDecoder, FrameError


def built(task_id: int, shape: list[int], raw: bytes) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="digits", id=str(task_id))
    request.inputs.add(name="input", datatype="FP32", shape=shape)
    request.raw_input_contents.append(raw)
    return request


@pytest.mark.parametrize(("task_id", "rows"), [(0, 1), (7, 3), (123_456_789, 300)])
def test_the_hand_written_request_is_the_protobuf_one(task_id: int, rows: int) -> None:
    raw = np.arange(rows * 64, dtype=np.float32).tobytes()
    request = Outgoing.of(task_id, "digits", "input", "FP32", (rows, 64), raw)
    assert request.message() == built(task_id, [rows, 64], raw)
    head, body = request.frame()
    (payload,) = FrameDecoder().feed(head + body)
    assert pb.ModelInferRequest.FromString(payload) == built(task_id, [rows, 64], raw)


def test_the_input_is_sent_from_the_callers_buffer_without_a_copy() -> None:
    buffer = np.ones((1, 3, 4, 4), np.float32)
    view = buffer.data
    _, body = Outgoing.of(1, "m", "x", "FP32", buffer.shape, view).frame()
    assert body is view


def test_a_frame_over_the_limit_is_refused() -> None:
    request = Outgoing.of(1, "m", "x", "UINT8", (1, 100), bytes(100))
    with pytest.raises(FrameError, match="exceeds the limit 64"):
        request.frame(max_frame_bytes=64)


@pytest.mark.parametrize(("n", "encoded"), [(0, b"\0"), (127, b"\x7f"), (300, b"\xac\x02")])
def test_varints(n: int, encoded: bytes) -> None:
    assert varint(n) == encoded
