"""The frontend's HTTP front doors: KServe v2 REST, Clipper's REST, and ``/metrics``.

Both run in the frontend's event loop, beside gRPC: `HttpServer` runs a uvicorn server
as a task its owner (`frontend.server.Frontend`) holds.  `api_app` is the FastAPI application:

- KServe v2 REST (``tritonclient.http`` works against it, JSON and binary tensors):
  ``GET /v2/health/live``, ``/v2/health/ready``, ``/v2``, ``/v2/models/{m}``,
  ``/v2/models/{m}/ready``, ``POST /v2/models/{m}/infer``;
- Clipper's ``POST /{app}/predict`` (the app is the model's name);
- the OpenAPI page at ``/docs`` (schema at ``/openapi.json``).

Semantics are gRPC's: the handlers are thin adapters over the same entry point
(`frontend.api.Api`: the same checks, the same request parameters ``timeout_ms`` and
``parm_require_original``), the client's own deadline comes from the
``Parm-Timeout-Ms`` header (as a gRPC deadline), provenance is in the response.  The
same exception boundary (`frontend.api.refusal`) gives the HTTP code
(`frontend.api.http_status`) and logs anything unexpected with its traceback.

Each route is registered once, with FastAPI.  The v2 request body is parsed by its
schema (`frontend.rest.InferRequest`), which the OpenAPI page shows too; the handlers
read the body themselves (it may carry binary tensors after the JSON) and answer
pre-encoded bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from frontend.api import VERSION, Api, Query, http_status, refusal
from frontend.connections import SHUTTING_DOWN, Calls, ConnectionLimits, canned, shut_out
from frontend.metrics import Metrics
from frontend.requests import PayloadTooLarge, invalid
from frontend.rest import (
    HEADER_LENGTH,
    JSON_TYPE,
    clipper_response,
    decompress,
    model_metadata,
    parse_clipper,
    parse_v2,
    v2_response,
)

log = logging.getLogger(__name__)

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


class _Routes:
    """The route handlers over the frontend's entry point."""

    def __init__(self, api: Api, calls: Calls) -> None:
        self.api = api
        self.calls = calls
        self.max_tensor = api.config.max_request_bytes
        self.max_body = JSON_EXPANSION * self.max_tensor + (64 << 10)
        self._next_query_id = 0  # Clipper's query ids: one counter per frontend

    # -- health and metadata ------------------------------------------------------------

    async def live(self) -> Response:
        return JSONResponse({"live": True})

    async def ready(self) -> Response:
        # The v2 REST spec: 200 means ready, a 4xx not (Triton answers 400 too).
        ready = self.api.ready
        return JSONResponse({"ready": ready}, 200 if ready else 400)

    async def server_metadata(self) -> Response:
        extensions = ["parm", "binary_tensor_data", "clipper_predict"]
        return JSONResponse({"name": "parm-frontend", "version": VERSION, "extensions": extensions})

    async def model_metadata(self, model: str) -> Response:
        return await _guarded(self._model_metadata(model), _v2_error)

    async def _model_metadata(self, model: str) -> Response:
        service = self.api.service(model)
        return JSONResponse(model_metadata(service.name, service.input, service.output))

    async def model_ready(self, model: str) -> Response:
        return await _guarded(self._model_ready(model), _v2_error)

    async def _model_ready(self, model: str) -> Response:
        service = self.api.service(model)
        return JSONResponse({"name": model, "ready": service.ready}, 200 if service.ready else 400)

    # -- inference ------------------------------------------------------------------------

    async def infer(self, model: str, request: Request) -> Response:
        """KServe v2 inference, JSON or binary tensors."""
        return await _guarded(self._infer(model, request), _v2_error, self.calls)

    async def _infer(self, model: str, request: Request) -> Response:
        service = self.api.service(model)
        headers = request.headers
        client = _client(request)
        self.api.admit(model, _time_left(headers), client)  # shed load before the body
        body = await self._body(request)
        v2 = parse_v2(body, headers.get(HEADER_LENGTH))
        results = await self.api.infer(service, v2.query, _time_left(headers), client)
        content, extra = v2_response(service.name, service.output, results, v2)
        return Response(content, headers=extra)

    async def predict(self, app: str, request: Request) -> Response:
        """Clipper: ``{"input": [...]}`` or ``{"input_batch": [[...], ...]}``."""
        return await _guarded(self._predict(app, request), _clipper_error, self.calls)

    async def _predict(self, app: str, request: Request) -> Response:
        service = self.api.service(app)
        spec = service.input
        client = _client(request)
        self.api.admit(app, _time_left(request.headers), client)  # shed load before the body
        body = await self._body(request)
        doc, raw, count, batch = parse_clipper(body, spec)
        # The request object doubles as the parameters: timeout_ms, parm_require_original.
        query = Query(spec.name, spec.datatype, [count, *spec.shape], raw, doc)
        results = await self.api.infer(service, query, _time_left(request.headers), client)
        first_id, self._next_query_id = self._next_query_id, self._next_query_id + count
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


def _client(request: Request) -> str | None:
    """The client's address and port (one per connection): admission's fairness key."""
    return f"{request.client.host}:{request.client.port}" if request.client else None


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


async def _guarded(
    handler: Awaitable[Response],
    error: Callable[[int, str], Response],
    calls: Calls | None = None,
) -> Response:
    """Run one request's handler; map what it raises to an HTTP error response.

    An inference call is held in ``calls``: at shutdown, one still running after the
    grace period is answered 503 (uvicorn would cancel it into a bare 500 text).
    """
    try:
        if calls is None:
            return await handler
        with calls.held():
            return await handler
    except asyncio.CancelledError as exc:
        if not shut_out(exc):
            raise
        return error(503, SHUTTING_DOWN)
    except ClientDisconnect:
        _aborted_body()
        return error(400, "the client closed the connection before its body was sent")
    except Exception as exc:
        refused = refusal(exc)
        return error(http_status(refused), refused.message)


_aborted = 0


def _aborted_body() -> None:
    """Log a body the client broke off: at INFO, without a traceback (it is the client's
    doing, and cheap to repeat), for the 1st, 2nd, 4th, 8th... time only."""
    global _aborted
    _aborted += 1
    if _aborted & (_aborted - 1) == 0:
        log.info("HTTP: a client closed its connection mid-body (%d so far)", _aborted)


def _v2_error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status)


def _clipper_error(status: int, message: str) -> Response:
    return JSONResponse({"error": CLIPPER_ERROR.get(status, "Error"), "cause": message}, status)


# ---------------------------------------------------------------- the application


def api_app(api: Api, calls: Calls | None = None) -> InferenceFirst:
    """The ASGI application of the HTTP port, over the frontend's entry point; its
    inference calls are held in ``calls`` (drained at shutdown)."""
    from frontend import openapi

    routes = _Routes(api, Calls() if calls is None else calls)
    app = FastAPI(
        title="parm frontend",
        version=VERSION,
        description=openapi.DESCRIPTION,
        redoc_url=None,
    )
    v2, clipper = ["KServe v2"], ["Clipper"]
    table: list[tuple[str, str, Callable[..., Awaitable[Response]], list[str], dict[str, Any]]]
    table = [
        ("GET", "/v2/health/live", routes.live, v2, openapi.LIVE),
        ("GET", "/v2/health/ready", routes.ready, v2, openapi.READY),
        ("GET", "/v2", routes.server_metadata, v2, openapi.SERVER),
        ("GET", "/v2/models/{model}", routes.model_metadata, v2, openapi.MODEL),
        ("GET", "/v2/models/{model}/ready", routes.model_ready, v2, openapi.MODEL_READY),
        ("POST", "/v2/models/{model}/infer", routes.infer, v2, openapi.INFER),
        ("POST", "/{app}/predict", routes.predict, clipper, openapi.PREDICT),
    ]
    for method, path, handler, tags, doc in table:
        app.add_api_route(path, handler, methods=[method], tags=list(tags), **doc)
    return InferenceFirst(app, routes)


class InferenceFirst:
    """ASGI: the two inference routes called directly, everything else through FastAPI.

    FastAPI's middleware, routing and dependency solving cost about as much CPU as the
    rest of a query (a quarter of the HTTP front door's, py-spy in bench/RESULTS.md),
    and the inference routes need none of it: they take one path segment and the
    request, and their handler maps every error to a response itself (`_guarded`).  So
    ``POST /v2/models/{model}/infer`` and ``POST /{app}/predict`` are matched here, with
    FastAPI's rule for a path parameter (one non-empty segment), and call the same
    handlers that FastAPI registers (and documents at ``/docs``).
    """

    def __init__(self, app: FastAPI, routes: _Routes) -> None:
        self.app = app
        self._routes = routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            response = await self._inference(scope, receive)
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _inference(self, scope: dict[str, Any], receive: Any) -> Response | None:
        """The answer of an inference route, or None for any other path."""
        parts = scope["path"].split("/")
        if len(parts) == 5 and parts[:3] == ["", "v2", "models"] and parts[4] == "infer":
            if parts[3]:
                return await self._routes.infer(parts[3], Request(scope, receive))
        elif len(parts) == 3 and not parts[0] and parts[1] and parts[2] == "predict":
            return await self._routes.predict(parts[1], Request(scope, receive))
        return None


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


class GuardedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol with a connection cap, an idle and a read timeout;
    `guarded_protocol` makes the class of one port's limits."""

    limits: ConnectionLimits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # between requests (uvicorn's keep-alive timer; typed int, a float works the same)
        self.timeout_keep_alive = self.limits.idle_timeout_s  # type: ignore[assignment]
        self._timer: asyncio.TimerHandle | None = None
        self._refused = False  # this request was answered 503; its body is skipped

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            cap = self.limits.max_connections
            log.debug("HTTP connection refused: %d open, the cap is %d", len(self.connections), cap)
            self._close(canned(503, "Service Unavailable", f"over {cap} open connections"))
            return
        self._arm(self.limits.idle_timeout_s, None)  # until the first request begins

    def on_headers_complete(self) -> None:
        # Over the port's requests in progress (uvicorn's tasks, shared by its
        # connections): 503 before any routing or body parsing.  Under overload most
        # requests are refused, so the refusal is the cheapest there is: canned bytes
        # written at once, no request cycle, no task; the body is read off the
        # connection and dropped, and the connection stays open.  Only behind an
        # earlier request of this connection still being answered (pipelining) does
        # it go through uvicorn, which keeps the answers in order.
        if len(self.tasks) < self.limits.max_requests:
            super().on_headers_complete()
            return
        if self.cycle is None or self.cycle.response_complete:
            self._refused = True
            keep_alive = self.parser.should_keep_alive()
            self.transport.write(_BUSY if keep_alive else _BUSY_CLOSE)
            if not keep_alive:
                self.transport.close()
            return
        app, self.app = self.app, _busy
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        message = f"request not received whole within {self.limits.read_timeout_s} s"
        self._arm(self.limits.read_timeout_s, canned(408, "Request Timeout", message))

    def on_message_complete(self) -> None:
        if self._refused:  # answered already: idle until the next request
            self._refused = False
            self._arm(self.limits.idle_timeout_s, None)
            return
        super().on_message_complete()
        self._disarm()  # the application has it now; the query has its own deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, delay: float, answer: bytes | None) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, self._expired, answer)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, answer: bytes | None) -> None:
        self._timer = None
        started = self._refused or (self.cycle is not None and self.cycle.response_started)
        self._close(None if started else answer)

    def _close(self, answer: bytes | None) -> None:
        if self.transport.is_closing():
            return
        if answer is not None:
            self.transport.write(answer)
        self.transport.close()


_BUSY_BODY = json.dumps({"error": "the frontend is at its limit of requests in progress"})


def _busy_bytes(connection: str) -> bytes:
    body = _BUSY_BODY.encode()
    head = (
        f"HTTP/1.1 503 Service Unavailable\r\ncontent-type: {JSON_TYPE}\r\nretry-after: 1\r\n"
        f"content-length: {len(body)}\r\nconnection: {connection}\r\n\r\n"
    )
    return head.encode() + body


_BUSY, _BUSY_CLOSE = _busy_bytes("keep-alive"), _busy_bytes("close")


async def _busy(scope: Any, receive: Any, send: Any) -> None:
    """The answer to a request over the port's limit: 503, retry in a second."""
    headers = [(b"content-type", JSON_TYPE.encode()), (b"retry-after", b"1")]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": _BUSY_BODY.encode()})


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedHttp]:
    """The uvicorn protocol class (its ``http`` setting) of a port with ``limits``."""
    return type("GuardedHttp", (GuardedHttp,), {"limits": limits})


class HttpServer:
    """One ASGI application served by uvicorn in the running loop, as a task owned here."""

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        name: str,
        limits: ConnectionLimits,
        reuse_port: bool = False,
    ) -> None:
        """``reuse_port``: bind with SO_REUSEPORT, to share the port with other workers."""
        self._app, self._host, self._port, self.name = app, host, port, name
        self.limits = limits
        self._reuse_port = reuse_port
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Listen, start serving, and return the port (useful when asked for port 0).

        The socket is bound here, so a port in use raises OSError at once (uvicorn
        would call ``sys.exit`` from inside its task instead).
        """
        sock = _listen(self._host, self._port, self._reuse_port)
        config = uvicorn.Config(
            self._app,
            log_config=None,  # the process's logging configuration stays as it is
            access_log=False,  # one log line per query is too much on the hot path
            lifespan="off",
            proxy_headers=False,
            ws="none",
            http=guarded_protocol(self.limits),
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


def _listen(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=2048, reuse_port=reuse_port)
    sock.setblocking(False)
    return sock
