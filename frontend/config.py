"""Settings of the frontend and of each model it serves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from common.codes import TRAINING_FREE
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
        if self.mode is not Mode.CODED or not self.parity:
            return
        bundles = self.parity_bundle_paths()
        if self.code in TRAINING_FREE:
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

    def core_config(self) -> CoreConfig:
        return CoreConfig(
            k=self.k,
            r=self.r,
            mode=self.mode,
            batch_size=self.batch_size,
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

    def __post_init__(self) -> None:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
