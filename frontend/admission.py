"""Admission of whole requests, fairly between clients, and only when they can be on time.

Theory of operation
-------------------
A request (all its rows) is admitted or refused at once, before any row runs: over the
model's ``max_outstanding``, over its client's share, or when the queue ahead of it
cannot be served before its deadline.  A *client* is a key the front door passes down
(a gRPC peer, an HTTP connection's address); each active client may hold at most
``max_outstanding / active clients`` rows (and at most ``per_client``, when set), so a
client sending maximal batches back to back cannot take the whole limit from a newcomer.

Admitted rows wait in one FIFO per client and go to the coordinator round robin, one
row per client in turn, while the coordinator holds fewer than ``window`` queries (enough
to keep every instance busy): a well-behaved client's query waits behind at most one row
of each other client, not behind a large batch.  The queue wait of a new request is
estimated from its position in that round robin and the model's measured service rate
(`RateMeter`: rows answered per second while rows were waiting, an EWMA), so a request
that would expire in the queue is refused at admission, cheaply.

Like the coordinator this module reads no clock: the driver (``frontend.model``) passes
``now`` in.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

#: a client seen this recently counts as active (its share stays reserved for it)
ACTIVE_S = 1.0
#: the service rate is measured over windows at least this long ...
RATE_WINDOW_S = 0.1
#: ... and smoothed with this weight on the newest window
RATE_ALPHA = 0.3


@dataclass(frozen=True)
class Refusal:
    """Why a request is not admitted: one of `CAUSES`, a gRPC status name, a message."""

    cause: str
    status: str
    message: str


#: what a `Refusal` can be for (a metric label)
CAUSES = ("limit", "client_share", "deadline")


class RateMeter:
    """Rows answered per second while rows were waiting (the model's capacity), smoothed.

    Throughput measured while nothing waits is the arrival rate, not the capacity, so a
    window counts only while every answer in it found a backlog.
    """

    def __init__(self) -> None:
        self.rate: float | None = None  # rows/s; None until a busy window was measured
        self._start: float | None = None
        self._count = 0

    def served(self, rows: int, now: float, backlogged: bool) -> None:
        """``rows`` answered at ``now``; ``backlogged``: other rows were waiting."""
        if not backlogged:
            self._start = None  # an idle gap: the next window starts afresh
            return
        if self._start is None:
            self._start, self._count = now, 0
            return
        self._count += rows
        elapsed = now - self._start
        if elapsed >= RATE_WINDOW_S:
            sample = self._count / elapsed
            old = self.rate
            self.rate = sample if old is None else RATE_ALPHA * sample + (1 - RATE_ALPHA) * old
            self._start, self._count = now, 0


class _Entry(Generic[T]):
    __slots__ = ("item", "left", "rows")

    def __init__(self, item: T, rows: int) -> None:
        self.item = item
        self.rows = rows
        self.left = rows  # rows not yet handed to the coordinator


class Admission(Generic[T]):
    """Whole-request admission, per-client shares, and the round-robin queue of rows.

    ``T`` is the driver's request object; `next_row` hands back (request, row index).
    """

    def __init__(self, max_outstanding: int, window: int, per_client: int | None = None) -> None:
        if window < 1:
            raise ValueError(f"admission window: expected >= 1 queries, got {window}")
        self.max_outstanding = max_outstanding
        self.window = window
        self.per_client = per_client
        self.rate = RateMeter()
        self._held: dict[str, int] = {}  # client -> rows of its unfinished requests
        self._seen: dict[str, float] = {}  # client -> when it last asked
        self._pruned = -math.inf
        self._queues: dict[str, deque[_Entry[T]]] = {}  # in round-robin order
        self._waiting = 0  # rows in the queues

    @property
    def outstanding(self) -> int:
        """Rows of admitted requests not yet finished."""
        return sum(self._held.values())

    @property
    def waiting(self) -> int:
        """Admitted rows not yet handed to the coordinator."""
        return self._waiting

    def share(self, client: str, now: float) -> int:
        """How many rows ``client`` may hold now: the limit split among active clients."""
        self._seen[client] = now
        if now - self._pruned >= ACTIVE_S:  # forget departed clients, at most once a period
            self._pruned = now
            self._seen = {c: t for c, t in self._seen.items() if now - t < ACTIVE_S}
            self._seen[client] = now
        active = len(self._seen.keys() | self._held.keys())
        share = math.ceil(self.max_outstanding / active)
        return share if self.per_client is None else min(share, self.per_client)

    def check(
        self, client: str, rows: int, timeout: float, running: int, now: float
    ) -> Refusal | None:
        """Why a request of ``rows`` rows from ``client`` cannot be admitted, or None.

        ``running`` is how many queries the coordinator holds; ``timeout`` the seconds
        left to the request's deadline.
        """
        total = self.outstanding
        if total + rows > self.max_outstanding:
            return Refusal(
                "limit",
                "RESOURCE_EXHAUSTED",
                f"model is at its admission limit of {self.max_outstanding} queries "
                f"({total} outstanding, {rows} asked)",
            )
        held, share = self._held.get(client, 0), self.share(client, now)
        if held + rows > share:
            return Refusal(
                "client_share",
                "RESOURCE_EXHAUSTED",
                f"client {client!r} is at its share of the admission limit: {share} queries "
                f"({held} outstanding, {rows} asked)",
            )
        wait = self.wait(client, rows, running)
        if wait > timeout:
            return Refusal(
                "deadline",
                "RESOURCE_EXHAUSTED",
                f"the queue would take about {wait * 1000:.1f} ms, past the query's deadline "
                f"in {timeout * 1000:.1f} ms",
            )
        return None

    def wait(self, client: str, rows: int, running: int) -> float:
        """Estimated seconds until the last of ``rows`` new rows of ``client`` is answered.

        Round robin serves each other client's waiting rows up to as many as this
        client will have waiting; the coordinator's queries go first.
        """
        rate = self.rate.rate
        if rate is None:
            return 0.0  # nothing measured under load yet: the queue has not been long
        queue = self._queues.get(client)
        mine = rows + (sum(e.left for e in queue) if queue else 0)
        ahead = sum(
            min(mine, sum(e.left for e in q)) for c, q in self._queues.items() if c != client
        )
        return (running + ahead + mine) / rate

    def admit(self, client: str, item: T, rows: int) -> None:
        """Hold ``rows`` rows for ``client`` and queue them (after `check` said None)."""
        self._held[client] = self._held.get(client, 0) + rows
        self._queues.setdefault(client, deque()).append(_Entry(item, rows))
        self._waiting += rows

    def next_row(self, running: int) -> tuple[T, int] | None:
        """The next row for the coordinator, round robin, if it holds under ``window``."""
        if running >= self.window or not self._queues:
            return None
        client = next(iter(self._queues))
        queue = self._queues.pop(client)
        entry = queue[0]
        index = entry.rows - entry.left
        entry.left -= 1
        self._waiting -= 1
        if not entry.left:
            queue.popleft()
        if queue:
            self._queues[client] = queue  # to the back of the round
        return entry.item, index

    def drop(self, client: str, item: T) -> int:
        """Take ``item``'s waiting rows out of the queue; how many there were."""
        queue = self._queues.get(client)
        if queue is None:
            return 0
        for entry in queue:
            if entry.item is item:
                queue.remove(entry)
                self._waiting -= entry.left
                if not queue:
                    del self._queues[client]
                return entry.left
        return 0

    def finished(self, client: str, rows: int) -> None:
        """A request of ``client`` with ``rows`` rows is over (answered, failed or left)."""
        left = self._held[client] - rows
        if left:
            self._held[client] = left
        else:
            del self._held[client]
