"""A work queue of object keys, as Kubernetes controllers use (client-go's workqueue).

Watch events only *enqueue* the key of the object they concern; a fixed number of
workers take keys and reconcile each object from the cached state. So:

- a key is queued at most once, however many events arrive for it (bursts collapse);
- a key is never reconciled by two workers at once (an event that arrives while it
  is being reconciled marks it dirty, and it is queued again when the worker is done);
- a failed reconcile is retried with a per-key exponential backoff;
- a reconcile can ask to be run again at a later time (deadlines, TTLs);
- urgent keys (a new or changed object) are served before the others (progress of
  children), so under load new work is started before old work is reported on.

The number of workers bounds the API requests in flight, whatever the number of objects.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, *, base_delay: float = 0.5, max_delay: float = 300.0) -> None:
        self._queue: deque[K] = deque()
        self._urgent: deque[K] = deque()
        self._queued: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()
        self._failures: dict[K, int] = {}
        self._timers: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._closed = False

    def __len__(self) -> int:
        return len(self._queue) + len(self._urgent)

    def __contains__(self, key: object) -> bool:
        return key in self._queued or key in self._dirty

    @property
    def closed(self) -> bool:
        return self._closed

    def add(self, key: K, *, urgent: bool = False) -> None:
        if self._closed:
            return
        if key in self._processing:
            self._dirty.add(key)
            return
        if key in self._queued:
            if urgent and key in self._queue:
                self._queue.remove(key)
                self._urgent.append(key)
            return
        self._queued.add(key)
        (self._urgent if urgent else self._queue).append(key)
        self._wake_one()

    def add_after(self, key: K, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds; an earlier pending request wins."""
        if self._closed:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        pending = self._timers.get(key)
        if pending is not None:
            if pending[0] <= when:
                return
            pending[1].cancel()
        handle = loop.call_at(when, self._fire, key)
        self._timers[key] = (when, handle)

    def add_rate_limited(self, key: K) -> float:
        """Queue ``key`` again after its next backoff delay; returns the delay."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay: float = min(self._base_delay * 2.0**failures, self._max_delay)
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """Reset the backoff of ``key`` (after a successful reconcile)."""
        self._failures.pop(key, None)

    def discard(self, key: K) -> None:
        """Drop every trace of ``key`` (the object is gone)."""
        self._failures.pop(key, None)
        pending = self._timers.pop(key, None)
        if pending is not None:
            pending[1].cancel()

    async def get(self) -> K:
        while not self._queue and not self._urgent:
            if self._closed:
                raise QueueClosed()
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise
        key = self._urgent.popleft() if self._urgent else self._queue.popleft()
        self._queued.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def close(self) -> None:
        self._closed = True
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class QueueClosed(Exception):
    """The queue was closed: workers exit."""


async def run_workers(
    queue: WorkQueue[K], count: int, reconcile: Callable[[K], Awaitable[None]]
) -> None:
    """Run ``count`` workers until the queue is closed (or this task is cancelled).

    ``reconcile`` handles its own errors and requeues; anything escaping it is a bug,
    which is logged and retried with backoff rather than killing the worker.
    """

    async def worker() -> None:
        while True:
            try:
                key = await queue.get()
            except QueueClosed:
                return
            try:
                await reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Unexpected error reconciling %s; retrying later", key)
                queue.add_rate_limited(key)
            finally:
                queue.done(key)

    await asyncio.gather(*(worker() for _ in range(count)))
