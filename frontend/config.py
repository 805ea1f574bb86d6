"""Settings of the frontend and of each model it serves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from common.codes import BASE_ANSWERS_PARITY, LEARNED
from frontend.events import CoreConfig, Mode, PartialPolicy

T = TypeVar("T")


def assign_pools(
    mode: Mode, data: Sequence[T], parity: Sequence[T]
) -> tuple[tuple[T, ...], tuple[T, ...]]:
    """(data pool, parity pool) of a mode: the same instances in every mode, used differently.

    Coded mode keeps the parity instances for parity queries; ``none`` leaves them
    idle; equal-resources and replicate use them as more copies of the base model.
    The asyncio frontend and the simulator both assign pools here.
    """
    if mode is Mode.CODED:
        return tuple(data), tuple(parity)
    if mode is Mode.NONE:
        return tuple(data), ()
    return (*data, *parity), ()


def decode_grace_seconds(value: float | str, setting: str = "decode_grace") -> float | None:
    """A learned-or-fixed time setting (``"auto"`` or milliseconds: ``decode_grace``,
    ``hedge_delay``) in seconds; None for auto."""
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return None
        try:
            value = float(value)
        except ValueError:
            raise ValueError(
                f"{setting}: expected auto or a number of milliseconds, got {value!r}"
            ) from None
    if isinstance(value, bool) or not 0 <= value < float("inf"):
        raise ValueError(f"{setting}: expected auto or milliseconds >= 0, got {value!r}")
    return float(value) / 1000


@dataclass(frozen=True)
class InstanceAddress:
    """Where one model instance listens.

    ``grpc`` is its v2 gRPC endpoint (health checks, metadata; the data path when it
    has nothing faster).  ``stream``, when set, is the framed-TCP endpoint of a parm
    model container, which carries the same messages with less overhead.
    """

    name: str
    grpc: str
    stream: str | None = None
    #: for a parity instance: which of the r parity models it serves
    parity_index: int = 0


@dataclass(frozen=True)
class ModelConfig:
    """One served model: its bundles, its instances and its coding settings."""

    name: str
    base_bundle: Path
    data: tuple[InstanceAddress, ...]
    parity: tuple[InstanceAddress, ...] = ()
    parity_bundle: Path | None = None
    mode: Mode = Mode.CODED
    k: int = 2
    code: str = "sum"
    #: parities per group; r > 1 takes one parity bundle per index in ``parity_bundles``
    #: (the berrut code takes none: its parity instances serve the base model)
    r: int = 1
    parity_bundles: tuple[Path, ...] = ()
    #: the learned code's training run (its ``encoder/`` and ``decoder/`` bundles), for
    #: ``code = "learned"``; its parity instances serve the base model
    code_bundle: Path | None = None
    policy: str = "single-queue"
    #: queries per instance request, at most.  Batches are dynamic (``dynamic_batching``):
    #: a query goes to a free data instance at once, and queries that arrive while every
    #: data instance is busy go together to the next one free, up to this many
    batch_size: int = 1
    dynamic_batching: bool = True
    #: fixed batching only (``dynamic_batching = false``): how long a short batch waits
    #: for more queries
    batch_timeout_ms: float = 2.0
    group_timeout_ms: float = 10.0
    partial: PartialPolicy = PartialPolicy.PAD
    max_inflight: int = 1
    max_outstanding: int = 1024
    #: rows one client (a gRPC peer, an HTTP connection) may hold at once; None: the
    #: fair split, ``max_outstanding`` / clients active in the last second
    max_outstanding_per_client: int | None = None
    #: queries the coordinator holds at once; the rest of the admitted rows wait in
    #: per-client queues, served round robin.  None: twice what the data instances take
    admission_window: int | None = None
    max_attempts: int = 3
    #: deadline when the client gives none; None means ``FrontendConfig.max_deadline_ms``
    slo_ms: float | None = None
    #: Clipper's fallback answer when nothing is ready by the deadline
    default_output: tuple[float, ...] | None = None
    #: how long an original may be late before a decodable reconstruction answers for
    #: it: ``"auto"`` (learned from healthy service times), milliseconds, or 0 (eager)
    decode_grace: float | str = "auto"
    #: hedge mode: how long a query may run before a backup copy goes to another
    #: instance: ``"auto"`` (the robust p95 of recent service times) or milliseconds
    hedge_delay: float | str = "auto"
    #: the log warns when fewer than this share of late originals agree (top-1) with
    #: the reconstruction answered for them
    reconstruction_agreement: float = 0.9

    def __post_init__(self) -> None:
        decode_grace_seconds(self.decode_grace)  # refused here, not at the first query
        decode_grace_seconds(self.hedge_delay, "hedge_delay")
        if not 0.0 <= self.reconstruction_agreement <= 1.0:
            raise ValueError(
                f"reconstruction_agreement: expected a fraction in [0, 1], "
                f"got {self.reconstruction_agreement}"
            )
        if not self.data:
            raise ValueError(f"model {self.name!r} needs at least one data instance")
        for field_name in ("max_outstanding_per_client", "admission_window"):
            value = getattr(self, field_name)
            if value is not None and value < 1:
                raise ValueError(f"model {self.name!r}: {field_name}: expected >= 1, got {value}")
        if (self.code == LEARNED) != (self.code_bundle is not None):
            raise ValueError(
                f"model {self.name!r}: a code bundle goes with code {LEARNED!r} and only "
                f"with it; got code {self.code!r} and code_bundle {self.code_bundle}"
            )
        if self.mode is not Mode.CODED or not self.parity:
            return
        bundles = self.parity_bundle_paths()
        if self.code in BASE_ANSWERS_PARITY:
            if bundles:
                raise ValueError(
                    f"model {self.name!r}: the {self.code} code takes no parity bundle (its "
                    f"parity instances serve the base model); got {[str(b) for b in bundles]}"
                )
        elif len(bundles) != self.r:
            raise ValueError(
                f"model {self.name!r}: coded mode with r={self.r} needs {self.r} parity "
                f"bundle(s), one per parity index; got {len(bundles)}"
            )
        wrong = [a.name for a in self.parity if not 0 <= a.parity_index < self.r]
        if wrong:
            raise ValueError(f"model {self.name!r}: parity_index of {wrong} not in [0, {self.r})")

    def parity_bundle_paths(self) -> tuple[Path, ...]:
        """The parity bundle of each parity index, in index order."""
        if self.parity_bundles:
            return self.parity_bundles
        return (self.parity_bundle,) if self.parity_bundle is not None else ()

    def pools(self) -> tuple[tuple[InstanceAddress, ...], tuple[InstanceAddress, ...]]:
        """(data pool, parity pool) of this model's instances in its mode."""
        return assign_pools(self.mode, self.data, self.parity)

    def window(self) -> int:
        """Queries the coordinator may hold (``admission_window``, or enough to keep every
        data instance busy with a batch queued behind each one in flight)."""
        if self.admission_window is not None:
            return self.admission_window
        data = self.pools()[0]
        return max(2 * len(data) * self.max_inflight, self.k) * self.batch_size

    def core_config(self) -> CoreConfig:
        return CoreConfig(
            k=self.k,
            r=self.r,
            mode=self.mode,
            batch_size=self.batch_size,
            dynamic_batching=self.dynamic_batching,
            batch_timeout=self.batch_timeout_ms / 1000,
            group_timeout=self.group_timeout_ms / 1000,
            partial=self.partial,
            max_outstanding=self.max_outstanding,
            has_default=self.default_output is not None,
            max_attempts=self.max_attempts,
            decode_grace=decode_grace_seconds(self.decode_grace),
            hedge_delay=decode_grace_seconds(self.hedge_delay, "hedge_delay"),
        )


@dataclass(frozen=True)
class FrontendConfig:
    models: tuple[ModelConfig, ...]
    host: str = "127.0.0.1"
    grpc_port: int = 8001
    #: KServe v2 REST and Clipper REST (``frontend.http``); None: no HTTP server
    http_port: int | None = None
    #: Prometheus ``/metrics``; None: not served (the metrics are still kept)
    metrics_port: int | None = None
    #: requests whose tensor bytes exceed this are refused with INVALID_ARGUMENT
    max_request_bytes: int = 16 * 1024 * 1024
    #: every query gets a deadline: the client's, else the model's SLO, else this
    max_deadline_ms: float = 30_000.0
    grpc_options: tuple[tuple[str, int], ...] = field(default_factory=tuple)
    #: open connections per HTTP port (API, metrics); one more is answered 503 and closed
    #: at once.  Kept under the open-files limit, which is raised to its hard limit at start
    http_max_connections: int = 1000
    #: requests in progress per HTTP port; one more is answered 503 (``Retry-After: 1``)
    #: before it is routed or its body parsed: the HTTP twin of ``grpc_max_streams``
    http_max_requests: int = 32
    #: an HTTP connection with no request in progress is closed after this many seconds
    http_idle_timeout_s: float = 5.0
    #: an HTTP request's headers and body must arrive within this many seconds of its
    #: first byte (else 408 and the connection is closed: slow clients hold no descriptor)
    http_read_timeout_s: float = 15.0
    #: open gRPC connections (``grpc.max_allowed_incoming_connections``)
    grpc_max_connections: int = 1000
    #: calls at once on one gRPC connection (``grpc.max_concurrent_streams``).  gRPC
    #: itself refuses the excess (RST_STREAM REFUSED_STREAM: the client sees UNAVAILABLE,
    #: safe to retry) or the client queues it.  Kept above ``grpc_max_calls``: a call
    #: queued in a client waits there past the time it could have been served, and
    #: reaches the frontend stale; one refused at once is retried or given up fresh.
    grpc_max_streams: int = 128
    #: calls at once in this process, over every connection (grpc.aio's
    #: ``maximum_concurrent_rpcs``): one more is answered RESOURCE_EXHAUSTED by gRPC's
    #: own server loop before its message is read, routed or parsed -- the cheapest
    #: refusal there is, which under 3x overload is most calls.  First come, first
    #: served: admission's per-client shares apply to the calls inside the limit, so a
    #: client that floods calls on many connections can take the slots (lower
    #: ``grpc_max_streams`` to bound what one connection takes).  0: no limit.
    grpc_max_calls: int = 64
    #: a gRPC connection without calls is closed (GOAWAY; clients reconnect) after this
    grpc_idle_timeout_s: float = 300.0
    #: a gRPC connection must finish its handshake within this many seconds
    grpc_handshake_timeout_s: float = 15.0
    #: requests of one ``ModelStreamInfer`` stream in flight at once: the next is read
    #: only when one is answered, so a client that never reads cannot grow memory
    stream_max_inflight: int = 64
    #: on stop, calls in flight get this many seconds to finish; the rest are answered
    #: UNAVAILABLE (gRPC) / 503 (HTTP)
    shutdown_grace_s: float = 2.0
    #: frontend processes serving this configuration on one host, sharing its ports
    #: (``deploy.workers``); a `frontend.server.Frontend` is always one of them
    workers: int = 1
    #: bind the client ports with SO_REUSEPORT, so that the workers share them (set
    #: by ``deploy.workers`` for each worker, not in files)
    reuse_port: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers: expected a whole number >= 1, got {self.workers!r}")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
