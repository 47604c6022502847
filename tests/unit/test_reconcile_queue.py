"""The controllers' work queue: dedup, one worker per key, backoff, delayed requeues."""

from __future__ import annotations

import asyncio

import pytest

from kubemaker.reconcile.queue import QueueClosed, WorkQueue, run_workers


def test_a_key_is_queued_once() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        for key in ("a", "b", "a", "a"):
            queue.add(key)
        assert len(queue) == 2
        assert await queue.get() == "a"
        assert await queue.get() == "b"

    asyncio.run(scenario())


def test_an_event_during_a_reconcile_requeues_the_key_afterwards() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        queue.add("a")
        key = await queue.get()
        queue.add("a")  # while "a" is being reconciled
        assert len(queue) == 0  # not handed to a second worker
        queue.done(key)
        assert len(queue) == 1 and await queue.get() == "a"

    asyncio.run(scenario())


def test_backoff_grows_and_resets() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue(base_delay=0.01, max_delay=0.04)
        delays = [queue.add_rate_limited("a") for _ in range(4)]
        assert delays == [0.01, 0.02, 0.04, 0.04]
        queue.forget("a")
        assert queue.add_rate_limited("a") == 0.01

    asyncio.run(scenario())


def test_delayed_requeue_keeps_the_earliest() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        queue: WorkQueue[str] = WorkQueue()
        start = loop.time()
        queue.add_after("a", 10.0)
        queue.add_after("a", 0.05)  # earlier: replaces the later one
        queue.add_after("a", 5.0)  # later: ignored
        assert await asyncio.wait_for(queue.get(), timeout=2) == "a"
        assert loop.time() - start < 2
        queue.done("a")
        queue.close()

    asyncio.run(scenario())


def test_workers_reconcile_each_key_and_survive_errors() -> None:
    async def scenario() -> None:
        queue: WorkQueue[int] = WorkQueue(base_delay=0.01)
        seen: list[int] = []
        running: set[int] = set()
        failed_once: set[int] = set()
        finished = asyncio.Event()

        async def reconcile(key: int) -> None:
            assert key not in running, "two workers on one key"
            running.add(key)
            await asyncio.sleep(0)
            running.discard(key)
            if key == 3 and key not in failed_once:
                failed_once.add(key)
                raise RuntimeError("a bug")  # logged, retried with backoff
            seen.append(key)
            if len(seen) == 5:
                finished.set()

        workers = asyncio.create_task(run_workers(queue, 3, reconcile))
        for key in range(5):
            queue.add(key)
        await asyncio.wait_for(finished.wait(), timeout=5)
        queue.close()
        await asyncio.wait_for(workers, timeout=5)
        assert sorted(seen) == [0, 1, 2, 3, 4]

    asyncio.run(scenario())


def test_a_closed_queue_stops_its_consumers() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        getter = asyncio.create_task(queue.get())
        await asyncio.sleep(0)
        queue.close()
        with pytest.raises(QueueClosed):
            await asyncio.wait_for(getter, timeout=2)
        queue.add("ignored")
        assert len(queue) == 0

    asyncio.run(scenario())
