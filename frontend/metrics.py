"""Prometheus metrics of the frontend: what each model's coordinator and instances did.

Theory of operation.  `Metrics` holds one frontend's metric families.  Each
`ModelService` gets a `ModelMetrics`, whose labelled children (one per source, pool,
instance, ...) are resolved once, at start-up; the per-query path only increments an
attribute or bisects into a bucket list.  Gauges (queue depths, queries in flight,
instance health) are not kept up to date at all: they are read from the services'
state when Prometheus scrapes.  `Metrics.render` writes the Prometheus text format.

Why not prometheus_client here (it serves the model containers' metrics): each update of
its ``Histogram`` and ``Counter`` takes a lock and a histogram scans its buckets
linearly, which cost 2-7 us per observation with these bucket layouts and 1.9 us per
counter increment on the development machine, and a query makes several; the children
below cost well under 1 us.  And its exposition formats and validates every line anew:
about 100 ms for two models' 2,500 lines, time the event loop would stand still at each
scrape.  Here every line's name and labels are formatted once, when its child is made,
and a scrape only appends numbers (about 1 ms).  Children are updated from the event
loop's thread only, and ``/metrics`` is served on the same loop
(`frontend.http.metrics_app`), so a scrape always sees a consistent state.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from common.buckets import LATENCY_BUCKETS  # shared with the containers
from frontend.events import ErrorKind, GroupClosed, PoolKind, Source

if TYPE_CHECKING:
    from frontend.model import ModelService


def compute_buckets() -> tuple[float, ...]:
    """Upper bounds (seconds) for encoding and decoding: tens of microseconds to 100 ms."""
    micro = [round(5e-6 * i, 6) for i in range(1, 20)]  # 5 us .. 95 us
    milli = [round(5e-5 * i, 6) for i in range(2, 20)]  # 100 us .. 950 us
    return (*micro, *milli, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)


COMPUTE_BUCKETS = compute_buckets()
#: the label naming a model instance: not "instance", which Prometheus sets to the
#: scrape target (it would rename ours to "exported_instance")
INSTANCE = "instance_name"


class Count:
    """One labelled counter child."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount


class Histo:
    """One labelled histogram child: per-bucket counts, not cumulative, and a sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: the first bound >= value, as Prometheus's "le" requires
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value


class _Family:
    """A metric name, its help text, its label names and its children by label values.

    Each child comes with the text of its lines up to the value, made once.
    """

    def __init__(
        self, name: str, doc: str, labels: Sequence[str], bounds: Sequence[float] | None = None
    ) -> None:
        self.name, self.doc, self.labels, self.bounds = name, doc, tuple(labels), bounds
        self.children: dict[tuple[str, ...], Count | Histo] = {}
        self._lines: list[tuple[Count | Histo, list[str]]] = []  # (child, line prefixes)

    def count(self, *values: str) -> Count:
        assert self.bounds is None, f"{self.name} is a histogram"
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = Count()
            self._lines.append((child, [f"{self.name}{{{_labels(self.labels, values)}}} "]))
        assert isinstance(child, Count)
        return child

    def histo(self, *values: str) -> Histo:
        assert self.bounds is not None, f"{self.name} is a counter"
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = Histo(self.bounds)
            text = _labels(self.labels, values)
            les = [*map(repr, self.bounds), "+Inf"]
            prefixes = [f'{self.name}_bucket{{{text},le="{le}"}} ' for le in les]
            prefixes += [f"{self.name}_sum{{{text}}} ", f"{self.name}_count{{{text}}} "]
            self._lines.append((child, prefixes))
        assert isinstance(child, Histo)
        return child

    def render(self, out: list[str]) -> None:
        """Append this family's lines (Prometheus text format 0.0.4) to ``out``."""
        kind = "counter" if self.bounds is None else "histogram"
        out.append(f"# HELP {self.name} {self.doc}\n# TYPE {self.name} {kind}\n")
        for child, prefixes in self._lines:
            if isinstance(child, Count):
                out.append(f"{prefixes[0]}{child.value}\n")
                continue
            running = 0
            for prefix, n in zip(prefixes[:-2], child.counts, strict=True):  # +Inf last
                running += n
                out.append(f"{prefix}{running}\n")
            out.append(f"{prefixes[-2]}{child.total!r}\n{prefixes[-1]}{running}\n")


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    """``name="value",...`` with the text format's escapes."""
    escaped = (v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"') for v in values)
    return ",".join(f'{n}="{v}"' for n, v in zip(names, escaped, strict=True))


def _gauge(out: list[str], name: str, doc: str, samples: Iterable[tuple[str, float]]) -> None:
    out.append(f"# HELP {name} {doc}\n# TYPE {name} gauge\n")
    out.extend(f"{name}{{{labels}}} {float(value)!r}\n" for labels, value in samples)


class Metrics:
    """The frontend's metric families; `render` is what ``/metrics`` answers."""

    def __init__(self) -> None:
        m = "model"
        self.latency = _Family(
            "parm_request_latency_seconds",
            "Per query, from admission to its answer, by the answer's source",
            (m, "source"),
            LATENCY_BUCKETS,
        )
        self.queueing = _Family(
            "parm_queueing_seconds",
            "Per query, from admission until first sent to a data instance",
            (m,),
            LATENCY_BUCKETS,
        )
        self.service_time = _Family(
            "parm_instance_service_seconds",
            "Per instance request, from sending it to its answer, as the frontend sees it",
            (m, "pool", INSTANCE),
            LATENCY_BUCKETS,
        )
        self.group_fill = _Family(
            "parm_group_fill_seconds",
            "Per coding group, from opening to closing (full, or its fill timeout)",
            (m,),
            LATENCY_BUCKETS,
        )
        self.encode = _Family(
            "parm_encode_seconds", "Per parity query, encoding time", (m,), COMPUTE_BUCKETS
        )
        self.decode = _Family(
            "parm_decode_seconds", "Per reconstruction, decoding time", (m,), COMPUTE_BUCKETS
        )
        self.answers = _Family(
            "parm_answers_total", "Queries answered with an output, by source", (m, "source")
        )
        self.errors = _Family(
            "parm_query_errors_total", "Queries answered with an error, by status", (m, "code")
        )
        self.deadline_misses = _Family(
            "parm_deadline_misses_total",
            "Queries whose deadline passed: answered with the default output or an error",
            (m, "outcome"),
        )
        self.refusals = _Family(
            "parm_refusals_total",
            "Queries refused at once: the admission limit, or no ready instance",
            (m, "reason"),
        )
        self.cancellations = _Family(
            "parm_cancellations_total",
            "Queued instance requests dropped before sending (no longer needed)",
            (m, "pool"),
        )
        self.abandoned = _Family(
            "parm_abandoned_queries_total",
            "Queries given up before their answer: the client left, or a row of its request failed",
            (m,),
        )
        self.groups = _Family(
            "parm_groups_closed_total",
            "Coding groups closed: full, partial and padded, or partial and unprotected",
            (m, "kind"),
        )
        self.instance_failures = _Family(
            "parm_instance_failures_total",
            "Failed instance requests (call) and lost instance connections (down)",
            (m, INSTANCE, "kind"),
        )
        self.families = [v for v in vars(self).values() if isinstance(v, _Family)]
        self._services: Callable[[], Iterable[ModelService]] = tuple

    def watch(self, services: Callable[[], Iterable[ModelService]]) -> None:
        """Read the gauges from ``services()`` at each scrape."""
        self._services = services

    def model(self, name: str, k: int, data: Iterable[str], parity: Iterable[str]) -> ModelMetrics:
        """The pre-resolved children of one model: k, its data and parity instances."""
        return ModelMetrics(self, name, k, tuple(data), tuple(parity))

    def render(self) -> str:
        """Every family, then the gauges, in the Prometheus text format (0.0.4)."""
        out: list[str] = []
        for family in self.families:
            family.render(out)
        _gauges(out, list(self._services()))
        return "".join(out)


def _gauges(out: list[str], services: Sequence[ModelService]) -> None:
    """The gauges, read from the services' state now."""

    def per_model(read: Callable[[ModelService], float]) -> list[tuple[str, float]]:
        return [(_labels(["model"], [s.name]), read(s)) for s in services]

    def per_instance(read: Callable[[ModelService, str], float]) -> list[tuple[str, float]]:
        return [
            (_labels(["model", INSTANCE], [s.name, name]), read(s, name))
            for s in services
            for name in s.links
        ]

    _gauge(out, "parm_model_ready", "1 when the model can answer", per_model(lambda s: s.ready))
    _gauge(
        out,
        "parm_outstanding_queries",
        "Admitted queries without an answer yet",
        per_model(lambda s: s.core.outstanding),
    )
    depths = [
        (_labels(["model", "pool"], [s.name, pool.value]), s.core.queue_depth(pool))
        for s in services
        for pool in PoolKind
    ]
    _gauge(out, "parm_queue_depth", "Instance requests queued in the frontend", depths)
    _gauge(
        out,
        "parm_instance_up",
        "1 while the instance is connected and healthy",
        per_instance(lambda s, name: s.core.is_up(name)),
    )
    _gauge(
        out,
        "parm_instance_inflight",
        "Requests sent to the instance, unanswered",
        per_instance(lambda s, name: s.core.inflight(name)),
    )


class ModelMetrics:
    """One model's children, resolved once: the hot path does no label lookups by name."""

    def __init__(
        self, metrics: Metrics, model: str, k: int, data: Sequence[str], parity: Sequence[str]
    ) -> None:
        self.k = k
        self.latency = {s: metrics.latency.histo(model, s.value) for s in Source}
        self.answers = {s: metrics.answers.count(model, s.value) for s in Source}
        self.errors = {e: metrics.errors.count(model, e.value) for e in ErrorKind}
        self.queueing = metrics.queueing.histo(model)
        self.group_fill = metrics.group_fill.histo(model)
        self.encode = metrics.encode.histo(model)
        self.decode = metrics.decode.histo(model)
        self.service_time = {
            name: metrics.service_time.histo(model, pool, name)
            for pool, names in (("data", data), ("parity", parity))
            for name in names
        }
        self.call_failures = {
            name: metrics.instance_failures.count(model, name, "call") for name in self.service_time
        }
        self.downs = {
            name: metrics.instance_failures.count(model, name, "down") for name in self.service_time
        }
        self.missed_default = metrics.deadline_misses.count(model, "default")
        self.missed_error = metrics.deadline_misses.count(model, "error")
        self.refused_admission = metrics.refusals.count(model, "admission")
        self.refused_not_ready = metrics.refusals.count(model, "not_ready")
        self.cancellations = {p: metrics.cancellations.count(model, p.value) for p in PoolKind}
        self.abandoned = metrics.abandoned.count(model)
        self.groups_full = metrics.groups.count(model, "full")
        self.groups_padded = metrics.groups.count(model, "partial_padded")
        self.groups_unprotected = metrics.groups.count(model, "partial_unprotected")

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
