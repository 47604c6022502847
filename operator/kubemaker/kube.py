"""Kubernetes API access for the controllers, safe to await from kopf's event loop.

The ``kubernetes`` client is synchronous; every call runs in one small, bounded thread
pool, so the event loop never blocks and the number of requests in flight (and of
threads) stays fixed however many objects the operator tracks. Requests go through the
client's raw REST layer with JSON dicts in and out: the operator builds manifests as
dicts, and skipping the client's model classes saves CPU on every call.

Errors become :class:`ApiError`, which says whether a retry can help
(:attr:`ApiError.temporary`: 429, 5xx, connection trouble) or not (403, 422, ...).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import socket
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from urllib3.exceptions import HTTPError

from kubemaker import metrics

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
# (connect, read) seconds: an apiserver that does not answer within this is "temporary".
REQUEST_TIMEOUT = (5.0, 30.0)
# A container's log is read on threads of its own, so a slow kubelet never holds up a
# reconcile; the read timeout is shorter as the result is only a nice-to-have.
LOG_THREADS = 2
LOG_TIMEOUT = (5.0, 15.0)
FIELD_MANAGER = "kubemaker"


@dataclass(frozen=True)
class Resource:
    """A resource type: group, version, plural, and whether it lives in namespaces."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str = ""
    ) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        parts = [base]
        if self.namespaced and namespace is not None:
            parts.append(f"namespaces/{quote(namespace, safe='')}")
        parts.append(self.plural)
        if name is not None:
            parts.append(quote(name, safe=""))
            if subresource:
                parts.append(subresource)
        return "/".join(parts)


JOBS = Resource("batch", "v1", "jobs")
PODS = Resource("", "v1", "pods")
SERVICES = Resource("", "v1", "services")
EVENTS = Resource("", "v1", "events")


def load_configuration(*, kubeconfig: str | None = None, context: str | None = None) -> Any:
    """The client configuration: in-cluster credentials in a pod, else a kubeconfig.

    The kubeconfig is ``kubeconfig`` if given, else ``$KUBECONFIG`` (read now, not when
    the client library was imported), else ``~/.kube/config``. kopf's login uses the
    same configuration (see runner.py), so the watches and the writes act as one identity.
    """
    from kubernetes import client, config

    configuration = client.Configuration()
    if kubeconfig is None and context is None:
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return configuration
        except config.ConfigException:
            pass
    path = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=path, context=context, client_configuration=configuration
    )
    return configuration


class ApiError(Exception):
    """A failed API request, with the HTTP status (0 when no response came back)."""

    def __init__(self, status: int, reason: str, message: str, *, method: str, path: str):
        super().__init__(f"{method} {path}: {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        """409: AlreadyExists on create, a stale resourceVersion on update."""
        return self.status == 409

    @property
    def invalid(self) -> bool:
        return self.status == 422

    @property
    def temporary(self) -> bool:
        """Worth retrying unchanged: throttled, server trouble, or no answer at all."""
        return self.status in (0, 408, 429) or self.status >= 500


def _error_from_response(status: int, reason: str, data: bytes, method: str, path: str) -> ApiError:
    message = data.decode("utf-8", errors="replace")
    try:
        body = json.loads(message)
        if isinstance(body, dict):
            message = str(body.get("message", message))
            reason = str(body.get("reason", reason))
    except ValueError:
        pass
    return ApiError(status, reason, message, method=method, path=path)


class Kube:
    """Awaitable JSON requests to the apiserver through the ``kubernetes`` client."""

    def __init__(self, api_client: Any, *, max_workers: int = 8) -> None:
        self._client = api_client
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="kube")
        # Events and logs have threads of their own, so they never take one from a reconcile.
        self._events = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kube-events")
        self._logs = ThreadPoolExecutor(max_workers=LOG_THREADS, thread_name_prefix="kube-logs")
        self._hostname = socket.gethostname()[:128]

    @classmethod
    def from_environment(
        cls,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        max_workers: int = 8,
    ) -> Kube:
        from kubernetes import client

        configuration = load_configuration(kubeconfig=kubeconfig, context=context)
        # One pooled connection per thread: no thread ever waits for a socket.
        configuration.connection_pool_maxsize = max_workers + 1 + LOG_THREADS
        api_client = client.ApiClient(configuration)
        api_client.user_agent = "kubemaker-operator"
        return cls(api_client, max_workers=max_workers)

    def close(self) -> None:
        for executor in (self._executor, self._events, self._logs):
            executor.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    # --- raw requests ---

    def _send_sync(
        self,
        method: str,
        path: str,
        body: Any,
        content_type: str | None,
        query: Mapping[str, str] | None,
        *,
        accept: str = "application/json",
        timeout: tuple[float, float] = REQUEST_TIMEOUT,
    ) -> bytes:
        """The response body of a successful request (ApiError otherwise)."""
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        full_path = f"{path}?{urlencode(dict(query))}" if query else path
        method_, url, header_params, serialized, _ = self._client.param_serialize(
            method, full_path, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        try:
            response = self._client.call_api(
                method_, url, header_params, serialized, _request_timeout=timeout
            )
            data: bytes = response.read()
        except (HTTPError, OSError) as exc:
            metrics.API_REQUESTS.labels(verb=method, code="error").inc()
            raise ApiError(0, type(exc).__name__, str(exc), method=method, path=path) from exc
        metrics.API_REQUESTS.labels(verb=method, code=str(response.status)).inc()
        if not 200 <= response.status <= 299:
            raise _error_from_response(
                response.status, str(response.reason), data or b"", method, path
            )
        return data or b""

    def _request_sync(
        self,
        method: str,
        path: str,
        body: Any,
        content_type: str | None,
        query: Mapping[str, str] | None,
    ) -> JSON:
        data = self._send_sync(method, path, body, content_type, query)
        if not data:
            return {}
        result = json.loads(data)
        return result if isinstance(result, dict) else {"items": result}

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str | None = None,
        query: Mapping[str, str] | None = None,
        background: bool = False,
    ) -> JSON:
        loop = asyncio.get_running_loop()
        call = functools.partial(self._request_sync, method, path, body, content_type, query)
        return await loop.run_in_executor(self._events if background else self._executor, call)

    # --- verbs ---

    async def get(self, resource: Resource, namespace: str | None, name: str) -> JSON | None:
        """The object, or None when it does not exist."""
        try:
            return await self.request("GET", resource.path(namespace, name))
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    async def list(
        self, resource: Resource, namespace: str | None, *, field_selector: str | None = None
    ) -> list[JSON]:
        """The objects of a kind in a namespace, optionally filtered by fields."""
        query = {"fieldSelector": field_selector} if field_selector else None
        result = await self.request("GET", resource.path(namespace), query=query)
        return list(result.get("items") or [])

    async def get_or_create(
        self, resource: Resource, namespace: str, body: JSON
    ) -> tuple[JSON, bool]:
        """Create ``body``; if an object of that name exists already, return that one.

        Returns ``(object, created)``. The existing object is returned as it is: names
        are deterministic, so an existing child is the one this operator (or its
        previous run) created, and it is adopted rather than replaced.
        """
        name = body["metadata"]["name"]
        try:
            created = await self.request("POST", resource.path(namespace), body)
            return created, True
        except ApiError as exc:
            if not exc.conflict:
                raise
        existing = await self.get(resource, namespace, name)
        if existing is None:
            # Deleted between our POST and GET (e.g. by garbage collection): try again later.
            raise ApiError(
                409,
                "Conflict",
                f"{name} exists and vanished",
                method="GET",
                path=resource.path(namespace, name),
            )
        return existing, False

    async def merge_patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        patch: JSON,
        *,
        subresource: str = "",
    ) -> JSON:
        return await self.request(
            "PATCH",
            resource.path(namespace, name, subresource),
            patch,
            content_type=MERGE_PATCH,
        )

    async def delete(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        *,
        propagation: str = "Background",
        uid: str | None = None,
    ) -> bool:
        """Delete the object; False when it was already gone.

        With ``uid``, only that incarnation is deleted (a precondition), never a
        same-named successor.
        """
        options: JSON = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": propagation,
        }
        if uid:
            options["preconditions"] = {"uid": uid}
        try:
            await self.request("DELETE", resource.path(namespace, name), options)
            return True
        except ApiError as exc:
            if exc.not_found:
                return False
            if exc.conflict and uid:
                return False  # a different object with that name: not ours to delete
            raise

    async def post_event(
        self,
        involved: Mapping[str, Any],
        *,
        reason: str,
        message: str,
        type_: str = "Normal",
        component: str = "kubemaker",
    ) -> None:
        """Record a core/v1 Event on an object (what ``kubectl describe`` lists)."""
        meta = involved["metadata"]
        namespace = meta.get("namespace") or "default"
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta["name"],
                "namespace": namespace,
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": self._hostname,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self.request("POST", EVENTS.path(namespace), event, background=True)

    async def read_log(
        self,
        namespace: str,
        pod: str,
        *,
        container: str,
        tail_lines: int,
        limit_bytes: int,
        since_seconds: int | None = None,
        timestamps: bool = False,
    ) -> str:
        """The end of a container's log (``pods/log``), at most ``tail_lines`` lines;
        ``timestamps``: each line starts with its RFC 3339 time and a space."""
        query = {
            "container": container,
            "tailLines": str(tail_lines),
            "limitBytes": str(limit_bytes),
        }
        if timestamps:
            query["timestamps"] = "true"
        if since_seconds is not None:
            query["sinceSeconds"] = str(max(1, since_seconds))
        call = functools.partial(
            self._send_sync,
            "GET",
            PODS.path(namespace, pod, "log"),
            None,
            None,
            query,
            accept="*/*",
            timeout=LOG_TIMEOUT,
        )
        data = await asyncio.get_running_loop().run_in_executor(self._logs, call)
        if len(data) >= limit_bytes:
            data = data[: data.rfind(b"\n") + 1]  # cut at limitBytes: drop a partial line
        return data.decode("utf-8", errors="replace")
