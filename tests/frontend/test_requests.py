"""Request validation (frontend/requests.py): pure functions, every path."""

from __future__ import annotations

import math

import numpy as np
import pytest

from common.bundle import TensorSpec
from frontend.model import QueryError
from frontend.requests import (
    REQUIRE_ORIGINAL,
    TIMEOUT_MS,
    PayloadTooLarge,
    QueryOptions,
    check_outputs,
    expect_one_input,
    invalid,
    overall_source,
    query_options,
    split_rows,
)

SPEC = TensorSpec("input", "FP32", (2, 3))
ROW_BYTES = 2 * 3 * 4
MAX_BYTES = 4 * ROW_BYTES


def rows_of(n: int) -> bytes:
    return np.arange(n * 6, dtype="<f4").tobytes()


def split(
    name: str = "input",
    datatype: str = "FP32",
    shape: tuple[int, ...] = (1, 2, 3),
    raw: bytes | None = None,
) -> list[bytes]:
    raw = rows_of(shape[0] if shape else 0) if raw is None else raw
    return split_rows(SPEC, name, datatype, shape, raw, max_bytes=MAX_BYTES)


def refused(excinfo: pytest.ExceptionInfo[QueryError]) -> str:
    assert excinfo.value.status == "INVALID_ARGUMENT"
    return excinfo.value.message


# ---------------------------------------------------------------- split_rows


@pytest.mark.parametrize("n", [1, 2, 4])
def test_split_rows_gives_one_row_per_query(n: int) -> None:
    raw = rows_of(n)
    rows = split(shape=(n, 2, 3), raw=raw)
    assert len(rows) == n and all(len(r) == ROW_BYTES for r in rows)
    assert b"".join(rows) == raw


def test_a_single_row_is_passed_through_uncopied() -> None:
    raw = rows_of(1)
    assert split(raw=raw)[0] is raw


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "pixels"}, "expected input 'input', got 'pixels'"),
        ({"datatype": "FP64"}, "input 'input': expected datatype FP32, got FP64"),
        ({"datatype": "NOPE"}, "input 'input': expected datatype FP32, got NOPE"),
        ({"shape": (2, 3)}, "input 'input': expected shape [-1, 2, 3], got [2, 3]"),
        ({"shape": (1, 3, 2)}, "input 'input': expected shape [-1, 2, 3], got [1, 3, 2]"),
        ({"shape": (1, 2, 3, 1)}, "input 'input': expected shape [-1, 2, 3], got [1, 2, 3, 1]"),
        ({"shape": (0, 2, 3)}, "input 'input': expected shape [-1, 2, 3], got [0, 2, 3]"),
        (
            {"shape": (-1, 2, 3), "raw": b""},
            "input 'input': expected shape [-1, 2, 3], got [-1, 2, 3]",
        ),
        ({"shape": (), "raw": b""}, "input 'input': expected shape [-1, 2, 3], got []"),
        (
            {"shape": (5, 2, 3)},
            f"input 'input': {5 * ROW_BYTES} bytes exceed the limit of {MAX_BYTES}",
        ),
        (
            {"raw": rows_of(1)[:-1]},
            f"input 'input': shape [1, 2, 3] of FP32 needs {ROW_BYTES} bytes, got {ROW_BYTES - 1}",
        ),
        (
            {"shape": (2, 2, 3), "raw": rows_of(1)},
            f"input 'input': shape [2, 2, 3] of FP32 needs {2 * ROW_BYTES} bytes, got {ROW_BYTES}",
        ),
        (
            {"shape": (1, 2, 3), "raw": rows_of(2)},
            f"input 'input': shape [1, 2, 3] of FP32 needs {ROW_BYTES} bytes, got {2 * ROW_BYTES}",
        ),
    ],
    ids=[
        "name",
        "datatype",
        "unknown-datatype",
        "no-batch-axis",
        "sample-shape",
        "extra-axis",
        "empty-batch",
        "negative-batch",
        "scalar",
        "over-max-bytes",
        "short",
        "short-batch",
        "long",
    ],
)
def test_split_rows_refuses(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(QueryError) as excinfo:
        split(**kwargs)  # type: ignore[arg-type]
    assert refused(excinfo) == message


def test_the_size_limit_is_checked_before_the_byte_count() -> None:
    """An oversized request is refused for its size, however its bytes are laid out."""
    with pytest.raises(QueryError) as excinfo:
        split(shape=(1, 2, 3), raw=bytes(MAX_BYTES + 1))
    assert "exceed the limit" in refused(excinfo)


# ---------------------------------------------------------------- query_options


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({}, QueryOptions(None, False)),
        ({"unrelated": "ignored", "timeout": 5}, QueryOptions(None, False)),
        ({TIMEOUT_MS: 250}, QueryOptions(250.0, False)),
        ({TIMEOUT_MS: 0.5}, QueryOptions(0.5, False)),
        ({TIMEOUT_MS: "120"}, QueryOptions(120.0, False)),
        ({TIMEOUT_MS: " 7.5 "}, QueryOptions(7.5, False)),
        ({REQUIRE_ORIGINAL: True}, QueryOptions(None, True)),
        ({REQUIRE_ORIGINAL: False}, QueryOptions(None, False)),
        ({REQUIRE_ORIGINAL: "true"}, QueryOptions(None, True)),
        ({REQUIRE_ORIGINAL: "TRUE"}, QueryOptions(None, True)),
        ({REQUIRE_ORIGINAL: "1"}, QueryOptions(None, True)),
        ({REQUIRE_ORIGINAL: "false"}, QueryOptions(None, False)),
        ({REQUIRE_ORIGINAL: "0"}, QueryOptions(None, False)),
        ({TIMEOUT_MS: 40, REQUIRE_ORIGINAL: True}, QueryOptions(40.0, True)),
    ],
)
def test_query_options(parameters: dict[str, object], expected: QueryOptions) -> None:
    assert query_options(parameters) == expected


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({TIMEOUT_MS: "soon"}, "parameter timeout_ms: expected a number, got 'soon'"),
        ({TIMEOUT_MS: ""}, "parameter timeout_ms: expected a number, got ''"),
        ({TIMEOUT_MS: True}, "parameter timeout_ms: expected a number, got True"),
        ({TIMEOUT_MS: 0}, "parameter timeout_ms: expected a positive finite number, got 0.0"),
        ({TIMEOUT_MS: -5}, "parameter timeout_ms: expected a positive finite number, got -5.0"),
        ({TIMEOUT_MS: "nan"}, "parameter timeout_ms: expected a positive finite number, got nan"),
        (
            {TIMEOUT_MS: math.inf},
            "parameter timeout_ms: expected a positive finite number, got inf",
        ),
        (
            {REQUIRE_ORIGINAL: "maybe"},
            "parameter parm_require_original: expected a boolean, got 'maybe'",
        ),
        ({REQUIRE_ORIGINAL: 1}, "parameter parm_require_original: expected a boolean, got 1"),
        ({REQUIRE_ORIGINAL: 0.0}, "parameter parm_require_original: expected a boolean, got 0.0"),
    ],
)
def test_query_options_refuses(parameters: dict[str, object], message: str) -> None:
    with pytest.raises(QueryError) as excinfo:
        query_options(parameters)
    assert refused(excinfo) == message


# ---------------------------------------------------------------- inputs and outputs


@pytest.mark.parametrize("count", [0, 2])
def test_exactly_one_input_tensor(count: int) -> None:
    expect_one_input(1)
    with pytest.raises(QueryError) as excinfo:
        expect_one_input(count)
    assert refused(excinfo) == f"expected 1 input tensor, got {count}"


def test_only_the_models_output_may_be_asked_for() -> None:
    output = TensorSpec("logits", "FP32", (10,))
    check_outputs(output, [])
    check_outputs(output, ["logits"])
    with pytest.raises(QueryError) as excinfo:
        check_outputs(output, ["logits", "probabilities"])
    assert refused(excinfo) == "unknown output 'probabilities'; expected 'logits'"


# ---------------------------------------------------------------- overall_source


@pytest.mark.parametrize(
    ("sources", "overall"),
    [
        (["original"], "original"),
        (["original", "original", "original"], "original"),
        (["reconstructed"], "reconstructed"),
        (["original", "reconstructed"], "reconstructed"),
        (["default"], "default"),
        (["reconstructed", "default", "original"], "default"),
        (["default", "reconstructed"], "default"),
        ([], "original"),
    ],
)
def test_overall_source_is_the_least_trustworthy_row(sources: list[str], overall: str) -> None:
    assert overall_source(sources) == overall


# ---------------------------------------------------------------- refusals


def test_invalid_is_an_invalid_argument() -> None:
    error = invalid("bad")
    assert (error.status, error.message) == ("INVALID_ARGUMENT", "bad")


def test_payload_too_large_names_the_size_and_the_limit() -> None:
    error = PayloadTooLarge(2048, 1024)
    assert isinstance(error, QueryError) and error.status == "INVALID_ARGUMENT"
    assert error.message == "request body of 2048 bytes exceeds 1024 bytes"
