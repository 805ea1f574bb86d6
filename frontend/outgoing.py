"""What the frontend sends an instance: one v2 ``ModelInferRequest``, kept in parts.

Every query costs at least one request to an instance, and with a parm container it
travels framed over TCP (``proto.framing``).  Building a protobuf message for it,
serialising it and framing it copies the input three times and costs a few
microseconds of Python per request; a 3x224x224 parity is 602 KB.  So the request is
written out by hand instead, in wire order-independent protobuf: the part that is the
same for every request of a model and batch size (model name, input name, datatype,
shape) is encoded once and cached, the id and the length of the raw contents are a few
bytes, and the input itself is sent from the caller's buffer as it is (`Outgoing.frame`
returns the parts for one ``writelines``, no copy).  `Outgoing.message` parses the same
bytes back into a protobuf message, for gRPC instances and for tests: the two forms
are one message by construction.

The caller's buffer is read when the transport gets round to it: it must not change
until the transport holds no view of it (`frontend.buffers`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from proto import inference_pb2 as pb
from proto.framing import HEADER, MAX_FRAME_BYTES, FrameError

#: bytes, bytearray, memoryview or a contiguous NumPy array: anything with a buffer
Buffer = bytes | bytearray | memoryview

_LEN = 2  # protobuf wire type: length-delimited
_MODEL_NAME, _ID, _INPUTS, _RAW = 1, 3, 5, 7  # ModelInferRequest's field numbers
_NAME, _DATATYPE, _SHAPE = 1, 2, 3  # InferInputTensor's


@functools.lru_cache(maxsize=1024)
def varint(n: int) -> bytes:
    """``n >= 0`` as a protobuf varint."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return varint(number << 3 | _LEN) + varint(len(payload)) + payload


@functools.lru_cache(maxsize=256)
def request_head(model: str, name: str, datatype: str, shape: tuple[int, ...]) -> bytes:
    """The fields of a request for ``model`` with one input tensor ``name`` of
    ``datatype`` and ``shape``: all but its id and raw contents."""
    dims = b"".join(varint(d) for d in shape)
    tensor = _field(_NAME, name.encode()) + _field(_DATATYPE, datatype.encode())
    tensor += _field(_SHAPE, dims)  # packed repeated int64
    return _field(_MODEL_NAME, model.encode()) + _field(_INPUTS, tensor)


_ID_TAG = varint(_ID << 3 | _LEN)
_RAW_TAG = varint(_RAW << 3 | _LEN)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A request to an instance: task ``task_id``, ``head`` (`request_head`), ``raw`` input."""

    task_id: int
    head: bytes
    raw: Buffer

    @classmethod
    def of(
        cls, task_id: int, model: str, name: str, datatype: str, shape: Sequence[int], raw: Buffer
    ) -> Outgoing:
        return cls(task_id, request_head(model, name, datatype, tuple(shape)), raw)

    def _fields(self) -> bytes:
        """Everything but the raw contents themselves: head, id, the raw field's tag and length."""
        task = b"%d" % self.task_id
        raw_bytes = memoryview(self.raw).nbytes
        return b"".join((self.head, _ID_TAG, varint(len(task)), task, _RAW_TAG, varint(raw_bytes)))

    def frame(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> tuple[bytes, Buffer]:
        """The request as one frame of ``proto.framing``, in two parts: the header and
        fields, then the raw input (the caller's buffer itself)."""
        fields = self._fields()
        size = len(fields) + memoryview(self.raw).nbytes
        if size > max_frame_bytes:
            raise FrameError(f"frame of {size} bytes exceeds the limit {max_frame_bytes}")
        return HEADER.pack(size) + fields, self.raw

    def message(self) -> pb.ModelInferRequest:
        """The same request as a protobuf message."""
        return pb.ModelInferRequest.FromString(self._fields() + bytes(self.raw))
