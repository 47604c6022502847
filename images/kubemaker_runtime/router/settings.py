"""Router settings: command-line flags over environment variables over defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from kubemaker_runtime import contract

ROUTES_ENV = "KUBEMAKER_ROUTER_ROUTES"
WORKERS_ENV = "KUBEMAKER_ROUTER_WORKERS"
BIND_ADDRESS_ENV = "KUBEMAKER_BIND_ADDRESS"
UPSTREAM_TIMEOUT_ENV = "KUBEMAKER_ROUTER_UPSTREAM_TIMEOUT_SECONDS"
SHADOW_QUEUE_ENV = "KUBEMAKER_ROUTER_SHADOW_QUEUE"
CAPTURE_FLUSH_SECONDS_ENV = "KUBEMAKER_ROUTER_CAPTURE_FLUSH_SECONDS"
LOOP_ENV = "KUBEMAKER_ROUTER_LOOP"
# granian's event loops; "auto": uvloop when installed, else asyncio (server.event_loop).
LOOPS = ("auto", "asyncio", "uvloop", "rloop")
DEFAULT_ROUTES_PATH = "/etc/kubemaker/router/routes.json"
DEFAULT_MAX_PAYLOAD_MB = 6
N = TypeVar("N", int, float)


@dataclass(frozen=True)
class RouterSettings:
    routes_path: str = DEFAULT_ROUTES_PATH
    port: int = contract.DEFAULT_SERVING_PORT
    address: str = "0.0.0.0"
    # One worker: the router waits on sockets, and one event loop forwards thousands of
    # requests/s; a second worker on a small node takes CPU from the model servers.
    workers: int = 1
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_MB * 1024 * 1024
    # SageMaker's invocation timeout.
    upstream_timeout_seconds: float = 60.0
    poll_seconds: float = 1.0
    shadow_queue_size: int = 1000
    shadow_senders: int = 4
    capture_flush_seconds: float = 5.0
    capture_flush_records: int = 1000
    capture_buffer_records: int = 20_000
    loop: str = "auto"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RouterSettings:
        env = os.environ if environ is None else environ
        mb = _number(env, contract.SERVING_MAX_PAYLOAD_IN_MB_ENV, DEFAULT_MAX_PAYLOAD_MB, int)
        loop = env.get(LOOP_ENV) or "auto"
        if loop not in LOOPS:
            raise ValueError(f"{LOOP_ENV}={loop!r} is none of {', '.join(LOOPS)}")
        return cls(
            routes_path=env.get(ROUTES_ENV) or DEFAULT_ROUTES_PATH,
            port=contract.serving_port(env),
            address=env.get(BIND_ADDRESS_ENV) or "0.0.0.0",
            workers=_number(env, WORKERS_ENV, 1, int),
            max_payload_bytes=mb * 1024 * 1024,
            upstream_timeout_seconds=_number(env, UPSTREAM_TIMEOUT_ENV, 60.0, float),
            shadow_queue_size=_number(env, SHADOW_QUEUE_ENV, 1000, int),
            capture_flush_seconds=_number(env, CAPTURE_FLUSH_SECONDS_ENV, 5.0, float),
            loop=loop,
        )


def _number(env: Mapping[str, str], name: str, default: N, kind: type[N]) -> N:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r} must be positive")
    return value
