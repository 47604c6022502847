"""Reading an Endpoint's traffic: from its pods' ``/metrics`` or from Prometheus.

Both return a :class:`~kubemaker.planners.endpoint_metrics.Snapshot` of cumulative
counters; the planners compute rates and alarms from successive snapshots.

- :func:`scrape_pods` GETs ``/metrics`` of each router replica (or, for an endpoint
  without a router, of each model server pod) concurrently. One pod that cannot be
  read is skipped and named in the result's ``errors``; it never fails the scrape.
- :func:`query_prometheus` asks a Prometheus server that scrapes the routers, with
  instant queries all evaluated at the same time. Counters are summed per
  ``instance`` (the scraped pod) as well as variant and fleet, so that a restarted
  router replica shows as a reset of its own series only (see endpoint_metrics).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import aiohttp

from kubemaker.planners.endpoint_metrics import (
    ROUTER_CONFIG_INFO,
    ROUTER_FIELDS,
    ROUTER_HELD,
    FleetCounters,
    SeriesKey,
    Snapshot,
    parse_router_text,
    parse_server_text,
)

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
QUERY_PATH = "/api/v1/query"
# An answer larger than this is not a router's or a model server's metrics.
MAX_METRICS_BYTES = 8 * 1024 * 1024


class ScrapeError(Exception):
    """A metric source could not be read; the message is one line."""


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    """A pod to read: a router replica, or a model server of ``variant`` / ``fleet``
    (a router's samples carry their variant and fleet themselves)."""

    ip: str
    port: int
    kind: Literal["router", "server"] = "router"
    variant: str = ""
    fleet: str = ""

    @property
    def address(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}{METRICS_PATH}"


class ScrapeResult(NamedTuple):
    """The pods' snapshot, merged, and one line per pod that could not be read."""

    snapshot: Snapshot
    errors: list[str]


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _scrape_one(
    session: aiohttp.ClientSession,
    target: ScrapeTarget,
    client_timeout: aiohttp.ClientTimeout,
    taken_at: float,
) -> Snapshot:
    async with session.get(target.url, timeout=client_timeout) as response:
        if response.status != 200:
            raise ScrapeError(f"HTTP {response.status}")
        body = bytearray()
        async for chunk in response.content.iter_any():
            body += chunk
            if len(body) > MAX_METRICS_BYTES:
                raise ScrapeError(f"more than {MAX_METRICS_BYTES} bytes")
    text = body.decode("utf-8", errors="replace")
    try:
        if target.kind == "router":
            return parse_router_text(text, taken_at=taken_at, source=target.address)
        return parse_server_text(
            text, target.variant, target.fleet, taken_at=taken_at, source=target.address
        )
    except ValueError as exc:
        raise ScrapeError(f"not Prometheus exposition text: {_one_line(exc)}") from exc


async def scrape_pods(
    session: aiohttp.ClientSession,
    targets: Sequence[ScrapeTarget],
    timeout: float,  # noqa: ASYNC109 (per request: aiohttp's own timeout)
    *,
    taken_at: float | None = None,
) -> ScrapeResult:
    """GET ``/metrics`` of every target at once (each within ``timeout`` seconds) and
    merge what they answered; ``taken_at`` (default: now) is the snapshot's time."""
    when = time.time() if taken_at is None else taken_at
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    results = await asyncio.gather(
        *(_scrape_one(session, t, client_timeout, when) for t in targets),
        return_exceptions=True,
    )
    parts: list[Snapshot] = []
    errors: list[str] = []
    for target, result in zip(targets, results, strict=True):
        if isinstance(result, Snapshot):
            parts.append(result)
        elif isinstance(result, ScrapeError | aiohttp.ClientError | TimeoutError):
            message = str(result) if isinstance(result, ScrapeError) else _one_line(result)
            errors.append(f"{target.kind} {target.address}: {message}")
        else:
            # A bug (or a cancellation), not a pod's fault: let it show.
            raise result
    if errors:
        logger.debug("metrics not read from %d of %d pods: %s", len(errors), len(targets), errors)
    return ScrapeResult(Snapshot(when).merge(parts), errors)


# --- Prometheus ---------------------------------------------------------------------------


def _selector(namespace: str, endpoint: str) -> str:
    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return f"{{namespace={quoted(namespace)}, endpoint={quoted(endpoint)}}}"


def prometheus_queries(namespace: str, endpoint: str) -> dict[str, str]:
    """The PromQL instant queries :func:`query_prometheus` sends, by what they read:
    a FleetCounters field, ``held`` or ``versions``."""
    selector = _selector(namespace, endpoint)
    queries = {
        field: f"sum by (variant, fleet, instance) ({name}{selector})"
        for name, field in ROUTER_FIELDS.items()
    }
    queries["held"] = f"sum by (variant) ({ROUTER_HELD}{selector})"
    queries["versions"] = f"count by (version) ({ROUTER_CONFIG_INFO}{selector})"
    return queries


def _vector(payload: Any, query: str) -> list[tuple[Mapping[str, str], float]]:
    """(labels, value) of an instant query's JSON answer, as Prometheus' HTTP API
    documents it: {"status": "success", "data": {"resultType": "vector", "result":
    [{"metric": {...}, "value": [<time>, "<value>"]}]}}."""
    if not isinstance(payload, dict):
        raise ScrapeError(f"Prometheus answered {query!r} with something other than a JSON object")
    if payload.get("status") != "success":
        kind = payload.get("errorType") or "error"
        detail = " ".join(str(payload.get("error") or "no detail").split())
        raise ScrapeError(f"Prometheus refused {query!r}: {kind}: {detail}")
    data = payload.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise ScrapeError(f"Prometheus answered {query!r} with no vector")
    out: list[tuple[Mapping[str, str], float]] = []
    for item in data.get("result") or []:
        try:
            labels = {str(k): str(v) for k, v in dict(item["metric"]).items()}
            value = float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ScrapeError(f"Prometheus answered {query!r} with a malformed sample") from exc
        if math.isfinite(value):
            out.append((labels, value))
    return out


async def _query(
    session: aiohttp.ClientSession,
    base_url: str,
    query: str,
    at: float,
    client_timeout: aiohttp.ClientTimeout,
) -> list[tuple[Mapping[str, str], float]]:
    url = base_url.rstrip("/") + QUERY_PATH
    try:
        async with session.get(
            url, params={"query": query, "time": f"{at:.3f}"}, timeout=client_timeout
        ) as response:
            # Prometheus answers errors (400, 422, 503) with the same JSON envelope.
            try:
                payload = await response.json(content_type=None)
            except ValueError:
                payload = None
            if payload is None and response.status != 200:
                raise ScrapeError(f"Prometheus at {base_url}: HTTP {response.status}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ScrapeError(f"Prometheus at {base_url}: {_one_line(exc)}") from exc
    return _vector(payload, query)


async def query_prometheus(
    session: aiohttp.ClientSession,
    base_url: str,
    namespace: str,
    endpoint: str,
    timeout: float,  # noqa: ASYNC109 (per request: aiohttp's own timeout)
    *,
    taken_at: float | None = None,
) -> Snapshot:
    """The endpoint's counters as Prometheus has them at ``taken_at`` (default: now),
    the queries sent at once, each within ``timeout`` seconds.

    Raises ScrapeError (one line) when Prometheus cannot be reached or refuses a query."""
    when = time.time() if taken_at is None else taken_at
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    queries = prometheus_queries(namespace, endpoint)
    # All answered before any error is raised: no query is left running unawaited.
    answers = await asyncio.gather(
        *(_query(session, base_url, q, when, client_timeout) for q in queries.values()),
        return_exceptions=True,
    )
    results: dict[str, list[tuple[Mapping[str, str], float]]] = {}
    for what, answer in zip(queries, answers, strict=True):
        if isinstance(answer, BaseException):
            raise answer
        results[what] = answer
    sums: dict[SeriesKey, dict[str, float]] = {}
    held: dict[str, int] = {}
    versions: set[str] = set()
    for what, vector in results.items():
        for labels, value in vector:
            if what == "versions":
                if value > 0 and labels.get("version"):
                    versions.add(labels["version"])
            elif what == "held":
                if labels.get("variant"):
                    held[labels["variant"]] = held.get(labels["variant"], 0) + round(value)
            elif labels.get("variant"):
                key = (labels.get("instance", ""), labels["variant"], labels.get("fleet", ""))
                counters = sums.setdefault(key, {})
                counters[what] = counters.get(what, 0.0) + value
    series = {key: FleetCounters(**values) for key, values in sums.items()}
    return Snapshot(when, series, held, frozenset(versions))


__all__ = [
    "ScrapeError",
    "ScrapeResult",
    "ScrapeTarget",
    "prometheus_queries",
    "query_prometheus",
    "scrape_pods",
]
