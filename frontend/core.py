"""The coding-group state machine of one served model, without any I/O.

Theory of operation
-------------------
Queries arrive one by one.  Each admitted query becomes part of a *data task* (up to B
queries sent to one instance in one request; B=1 by default) that is queued for the
data pool at once.  With B > 1 a task is cut when it holds B queries or, dynamic
batching, once the queries that arrived together are in (a timer due at once: the
driver's next pass) and a data instance is free to take it, so batches grow while every
instance is busy or the driver is; fixed batching waits for B or a timeout instead.
Data tasks join the model's open *coding group*; when the group holds k of them, or
its fill timeout passes, it is *closed*: a *parity task* is
queued for the parity pool.  Its input is the code's encoding of the group's inputs,
zero-padded when the group closed short (the padded slots' outputs are the base
model's known output on a zero input).

Each pool has a dispatch policy (``frontend.policy``).  Whenever an instance that is
up has fewer requests in flight than it may hold, the coordinator asks the policy for
the next task and emits ``SendData``/``SendParity``.

When a data task's result arrives, its queries are answered as ``original``.  When
the parity result and all but one data result of a group are in, the missing one can be
reconstructed (``Reconstruct``) and its queries answered as ``reconstructed``, unless a
query asked for originals only.  A reconstruction is an approximation, so it is *held*
until its original is late (*decode grace*, ``frontend.grace``): an original is due
``threshold`` seconds after it was sent, and never while it still waits in the
frontend's queue (a loaded cluster is not a slow one), where the threshold is fixed, 0
(eager: the papers' behaviour, which decodes queued tasks too), or learned from the
service times of originals.  If the original comes in
time, it is answered and the reconstruction dropped; otherwise the reconstruction is
answered when the original falls due, when its call fails, or at the query's deadline,
whichever comes first (``GraceEnded`` tells the driver how long it waited).  A query
whose deadline passes with nothing to answer is answered with the model's default
output, or failed with ``DEADLINE_EXCEEDED``.  Each query is answered exactly once; an
original that arrives after its reconstruction was answered is handed back
(``LateOriginal``) so the driver can check the reconstruction against it, live.

Queued work that can no longer help anybody is cancelled before it is sent: a data
task once every query of its group is answered, a parity task once no missing output
could use it.  A failed call, or an instance going down, re-queues its tasks at the
front (up to ``max_attempts`` sends), unless reconstruction answers them first.

The driver owns time and payloads.  Every event carries ``now``; the coordinator
asks to be woken with ``SetTimer`` and never reads a clock.  Inputs and outputs are
opaque objects that the coordinator only passes around; the driver does the
arithmetic with ``common.codes``.  The asyncio frontend and the simulator drive
this same class.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from frontend.events import (
    Action,
    Answer,
    Cancelled,
    CoreConfig,
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
    Mode,
    PartialPolicy,
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
)
from frontend.grace import Grace
from frontend.policy import DispatchPolicy, SingleQueue


class _State(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    GONE = "gone"  # cancelled, given up, or its result no longer wanted


# ---------------------------------------------------------------- internal state


@dataclass(eq=False)
class _Query:
    id: int
    payload: object
    require_original: bool
    task: _Task | None = None
    row: int = 0
    settled: bool = False


@dataclass(eq=False)
class _Group:
    id: int
    opened_at: float
    slots: list[_Task] = field(default_factory=list)
    parities: list[_Task] = field(default_factory=list)
    closed: bool = False


@dataclass(eq=False)
class _Task:
    id: int
    pool: PoolKind
    queries: list[_Query]
    group: _Group | None = None
    state: _State = _State.QUEUED
    instance: str | None = None
    output: object = None
    has_output: bool = False
    sends: int = 0
    sibling: _Task | None = None  # the other copy, in replicate mode
    index: int = 0  # which parity, for a parity task
    sent_at: float | None = None  # the last send
    decodable_at: float | None = None  # when its output could first be reconstructed
    reconstructed: tuple[tuple[int, int], ...] = ()  # (query_id, row) answered so


@dataclass(eq=False)
class _Instance:
    spec: InstanceSpec
    up: bool = False
    running: set[int] = field(default_factory=set)


class _Pool:
    def __init__(
        self, kind: PoolKind, specs: Sequence[InstanceSpec], policy: DispatchPolicy[_Task]
    ):
        self.kind = kind
        self.policy = policy
        self.instances = {spec.name: _Instance(spec) for spec in specs}
        # Up instances with spare capacity, longest-idle first.
        self.free: dict[str, None] = {}

    def refresh(self, name: str) -> None:
        inst = self.instances[name]
        self.free.pop(name, None)
        if inst.up and len(inst.running) < inst.spec.max_inflight:
            self.free[name] = None


class _Timer(enum.Enum):
    DEADLINE = 0
    BATCH = 1
    GROUP = 2
    GRACE = 3
    HEDGE = 4


# ---------------------------------------------------------------- the coordinator


class Coordinator:
    """Feed events with ``handle(event, now)``; carry out the actions it returns."""

    def __init__(
        self,
        config: CoreConfig,
        data: Sequence[InstanceSpec],
        parity: Sequence[InstanceSpec] = (),
        policy: Callable[[], DispatchPolicy[_Task]] = SingleQueue,
        grace: Grace | None = None,
    ) -> None:
        self.config = config
        self.grace = grace or Grace(config.decode_grace)
        self._coded = config.mode is Mode.CODED
        self.hedge = Grace.hedge(config.hedge_delay) if config.mode is Mode.HEDGE else None
        self._pools = {
            PoolKind.DATA: _Pool(PoolKind.DATA, data, policy()),
            PoolKind.PARITY: _Pool(PoolKind.PARITY, parity, policy()),  # idle unless coded
        }
        self._pool_of = {
            name: kind for kind, pool in self._pools.items() for name in pool.instances
        }
        if len(self._pool_of) != len(data) + len(self._pools[PoolKind.PARITY].instances):
            raise ValueError("instance names must be unique across pools")
        self._queries: dict[int, _Query] = {}
        self._tasks: dict[int, _Task] = {}
        self._task_ids = itertools.count()
        self._group_ids = itertools.count()
        self._group: _Group | None = None  # the open group
        self._batch: list[_Query] = []  # queries waiting to fill a data task
        self._batch_serial = 0
        self._batch_due = False  # dynamic: the filling batch goes to the next free instance
        self._timers: list[tuple[float, int, _Timer, int]] = []
        self._timer_seq = itertools.count()
        self._announced: float | None = None
        # data tasks whose decodable reconstruction waits for the original: task, due
        self._held: dict[int, tuple[_Task, float]] = {}
        # hedge mode: running first copies whose backup is due, task id -> due
        self._hedges: dict[int, float] = {}
        self._out: list[Action] = []

    # -- public API -------------------------------------------------------------

    @property
    def outstanding(self) -> int:
        """Admitted queries that have no answer yet."""
        return len(self._queries)

    def queue_depth(self, pool: PoolKind) -> int:
        return len(self._pools[pool].policy)

    def inflight(self, instance: str) -> int:
        return len(self._instance(instance).running)

    def is_up(self, instance: str) -> bool:
        return self._instance(instance).up

    def handle(self, event: Event, now: float) -> list[Action]:
        """Process one event at time ``now``; return the actions to carry out, in order."""
        match event:
            case QueryArrived():
                self._on_query(event, now)
            case QueryAbandoned(query_id=qid):
                query = self._queries.get(qid)
                if query is not None:
                    self._settle(query)
                    self._prune(query.task)
            case TaskCompleted():
                self._on_completed(event, now)
            case TaskFailed(task_id=tid, instance=name):
                self._on_failed(tid, name, now)
            case InstanceUp(instance=name):
                self._set_up(name, True, now)
            case InstanceDown(instance=name):
                self._set_up(name, False, now)
            case _:  # Tick
                self._on_tick(now)
        self._pump(now)
        self._announce_timer()
        out, self._out = self._out, []
        return out

    # -- arrivals, batches and groups --------------------------------------------

    def _on_query(self, event: QueryArrived, now: float) -> None:
        if event.query_id in self._queries:
            raise ValueError(f"query id {event.query_id} is already outstanding")
        if len(self._queries) >= self.config.max_outstanding:
            msg = f"model is at its admission limit of {self.config.max_outstanding} queries"
            self._out.append(Fail(event.query_id, ErrorKind.RESOURCE_EXHAUSTED, msg))
            return
        query = _Query(event.query_id, event.payload, event.require_original)
        self._queries[query.id] = query
        if event.deadline is not None:
            self._add_timer(event.deadline, _Timer.DEADLINE, query.id)
        self._batch.append(query)
        if len(self._batch) >= self.config.batch_size:
            self._flush_batch(now)
        elif len(self._batch) == 1:
            # dynamic: due at once, i.e. once the driver has handled what else arrived
            # with it (the rest of its event loop pass), then cut for a free instance
            wait = 0.0 if self.config.dynamic_batching else self.config.batch_timeout
            self._add_timer(now + wait, _Timer.BATCH, self._batch_serial)

    def _flush_batch(self, now: float) -> None:
        queries, self._batch = self._batch, []
        self._batch_due = False
        self._batch_serial += 1
        task = self._new_task(PoolKind.DATA, queries)
        if self.config.mode is Mode.REPLICATE:
            twin = self._new_task(PoolKind.DATA, queries)
            task.sibling, twin.sibling = twin, task
        if self._coded and self._pools[PoolKind.PARITY].instances:
            self._join_group(task, now)
        self._enqueue(task)
        if task.sibling is not None:
            self._enqueue(task.sibling)

    def _new_task(self, pool: PoolKind, queries: list[_Query]) -> _Task:
        task = _Task(next(self._task_ids), pool, queries)
        for row, query in enumerate(queries):
            query.task, query.row = task, row
        self._tasks[task.id] = task
        return task

    def _join_group(self, task: _Task, now: float) -> None:
        group = self._group
        if group is None:
            group = self._group = _Group(next(self._group_ids), opened_at=now)
            self._add_timer(now + self.config.group_timeout, _Timer.GROUP, group.id)
        task.group = group
        group.slots.append(task)
        if len(group.slots) == self.config.k:
            self._close_group(group, now)

    def _close_group(self, group: _Group, now: float) -> None:
        self._group = None
        group.closed = True
        filled = len(group.slots)
        protected = filled == self.config.k or self.config.partial is PartialPolicy.PAD
        self._out.append(GroupClosed(group.id, filled, now - group.opened_at, protected))
        if protected and self._parity_useful(group):
            for index in range(self.config.r):
                parity = self._new_task(PoolKind.PARITY, [])
                parity.group, parity.index = group, index
                group.parities.append(parity)
                self._enqueue(parity)

    # -- timers -------------------------------------------------------------------

    def _add_timer(self, at: float, kind: _Timer, ref: int) -> None:
        heapq.heappush(self._timers, (at, next(self._timer_seq), kind, ref))

    def _timer_live(self, kind: _Timer, ref: int) -> bool:
        if kind is _Timer.DEADLINE:
            return ref in self._queries
        if kind is _Timer.BATCH:
            return ref == self._batch_serial and bool(self._batch)
        if kind is _Timer.GRACE:
            return ref in self._held
        if kind is _Timer.HEDGE:
            return ref in self._hedges
        return self._group is not None and self._group.id == ref

    def _on_tick(self, now: float) -> None:
        # A driver's timer may fire a little early; forgetting what was announced makes
        # the still-pending earliest timer be asked for again.
        self._announced = None
        while self._timers and self._timers[0][0] <= now:
            _, _, kind, ref = heapq.heappop(self._timers)
            if not self._timer_live(kind, ref):
                continue
            if kind is _Timer.DEADLINE:
                self._expire(self._queries[ref], now)
            elif kind is _Timer.BATCH:
                if self.config.dynamic_batching:
                    self._batch_due = True  # cut in `_pump`, now or when one is free
                else:
                    self._flush_batch(now)
            elif kind is _Timer.GRACE:
                task = self._held[ref][0]
                assert task.group is not None
                self._try_decode(task.group, now)  # released, held longer, or unwanted
            elif kind is _Timer.HEDGE:
                self._hedge(ref, now)
            else:
                if self._batch:  # the group's last task is still filling: send it now
                    self._flush_batch(now)
                if self._group is not None:
                    self._close_group(self._group, now)

    def _announce_timer(self) -> None:
        while self._timers and not self._timer_live(self._timers[0][2], self._timers[0][3]):
            heapq.heappop(self._timers)
        at = self._timers[0][0] if self._timers else None
        if at is not None and at != self._announced:
            self._out.append(SetTimer(at))
        self._announced = at

    def _expire(self, query: _Query, now: float) -> None:
        task = query.task
        if task is not None and task.id in self._held and not query.require_original:
            # a reconstruction is ready and waiting: better than a default, and on time
            assert task.group is not None
            self._try_decode(task.group, now, release=task)
            return
        self._settle(query)
        if self.config.has_default:
            self._out.append(Answer(query.id, Source.DEFAULT))
        else:
            msg = "no output was ready before the query's deadline"
            self._out.append(Fail(query.id, ErrorKind.DEADLINE_EXCEEDED, msg))
        self._prune(query.task)

    # -- dispatch -------------------------------------------------------------------

    def _enqueue(self, task: _Task, *, front: bool = False) -> None:
        task.state = _State.QUEUED
        self._pools[task.pool].policy.push(task, front=front)

    def _eligible(self, task: _Task, instance: str) -> bool:
        if task.pool is PoolKind.PARITY:  # each parity has its own model
            return self._pools[PoolKind.PARITY].instances[instance].spec.parity_index == task.index
        twin = task.sibling
        return twin is None or twin.state is not _State.RUNNING or twin.instance != instance

    def _pump(self, now: float) -> None:
        self._dispatch(now)
        data = self._pools[PoolKind.DATA]
        if self._batch_due and data.free and not data.policy:  # a short batch, to a free one
            self._flush_batch(now)
            self._dispatch(now)

    def _dispatch(self, now: float) -> None:
        for pool in self._pools.values():
            if not pool.policy:
                continue  # the common case at every event: nothing waits, nothing to copy
            for name in list(pool.free):
                inst = pool.instances[name]
                while len(inst.running) < inst.spec.max_inflight:
                    task = pool.policy.pull(name, self._eligible)
                    if task is None:
                        break
                    self._send(task, inst, now)
                pool.refresh(name)
                if not pool.policy:
                    break

    def _send(self, task: _Task, inst: _Instance, now: float) -> None:
        task.state, task.instance = _State.RUNNING, inst.spec.name
        task.sends += 1
        task.sent_at = now
        if task.id in self._held:  # held while queued: now it has a due time
            due = self._due(task)
            self._held[task.id] = (task, due)
            self._add_timer(due, _Timer.GRACE, task.id)
        inst.running.add(task.id)
        if self.hedge is not None and task.sibling is None:  # a first copy, not a backup
            due = now + self.hedge.threshold
            self._hedges[task.id] = due
            self._add_timer(due, _Timer.HEDGE, task.id)
        if task.pool is PoolKind.DATA:
            self._out.append(
                SendData(task.id, inst.spec.name, tuple(q.payload for q in task.queries))
            )
        else:
            assert task.group is not None
            slots = tuple(tuple(q.payload for q in t.queries) for t in task.group.slots)
            self._out.append(SendParity(task.id, inst.spec.name, slots, task.index))

    def _hedge(self, task_id: int, now: float) -> None:
        """A first copy ran past the hedge delay: queue a backup, first in line."""
        if self._hedges[task_id] > now:
            return  # armed by an earlier send of a retried task: a later timer is set
        del self._hedges[task_id]
        task = self._tasks.get(task_id)
        if task is None or task.state is not _State.RUNNING or not self._useful(task):
            return  # re-queued after its instance went down, or answered at its deadline
        backup = self._new_task(PoolKind.DATA, task.queries)
        task.sibling, backup.sibling = backup, task
        assert task.sent_at is not None
        self._out.append(Hedged(task.id, backup.id, now - task.sent_at))
        self._enqueue(backup, front=True)

    def _release(self, task_id: int, name: str) -> _Task | None:
        """Free the instance's slot; the task if its result still counts, else None."""
        inst = self._instance(name)
        if task_id not in inst.running:
            return None  # a result from before the instance was marked down
        inst.running.discard(task_id)
        self._hedges.pop(task_id, None)  # ended (answered, failed or lost): no backup
        self._pools[self._pool_of[name]].refresh(name)
        task = self._tasks.get(task_id)
        if task is None or task.state is not _State.RUNNING or task.instance != name:
            return None
        return task

    def _cancel(self, task: _Task, reason: str) -> None:
        if task.state is _State.QUEUED and self._pools[task.pool].policy.discard(task):
            self._out.append(Cancelled(task.id, task.pool, reason))
        self._forget(task)

    def _forget(self, task: _Task) -> None:
        task.state = _State.GONE
        self._tasks.pop(task.id, None)

    # -- results ----------------------------------------------------------------------

    def _on_completed(self, event: TaskCompleted, now: float) -> None:
        task = self._release(event.task_id, event.instance)
        if task is None:
            return
        task.output, task.has_output = event.output, True
        self._tasks.pop(task.id, None)
        task.state = _State.DONE
        if task.pool is PoolKind.DATA:
            assert task.sent_at is not None
            self.grace.observe(now - task.sent_at)
            if self.hedge is not None:
                self.hedge.observe(now - task.sent_at)
            if self._held.pop(task.id, None) is not None:
                assert task.decodable_at is not None
                self._out.append(GraceEnded(task.id, now - task.decodable_at, Source.ORIGINAL))
            if task.reconstructed:
                self._out.append(LateOriginal(task.id, event.output, task.reconstructed))
        for query in task.queries:
            if not query.settled:
                self._settle(query)
                self._out.append(Answer(query.id, Source.ORIGINAL, event.output, query.row))
        if task.sibling is not None:
            self._cancel(task.sibling, "its replica answered first")
        if task.group is not None:
            self._try_decode(task.group, now)
        self._prune(task)

    def _on_failed(self, task_id: int, name: str, now: float) -> None:
        task = self._release(task_id, name)
        if task is not None:
            self._retry(task, now)

    def _retry(self, task: _Task, now: float) -> None:
        if task.id in self._held:  # a failed call is as late as an original gets
            assert task.group is not None
            self._try_decode(task.group, now, release=task)
        twin = task.sibling
        if twin is not None and twin.state in (_State.QUEUED, _State.RUNNING):
            self._forget(task)  # the other copy carries on
            return
        # No other decoding here: had the parity and the other outputs been in, this
        # task's reconstruction would be held (released just above) or answered.
        if not self._useful(task):
            self._forget(task)
        elif task.sends < self.config.max_attempts:
            self._enqueue(task, front=True)
        else:
            self._forget(task)
            self._give_up(task)

    def _give_up(self, task: _Task) -> None:
        msg = f"the model's instances failed this query {task.sends} times"
        for query in task.queries:
            if not query.settled:
                self._settle(query)
                self._out.append(Fail(query.id, ErrorKind.UNAVAILABLE, msg))
        self._prune(task)

    def _set_up(self, name: str, up: bool, now: float) -> None:
        inst = self._instance(name)
        if inst.up == up:
            return
        inst.up = up
        pool = self._pools[self._pool_of[name]]
        if up:
            pool.policy.instance_up(name)
        else:
            pool.policy.instance_down(name)
            lost = [self._tasks.get(tid) for tid in sorted(inst.running)]
            inst.running.clear()
            for task in lost:
                if task is not None and task.state is _State.RUNNING and task.instance == name:
                    self._retry(task, now)
        pool.refresh(name)

    # -- decoding and pruning -----------------------------------------------------------

    def _try_decode(self, group: _Group, now: float, *, release: _Task | None = None) -> None:
        """Decode the missing data outputs once as many parity outputs are in, each as
        soon as its original is late (or at once for ``release``); hold the others."""
        arrived = sum(p.has_output for p in group.parities)
        erased = tuple(i for i, t in enumerate(group.slots) if not t.has_output)
        if not erased or len(erased) > arrived:
            return
        parity_outputs = tuple(p.output if p.has_output else None for p in group.parities)
        outputs = tuple(t.output if t.has_output else None for t in group.slots)
        sizes = tuple(len(t.queries) for t in group.slots)
        for missing in erased:
            lost = group.slots[missing]
            answers = tuple(
                (q.id, q.row) for q in lost.queries if not q.settled and not q.require_original
            )
            if not answers:
                self._held.pop(lost.id, None)
                continue
            if lost.decodable_at is None:
                lost.decodable_at = now
            due = self._due(lost)
            if now < due and lost is not release:
                if lost.id not in self._held or self._held[lost.id][1] != due:
                    self._held[lost.id] = (lost, due)
                    if due < math.inf:  # else: when it is sent (or at the deadline)
                        self._add_timer(due, _Timer.GRACE, lost.id)
                continue
            if self._held.pop(lost.id, None) is not None:
                self._out.append(GraceEnded(lost.id, now - lost.decodable_at, Source.RECONSTRUCTED))
            for qid, _ in answers:
                self._settle(self._queries[qid])
            lost.reconstructed += answers
            self._out.append(
                Reconstruct(
                    group.id, missing, parity_outputs, outputs, sizes, answers, erased, lost.id
                )
            )
            self._prune(lost)

    def _due(self, task: _Task) -> float:
        """When the original of ``task`` is late: ``threshold`` after it was sent; never
        while it waits in the frontend's queue (its instance has not had it yet: a
        loaded cluster is not a slow one; the query's deadline still bounds the wait)."""
        if self.grace.eager:
            return -math.inf  # the papers: decode the moment it is possible
        if task.sent_at is None:
            return math.inf
        return task.sent_at + self.grace.threshold

    def _useful(self, task: _Task) -> bool:
        group = task.group
        if task.pool is PoolKind.PARITY:
            assert group is not None
            return self._parity_useful(group)
        members = task.queries if group is None else [q for t in group.slots for q in t.queries]
        return any(not q.settled for q in members)

    @staticmethod
    def _parity_useful(group: _Group) -> bool:
        return any(
            not q.settled and not q.require_original
            for t in group.slots
            if not t.has_output
            for q in t.queries
        )

    def _prune(self, task: _Task | None) -> None:
        """Cancel queued tasks related to ``task`` that can no longer help."""
        if task is None:
            return  # the query is still waiting to fill a batch
        group = task.group
        related = [task] if group is None else [*group.slots, *group.parities]
        for other in related:
            if other.state is _State.QUEUED and not self._useful(other):
                self._cancel(other, "no longer needed")

    def _settle(self, query: _Query) -> None:
        query.settled = True
        del self._queries[query.id]
        if query.task is None:  # still in the filling batch: take it out
            self._batch.remove(query)

    def _instance(self, name: str) -> _Instance:
        try:
            return self._pools[self._pool_of[name]].instances[name]
        except KeyError:
            raise KeyError(f"unknown instance {name!r}; known: {sorted(self._pool_of)}") from None
