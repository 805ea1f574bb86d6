"""One served model: the asyncio driver of its coordinator.

``ModelService`` turns client queries into coordinator events, carries out the
actions that come back (send to an instance, encode, decode, answer, set a timer),
and feeds instance answers back in.  Everything outside it is injected: time and
timers come through a ``common.clock.Clock`` (the event loop's, or a simulated one in
tests), and the connections to instances are `Link`s made by a factory (the real one is
``frontend.instances.InstanceLink``; tests pass in-memory fakes).  The encode/decode
arithmetic is ``common.codes``; with a training-free code (``berrut``) the parity
instances serve the base model itself.  Tasks it starts (the instance links, the F(0) fetches)
belong to the task group of `ModelService.run`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from common.backoff import Backoff
from common.bundle import (
    BundleMismatchError,
    Manifest,
    TensorSpec,
    check_parity_for,
    read_manifest,
)
from common.clock import Clock, TimerHandle, sleep
from common.codes import BASE_ANSWERS_PARITY, LEARNED, Code, encode_into, make_code
from frontend.admission import Admission
from frontend.buffers import BufferPool
from frontend.config import InstanceAddress, ModelConfig
from frontend.core import Coordinator
from frontend.events import (
    Action,
    Answer,
    Cancelled,
    ErrorKind,
    Event,
    Fail,
    GraceEnded,
    GroupClosed,
    Hedged,
    InstanceDown,
    InstanceSpec,
    InstanceUp,
    LateOriginal,
    PoolKind,
    QueryAbandoned,
    QueryArrived,
    Reconstruct,
    SendData,
    SendParity,
    SetTimer,
    Source,
    TaskCompleted,
    TaskFailed,
    Tick,
)
from frontend.metrics import Metrics
from frontend.outgoing import Buffer, Outgoing, request_head
from frontend.policy import POLICIES
from frontend.quality import QualityWatch
from proto import inference_pb2 as pb
from proto.tensors import TensorError, dtype_of, tensor_from_raw

log = logging.getLogger(__name__)

Array = npt.NDArray[Any]

ZERO_FETCH_TIMEOUT_S = 5.0
ZERO_FETCH_BACKOFF_S = (0.1, 2.0)  # first delay, cap
#: a coding group whose inputs take this many bytes or more is encoded in a worker
#: thread (numpy lets go of the GIL for large sums): at 3x224x224 a parity's sums take
#: 150-300 us, longer than the event loop should be held (bench/RESULTS.md, loop lag);
#: the thread hop (~0.1 ms) is paid by the parity only, never by a data query
LARGE_GROUP_BYTES = 1 << 18
#: A deadline nearer than this has passed: the event loop's timers fire in whole
#: milliseconds (uvloop), so such a query could be answered after its deadline.
CLOCK_RESOLUTION_S = 0.001
#: the client key of a request whose front door did not say where it came from
ANONYMOUS = "anonymous"


class Link(Protocol):
    """One instance's connection, as the service uses it (``frontend.instances``).

    The link reports to the service (its listener) when the instance comes up, goes
    down, and answers: ``link_up``, ``link_down``, ``link_result``.
    """

    @property
    def name(self) -> str: ...

    @property
    def up(self) -> bool: ...

    def send(self, task_id: int, request: Outgoing) -> None:
        """Send ``request`` (of task ``task_id``); the link must be up.

        The link may read ``request.raw`` after it returns (when its transport gets
        to it): the service does not change a buffer a link may still hold.
        """
        ...

    def fail(self, reason: str) -> None:
        """Take the link down (a call failed); it comes back after a health check."""
        ...

    async def infer(self, request: pb.ModelInferRequest, timeout: float) -> pb.ModelInferResponse:
        """A single call outside the data path (for F(0))."""
        ...

    async def run(self) -> None:
        """Keep the instance connected until cancelled."""
        ...


#: makes the link of one instance: (address, model name on it, listener, clock)
LinkFactory = Callable[[InstanceAddress, str, "ModelService", Clock], Link]


class QueryError(Exception):
    """A query that gets an error instead of an output; ``status`` is a gRPC code name."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Result:
    output: Array  # one row: (*output_shape,)
    source: Source


@dataclass(eq=False, slots=True)
class _Request:
    """One admitted request: its rows wait in `Admission`'s queue until fed to the core."""

    client: str
    rows: Sequence[bytes]
    ids: list[int]
    deadline: float
    require_original: bool
    arrived: float
    fed: int = 0  # rows handed to the coordinator (in order), or all once it is late
    timer: TimerHandle | None = None  # its deadline, while rows still wait


@dataclass(slots=True)
class _Row:
    """The payload of one query as the coordinator passes it around (opaque to it)."""

    raw: bytes  # the query's input row, in the wire's bytes
    arrived: float  # when it was admitted: its queueing time is measured from here
    sent: bool = False  # dispatched to a data instance at least once


class ModelService:
    """The frontend's side of one model: coordinator, instance links and waiting clients."""

    def __init__(
        self,
        config: ModelConfig,
        clock: Clock,
        links: LinkFactory,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.base = read_manifest(config.base_bundle)
        self.input: TensorSpec = self.base.inputs[0]
        self.output: TensorSpec = self.base.outputs[0]
        self._in_dtype = dtype_of(self.input.datatype)
        self._out_dtype = dtype_of(self.output.datatype)
        self.row_bytes = math.prod(self.input.shape) * self._in_dtype.itemsize
        data, parity = config.pools()
        self.parities = self._parity_models() if parity else []
        self.parity: Manifest | None = self.parities[0] if self.parities else None
        self.code = self._make_code()
        #: the coding steps run in a worker thread (read once, not per group): a code's
        #: network passes, and the encoding of large groups
        off_loop = set(getattr(self.code, "off_loop", ()))
        if parity and config.k * config.batch_size * self.row_bytes >= LARGE_GROUP_BYTES:
            off_loop.add("encode")
        self._off_loop: frozenset[str] = frozenset(off_loop)
        self.core = Coordinator(
            config.core_config(),
            [InstanceSpec(a.name, config.max_inflight) for a in data],
            [InstanceSpec(a.name, config.max_inflight, a.parity_index) for a in parity],
            policy=POLICIES[config.policy],
        )
        self.links = {a.name: links(a, self.base.name, self, clock) for a in data}
        for a in parity:
            self.links[a.name] = links(a, self.parities[a.parity_index].name, self, clock)
        self._data_names = {a.name for a in data}
        self.metrics = (metrics or Metrics()).model(
            self.name, config.k, self._data_names, [a.name for a in parity]
        )
        # task id -> (instance, when sent): the instances' service times
        self._sent_at: dict[int, tuple[str, float]] = {}
        self._parity_buffers = BufferPool((config.batch_size, *self.input.shape), np.float32)
        self._clock = clock
        self._futures: dict[int, asyncio.Future[Result]] = {}
        self._ids = itertools.count()
        self.admission: Admission[_Request] = Admission(
            config.max_outstanding, config.window(), config.max_outstanding_per_client
        )
        self._filling = False  # feeding the coordinator from the admission queue
        self._timer: TimerHandle | None = None
        self._timer_at = 0.0  # when the coordinator asked to be woken
        self._armed_at = 0.0  # when the loop's timer is due (never after _timer_at)
        self._tasks: asyncio.TaskGroup | None = None  # run()'s: owns the links and fetches
        self._zero_output: Array | None = None  # F(0): the output of a padded slot
        self._zero_fetches: set[str] = set()  # data instances being asked for F(0)
        self._readiness = asyncio.Event()  # set whenever readiness may have changed
        # reconstructions answered, kept until their late originals come to check them
        self.quality = QualityWatch(level=config.reconstruction_agreement)
        self._default: Array | None = None
        if config.default_output is not None:
            self._default = np.asarray(config.default_output, self._out_dtype).reshape(
                self.output.shape
            )

    def _parity_models(self) -> list[Manifest]:
        """The model each parity index's instances serve (r of them), checked.

        A training-free code's parity queries are interpolated inputs that the base
        model itself answers; otherwise each index has its parity model, trained for
        this base model, k, code and r.
        """
        config = self.config
        if config.code in BASE_ANSWERS_PARITY:
            if self._in_dtype.kind != "f":
                raise BundleMismatchError(
                    f"model {self.name!r}: the {config.code} code sends interpolated inputs, "
                    f"which need a floating-point input; {self.base.name!r} takes "
                    f"{self.input.datatype}"
                )
            return [self.base] * config.r
        parities = [read_manifest(b) for b in config.parity_bundle_paths()]
        for index, manifest in enumerate(parities):
            check_parity_for(
                self.base, manifest, k=config.k, code=config.code, r=config.r,
                index=index if config.r > 1 else None,
            )  # fmt: skip
        return parities

    def _make_code(self) -> Code:
        config = self.config
        if config.code != LEARNED:
            return make_code(config.code, config.k, config.r)
        from common.learned import load_learned_code  # torch: only for a learned code

        assert config.code_bundle is not None  # ModelConfig checked it
        return load_learned_code(config.code_bundle, self.base, config.k, config.r)

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Some data instance is up, and F(0) is known when partial groups need it."""
        if not any(self.core.is_up(name) for name in self._data_names):
            return False
        return self.parity is None or self._zero_output is not None

    @property
    def all_up(self) -> bool:
        """Every instance (data and parity) passed its health check and is up."""
        return all(self.core.is_up(name) for name in self.links)

    async def wait_ready(self, every_instance: bool = False) -> None:
        """Return once the model can answer (and, with ``every_instance``, all are up)."""
        while not self.ready or (every_instance and not self.all_up):
            self._readiness.clear()
            await self._readiness.wait()

    async def run(self) -> None:
        """Connect to every instance and keep them connected, until cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                self._tasks = group
                for link in self.links.values():
                    group.create_task(link.run(), name=f"link-{link.name}")
        finally:
            self._tasks = None
            if self._timer is not None:
                self._timer.cancel()

    # -- gauges (frontend.metrics.GaugeSource) -------------------------------------------

    @property
    def outstanding(self) -> int:
        return self.admission.outstanding

    @property
    def instances(self) -> Iterable[str]:
        return self.links.keys()

    def queue_depth(self, pool: PoolKind) -> int:
        return self.core.queue_depth(pool)

    def instance_up(self, name: str) -> bool:
        return self.core.is_up(name)

    def instance_inflight(self, name: str) -> int:
        return self.core.inflight(name)

    # -- queries -----------------------------------------------------------------------

    def refusal(self, client: str, rows: int, timeout_s: float) -> QueryError | None:
        """Why a request of ``rows`` rows from ``client`` would be refused now, or None.

        Cheap (no row is looked at), so a front door may ask before it parses a body.
        """
        if not self.ready:
            self.metrics.refused_not_ready.inc()
            return QueryError("UNAVAILABLE", f"model {self.name!r} has no ready instance yet")
        if timeout_s < CLOCK_RESOLUTION_S:
            self.metrics.errors[ErrorKind.DEADLINE_EXCEEDED].inc(rows)
            self.metrics.missed_error.inc(rows)
            return QueryError(
                "DEADLINE_EXCEEDED",
                f"the query's deadline ({timeout_s * 1000:.3g} ms) is nearer than the "
                f"frontend's clock resolution ({CLOCK_RESOLUTION_S * 1000:g} ms)",
            )
        refused = self.admission.check(client, rows, timeout_s, self.core.outstanding, self._now())
        if refused is None:
            return None
        self.metrics.errors[ErrorKind.RESOURCE_EXHAUSTED].inc(rows)
        self.metrics.refused_admission.inc(rows)
        self.metrics.admission_refusals[refused.cause].inc(rows)
        return QueryError(refused.status, refused.message)

    async def infer(
        self,
        rows: Sequence[bytes],
        timeout_s: float,
        *,
        require_original: bool = False,
        client: str = ANONYMOUS,
    ) -> list[Result]:
        """Answer each row (one query each); raise QueryError if any gets no output.

        The request is admitted whole or refused before any row runs (`refusal`).
        """
        refused = self.refusal(client, len(rows), timeout_s)
        if refused is not None:
            raise refused
        now = self._now()
        loop = asyncio.get_running_loop()
        ids = [next(self._ids) for _ in rows]
        futures: list[asyncio.Future[Result]] = [loop.create_future() for _ in rows]
        self._futures.update(zip(ids, futures, strict=True))
        request = _Request(client, rows, ids, now + timeout_s, require_original, now)
        self.admission.admit(client, request, len(rows))
        try:
            self._fill()
            if request.fed < len(rows):  # rows wait their turn: drop them at the deadline
                request.timer = self._clock.call_at(request.deadline, lambda: self._late(request))
            # (one row, the common case: no comprehension's coroutine to run)
            results = [await futures[0]] if len(futures) == 1 else [await f for f in futures]
        except BaseException:
            self._abandon(request, futures)
            raise
        finally:
            if request.timer is not None:
                request.timer.cancel()
            self.admission.finished(client, len(rows))
        self.metrics.answered((r.source for r in results), self._now() - now)
        return results

    def _fill(self) -> None:
        """Feed the coordinator from the admission queue while it has room."""
        if self._filling:
            return  # the loop below is running already (a feed's actions came back here)
        self._filling = True
        try:
            while (turn := self.admission.next_row(self.core.outstanding)) is not None:
                request, index = turn
                if request.deadline <= self._now():
                    self._late(request)  # its deadline timer is due: do not send it now
                    continue
                request.fed += 1
                row = _Row(request.rows[index], request.arrived)
                qid = request.ids[index]
                self._feed(QueryArrived(qid, row, request.deadline, request.require_original))
        finally:
            self._filling = False

    def _late(self, request: _Request) -> None:
        """A request's deadline passed while some of its rows still waited: never sent."""
        self.admission.drop(request.client, request)
        late, request.fed = request.ids[request.fed :], len(request.ids)  # once only
        for qid in late:
            if self._default is not None:
                self.metrics.answers[Source.DEFAULT].inc()
                self.metrics.missed_default.inc()
                self._resolve(qid, Result(self._default, Source.DEFAULT))
            else:
                self.metrics.failed(ErrorKind.DEADLINE_EXCEEDED)
                msg = "the query's deadline passed while it waited in the frontend's queue"
                self._reject(qid, QueryError(ErrorKind.DEADLINE_EXCEEDED.value, msg))

    def _abandon(self, request: _Request, futures: list[asyncio.Future[Result]]) -> None:
        self.admission.drop(request.client, request)
        for qid in request.ids:
            if self._futures.pop(qid, None) is not None:
                self.metrics.abandoned.inc()
                self._feed(QueryAbandoned(qid))
        for future in futures:
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: the first error is what the client sees

    # -- the coordinator -----------------------------------------------------------------

    def _now(self) -> float:
        return self._clock.now()

    def _feed(self, event: Event, now: float | None = None) -> None:
        for action in self.core.handle(event, self._now() if now is None else now):
            self._act(action)
        if self.admission.waiting:
            self._fill()  # answers made room in the coordinator

    def _act(self, action: Action) -> None:
        match action:
            case SendData():
                self._send_data(action)
            case SendParity():
                self._send_parity(action)
            case Answer(query_id=qid, source=Source.DEFAULT):
                assert self._default is not None
                self.metrics.answers[Source.DEFAULT].inc()
                self.metrics.missed_default.inc()
                self._resolve(qid, Result(self._default, Source.DEFAULT))
            case Answer(query_id=qid, source=source, output=output, row=row):
                assert isinstance(output, np.ndarray)
                self.metrics.answers[source].inc()
                self._served(1)
                self._resolve(qid, Result(output[row], source))
            case Reconstruct():
                self._reconstruct(action)
            case Fail(query_id=qid, error=error, message=message):
                self.metrics.failed(error)
                self._reject(qid, QueryError(error.value, message))
            case SetTimer(at=at):
                self._set_timer(at)
            case Cancelled(pool=pool):
                self.metrics.cancellations[pool].inc()
            case GroupClosed():
                self.metrics.group_closed(action)
            case GraceEnded(waited=waited, source=source):
                self.metrics.grace_wait[source].observe(waited)
            case Hedged():
                self.metrics.hedges.inc()
            case _:
                self._check(action)  # LateOriginal: every other action is matched above

    def _served(self, rows: int) -> None:
        """Rows answered by instances: the admission's measure of the service rate."""
        self.admission.rate.served(rows, self._now(), backlogged=self.admission.waiting > 0)

    def _resolve(self, qid: int, result: Result) -> None:
        future = self._futures.pop(qid, None)
        if future is not None and not future.done():
            future.set_result(result)

    def _reject(self, qid: int, error: QueryError) -> None:
        future = self._futures.pop(qid, None)
        if future is not None and not future.done():
            future.set_exception(error)

    def _set_timer(self, at: float) -> None:
        # The coordinator's earliest timer moves with nearly every query (the next
        # deadline), mostly later: a timer already armed for no later than ``at`` is
        # kept, and re-armed for ``at`` when it fires (`_on_timer`), so most requests
        # to be woken cost no timer of the loop's.
        self._timer_at = at
        if self._timer is not None:
            if self._armed_at <= at:
                return
            self._timer.cancel()
        self._armed_at = at
        self._timer = self._clock.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._timer_at > self._armed_at:  # asked since to be woken later: wait on
            self._set_timer(self._timer_at)
            return
        # The loop's timers fire when its own (coarser) clock reaches their time, which
        # can be a little before now() does: the wake-up is stamped with its own time.
        self._feed(Tick(), max(self._now(), self._timer_at))

    # -- encode, send, decode ----------------------------------------------------------

    def _send_data(self, action: SendData) -> None:
        rows: tuple[_Row, ...] = action.inputs  # type: ignore[assignment]
        now = self._now()
        for row in rows:
            if not row.sent:  # a retry's queueing is not the query's
                row.sent = True
                self.metrics.queueing.observe(now - row.arrived)
        raw = rows[0].raw if len(rows) == 1 else b"".join(row.raw for row in rows)
        request = self._request(self.base, action.task_id, len(rows), raw)
        self._sent_at[action.task_id] = (action.instance, now)
        self.links[action.instance].send(action.task_id, request)

    def _send_parity(self, action: SendParity) -> None:
        began = self._now()
        # as many rows as the group's largest task (dynamic batches differ in size)
        rows = max(len(slot) for slot in action.slots)
        parity = self._parity_buffers.take()[:rows]  # (B, *input_shape) float32, cut

        def encode() -> Array:
            for i in range(rows):
                encode_into(self.code, self._slot_inputs(action, i), parity[i], action.index)
            return parity

        self._coding("encode", encode, lambda done: self._send_encoded(action, done, began))

    def _send_encoded(self, action: SendParity, parity: Array, began: float) -> None:
        if not self.core.is_up(action.instance):
            return  # it went down while a worker thread encoded: its work was requeued then
        manifest = self.parities[action.index]
        dtype = dtype_of(manifest.inputs[0].datatype)
        # Sent from the buffer itself: the pool reuses it once the send let go of it.
        raw = parity.data if dtype == parity.dtype else parity.astype(dtype).tobytes()
        now = self._now()
        self.metrics.encode.observe(now - began)
        request = self._request(manifest, action.task_id, len(parity), raw)
        self._sent_at[action.task_id] = (action.instance, now)
        self.links[action.instance].send(action.task_id, request)

    def _slot_inputs(self, action: SendParity, i: int) -> list[Array | None]:
        """Row ``i`` of each of the k slots, viewing the query's wire bytes; None where
        the slot is padding."""
        inputs: list[Array | None] = [None] * self.config.k
        for slot, rows in enumerate(action.slots):
            if i < len(rows):
                row = rows[i]
                assert isinstance(row, _Row)
                inputs[slot] = np.frombuffer(row.raw, self._in_dtype).reshape(self.input.shape)
        return inputs

    def _coding(self, step: str, work: Callable[[], Array], then: Callable[[Array], None]) -> None:
        """``then(work())``: at once, unless the code names ``step`` (``"encode"`` or
        ``"decode"``) in its ``off_loop`` (network passes: a learned code's encoder); then
        ``work`` runs in a worker thread, and the event loop goes on meanwhile."""
        if step not in self._off_loop:
            then(work())
            return
        assert self._tasks is not None, "queries are coded only while run() runs"
        self._tasks.create_task(self._in_thread(work, then), name="coding")

    @staticmethod
    async def _in_thread(work: Callable[[], Array], then: Callable[[Array], None]) -> None:
        then(await asyncio.to_thread(work))

    @staticmethod
    def _request(manifest: Manifest, task_id: int, rows: int, raw: Buffer) -> Outgoing:
        spec = manifest.inputs[0]
        head = request_head(manifest.name, spec.name, spec.datatype, (rows, *spec.shape))
        return Outgoing(task_id, head, raw)

    def _reconstruct(self, action: Reconstruct) -> None:
        assert self._zero_output is not None
        began = self._now()
        batch = max(action.sizes)  # the parity's rows
        outputs = np.empty((self.config.k, batch, *self.output.shape), np.float32)
        outputs[:] = self._zero_output  # padded slots and rows: the known F(0)
        for slot, (out, size) in enumerate(zip(action.outputs, action.sizes, strict=True)):
            if out is not None:
                outputs[slot, :size] = np.asarray(out)
        parities = [None if p is None else np.asarray(p, np.float32) for p in action.parity_outputs]
        erased = list(action.erased)
        self._coding(
            "decode",
            lambda: self.code.decode_erasures(parities, outputs, erased)[
                erased.index(action.missing)
            ],
            lambda decoded: self._answer_decoded(action, decoded, began),
        )

    def _answer_decoded(self, action: Reconstruct, decoded: Array, began: float) -> None:
        decoded = decoded.astype(self._out_dtype, copy=False)  # (B, *out)
        self.metrics.decode.observe(self._now() - began)
        self.metrics.answers[Source.RECONSTRUCTED].inc(len(action.answers))
        self._served(len(action.answers))
        for qid, row in action.answers:
            self._resolve(qid, Result(decoded[row], Source.RECONSTRUCTED))
        self.quality.remember(action.task_id, {row: decoded[row] for _, row in action.answers})

    def _check(self, action: LateOriginal) -> None:
        """The live check: a late original against the reconstruction answered for it."""
        original = np.asarray(action.output)
        for comparison in self.quality.check(action.task_id, original):
            agreed = self.metrics.checks_agree if comparison.agree else self.metrics.checks_disagree
            agreed.inc()
            self.metrics.reconstruction_error.observe(comparison.relative_error)
        if self.quality.should_warn(self._now()):
            log.warning(
                "%s: only %.0f%% of recent reconstructions agree with their late originals "
                "(top-1; warning level %.0f%%): is the parity model trained for this "
                "base model and code?",
                self.name,
                100 * (self.quality.agreement or 0.0),
                100 * self.quality.level,
            )

    # -- instance links (LinkListener) ------------------------------------------------------

    def link_up(self, name: str) -> None:
        log.info("%s: instance %s is up", self.name, name)
        self._feed(InstanceUp(name))
        self._readiness.set()
        wanted = self.parity is not None and self._zero_output is None
        if wanted and name in self._data_names and name not in self._zero_fetches:
            # Ask every data instance that comes up; the first answer wins, so one slow
            # or failing instance cannot hold up readiness.
            assert self._tasks is not None, "links report only while run() runs them"
            self._zero_fetches.add(name)
            self._tasks.create_task(self._fetch_zero(name), name=f"f0-{name}")

    def link_down(self, name: str, reason: str) -> None:
        log.warning("%s: instance %s is down: %s", self.name, name, reason)
        self.metrics.downs[name].inc()
        # its requests in flight will never be answered: forget when they were sent
        for task_id in [t for t, (where, _) in self._sent_at.items() if where == name]:
            del self._sent_at[task_id]
        self._feed(InstanceDown(name))

    def link_result(self, name: str, task_id: int, response: pb.ModelStreamInferResponse) -> None:
        sent = self._sent_at.pop(task_id, None)
        if sent is not None:
            self.metrics.service_time[name].observe(self._now() - sent[1])
        if response.error_message:
            log.warning(
                "%s: instance %s failed a call: %s", self.name, name, response.error_message
            )
            self.metrics.call_failures[name].inc()
            self._feed(TaskFailed(task_id, name, response.error_message))
            self.links[name].fail(f"failed call: {response.error_message}")
            return
        try:
            output = _first_output(response.infer_response)
        except TensorError as exc:
            self.metrics.call_failures[name].inc()
            self._feed(TaskFailed(task_id, name, str(exc)))
            self.links[name].fail(f"malformed answer: {exc}")
            return
        self._feed(TaskCompleted(task_id, name, output))

    async def _fetch_zero(self, name: str) -> None:
        """Ask a data instance for F(0), the known output of a zero-padded slot.

        Retried with back-off while the instance is up and nobody has answered yet.
        """
        request = self._request(self.base, -1, 1, bytes(self.row_bytes)).message()
        link, backoff = self.links[name], Backoff(*ZERO_FETCH_BACKOFF_S)
        try:
            while self._zero_output is None and link.up:
                try:
                    response = await link.infer(request, timeout=ZERO_FETCH_TIMEOUT_S)
                    output = _first_output(response)[0].astype(np.float32)
                except Exception as exc:  # any failure: retry, or let another instance answer
                    log.warning("%s: could not get F(0) from %s: %s", self.name, name, exc)
                    await sleep(self._clock, backoff.next())
                    continue
                if self._zero_output is None:
                    self._zero_output = output
                    self._readiness.set()
        finally:
            self._zero_fetches.discard(name)


def _first_output(response: pb.ModelInferResponse) -> Array:
    if not response.outputs or not response.raw_output_contents:
        raise TensorError("the instance's answer has no raw output tensor")
    out = response.outputs[0]
    return tensor_from_raw(out.datatype, out.shape, response.raw_output_contents[0])


__all__ = ["ErrorKind", "ModelService", "QueryError", "Result"]
