"""The router's HTTP application: dispatch, passing requests through, errors.

An RSGI application (granian runs it, as it runs the model server). No ASGI adapter:
the router is only ever run by :mod:`.server`, and the tests drive it as a process.

Per request: pick a variant (the target-variant header, else a weighted draw), forward
to one of its fleets (:mod:`.upstream`, which holds while the variant scales from
zero), answer with the upstream's status, body and Content-Type plus the
invoked-variant header, then hand a copy to the shadow queue and the capture buffer
(neither awaits). Every failure ends as a status from :mod:`.errors` with a message,
never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from kubemaker_runtime import rsgi
from kubemaker_runtime.router.capture import CaptureWriter
from kubemaker_runtime.router.errors import (
    MethodNotAllowed,
    NoTrafficWeight,
    PayloadTooLarge,
    RouteNotFound,
    RouterError,
    TableNotLoaded,
    UnknownVariant,
    status_for,
)
from kubemaker_runtime.router.metrics import RouterMetrics
from kubemaker_runtime.router.settings import RouterSettings
from kubemaker_runtime.router.shadow import ShadowMirror
from kubemaker_runtime.router.table import Routes, TableWatcher
from kubemaker_runtime.router.upstream import Upstream
from kubemaker_runtime.routing import INVOKED_VARIANT_HEADER, TARGET_VARIANT_HEADER

logger = logging.getLogger(__name__)

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
INFERENCE_ID_HEADER = "x-amzn-sagemaker-inference-id"
# Request headers passed to the model server (lower case: granian's header names are).
PASSED_ON = ("content-type", "accept", "x-amzn-sagemaker-custom-attributes", INFERENCE_ID_HEADER)
_TARGET = TARGET_VARIANT_HEADER.lower()

ReadBody = Callable[[], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


class Router:
    """One worker's router."""

    def __init__(self, settings: RouterSettings) -> None:
        self.settings = settings
        self.watcher = TableWatcher(settings.routes_path)
        self.metrics = RouterMetrics(self._config_labels)
        self.upstream = Upstream(settings.upstream_timeout_seconds, self._count_retry)
        self.capture = CaptureWriter(
            self.metrics,
            settings.capture_flush_seconds,
            settings.capture_flush_records,
            settings.capture_buffer_records,
        )
        self.shadow = ShadowMirror(
            self.upstream, self.metrics, self.capture,
            settings.shadow_queue_size, settings.shadow_senders,
        )  # fmt: skip
        self._started = False
        self._watch_task: asyncio.Task[None] | None = None
        self._routes = {
            ("GET", "/ping"): self._ping,
            ("GET", "/metrics"): self._metrics,
            ("GET", "/router/config"): self._config,
            ("GET", "/v2/health/ready"): self._v2_ready,
            ("GET", "/v2/health/live"): self._v2_live,
        }
        self._paths = {path for _, path in self._routes} | {"/invocations"}
        self._over_limit = f"over the maximum of {settings.max_payload_bytes} bytes"

    def _config_labels(self) -> tuple[str, str] | None:
        routes = self.watcher.routes
        return (routes.endpoint, routes.version) if routes else None

    def _count_retry(self, fleet: str) -> None:
        self.metrics.upstream_retries.labels(fleet).inc()

    def _current(self) -> Routes:
        routes = self.watcher.routes
        if routes is None:
            raise TableNotLoaded(self.watcher.error or "no routing table loaded yet")
        return routes

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.watcher.poll()
        if self.watcher.error:
            logger.error("%s; waiting for one (polling every %gs)", self.watcher.error,
                         self.settings.poll_seconds)  # fmt: skip
        await self.upstream.start()
        self.shadow.start()
        self.capture.start()
        self._watch_task = asyncio.get_running_loop().create_task(
            self.watcher.run(self.settings.poll_seconds)
        )

    async def close(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
        self.shadow.stop()
        await self.capture.close()
        await self.upstream.close()

    # --- dispatch -----------------------------------------------------------------------

    async def handle(
        self,
        method: str,
        path: str,
        headers: Any,
        content_length: int | None,
        read_body: ReadBody,
    ) -> Response:
        """Answer one request; never raises."""
        if not self._started:
            await self.start()
        started = time.perf_counter()
        is_invocation = path == "/invocations" or (
            path.startswith("/v2/models/") and path.endswith("/infer")
        )
        try:
            route = self._routes.get((method, path))
            if route is not None:
                return await route()
            if (path == "/invocations" and method == "POST") or path.startswith("/v2/"):
                return await self._forward(
                    method, path, headers, content_length, read_body, started, is_invocation
                )
            if path in self._paths:
                raise MethodNotAllowed(f"{method} is not allowed on {path}")
            raise RouteNotFound(f"no route {method} {path}")
        except Exception as error:
            status = status_for(error)
            if isinstance(error, RouterError):
                message = error.message
            else:
                logger.exception("unexpected error handling %s %s", method, path)
                message = f"internal error ({type(error).__name__}); the router log has details"
            extra: tuple[tuple[str, str], ...] = ()
            if isinstance(error, RouterError) and error.variant is not None:
                extra = ((INVOKED_VARIANT_HEADER, error.variant),)
            if is_invocation:
                self._count_error(error, status, started)
            if path.startswith("/v2"):
                return Response(status, orjson.dumps({"error": message}), JSON, extra)
            return Response(status, message.encode(), TEXT, extra)

    def _count_error(self, error: Exception, status: int, started: float) -> None:
        routes = self.watcher.routes
        endpoint = routes.endpoint if routes else ""
        variant = error.variant if isinstance(error, RouterError) else None
        if variant is None or routes is None:
            self.metrics.rejected.labels(endpoint, str(status)).inc()
            return
        fleet = (error.fleet if isinstance(error, RouterError) else None) or ""
        elapsed = time.perf_counter() - started
        self.metrics.observe(endpoint, variant, fleet, status, 0.0, elapsed, 0)

    async def _forward(
        self,
        method: str,
        path: str,
        headers: Any,
        content_length: int | None,
        read_body: ReadBody,
        started: float,
        is_invocation: bool,
    ) -> Response:
        routes = self._current()
        if content_length is not None and content_length > self.settings.max_payload_bytes:
            raise PayloadTooLarge(
                f"the request body has {content_length} bytes, {self._over_limit}"
            )
        target = headers.get(_TARGET)
        if target:
            variant = routes.variant(target)
            if variant is None:
                raise UnknownVariant(
                    f"ValidationError: the target variant {target!r} is not a production "
                    f"variant of endpoint {routes.endpoint}; its variants: {routes.known_variants}"
                )
        else:
            variant = routes.draw_variant()
            if variant is None:
                raise NoTrafficWeight(
                    f"no variant of endpoint {routes.endpoint} has traffic weight; name one "
                    f"with the {TARGET_VARIANT_HEADER} header ({routes.known_variants})"
                )
        body = await read_body()
        passed = {name: value for name in PASSED_ON if (value := headers.get(name)) is not None}
        answer = await self.upstream.forward_held(
            self._current, routes, variant.name, method, path, passed, body, self.metrics
        )
        if is_invocation:
            self.metrics.observe(
                routes.endpoint, answer.variant, answer.fleet, answer.status,
                answer.model_seconds, time.perf_counter() - started, answer.instances,
            )  # fmt: skip
            inference_id = passed.get(INFERENCE_ID_HEADER)
            self.shadow.offer(routes, method, path, passed, body, inference_id)
            self.capture.record(
                routes, answer.variant, passed.get("content-type"), body,
                answer.content_type, answer.body, inference_id,
            )  # fmt: skip
        return Response(
            answer.status,
            answer.body,
            answer.content_type,
            ((INVOKED_VARIANT_HEADER, answer.variant), *answer.headers),
        )

    # --- the router's own routes ----------------------------------------------------------

    async def _ping(self) -> Response:
        self._current()
        return Response(200)

    async def _metrics(self) -> Response:
        body, content_type = self.metrics.render()
        return Response(200, body, content_type)

    async def _config(self) -> Response:
        routes = self._current()
        loaded = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(routes.loaded_at))
        body = {"version": routes.version, "endpoint": routes.endpoint, "loadedAt": loaded}
        return Response(200, orjson.dumps(body), JSON)

    async def _v2_ready(self) -> Response:
        ready = self.watcher.routes is not None
        return Response(200 if ready else 503, orjson.dumps({"ready": ready}), JSON)

    async def _v2_live(self) -> Response:
        return Response(200, b'{"live":true}', JSON)

    def _too_large(self) -> PayloadTooLarge:
        """A body without Content-Length (chunked) that has grown past the limit."""
        return PayloadTooLarge(f"the request body (chunked) is {self._over_limit}")

    # --- RSGI (granian) -------------------------------------------------------------------

    def __rsgi_init__(self, loop: Any) -> None:
        loop.create_task(self.start())

    def __rsgi_del__(self, loop: Any) -> None:
        # granian calls this after its loop stopped: run the flush on it to the end.
        loop.run_until_complete(self.close())

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.proto != "http":
            return
        headers = scope.headers
        length_header = headers.get("content-length")
        content_length = rsgi.parse_length(length_header) if length_header else None
        limit = self.settings.max_payload_bytes

        async def read_body() -> bytes:
            return await rsgi.read_body(protocol, content_length, limit, self._too_large)

        response = await self.handle(scope.method, scope.path, headers, content_length, read_body)
        out = list(response.headers)
        if response.content_type:
            out.append(("content-type", response.content_type))
        protocol.response_bytes(response.status, out, response.body)


def create_router(settings: RouterSettings | None = None) -> Router:
    return Router(settings or RouterSettings.from_env())
