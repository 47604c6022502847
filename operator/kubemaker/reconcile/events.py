"""Kubernetes events about a custom resource, posted in the background (any kind).

Events never delay a reconcile: they are posted by background tasks, a few at a time,
and a refused event is logged, not retried (events are best effort in Kubernetes too).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from kubemaker.api.common import API_VERSION
from kubemaker.kube import ApiError, Kube

logger = logging.getLogger(__name__)

EVENT_CONCURRENCY = 2


class Background:
    """Tasks a controller runs beside its reconciles, cancelled when it stops."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class EventPoster:
    def __init__(self, kube: Kube, kind: str, background: Background, *, enabled: bool) -> None:
        self.kube = kube
        self.kind = kind
        self.background = background
        self.enabled = enabled
        self._slots = asyncio.Semaphore(EVENT_CONCURRENCY)

    def post(self, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        if not self.enabled:
            return
        meta = body["metadata"]
        involved: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "metadata": {
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
        }
        self.background.spawn(self._post(involved, type_, reason, message))

    async def _post(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        async with self._slots:
            try:
                await self.kube.post_event(involved, reason=reason, message=message, type_=type_)
            except ApiError as exc:
                logger.warning(
                    "Could not post event %s on %s: %s", reason, involved["metadata"]["name"], exc
                )
