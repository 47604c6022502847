"""The transformer's side of the serving contract: ``/execution-parameters`` and
``/invocations`` of the model server beside it, with SageMaker's timeout and retries.

A 4xx answer is the model refusing the request (:class:`ModelError`, the user's: never
retried); a 5xx answer, a timeout or a lost connection is retried up to ``retries``
times with a growing pause, then is :class:`ServerError` (the platform's). Requests are
synchronous (urllib3, as botocore uses it): the transformer keeps up to its concurrency
of them in flight from a thread pool, and a batch is megabytes, so a request's own cost
is small beside the model's.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import urllib3

RETRY_PAUSE_SECONDS = 0.5
_STRATEGIES = {"multirecord": "MultiRecord", "singlerecord": "SingleRecord"}
MESSAGE_LIMIT = 512


class ModelError(Exception):
    """The model server answered 4xx: the request (its records) is refused."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class ServerError(Exception):
    """The model server did not answer a request, after every retry."""


@dataclass(frozen=True)
class ExecutionParameters:
    """What ``GET /execution-parameters`` says (each None where it says nothing)."""

    max_concurrent_transforms: int | None = None
    batch_strategy: str | None = None
    max_payload_in_mb: int | None = None

    @classmethod
    def from_json(cls, data: Any) -> ExecutionParameters:
        if not isinstance(data, dict):
            return cls()

        def number(key: str) -> int | None:
            value = data.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        # SageMaker's containers answer in their environment's spelling (MULTI_RECORD).
        strategy = str(data.get("BatchStrategy") or "").replace("_", "").lower()
        return cls(
            max_concurrent_transforms=number("MaxConcurrentTransforms"),
            batch_strategy=_STRATEGIES.get(strategy),
            max_payload_in_mb=number("MaxPayloadInMB"),
        )


def server_message(body: bytes) -> str:
    """The server's error text: its JSON ``error``/``message`` field, else the body."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("error", "message", "detail"):
            if isinstance(data.get(key), str):
                text = data[key]
                break
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


def execution_parameters(url: str, *, timeout: float = 10.0) -> ExecutionParameters:
    """The server's preferences; none when it has no such route (an optional part of
    SageMaker's contract) or does not answer it."""
    pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(total=timeout))
    try:
        response = pool.request("GET", f"{url.rstrip('/')}/execution-parameters")
    except urllib3.exceptions.HTTPError:
        return ExecutionParameters()
    finally:
        pool.clear()
    if response.status != 200:
        return ExecutionParameters()
    try:
        return ExecutionParameters.from_json(json.loads(response.data))
    except ValueError:
        return ExecutionParameters()


class ModelClient:
    """Requests to one model server, from up to ``concurrency`` threads at once."""

    def __init__(
        self,
        url: str,
        *,
        content_type: str | None,
        accept: str | None,
        timeout: float,
        retries: int,
        concurrency: int = 1,
    ) -> None:
        self.url = url.rstrip("/")
        self.headers = {
            k: v for k, v in (("Content-Type", content_type), ("Accept", accept)) if v is not None
        }
        self.timeout = timeout
        self.retries = retries
        self._pool = urllib3.PoolManager(
            maxsize=max(1, concurrency),
            block=True,
            retries=False,
            timeout=urllib3.Timeout(total=timeout),
        )

    def close(self) -> None:
        self._pool.clear()

    def invoke(self, body: bytes) -> bytes:
        """The server's answer to one request (``POST /invocations``)."""
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(RETRY_PAUSE_SECONDS * 2 ** (attempt - 1))
            try:
                response = self._pool.request(
                    "POST", f"{self.url}/invocations", body=body, headers=self.headers
                )
            except urllib3.exceptions.TimeoutError:
                last = f"no answer within {self.timeout:g} s"
                continue
            except urllib3.exceptions.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.status < 300:
                return bytes(response.data)
            if response.status < 500:
                raise ModelError(response.status, server_message(response.data))
            last = f"{response.status}: {server_message(response.data)}"
        raise ServerError(f"the model server failed {self.retries + 1} time(s): {last}")
