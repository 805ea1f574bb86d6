"""Prometheus metrics of one model container, served on ``--metrics-port`` at ``/metrics``.

A container's per-request work is a forward pass (a hundred microseconds and up), so
prometheus_client's own metric types are cheap enough here; the exposition runs in
prometheus_client's HTTP server thread, beside the event loop.  The latency buckets are
``common.buckets``'s, the frontend's too, so that both sides of an instance call line
up on one dashboard.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from common.buckets import LATENCY_BUCKETS


class ContainerMetrics:
    """Requests by outcome, their duration, rows served, requests in flight, readiness."""

    def __init__(self, model: str, ready: Callable[[], bool]) -> None:
        self.registry = CollectorRegistry()
        requests = Counter(
            "parm_container_requests",
            "Inference requests by outcome: ok, or the gRPC status of the error",
            ["model", "outcome"],
            registry=self.registry,
        )
        self._model = model
        self._requests = requests
        self.ok = requests.labels(model, "ok")
        self.duration = Histogram(
            "parm_container_request_seconds",
            "Per successful request: injected delay, model time and padding to the service time",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        ).labels(model)
        self.rows = Counter(
            "parm_container_rows", "Rows (queries) answered", ["model"], registry=self.registry
        ).labels(model)
        self.inflight = Gauge(
            "parm_container_inflight",
            "Requests being answered",
            ["model"],
            registry=self.registry,
        ).labels(model)
        ready_gauge = Gauge(
            "parm_container_ready", "1 once the model is loaded and warm", registry=self.registry
        )
        ready_gauge.set_function(lambda: float(ready()))

    def answered(self, seconds: float, rows: int) -> None:
        self.ok.inc()
        self.duration.observe(seconds)
        self.rows.inc(rows)

    def failed(self, code_name: str) -> None:
        self._requests.labels(self._model, code_name).inc()

    def serve(self, host: str, port: int) -> Callable[[], None]:
        """Serve ``/metrics`` on ``host:port`` in a thread; returns the function that stops it.

        Raises OSError when the port cannot be bound.
        """
        server, thread = start_http_server(port, host, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        return stop
