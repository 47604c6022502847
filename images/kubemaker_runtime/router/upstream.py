"""Forwarding to a fleet's model servers over pooled keep-alive connections, and holding.

One aiohttp session per worker: its connector keeps connections to every fleet open
between requests (a new TCP connection per request would double the router's cost).

Holding: a variant scaled to zero (its fleets report no instances), or a fleet whose
address refuses connections (pods going away during an update, DNS not there yet), is
not an error for the caller: the request never left, so it is safe to try again. The
request waits with a short backoff, re-reading the *current* table each try (the
operator raises instances and moves weights meanwhile), until the table's
``hold_timeout_seconds``; then 503 with a message that says why. A failure after the
request left (reset mid-response, timeout) is not retried: the model may have acted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp
from yarl import URL

from kubemaker_runtime.router.errors import HoldTimeout, NotSent, UpstreamFailed, UpstreamTimeout
from kubemaker_runtime.router.metrics import RouterMetrics
from kubemaker_runtime.router.table import Routes
from kubemaker_runtime.routing import Fleet

FIRST_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 1.0
# Kubernetes answers a Service without endpoints with a refused connection; a silent
# drop (a node gone) should not use up the whole invocation timeout before a retry.
CONNECT_TIMEOUT_SECONDS = 3.0
# Response headers passed back besides Content-Type.
PASSED_BACK = ("x-amzn-sagemaker-custom-attributes",)


@dataclass(slots=True)
class Answer:
    status: int
    body: bytes
    content_type: str | None
    headers: list[tuple[str, str]]
    variant: str
    fleet: str
    model_seconds: float
    instances: int


class Upstream:
    """One worker's HTTP client to every fleet."""

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[tuple[str, str], URL] = {}

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=0,  # concurrency is the callers'; a cap here would queue them invisibly
            keepalive_timeout=30,
            ttl_dns_cache=5,  # Services are re-resolved soon after a fleet changes
            use_dns_cache=True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=self.timeout_seconds, sock_connect=CONNECT_TIMEOUT_SECONDS
            ),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _url(self, base: str, path: str) -> URL:
        key = (base, path)
        url = self._urls.get(key)
        if url is None:
            if len(self._urls) > 4096:  # v2 paths carry model names: keep the cache bounded
                self._urls.clear()
            url = self._urls[key] = URL(base.rstrip("/") + path)
        return url

    async def send(
        self, fleet: Fleet, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, bytes, str | None, list[tuple[str, str]], float]:
        """One attempt: status, body, content type, passed-back headers, seconds."""
        assert self._session is not None, "Upstream.start() was not awaited"
        started = time.perf_counter()
        try:
            async with self._session.request(
                method, self._url(fleet.url, path), data=body or None, headers=headers
            ) as response:
                payload = await response.read()
                extra = [(h, response.headers[h]) for h in PASSED_BACK if h in response.headers]
                content_type = response.headers.get("Content-Type")
                status = response.status
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as error:
            raise NotSent(f"fleet {fleet.name} ({fleet.url}): {error}", fleet=fleet.name) from None
        except TimeoutError:
            raise UpstreamTimeout(
                f"fleet {fleet.name} did not answer within {self.timeout_seconds:g} s",
                fleet=fleet.name,
            ) from None
        except aiohttp.ClientError as error:
            raise UpstreamFailed(
                f"fleet {fleet.name} broke the connection: {type(error).__name__}: {error}",
                fleet=fleet.name,
            ) from None
        return status, payload, content_type, extra, time.perf_counter() - started

    async def forward_held(
        self,
        current: Callable[[], Routes],
        routes: Routes,
        variant: str,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        metrics: RouterMetrics,
    ) -> Answer:
        """Send to ``variant``, holding while it has no instance that takes a connection."""
        deadline = time.monotonic() + routes.table.hold_timeout_seconds
        delay = FIRST_BACKOFF_SECONDS
        held = None
        last_error: str | None = None
        fleet_name = ""
        try:
            while True:
                fleet = routes.draw_fleet(variant)
                if fleet is not None:
                    fleet_name = fleet.name
                    if fleet.instances > 0:
                        try:
                            status, payload, ctype, extra, seconds = await self.send(
                                fleet, method, path, headers, body
                            )
                        except NotSent as error:
                            last_error = error.message
                        except (UpstreamFailed, UpstreamTimeout) as error:
                            error.variant = variant
                            raise
                        else:
                            return Answer(
                                status, payload, ctype, extra, variant, fleet.name, seconds,
                                routes.instances(variant),
                            )  # fmt: skip
                if held is None:
                    held = metrics.held.labels(routes.endpoint, variant)
                    held.inc()
                if time.monotonic() + delay > deadline:
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)
                routes = current()
        finally:
            if held is not None:
                held.dec()
        metrics.hold_timeouts.labels(routes.endpoint, variant).inc()
        waited = routes.table.hold_timeout_seconds
        if last_error is None:
            message = (
                f"variant {variant} has no ready instance after {waited:g} s; it is scaling "
                "up from zero (or its fleets were removed): try again shortly"
            )
        else:
            message = (
                f"variant {variant} has no instance that accepts connections after "
                f"{waited:g} s; it may be starting or updating: try again shortly "
                f"(last error: {last_error})"
            )
        raise HoldTimeout(message, variant=variant, fleet=fleet_name)
