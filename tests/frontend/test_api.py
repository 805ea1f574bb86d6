"""The transport-neutral entry point (frontend/api.py), over fake model services."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pytest

from common.bundle import TensorSpec
from frontend.api import DEADLINE_MARGIN_S, Api, Query, http_status, refusal
from frontend.config import FrontendConfig
from frontend.events import Source
from frontend.model import ModelService, QueryError, Result
from frontend.requests import PayloadTooLarge

INPUT = TensorSpec("input", "FP32", (2,))
OUTPUT = TensorSpec("output", "FP32", (1,))
ROW = np.zeros(2, "<f4").tobytes()


@dataclass
class FakeConfig:
    slo_ms: float | None = None


@dataclass
class FakeService:
    """What `Api` uses of a ModelService; records each ``infer`` call."""

    name: str = "m"
    ready: bool = True
    input: TensorSpec = INPUT
    output: TensorSpec = OUTPUT
    config: FakeConfig = field(default_factory=FakeConfig)
    calls: list[tuple[list[bytes], float, bool]] = field(default_factory=list)
    clients: list[str] = field(default_factory=list)
    #: what ``refusal`` answers; the (client, rows, timeout) of each ask
    refused: QueryError | None = None
    asked: list[tuple[str, int, float]] = field(default_factory=list)

    async def infer(
        self, rows: list[bytes], timeout_s: float, *, require_original: bool, client: str
    ) -> Any:
        self.calls.append((rows, timeout_s, require_original))
        self.clients.append(client)
        return [Result(np.zeros(1, np.float32), Source.ORIGINAL) for _ in rows]

    def refusal(self, client: str, rows: int, timeout_s: float) -> QueryError | None:
        self.asked.append((client, rows, timeout_s))
        return self.refused


def api_of(*services: FakeService, **settings: Any) -> Api:
    config = FrontendConfig(models=(), **settings)
    return Api({s.name: cast(ModelService, s) for s in services}, config)


def query(rows: int = 1, **changes: Any) -> Query:
    fields: dict[str, Any] = {"input": "input", "datatype": "FP32", "shape": [rows, 2]}
    fields["raw"] = ROW * rows
    return Query(**{**fields, **changes})


def infer(api: Api, q: Query, time_left: float | None = None) -> list[Result]:
    return asyncio.run(api.infer(api.service("m"), q, time_left))


def test_infer_splits_rows_and_runs_them_with_the_options() -> None:
    service = FakeService()
    results = infer(api_of(service), query(3, parameters={"parm_require_original": True}))
    assert len(results) == 3
    ((rows, _, require_original),) = service.calls
    assert rows == [ROW] * 3 and require_original


@pytest.mark.parametrize(
    ("slo_ms", "timeout_ms", "time_left", "expected"),
    [
        (None, None, None, 1.5),  # the frontend's max_deadline_ms
        (200.0, None, None, 0.2),  # the model's SLO
        (200.0, 50.0, None, 0.05),  # the request's timeout_ms
        (200.0, 50.0, 1.0, 0.05),  # the tightest limit
        (None, None, 1.0, 1.0 - DEADLINE_MARGIN_S),  # the client's deadline, less a margin
        (None, None, 0.05, 0.045),  # the margin is at most a tenth of the time left
    ],
)
def test_the_deadline_is_the_tightest_limit(
    slo_ms: float | None, timeout_ms: float | None, time_left: float | None, expected: float
) -> None:
    service = FakeService(config=FakeConfig(slo_ms))
    parameters = {} if timeout_ms is None else {"timeout_ms": timeout_ms}
    infer(api_of(service, max_deadline_ms=1500), query(parameters=parameters), time_left)
    assert service.calls[0][1] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("q", "time_left", "status", "message"),
    [
        (query(outputs=["logits"]), None, "INVALID_ARGUMENT", "unknown output 'logits'"),
        (query(input="x"), None, "INVALID_ARGUMENT", "expected input 'input', got 'x'"),
        (query(parameters={"timeout_ms": "soon"}), None, "INVALID_ARGUMENT", "timeout_ms"),
        (query(), 0.0, "DEADLINE_EXCEEDED", "the client's deadline had already passed"),
    ],
    ids=["output", "input", "parameter", "deadline-passed"],
)
def test_bad_queries_never_reach_the_service(
    q: Query, time_left: float | None, status: str, message: str
) -> None:
    service = FakeService()
    with pytest.raises(QueryError) as excinfo:
        infer(api_of(service), q, time_left)
    assert excinfo.value.status == status and message in excinfo.value.message
    assert service.calls == []


def test_unknown_models_are_not_found_and_readiness_is_all_models() -> None:
    api = api_of(FakeService("a"), FakeService("b", ready=False))
    with pytest.raises(QueryError) as excinfo:
        api.service("c")
    assert (excinfo.value.status, excinfo.value.message) == (
        "NOT_FOUND",
        "unknown model 'c'; serving ['a', 'b']",
    )
    assert not api.ready and api_of(FakeService("a")).ready


def test_the_boundary_keeps_a_query_error(caplog: pytest.LogCaptureFixture) -> None:
    error = QueryError("UNAVAILABLE", "no instance")
    with caplog.at_level(logging.DEBUG, "frontend.api"):
        assert refusal(error) is error
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_boundary_logs_anything_else_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    try:
        raise KeyError("oops")
    except KeyError as exc:
        error = refusal(exc)
    assert (error.status, error.message) == ("INTERNAL", "internal error: KeyError: 'oops'")
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is not None


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (QueryError("INVALID_ARGUMENT", ""), 400),
        (QueryError("NOT_FOUND", ""), 404),
        (PayloadTooLarge(2, 1), 413),
        (QueryError("RESOURCE_EXHAUSTED", ""), 429),
        (QueryError("INTERNAL", ""), 500),
        (QueryError("CANCELLED", ""), 500),
        (QueryError("UNAVAILABLE", ""), 503),
        (QueryError("DEADLINE_EXCEEDED", ""), 504),
    ],
)
def test_http_status(error: QueryError, status: int) -> None:
    assert http_status(error) == status


@pytest.mark.parametrize(("client", "key"), [(None, "anonymous"), ("ipv4:127.0.0.1:5", None)])
def test_infer_passes_the_client_down(client: str | None, key: str | None) -> None:
    service = FakeService()
    api = api_of(service)
    asyncio.run(api.infer(service, query(), None, client))  # type: ignore[arg-type]
    assert service.clients == [key or client]


@pytest.mark.parametrize("refused", [None, QueryError("RESOURCE_EXHAUSTED", "full")])
def test_admit_asks_the_model_about_one_row_before_the_body(refused: QueryError | None) -> None:
    service = FakeService(config=FakeConfig(slo_ms=200.0), refused=refused)
    api = api_of(service)
    if refused is None:
        api.admit("m", None, "10.0.0.1:80")
    else:
        with pytest.raises(QueryError, match="full"):
            api.admit("m", None, "10.0.0.1:80")
    assert service.asked == [("10.0.0.1:80", 1, 0.2)]


def test_admit_names_an_unknown_model() -> None:
    with pytest.raises(QueryError, match="unknown model 'x'"):
        api_of(FakeService()).admit("x", 1.0)
