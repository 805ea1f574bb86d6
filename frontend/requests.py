"""Checks on client requests shared by every front door (gRPC, v2 REST, Clipper).

Bad input is refused here, with a message naming what was expected and what came,
before anything reaches the coordinator or an instance.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from common.bundle import TensorSpec
from common.datatypes import DATATYPES
from frontend.model import QueryError
from proto.tensors import TensorError, check_batch

REQUIRE_ORIGINAL = "parm_require_original"
TIMEOUT_MS = "timeout_ms"
SOURCE = "parm_source"
SOURCES = "parm_sources"


@dataclass(frozen=True)
class QueryOptions:
    timeout_ms: float | None = None
    require_original: bool = False


def invalid(message: str) -> QueryError:
    """A QueryError INVALID_ARGUMENT: the request is malformed."""
    return QueryError("INVALID_ARGUMENT", message)


class PayloadTooLarge(QueryError):
    """A request body over the limit: HTTP 413 (gRPC has its own message size limit)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__("INVALID_ARGUMENT", f"request body of {size} bytes exceeds {limit} bytes")


def expect_one_input(count: int) -> None:
    """The served models take exactly one input tensor."""
    if count != 1:
        raise invalid(f"expected 1 input tensor, got {count}")


def check_outputs(spec: TensorSpec, names: Iterable[str]) -> None:
    """Outputs a request asks for must be the model's one output."""
    for name in names:
        if name != spec.name:
            raise invalid(f"unknown output {name!r}; expected {spec.name!r}")


def split_rows(
    spec: TensorSpec,
    name: str,
    datatype: str,
    shape: Sequence[int],
    raw: bytes,
    *,
    max_bytes: int,
) -> list[bytes]:
    """The rows (one query each) of an input tensor ``[n, *spec.shape]`` in raw bytes."""
    try:
        check_batch(spec, name, datatype, shape)
    except TensorError as exc:
        raise invalid(str(exc)) from None
    if len(raw) > max_bytes:
        raise invalid(f"input {name!r}: {len(raw)} bytes exceed the limit of {max_bytes}")
    row_bytes = math.prod(spec.shape) * DATATYPES[datatype].itemsize
    if len(raw) != shape[0] * row_bytes:
        raise invalid(
            f"input {name!r}: shape {list(shape)} of {datatype} needs "
            f"{shape[0] * row_bytes} bytes, got {len(raw)}"
        )
    if shape[0] == 1:
        return [raw]
    view = memoryview(raw)
    return [bytes(view[i * row_bytes : (i + 1) * row_bytes]) for i in range(shape[0])]


def query_options(parameters: Mapping[str, object]) -> QueryOptions:
    """``timeout_ms`` and ``parm_require_original`` from request parameters."""
    timeout = parameters.get(TIMEOUT_MS)
    if timeout is not None:
        # Fix: a boolean is no number of milliseconds (float(True) made it a 1 ms deadline).
        if isinstance(timeout, bool):
            raise invalid(f"parameter {TIMEOUT_MS}: expected a number, got {timeout!r}")
        try:
            timeout = float(timeout)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise invalid(f"parameter {TIMEOUT_MS}: expected a number, got {timeout!r}") from None
        # Fix: finite too; "inf" would have been a query with no deadline at all.
        if not 0 < timeout < math.inf:
            raise invalid(
                f"parameter {TIMEOUT_MS}: expected a positive finite number, got {timeout}"
            )
    flag = parameters.get(REQUIRE_ORIGINAL, False)
    if isinstance(flag, str) and flag.lower() in ("true", "false", "1", "0"):
        flag = flag.lower() in ("true", "1")
    if not isinstance(flag, bool):
        raise invalid(f"parameter {REQUIRE_ORIGINAL}: expected a boolean, got {flag!r}")
    return QueryOptions(timeout, flag)


def overall_source(sources: Sequence[str]) -> str:
    """One word for a batch: the least trustworthy source among its rows."""
    for word in ("default", "reconstructed"):
        if word in sources:
            return word
    return "original"
