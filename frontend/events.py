"""The vocabulary of the coordinator: settings, the events it takes, the actions it emits.

Everything here is a frozen dataclass or an enum, so events and actions can be
compared in tests and logged as they are.  See ``frontend.core`` for how they flow.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Mode(enum.Enum):
    """How the extra instances are used.  Equal-resources is ``NONE`` with more data
    instances: the driver gives the parity instances to the data pool."""

    CODED = "coded"
    EQUAL_RESOURCES = "equal-resources"
    REPLICATE = "replicate"
    HEDGE = "hedge"  # a backup copy of a data task once it runs longer than the hedge delay
    NONE = "none"


class Source(enum.Enum):
    """Where an answer came from: the provenance every response carries."""

    ORIGINAL = "original"
    RECONSTRUCTED = "reconstructed"
    DEFAULT = "default"


class ErrorKind(enum.Enum):
    """Why a query got an error instead of an output."""

    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNAVAILABLE = "UNAVAILABLE"


class PoolKind(enum.Enum):
    DATA = "data"
    PARITY = "parity"


class PartialPolicy(enum.Enum):
    """What to do with a group that did not fill in time."""

    PAD = "pad"
    UNPROTECTED = "unprotected"


@dataclass(frozen=True)
class CoreConfig:
    """Settings of one model's coordinator.  Times are in seconds."""

    k: int = 2
    r: int = 1  # parity queries per group; any k of the k+r outputs decode
    mode: Mode = Mode.CODED
    batch_size: int = 1
    #: a filling batch (``batch_size`` > 1) goes to the first data instance that is free
    #: (dynamic, as Triton's dynamic batcher with no queue delay: a lone query waits for
    #: nothing, and batches grow only while every instance is busy); False: it waits
    #: until full or ``batch_timeout`` after its first query, whatever the instances do
    dynamic_batching: bool = True
    batch_timeout: float = 0.002
    group_timeout: float = 0.010
    partial: PartialPolicy = PartialPolicy.PAD
    max_outstanding: int = 1024
    has_default: bool = False
    max_attempts: int = 3
    #: how long an original may take, from its send, before it is late and a decodable
    #: reconstruction is answered instead (``frontend.grace``); 0: eager, at once;
    #: None: learned from the service times of originals (auto)
    decode_grace: float | None = 0.0
    #: hedge mode: how long a data task may run before a backup copy is queued
    #: (``frontend.grace``'s estimator at the ``HEDGE_QUANTILE``); None: learned (auto)
    hedge_delay: float | None = None

    def __post_init__(self) -> None:
        for name in ("k", "r", "batch_size", "max_outstanding", "max_attempts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_timeout < 0 or self.group_timeout < 0:
            raise ValueError("timeouts must be >= 0")
        if self.decode_grace is not None and self.decode_grace < 0:
            raise ValueError(f"decode_grace must be >= 0 or None (auto), got {self.decode_grace}")
        if self.hedge_delay is not None and self.hedge_delay < 0:
            raise ValueError(f"hedge_delay must be >= 0 or None (auto), got {self.hedge_delay}")


@dataclass(frozen=True)
class InstanceSpec:
    name: str
    max_inflight: int = 1
    #: for a parity instance: which of the r parity models it serves
    parity_index: int = 0


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class QueryArrived:
    query_id: int
    payload: object
    deadline: float | None = None
    require_original: bool = False


@dataclass(frozen=True)
class QueryAbandoned:
    """The client went away; the query needs no answer any more."""

    query_id: int


@dataclass(frozen=True)
class TaskCompleted:
    task_id: int
    instance: str
    output: object


@dataclass(frozen=True)
class TaskFailed:
    task_id: int
    instance: str
    message: str = ""


@dataclass(frozen=True)
class InstanceUp:
    instance: str


@dataclass(frozen=True)
class InstanceDown:
    instance: str


@dataclass(frozen=True)
class Tick:
    """A timer the coordinator asked for has come due."""


Event = (
    QueryArrived | QueryAbandoned | TaskCompleted | TaskFailed | InstanceUp | InstanceDown | Tick
)


# ---------------------------------------------------------------- actions


@dataclass(frozen=True)
class SendData:
    """Run the base model on ``inputs`` (one per query, in row order) on ``instance``."""

    task_id: int
    instance: str
    inputs: tuple[object, ...]


@dataclass(frozen=True)
class SendParity:
    """Encode ``slots`` (each the inputs of one data task) into parity ``index`` and run
    that parity model.

    Fewer than k slots, or slots with fewer than B rows, are padded with zero inputs.
    """

    task_id: int
    instance: str
    slots: tuple[tuple[object, ...], ...]
    index: int = 0


@dataclass(frozen=True)
class Answer:
    """Answer a query with row ``row`` of ``output`` (``None`` for the default output)."""

    query_id: int
    source: Source
    output: object = None
    row: int = 0


@dataclass(frozen=True)
class Reconstruct:
    """Decode slot ``missing`` of a group and answer ``answers`` from its rows.

    ``erased`` lists every data slot whose output is missing (decoded together, from
    as many parity outputs); ``parity_outputs`` has one entry per parity, ``None``
    where it has not arrived.  ``outputs`` has one entry per real slot (``None`` at
    each erased slot); ``sizes`` says how many rows each slot's task carried; slots
    beyond ``len(outputs)`` up to k, and rows beyond a slot's size, were zero-padded.
    """

    group_id: int
    missing: int
    parity_outputs: tuple[object | None, ...]
    outputs: tuple[object | None, ...]
    sizes: tuple[int, ...]
    answers: tuple[tuple[int, int], ...]  # (query_id, row)
    erased: tuple[int, ...]
    task_id: int = -1  # the data task whose output is decoded

    @property
    def parity_output(self) -> object:
        """The first parity's output: all there is with r=1."""
        return self.parity_outputs[0]


@dataclass(frozen=True)
class LateOriginal:
    """The original of a reconstructed data task arrived after all: compare the two.

    ``output`` is the task's output; ``answers`` the (query_id, row) pairs that were
    answered with the reconstruction of task ``task_id``.  Nobody gets a second answer.
    """

    task_id: int
    output: object
    answers: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class GraceEnded:
    """A held reconstruction's wait is over: its original came (``ORIGINAL``) or it was
    answered (``RECONSTRUCTED``) after ``waited`` seconds."""

    task_id: int
    waited: float
    source: Source


@dataclass(frozen=True)
class Hedged:
    """Hedge mode: data task ``task_id`` ran ``delay`` seconds without an answer, so a
    backup copy (``backup_id``) was queued for another instance; the first answer wins."""

    task_id: int
    backup_id: int
    delay: float


@dataclass(frozen=True)
class Fail:
    query_id: int
    error: ErrorKind
    message: str


@dataclass(frozen=True)
class Cancelled:
    """A queued task was dropped before it was sent."""

    task_id: int
    pool: PoolKind
    reason: str


@dataclass(frozen=True)
class GroupClosed:
    group_id: int
    filled: int
    fill_time: float
    protected: bool


@dataclass(frozen=True)
class SetTimer:
    """Deliver ``Tick`` at time ``at`` (replaces any earlier request)."""

    at: float


Action = (
    SendData
    | SendParity
    | Answer
    | Reconstruct
    | LateOriginal
    | GraceEnded
    | Hedged
    | Fail
    | Cancelled
    | GroupClosed
    | SetTimer
)
