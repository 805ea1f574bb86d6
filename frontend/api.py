"""The frontend's one entry point for inference, whatever the front door.

Every front door (v2 gRPC in `frontend.server`, v2 REST and Clipper in `frontend.http`)
turns its request into a `Query`, finds the model with `Api.service`, and calls
`Api.infer`: validate (`frontend.requests`), run through the model's `ModelService`,
return the `Result` of each row for the door to package.  What a request raises goes
through one exception boundary, `refusal`: a `QueryError` keeps its status, anything
else becomes INTERNAL and is logged with its traceback; each door maps the status to
its own code (a gRPC status of that name, `http_status`).  Nothing here knows a transport.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from frontend.config import FrontendConfig
from frontend.model import ANONYMOUS, ModelService, QueryError, Result
from frontend.requests import PayloadTooLarge, check_outputs, query_options, split_rows

log = logging.getLogger(__name__)

VERSION = "0.1.0"

#: Of a client's own deadline, the part kept for the answer's way back (at most this
#: many seconds, and at most a tenth of the time left): an answer sent exactly at the
#: client's deadline usually loses the race against the client's timer, so a default
#: output would never reach a client that sets a gRPC deadline.
DEADLINE_MARGIN_S = 0.01

#: QueryError status (a gRPC code name) -> HTTP status
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


@dataclass(frozen=True)
class Query:
    """One inference request as every front door hands it in: the one input tensor's
    name, datatype, batched shape and raw bytes, the request's parameters, and the
    names of the outputs asked for (none: all)."""

    input: str
    datatype: str
    shape: Sequence[int]
    raw: bytes
    parameters: Mapping[str, object] = field(default_factory=dict)
    outputs: Sequence[str] = ()


class Api:
    """The model services of a frontend behind one transport-neutral entry point."""

    def __init__(self, services: Mapping[str, ModelService], config: FrontendConfig) -> None:
        self.services = services
        self.config = config

    @property
    def ready(self) -> bool:
        """Whether every model can answer."""
        return all(s.ready for s in self.services.values())

    def service(self, name: str) -> ModelService:
        """The service of model ``name``; QueryError NOT_FOUND names the models served."""
        service = self.services.get(name)
        if service is None:
            known = sorted(self.services)
            raise QueryError("NOT_FOUND", f"unknown model {name!r}; serving {known}")
        return service

    def admit(self, name: str, time_left: float | None, client: str | None = None) -> None:
        """Refuse early, before a body is read or parsed, what `infer` would refuse anyway.

        Cheap: model ``name`` must exist and be ready, and a one-row request from
        ``client`` must fit its admission limits and be servable within ``time_left``
        (else the model's SLO).  Raises QueryError; counts nothing twice (the refusal is
        the request's answer).
        """
        service = self.service(name)
        refused = service.refusal(client or ANONYMOUS, 1, self._timeout(service, None, time_left))
        if refused is not None:
            raise refused

    async def infer(
        self,
        service: ModelService,
        query: Query,
        time_left: float | None,
        client: str | None = None,
    ) -> list[Result]:
        """Validate ``query``, run its rows through ``service``: one Result per row.

        ``time_left`` is the client's own deadline in seconds (a gRPC deadline, an HTTP
        header), if it set one.  ``client`` names where the request came from (a gRPC
        peer, an HTTP connection's address): admission shares the model's capacity
        between clients.  Raises QueryError.
        """
        check_outputs(service.output, query.outputs)
        rows = split_rows(
            service.input,
            query.input,
            query.datatype,
            query.shape,
            query.raw,
            max_bytes=self.config.max_request_bytes,
        )
        options = query_options(query.parameters)
        timeout = self._timeout(service, options.timeout_ms, time_left)
        return await service.infer(
            rows, timeout, require_original=options.require_original, client=client or ANONYMOUS
        )

    def _timeout(
        self, service: ModelService, timeout_ms: float | None, time_left: float | None
    ) -> float:
        """Seconds to the query's deadline: the tightest of the client's limits, else the SLO."""
        limits = []
        if time_left is not None:
            if time_left <= 0:
                raise QueryError("DEADLINE_EXCEEDED", "the client's deadline had already passed")
            # Answer (default or DEADLINE_EXCEEDED) a little before the client's own
            # deadline fires, so that the answer still reaches it; see DEADLINE_MARGIN_S.
            limits.append(time_left - min(DEADLINE_MARGIN_S, time_left / 10))
        if timeout_ms is not None:
            limits.append(timeout_ms / 1000)
        if limits:
            return min(limits)
        slo = service.config.slo_ms or self.config.max_deadline_ms
        return slo / 1000


# ---------------------------------------------------------------- the exception boundary


def refusal(exc: Exception) -> QueryError:
    """What a request that raised ``exc`` is answered: its QueryError, or INTERNAL.

    Anything but a QueryError is a bug on our side: it is logged with its traceback.
    """
    if isinstance(exc, QueryError):
        log.debug("query refused: %s: %s", exc.status, exc.message)
        return exc
    log.error("request failed", exc_info=exc)
    return QueryError("INTERNAL", f"internal error: {type(exc).__name__}: {exc}")


def http_status(error: QueryError) -> int:
    """The HTTP status of a refusal (413 for a body over the limit)."""
    if isinstance(error, PayloadTooLarge):
        return 413
    return HTTP_STATUS.get(error.status, 500)
