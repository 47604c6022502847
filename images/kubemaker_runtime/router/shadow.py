"""Shadow variant: copies of production requests, sent off the request's path.

A production request only puts its copy in a bounded queue (no await, no allocation
beyond a tuple); a few sender tasks drain it. When the shadow is slow or down the queue
fills and copies are dropped and counted: the shadow never delays or fails production.
The shadow's answers are recorded (its metrics, and data capture when it is on) and
never returned.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping

from kubemaker_runtime.router.capture import CaptureWriter
from kubemaker_runtime.router.errors import RouterError, status_for
from kubemaker_runtime.router.metrics import RouterMetrics
from kubemaker_runtime.router.table import Routes
from kubemaker_runtime.router.upstream import Upstream

logger = logging.getLogger(__name__)

_Job = tuple[Routes, str, str, Mapping[str, str], bytes, str | None]


class ShadowMirror:
    def __init__(
        self,
        upstream: Upstream,
        metrics: RouterMetrics,
        capture: CaptureWriter,
        queue_size: int,
        senders: int,
    ) -> None:
        self._upstream = upstream
        self._metrics = metrics
        self._capture = capture
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(queue_size)
        self._senders = senders
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.get_running_loop().create_task(self._send_forever())
            for _ in range(self._senders)
        ]

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()

    def offer(
        self,
        routes: Routes,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        inference_id: str | None,
    ) -> None:
        shadow = routes.table.shadow
        if shadow is None:
            return
        if shadow.mirror_percentage < 100 and random.random() * 100 >= shadow.mirror_percentage:
            return
        try:
            self._queue.put_nowait((routes, method, path, headers, body, inference_id))
        except asyncio.QueueFull:
            self._metrics.shadow.labels(routes.endpoint, shadow.variant.name, "dropped").inc()

    async def _send_forever(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._send(*job)
            except Exception:
                # A bug here must not kill the sender (the queue would fill for good).
                logger.exception("sending a shadow copy failed unexpectedly")

    async def _send(
        self,
        routes: Routes,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        inference_id: str | None,
    ) -> None:
        assert routes.shadow is not None
        variant = routes.shadow.name
        endpoint = routes.endpoint
        fleet = routes.draw_shadow_fleet()
        started = time.perf_counter()
        if fleet is None or fleet.instances == 0:
            # Not held: a held copy would block a sender, and the shadow is best effort.
            self._metrics.shadow.labels(endpoint, variant, "failed").inc()
            return
        try:
            status, payload, content_type, _, seconds = await self._upstream.send(
                fleet, method, path, headers, body
            )
        except RouterError as error:
            self._metrics.shadow.labels(endpoint, variant, "failed").inc()
            elapsed = time.perf_counter() - started
            self._metrics.observe(
                endpoint, variant, fleet.name, status_for(error), 0.0, elapsed, fleet.instances
            )
            logger.debug("shadow copy to %s failed: %s", fleet.name, error.message)
            return
        self._metrics.shadow.labels(endpoint, variant, "sent").inc()
        self._metrics.observe(
            endpoint, variant, fleet.name, status, seconds, time.perf_counter() - started,
            routes.instances(variant),
        )  # fmt: skip
        self._capture.record(
            routes, variant, headers.get("Content-Type"), body, content_type, payload, inference_id
        )
