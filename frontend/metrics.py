"""Prometheus metrics of the frontend: what each model's coordinator and instances did.

Theory of operation.  `Metrics` holds one frontend's metric families, prometheus-client's
own, in a registry of its own.  Each model gets a `ModelMetrics`, whose labelled
children (one per source, pool, instance, ...) are resolved once, at start-up: the
per-query path only calls ``inc`` or ``observe`` on a child, never looks a label up.
Gauges (queue depths, queries in flight, instance health) are not kept up to date at
all: a collector reads them from the models' state when Prometheus scrapes, through the
small `GaugeSource` interface (a served model implements it; this module knows nothing
else about it).  `Metrics.render` writes the Prometheus text format.

Histograms have about twenty buckets (``common.buckets``), so a scrape of a frontend
serving several models stays a few milliseconds (``python -m bench.scrape`` measures
it; the figures are in bench/RESULTS.md).  Children are updated from the event loop's
thread only, and ``/metrics`` is served on the same loop (``frontend.http``), so a
scrape sees a consistent state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from common.buckets import COMPUTE_BUCKETS, ERROR_BUCKETS, LATENCY_BUCKETS
from frontend.admission import CAUSES
from frontend.events import ErrorKind, GroupClosed, PoolKind, Source

#: the label naming a model instance: not "instance", which Prometheus sets to the
#: scrape target (it would rename ours to "exported_instance")
INSTANCE = "instance_name"


class GaugeSource(Protocol):
    """What a served model tells the gauges at each scrape."""

    @property
    def name(self) -> str: ...

    @property
    def ready(self) -> bool:
        """Whether the model can answer."""
        ...

    @property
    def outstanding(self) -> int:
        """Admitted queries without an answer yet."""
        ...

    @property
    def instances(self) -> Iterable[str]:
        """The names of its instances, data and parity."""
        ...

    def queue_depth(self, pool: PoolKind) -> int:
        """Instance requests queued in the frontend for ``pool``."""
        ...

    def instance_up(self, name: str) -> bool: ...

    def instance_inflight(self, name: str) -> int:
        """Requests sent to the instance, unanswered."""
        ...


class Metrics:
    """The frontend's metric families; `render` is what ``/metrics`` answers."""

    def __init__(self, latency_buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        """``latency_buckets``: the shared ones; another layout only to measure its cost."""
        self.registry = CollectorRegistry()
        m = "model"

        def histogram(
            name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]
        ) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=self.registry)

        def counter(name: str, doc: str, labels: Sequence[str]) -> Counter:
            return Counter(name, doc, labels, registry=self.registry)

        self.latency = histogram(
            "parm_request_latency_seconds",
            "Per query, from admission to its answer, by the answer's source",
            (m, "source"),
            latency_buckets,
        )
        self.queueing = histogram(
            "parm_queueing_seconds",
            "Per query, from admission until first sent to a data instance",
            (m,),
            latency_buckets,
        )
        self.service_time = histogram(
            "parm_instance_service_seconds",
            "Per instance request, from sending it to its answer, as the frontend sees it",
            (m, "pool", INSTANCE),
            latency_buckets,
        )
        self.group_fill = histogram(
            "parm_group_fill_seconds",
            "Per coding group, from opening to closing (full, or its fill timeout)",
            (m,),
            latency_buckets,
        )
        self.encode = histogram(
            "parm_encode_seconds", "Per parity query, encoding time", (m,), COMPUTE_BUCKETS
        )
        self.decode = histogram(
            "parm_decode_seconds", "Per reconstruction, decoding time", (m,), COMPUTE_BUCKETS
        )
        self.grace_wait = histogram(
            "parm_decode_grace_wait_seconds",
            "Per held reconstruction, how long it waited for its original, by who answered",
            (m, "outcome"),
            latency_buckets,
        )
        self.reconstruction_error = histogram(
            "parm_reconstruction_relative_error",
            "Per late original, the relative L2 error of the reconstruction answered for it",
            (m,),
            ERROR_BUCKETS,
        )
        self.reconstruction_checks = counter(
            "parm_reconstruction_checks",
            "Late originals compared with their reconstruction: top-1 class agreed or not",
            (m, "result"),
        )
        self.answers = counter(
            "parm_answers_total", "Queries answered with an output, by source", (m, "source")
        )
        self.errors = counter(
            "parm_query_errors_total", "Queries answered with an error, by status", (m, "code")
        )
        self.deadline_misses = counter(
            "parm_deadline_misses_total",
            "Queries whose deadline passed: answered with the default output or an error",
            (m, "outcome"),
        )
        self.refusals = counter(
            "parm_refusals_total",
            "Queries refused at once: the admission limit, or no ready instance",
            (m, "reason"),
        )
        self.admission_refusals = counter(
            "parm_admission_refusals_total",
            "Queries refused at admission (before any ran), by cause: the model's limit, "
            "the client's share of it, or a queue too long for the query's deadline",
            (m, "cause"),
        )
        self.cancellations = counter(
            "parm_cancellations_total",
            "Queued instance requests dropped before sending (no longer needed)",
            (m, "pool"),
        )
        self.abandoned = counter(
            "parm_abandoned_queries_total",
            "Queries given up before their answer: the client left, or a row of its request failed",
            (m,),
        )
        self.hedges = counter(
            "parm_hedges_total",
            "Hedge mode: backup copies queued for queries that ran past the hedge delay",
            (m,),
        )
        self.groups = counter(
            "parm_groups_closed_total",
            "Coding groups closed: full, partial and padded, or partial and unprotected",
            (m, "kind"),
        )
        self.instance_failures = counter(
            "parm_instance_failures_total",
            "Failed instance requests (call) and lost instance connections (down)",
            (m, INSTANCE, "kind"),
        )
        self._gauges = _Gauges()
        self.registry.register(self._gauges)

    def watch(self, sources: Callable[[], Iterable[GaugeSource]]) -> None:
        """Read the gauges from ``sources()`` at each scrape."""
        self._gauges.sources = sources

    def model(self, name: str, k: int, data: Iterable[str], parity: Iterable[str]) -> ModelMetrics:
        """The pre-resolved children of one model: k, its data and parity instances."""
        return ModelMetrics(self, name, k, tuple(data), tuple(parity))

    def render(self) -> str:
        """Every family, then the gauges, in the Prometheus text format (0.0.4)."""
        return generate_latest(self.registry).decode()


class _Gauges(Collector):
    """The gauges, read from the sources' state at each scrape."""

    def __init__(self) -> None:
        self.sources: Callable[[], Iterable[GaugeSource]] = tuple

    def collect(self) -> Iterator[Metric]:
        sources = list(self.sources())
        yield _per_model(
            sources, "parm_model_ready", "1 when the model can answer", lambda s: s.ready
        )
        yield _per_model(
            sources,
            "parm_outstanding_queries",
            "Admitted queries without an answer yet",
            lambda s: s.outstanding,
        )
        depth = GaugeMetricFamily(
            "parm_queue_depth", "Instance requests queued in the frontend", labels=["model", "pool"]
        )
        for s in sources:
            for pool in PoolKind:
                depth.add_metric([s.name, pool.value], s.queue_depth(pool))
        yield depth
        yield _per_instance(
            sources,
            "parm_instance_up",
            "1 while the instance is connected and healthy",
            lambda s, name: s.instance_up(name),
        )
        yield _per_instance(
            sources,
            "parm_instance_inflight",
            "Requests sent to the instance, unanswered",
            lambda s, name: s.instance_inflight(name),
        )


def _per_model(
    sources: Sequence[GaugeSource], name: str, doc: str, read: Callable[[GaugeSource], float]
) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, doc, labels=["model"])
    for s in sources:
        gauge.add_metric([s.name], read(s))
    return gauge


def _per_instance(
    sources: Sequence[GaugeSource],
    name: str,
    doc: str,
    read: Callable[[GaugeSource, str], float],
) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, doc, labels=["model", INSTANCE])
    for s in sources:
        for instance in s.instances:
            gauge.add_metric([s.name, instance], read(s, instance))
    return gauge


class ModelMetrics:
    """One model's children, resolved once: the hot path does no label lookups by name."""

    def __init__(
        self, metrics: Metrics, model: str, k: int, data: Sequence[str], parity: Sequence[str]
    ) -> None:
        self.k = k
        self.latency = {s: metrics.latency.labels(model, s.value) for s in Source}
        self.answers = {s: metrics.answers.labels(model, s.value) for s in Source}
        self.errors = {e: metrics.errors.labels(model, e.value) for e in ErrorKind}
        self.queueing = metrics.queueing.labels(model)
        self.group_fill = metrics.group_fill.labels(model)
        self.encode = metrics.encode.labels(model)
        self.decode = metrics.decode.labels(model)
        self.service_time = {
            name: metrics.service_time.labels(model, pool, name)
            for pool, names in (("data", data), ("parity", parity))
            for name in names
        }
        failures = metrics.instance_failures
        self.call_failures = {
            name: failures.labels(model, name, "call") for name in self.service_time
        }
        self.downs = {name: failures.labels(model, name, "down") for name in self.service_time}
        self.missed_default = metrics.deadline_misses.labels(model, "default")
        self.missed_error = metrics.deadline_misses.labels(model, "error")
        self.refused_admission = metrics.refusals.labels(model, "admission")
        self.refused_not_ready = metrics.refusals.labels(model, "not_ready")
        self.admission_refusals = {c: metrics.admission_refusals.labels(model, c) for c in CAUSES}
        self.cancellations = {p: metrics.cancellations.labels(model, p.value) for p in PoolKind}
        self.abandoned = metrics.abandoned.labels(model)
        self.hedges = metrics.hedges.labels(model)
        self.groups_full = metrics.groups.labels(model, "full")
        self.groups_padded = metrics.groups.labels(model, "partial_padded")
        self.groups_unprotected = metrics.groups.labels(model, "partial_unprotected")
        self.grace_wait = {s: metrics.grace_wait.labels(model, s.value) for s in Source}
        self.reconstruction_error = metrics.reconstruction_error.labels(model)
        self.checks_agree = metrics.reconstruction_checks.labels(model, "agree")
        self.checks_disagree = metrics.reconstruction_checks.labels(model, "disagree")

    def answered(self, sources: Iterable[Source], elapsed: float) -> None:
        """Queries of one request answered ``elapsed`` seconds after admission."""
        for source in sources:
            self.latency[source].observe(elapsed)

    def failed(self, error: ErrorKind) -> None:
        self.errors[error].inc()
        if error is ErrorKind.DEADLINE_EXCEEDED:
            self.missed_error.inc()
        elif error is ErrorKind.RESOURCE_EXHAUSTED:
            self.refused_admission.inc()

    def group_closed(self, event: GroupClosed) -> None:
        self.group_fill.observe(event.fill_time)
        if event.filled >= self.k:
            self.groups_full.inc()
        elif event.protected:
            self.groups_padded.inc()
        else:
            self.groups_unprotected.inc()
