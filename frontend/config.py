"""Settings of the frontend and of each model it serves."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from frontend.events import CoreConfig, Mode, PartialPolicy


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
    policy: str = "single-queue"
    batch_size: int = 1
    batch_timeout_ms: float = 2.0
    group_timeout_ms: float = 10.0
    partial: PartialPolicy = PartialPolicy.PAD
    max_inflight: int = 1
    max_outstanding: int = 1024
    max_attempts: int = 3
    #: deadline when the client gives none; None means ``FrontendConfig.max_deadline_ms``
    slo_ms: float | None = None
    #: Clipper's fallback answer when nothing is ready by the deadline
    default_output: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not self.data:
            raise ValueError(f"model {self.name!r} needs at least one data instance")
        if self.mode is Mode.CODED and self.parity and self.parity_bundle is None:
            raise ValueError(
                f"model {self.name!r}: coded mode with parity instances needs a parity bundle"
            )

    def core_config(self) -> CoreConfig:
        return CoreConfig(
            k=self.k,
            mode=self.mode,
            batch_size=self.batch_size,
            batch_timeout=self.batch_timeout_ms / 1000,
            group_timeout=self.group_timeout_ms / 1000,
            partial=self.partial,
            max_outstanding=self.max_outstanding,
            has_default=self.default_output is not None,
            max_attempts=self.max_attempts,
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

    def __post_init__(self) -> None:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
