"""Forwarding to a fleet's model servers over pooled keep-alive connections, and holding.

One aiohttp session per worker: its connector keeps connections to every fleet open
between requests (a new TCP connection per request would double the router's cost); a
second one, without a pool, only sends keep-alive races again (below).

Holding: a variant scaled to zero (its fleets report no instances, and its Service
refuses connections), or a fleet whose address refuses connections (pods going away
during an update, DNS not there yet), is not an error for the caller: the request
never left, so it is safe to try again. The
request waits with a short backoff, re-reading the *current* table each try (the
operator raises instances and moves weights meanwhile), until the table's
``hold_timeout_seconds``; then 503 with a message that says why. A failure after the
request left (reset mid-response, timeout) is not retried: the model may have acted.

Keep-alive races: a model server closes a connection that was idle too long at the
moment the router sends on it from its pool. The request then fails before any byte of
an answer came back, and the server never read it. Such a request (and only such a one:
on a *reused* connection, before any response byte) is sent once more on a fresh
connection; see :meth:`Upstream.send`.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from kubemaker_runtime.router.errors import (
    HoldTimeout,
    NotSent,
    UpstreamFailed,
    UpstreamTimeout,
    VariantRemoved,
)
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
# What a socket says when the peer closed it before reading what was written on it.
_UNREAD_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})

# Set by the connector, in the task that sends, when the connection it hands out comes
# from the pool (a ContextVar: a coroutine awaited in a task shares the task's context).
_reused: contextvars.ContextVar[bool] = contextvars.ContextVar("router_reused", default=False)


class _PoolConnector(aiohttp.TCPConnector):
    """A TCPConnector that tells whether it reused a pooled connection.

    aiohttp has no public flag for it. TraceConfig's ``on_connection_reuseconn`` is
    public but makes every request build a Trace and await a dozen empty signals;
    overriding ``_get`` (the pool lookup) costs nothing per request. Were aiohttp to
    rename ``_get``, nothing would be marked and no request retried: the keep-alive
    test in tests/dataplane/test_router.py would fail, no request would be sent twice.
    """

    async def _get(self, *args: Any, **kwargs: Any) -> Any:
        connection = await super()._get(*args, **kwargs)
        if connection is not None:
            _reused.set(True)
        return connection


class _StaleConnection(Exception):
    """A pooled connection the server had closed: the request was not read."""


def _unanswered(error: BaseException) -> bool:
    """Whether a failure before the response's headers means "closed without reading":
    the server disconnected with no byte of a response, or the connection was reset or
    broken (writing the request, or waiting for the answer; aiohttp wraps the socket's
    error, so its causes are looked at too)."""
    if isinstance(error, aiohttp.ServerDisconnectedError):
        # aiohttp puts the partial response in the message when some of it arrived.
        return isinstance(error.message, str)
    if isinstance(error, aiohttp.ClientConnectorError):
        return False  # connecting failed: never a pooled connection
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
            return True
        if isinstance(cause, OSError) and cause.errno in _UNREAD_ERRNOS:
            return True
        cause = cause.__cause__
    return False


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

    def __init__(
        self, timeout_seconds: float, on_retry: Callable[[str], None] | None = None
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self._on_retry = on_retry
        self._session: aiohttp.ClientSession | None = None
        # Retries of keep-alive races: always a new connection, closed after.
        self._fresh: aiohttp.ClientSession | None = None
        self._urls: dict[tuple[str, str], URL] = {}

    def _new_session(self, connector: aiohttp.BaseConnector) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=self.timeout_seconds, sock_connect=CONNECT_TIMEOUT_SECONDS
            ),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )

    async def start(self) -> None:
        self._session = self._new_session(
            _PoolConnector(
                limit=0,  # concurrency is the callers'; a cap here would queue them invisibly
                keepalive_timeout=30,
                ttl_dns_cache=5,  # Services are re-resolved soon after a fleet changes
                use_dns_cache=True,
            )
        )
        self._fresh = self._new_session(
            aiohttp.TCPConnector(limit=0, force_close=True, ttl_dns_cache=5, use_dns_cache=True)
        )

    async def close(self) -> None:
        for session in (self._session, self._fresh):
            if session is not None:
                await session.close()
        self._session = self._fresh = None

    def _url(self, base: str, path: str) -> URL:
        key = (base, path)
        url = self._urls.get(key)
        if url is None:
            if len(self._urls) > 4096:  # v2 paths carry model names: keep the cache bounded
                self._urls.clear()
            url = self._urls[key] = URL(base.rstrip("/") + path)
        return url

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        headers: Mapping[str, str],
        body: bytes,
    ) -> tuple[int, bytes, str | None, list[tuple[str, str]]]:
        _reused.set(False)
        try:
            response = await session.request(method, url, data=body or None, headers=headers)
        except (aiohttp.ClientConnectionError, OSError) as error:
            if _reused.get() and _unanswered(error):
                raise _StaleConnection from error
            raise
        # From here on a response has begun: whatever fails is not retried.
        try:
            payload = await response.read()
        finally:
            response.release()
        response_headers = response.headers
        extra = [(h, response_headers[h]) for h in PASSED_BACK if h in response_headers]
        return response.status, payload, response_headers.get("Content-Type"), extra

    async def send(
        self, fleet: Fleet, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, bytes, str | None, list[tuple[str, str]], float]:
        """One attempt: status, body, content type, passed-back headers, seconds.

        A keep-alive race is sent again, once, on a new connection. Safe: the server
        closed the pooled connection without reading the request (it was closing it for
        idleness as the request went out), so the model never saw it; the body is in
        memory, so the copy is exact. Only a failure on a reused connection before any
        byte of the response qualifies: a disconnect after the response began (or on a
        new connection, or a timeout) is the model's or the network's failure and is
        not retried, since the model may have acted on the request.
        """
        assert self._session is not None and self._fresh is not None, "start() not awaited"
        started = time.perf_counter()
        url = self._url(fleet.url, path)
        try:
            try:
                status, payload, content_type, extra = await self._exchange(
                    self._session, method, url, headers, body
                )
            except _StaleConnection:
                if self._on_retry is not None:
                    self._on_retry(fleet.name)
                status, payload, content_type, extra = await self._exchange(
                    self._fresh, method, url, headers, body
                )
        except _StaleConnection as error:  # not raised by the fresh session: for mypy
            raise UpstreamFailed(
                f"fleet {fleet.name} broke the connection: {error.__cause__}", fleet=fleet.name
            ) from None
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as error:
            raise NotSent(f"fleet {fleet.name} ({fleet.url}): {error}", fleet=fleet.name) from None
        except TimeoutError:
            raise UpstreamTimeout(
                f"fleet {fleet.name} did not answer within {self.timeout_seconds:g} s",
                fleet=fleet.name,
            ) from None
        except (aiohttp.ClientError, OSError) as error:
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
                if fleet is None:
                    # The table changed while the request was held: the variant is gone.
                    raise VariantRemoved(
                        f"variant {variant} is no longer a production variant of endpoint "
                        f"{routes.endpoint} (its variants: {routes.known_variants}); it was "
                        "removed while the request waited for it",
                        variant=variant,
                        fleet=fleet_name or None,
                    )
                fleet_name = fleet.name
                # Tried even when the table says the fleet has no instance: the table
                # reaches the router through a ConfigMap volume, which the kubelet
                # refreshes up to a minute late, while the fleet's Service takes
                # connections as soon as a pod is ready (a Service without ready pods
                # refuses them, which is NotSent: the request waits and tries again).
                try:
                    status, payload, ctype, extra, seconds = await self.send(
                        fleet, method, path, headers, body
                    )
                except NotSent as error:
                    last_error = error.message if fleet.instances > 0 else None
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
                    metrics.held_total.labels(routes.endpoint, variant).inc()
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
