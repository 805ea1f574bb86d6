"""Dispatch policies: which queued task an instance with spare capacity runs next.

A policy only decides.  It never touches sockets or clocks; the coordinator in
``frontend.core`` tells it which instances are up and asks it for work whenever an
instance has fewer requests in flight than it may hold.

- ``SingleQueue``: one shared FIFO per pool that every instance pulls from -- the
  policy of Clipper and ParM.  A slow instance simply pulls less work.
- ``RoundRobin``: each task is bound to the next up instance when it is queued and
  waits in that instance's own queue, even if another instance is idle.  Here for
  comparison; it is what a naive load balancer does.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")

#: ``eligible(task, instance)``: may this instance run this task?  (Replicas of one
#: query must land on different instances.)
Eligible = Callable[[T, str], bool]


class DispatchPolicy(Protocol[T]):
    """Queues tasks of one pool and hands them to instances."""

    def instance_up(self, instance: str) -> None: ...

    def instance_down(self, instance: str) -> None: ...

    def push(self, task: T, *, front: bool = False) -> None: ...

    def discard(self, task: T) -> bool:
        """Remove a queued task; False if it was not queued."""
        ...

    def pull(self, instance: str, eligible: Eligible[T]) -> T | None:
        """The next task ``instance`` should run, removed from the queue, or None."""
        ...

    def __len__(self) -> int: ...


class SingleQueue(Generic[T]):
    """One shared FIFO; an instance with spare capacity takes the oldest task it may run."""

    def __init__(self) -> None:
        self._queue: deque[T] = deque()

    def instance_up(self, instance: str) -> None:
        """Nothing to do: every instance pulls from the same queue."""

    def instance_down(self, instance: str) -> None:
        """Nothing to do: the queue holds no per-instance state."""

    def push(self, task: T, *, front: bool = False) -> None:
        if front:
            self._queue.appendleft(task)
        else:
            self._queue.append(task)

    def discard(self, task: T) -> bool:
        try:
            self._queue.remove(task)
        except ValueError:
            return False
        return True

    def pull(self, instance: str, eligible: Eligible[T]) -> T | None:
        for index, task in enumerate(self._queue):
            if eligible(task, instance):
                del self._queue[index]
                return task
        return None

    def __len__(self) -> int:
        return len(self._queue)


class RoundRobin(Generic[T]):
    """Bind each task to the next up instance in turn; each instance has its own queue.

    Tasks pushed while no instance is up wait in a backlog and are dealt out as soon
    as one comes up; the queue of an instance that goes down is dealt out again.
    """

    def __init__(self) -> None:
        self._queues: dict[str, deque[T]] = {}
        self._backlog: deque[T] = deque()
        self._turn = 0

    def instance_up(self, instance: str) -> None:
        self._queues.setdefault(instance, deque())
        backlog, self._backlog = self._backlog, deque()
        for task in backlog:
            self.push(task)

    def instance_down(self, instance: str) -> None:
        orphans = self._queues.pop(instance, deque())
        for task in orphans:
            self.push(task)

    def push(self, task: T, *, front: bool = False) -> None:
        if not self._queues:
            self._backlog.append(task)
            return
        names = list(self._queues)
        queue = self._queues[names[self._turn % len(names)]]
        self._turn += 1
        if front:
            queue.appendleft(task)
        else:
            queue.append(task)

    def discard(self, task: T) -> bool:
        for queue in (self._backlog, *self._queues.values()):
            if task in queue:
                queue.remove(task)
                return True
        return False

    def pull(self, instance: str, eligible: Eligible[T]) -> T | None:
        queue = self._queues.get(instance)
        if not queue:
            return None
        for index, task in enumerate(queue):
            if eligible(task, instance):
                del queue[index]
                return task
        return None

    def __len__(self) -> int:
        return len(self._backlog) + sum(len(q) for q in self._queues.values())


POLICIES: dict[str, Callable[[], DispatchPolicy[Any]]] = {
    "single-queue": SingleQueue,
    "round-robin": RoundRobin,
}
