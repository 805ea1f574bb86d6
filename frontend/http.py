"""The frontend's HTTP front doors: KServe v2 REST, Clipper's REST, and ``/metrics``.

Both run in the frontend's event loop, beside gRPC: `HttpServer` runs a uvicorn server
as a task the `frontend.server.Frontend` owns.  `api_app` is the FastAPI application:

- KServe v2 REST (``tritonclient.http`` works against it, JSON and binary tensors):
  ``GET /v2/health/live``, ``/v2/health/ready``, ``/v2``, ``/v2/models/{m}``,
  ``/v2/models/{m}/ready``, ``POST /v2/models/{m}/infer``;
- Clipper's ``POST /{app}/predict`` (the app is the model's name);
- the OpenAPI page at ``/docs`` (schema at ``/openapi.json``).

Semantics are gRPC's: the same checks (`frontend.requests`), the same request
parameters (``timeout_ms``, ``parm_require_original``), the client's own deadline from
the ``Parm-Timeout-Ms`` header (as a gRPC deadline), provenance in the response.  One
exception boundary per request maps `QueryError` status names to HTTP codes
(`HTTP_STATUS`) and logs anything unexpected with its traceback.

The handlers read the body themselves and answer pre-encoded bytes: FastAPI's own
body models and response serialisation cost more than the whole query on this path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.routing import Route

from frontend.metrics import Metrics
from frontend.model import QueryError
from frontend.requests import check_outputs, invalid, split_rows
from frontend.rest import (
    HEADER_LENGTH,
    JSON_TYPE,
    PayloadTooLarge,
    clipper_response,
    decompress,
    model_metadata,
    parse_clipper,
    parse_v2,
    v2_response,
)
from frontend.server import VERSION

if TYPE_CHECKING:
    from frontend.server import Frontend

log = logging.getLogger(__name__)

#: QueryError status (a gRPC code name) -> HTTP status
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
#: Clipper's short ``error`` beside the ``cause`` message
CLIPPER_ERROR = {
    400: "Bad request",
    404: "Application not found",
    413: "Request too large",
    429: "Too many queries",
    500: "Internal error",
    503: "Unavailable",
    504: "Deadline exceeded",
}
TIMEOUT_HEADER = "parm-timeout-ms"
#: JSON spends up to ~16 characters on a 4-byte float: bodies may be 4 x the tensor limit
JSON_EXPANSION = 4


class _Api:
    """The route handlers over one Frontend."""

    def __init__(self, frontend: Frontend) -> None:
        self.frontend = frontend
        self.max_tensor = frontend.config.max_request_bytes
        self.max_body = JSON_EXPANSION * self.max_tensor + (64 << 10)
        self._next_query_id = 0  # Clipper's query ids: one counter per frontend

    # -- health and metadata ------------------------------------------------------------

    async def live(self) -> Response:
        return JSONResponse({"live": True})

    async def ready(self) -> Response:
        # The v2 REST spec: 200 means ready, a 4xx not (Triton answers 400 too).
        ready = self.frontend.ready
        return JSONResponse({"ready": ready}, 200 if ready else 400)

    async def server_metadata(self) -> Response:
        extensions = ["parm", "binary_tensor_data", "clipper_predict"]
        return JSONResponse({"name": "parm-frontend", "version": VERSION, "extensions": extensions})

    async def model_metadata(self, model: str) -> Response:
        return await _guarded(self._model_metadata(model), _v2_error)

    async def _model_metadata(self, model: str) -> Response:
        service = self.frontend.service(model)
        return JSONResponse(model_metadata(service.name, service.input, service.output))

    async def model_ready(self, model: str) -> Response:
        return await _guarded(self._model_ready(model), _v2_error)

    async def _model_ready(self, model: str) -> Response:
        service = self.frontend.service(model)
        return JSONResponse({"name": model, "ready": service.ready}, 200 if service.ready else 400)

    # -- inference ------------------------------------------------------------------------

    async def infer(self, model: str, request: Request) -> Response:
        """KServe v2 inference, JSON or binary tensors."""
        return await _guarded(self._infer(model, request), _v2_error)

    async def _infer(self, model: str, request: Request) -> Response:
        service = self.frontend.service(model)
        headers = request.headers
        body = await self._body(request)
        query = parse_v2(body, headers.get(HEADER_LENGTH))
        check_outputs(service.output, query.outputs)
        rows = split_rows(
            service.input,
            query.name,
            query.datatype,
            query.shape,
            query.raw,
            max_bytes=self.max_tensor,
        )
        results = await self.frontend.run(service, rows, query.parameters, _time_left(headers))
        content, extra = v2_response(service.name, service.output, results, query)
        return Response(content, headers=extra)

    async def predict(self, app: str, request: Request) -> Response:
        """Clipper: ``{"input": [...]}`` or ``{"input_batch": [[...], ...]}``."""
        return await _guarded(self._predict(app, request), _clipper_error)

    async def _predict(self, app: str, request: Request) -> Response:
        service = self.frontend.service(app)
        spec = service.input
        body = await self._body(request)
        doc, raw, count, batch = parse_clipper(body, spec)
        shape = [count, *spec.shape]
        rows = split_rows(spec, spec.name, spec.datatype, shape, raw, max_bytes=self.max_tensor)
        first_id, self._next_query_id = self._next_query_id, self._next_query_id + count
        # The request object doubles as the parameters: timeout_ms, parm_require_original.
        results = await self.frontend.run(service, rows, doc, _time_left(request.headers))
        return Response(clipper_response(first_id, results, batch), media_type=JSON_TYPE)

    async def _body(self, request: Request) -> bytes:
        """The request body, refused past ``max_body`` before it is all read."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            raise PayloadTooLarge(int(declared), self.max_body)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:  # chunked, or a Content-Length that lied
                raise PayloadTooLarge(size, self.max_body)
            chunks.append(chunk)
        body = b"".join(chunks)
        encoding = request.headers.get("content-encoding")
        return decompress(body, encoding.strip().lower(), self.max_body) if encoding else body


def _time_left(headers: Any) -> float | None:
    """Seconds from the ``Parm-Timeout-Ms`` header: the client's own deadline."""
    text = headers.get(TIMEOUT_HEADER)
    if text is None:
        return None
    try:
        ms = float(text)
    except ValueError:
        ms = float("nan")
    if not 0 < ms < float("inf"):
        raise invalid(f"header Parm-Timeout-Ms: expected a positive number of ms, got {text!r}")
    return ms / 1000


# ---------------------------------------------------------------- the exception boundary


async def _guarded(handler: Awaitable[Response], error: Callable[[int, str], Response]) -> Response:
    """Run one request's handler; map what it raises to an HTTP error response."""
    try:
        return await handler
    except PayloadTooLarge as exc:
        return error(413, exc.message)
    except QueryError as exc:
        log.debug("query refused: %s: %s", exc.status, exc.message)
        return error(HTTP_STATUS.get(exc.status, 500), exc.message)
    except Exception as exc:
        log.exception("HTTP request failed")
        return error(500, f"internal error: {type(exc).__name__}: {exc}")


def _v2_error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status)


def _clipper_error(status: int, message: str) -> Response:
    return JSONResponse({"error": CLIPPER_ERROR.get(status, "Error"), "cause": message}, status)


# ---------------------------------------------------------------- the application


def api_app(frontend: Frontend) -> FastAPI:
    """The FastAPI application of the HTTP port."""
    from frontend import openapi

    api = _Api(frontend)
    app = FastAPI(
        title="parm frontend",
        version=VERSION,
        description=openapi.DESCRIPTION,
        redoc_url=None,
    )
    v2, clipper = ["KServe v2"], ["Clipper"]
    routes: list[tuple[str, str, Callable[..., Awaitable[Response]], list[str], dict[str, Any]]]
    routes = [
        ("GET", "/v2/health/live", api.live, v2, openapi.LIVE),
        ("GET", "/v2/health/ready", api.ready, v2, openapi.READY),
        ("GET", "/v2", api.server_metadata, v2, openapi.SERVER),
        ("GET", "/v2/models/{model}", api.model_metadata, v2, openapi.MODEL),
        ("GET", "/v2/models/{model}/ready", api.model_ready, v2, openapi.MODEL_READY),
        ("POST", "/v2/models/{model}/infer", api.infer, v2, openapi.INFER),
        ("POST", "/{app}/predict", api.predict, clipper, openapi.PREDICT),
    ]
    for method, path, handler, tags, doc in routes:
        app.add_api_route(path, handler, methods=[method], tags=list(tags), **doc)
    # The two inference routes are served by plain Starlette routes ahead of FastAPI's:
    # FastAPI's per-request work (dependency solving, parameter validation) cost 3-4
    # times the handler itself here.  FastAPI's routes stay for the OpenAPI page; the
    # handlers are the same methods either way.
    fast = [("/v2/models/{model}/infer", api.infer), ("/{app}/predict", api.predict)]
    for path, handler in reversed(fast):
        app.router.routes.insert(0, Route(path, _by_path(handler), methods=["POST"]))
    return app


def _by_path(
    handler: Callable[[str, Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint calling ``handler(<the one path parameter>, request)``."""

    async def endpoint(request: Request) -> Response:
        (value,) = request.path_params.values()
        return await handler(value, request)

    return endpoint


def metrics_app(metrics: Metrics) -> Callable[..., Awaitable[None]]:
    """The ASGI application of the metrics port: ``GET /metrics`` renders ``metrics``."""
    content_type = (b"content-type", b"text/plain; version=0.0.4; charset=utf-8")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        found = scope["path"] == "/metrics"
        body = metrics.render().encode() if found else b"not found: try /metrics\n"
        headers = [content_type, (b"content-length", str(len(body)).encode())]
        await send(
            {"type": "http.response.start", "status": 200 if found else 404, "headers": headers}
        )
        await send({"type": "http.response.body", "body": body})

    return app


# ---------------------------------------------------------------- serving


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside a process that owns its signals (``parm up``, ``parm frontend``):
    uvicorn's own handlers would replace the loop's and re-raise the signal after
    shutdown, so the process owner stops this server instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """One ASGI application served by uvicorn in the running loop, as a task owned here."""

    def __init__(self, app: Any, host: str, port: int, name: str) -> None:
        self._app, self._host, self._port, self.name = app, host, port, name
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Listen, start serving, and return the port (useful when asked for port 0).

        The socket is bound here, so a port in use raises OSError at once (uvicorn
        would call ``sys.exit`` from inside its task instead).
        """
        sock = _listen(self._host, self._port)
        config = uvicorn.Config(
            self._app,
            log_config=None,  # the process's logging configuration stays as it is
            access_log=False,  # one log line per query is too much on the hot path
            lifespan="off",
            proxy_headers=False,
            ws="none",
        )
        self._server = _EmbeddedServer(config)
        serving = self._server.serve(sockets=[sock])
        self._task = asyncio.get_running_loop().create_task(serving, name=f"http-{self.name}")
        self._task.add_done_callback(self._ended)
        port: int = sock.getsockname()[1]
        log.info("frontend: %s on http://%s:%d", self.name, self._host, port)
        return port

    async def stop(self, grace: float) -> None:
        """Stop accepting, let responses in flight finish for ``grace`` s, then cancel them."""
        if self._server is None or self._task is None:
            return
        self._server.config.timeout_graceful_shutdown = math.ceil(grace)
        self._server.should_exit = True
        await asyncio.wait([self._task])

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("HTTP server %s crashed", self.name, exc_info=error)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=2048)
    sock.setblocking(False)
    return sock
