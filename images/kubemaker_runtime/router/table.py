"""The routing table as the router applies it: watched on disk, compiled for drawing.

Kubernetes updates a ConfigMap volume by swapping a ``..data`` symlink, so the file's
own mtime says little: the watcher compares a hash of the content, once a second. A
new table replaces the old one in one assignment; requests in flight keep the
:class:`Routes` object they started with, so they finish on the fleet they picked.

A file that is missing or invalid at start leaves the router without a table (``/ping``
503, with the reason); one that turns invalid later is logged and the last valid table
stays in force: a broken update must not take the Endpoint down.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import itertools
import logging
import random
import time
from pathlib import Path

from pydantic import ValidationError

from kubemaker_runtime.routing import Fleet, RoutingTable, Variant

logger = logging.getLogger(__name__)


class _FleetDraw:
    """Draws a fleet of one variant by fleet weight, preferring fleets with instances.

    A fleet with weight 0 gets nothing unless every fleet has weight 0 (then the first
    fleet with instances gets everything). Among weighted fleets, those with ready
    instances are drawn; only when none has any does the draw return a fleet without
    instances, and the request is held until one appears.
    """

    def __init__(self, variant: Variant) -> None:
        weighted = [f for f in variant.fleets if f.weight > 0]
        ready = [f for f in weighted if f.instances > 0]
        self._pool = ready or weighted
        self._cumulative = list(itertools.accumulate(f.weight for f in self._pool))
        self._fallback = next((f for f in variant.fleets if f.instances > 0), variant.fleets[0])
        self.instances = sum(f.instances for f in variant.fleets)

    def draw(self) -> Fleet:
        pool = self._pool
        if not pool:
            return self._fallback
        if len(pool) == 1:
            return pool[0]
        point = random.random() * self._cumulative[-1]
        return pool[min(bisect.bisect_right(self._cumulative, point), len(pool) - 1)]


class Routes:
    """One loaded table, compiled: variant lookup and weighted draws in O(log n)."""

    def __init__(self, table: RoutingTable, loaded_at: float) -> None:
        self.table = table
        self.endpoint = table.endpoint
        self.version = table.version or table.content_hash()
        self.loaded_at = loaded_at
        self._by_name = {v.name: v for v in table.variants}
        self._weighted = [v for v in table.variants if v.weight > 0]
        self._cumulative = list(itertools.accumulate(v.weight for v in self._weighted))
        self._fleets = {v.name: _FleetDraw(v) for v in table.variants}
        self.known_variants = ", ".join(v.name for v in table.variants)
        self.shadow = table.shadow.variant if table.shadow else None
        self._shadow_fleets = _FleetDraw(self.shadow) if self.shadow else None

    def variant(self, name: str) -> Variant | None:
        return self._by_name.get(name)

    def draw_variant(self) -> Variant | None:
        """A production variant drawn by weight; None when every weight is 0."""
        pool = self._weighted
        if len(pool) <= 1:
            return pool[0] if pool else None
        point = random.random() * self._cumulative[-1]
        return pool[min(bisect.bisect_right(self._cumulative, point), len(pool) - 1)]

    def draw_fleet(self, variant_name: str) -> Fleet | None:
        draw = self._fleets.get(variant_name)
        return draw.draw() if draw else None

    def draw_shadow_fleet(self) -> Fleet | None:
        return self._shadow_fleets.draw() if self._shadow_fleets else None

    def instances(self, variant_name: str) -> int:
        draw = self._fleets.get(variant_name)
        if draw is None and self.shadow and self.shadow.name == variant_name:
            draw = self._shadow_fleets
        return draw.instances if draw else 0


class TableWatcher:
    """Holds the current :class:`Routes`; :meth:`poll` re-reads the file if it changed."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.routes: Routes | None = None
        self.error: str | None = None
        self._digest: bytes | None = None

    def poll(self) -> bool:
        """Read the file; apply it when its content changed and is valid. True if applied.

        A plain read on the event loop: the file is a few kilobytes on a local volume,
        read once a second, cheaper than a hop to a thread.
        """
        try:
            data = self.path.read_bytes()
        except OSError as error:
            if self._digest is not None or self.error is None:
                logger.error("cannot read the routing table %s: %s", self.path, error)
            self._digest = None
            if self.routes is None:
                self.error = f"no routing table: cannot read {self.path} ({error.strerror})"
            return False
        digest = hashlib.sha256(data).digest()
        if digest == self._digest:
            return False
        self._digest = digest
        try:
            table = RoutingTable.model_validate_json(data)
        except ValidationError as error:
            detail = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
                for e in error.errors()[:5]
            )
            logger.error("the routing table %s is invalid, not applied: %s", self.path, detail)
            if self.routes is None:
                self.error = f"no routing table: {self.path} is invalid ({detail})"
            return False
        routes = Routes(table, time.time())
        previous = self.routes
        self.routes = routes
        self.error = None
        logger.info(
            "applied routing table %s of endpoint %s (was %s)",
            routes.version,
            routes.endpoint,
            previous.version if previous else "none",
        )
        return True

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.poll()
