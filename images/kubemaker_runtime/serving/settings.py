"""Server settings, read from the environment SageMaker gives a serving container."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from kubemaker_runtime import contract
from kubemaker_runtime.processors import available_cpus

# The XGBoost container's own name for the payload limit, in bytes; kept for
# compatibility with images and notebooks that set it.
MAX_CONTENT_LENGTH_ENV = "MAX_CONTENT_LENGTH"
# Where to listen. SageMaker listens on every interface; tests pick loopback.
BIND_ADDRESS_ENV = "KUBEMAKER_BIND_ADDRESS"
DEFAULT_MAX_PAYLOAD_MB = 6
BATCH_STRATEGIES = ("MULTI_RECORD", "SINGLE_RECORD")


@dataclass(frozen=True)
class ServerSettings:
    port: int = contract.DEFAULT_SERVING_PORT
    address: str = "0.0.0.0"
    workers: int = 1
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_MB * 1024 * 1024
    # None: the model's first response type.
    default_accept: str | None = None
    batch_strategy: str = "MULTI_RECORD"
    max_concurrent_transforms: int | None = None

    @property
    def max_payload_mb(self) -> int:
        return max(1, self.max_payload_bytes // (1024 * 1024))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerSettings:
        """Settings from ``SAGEMAKER_*`` variables; a malformed value is a ValueError."""
        env = os.environ if environ is None else environ
        workers = _positive_int(env, contract.SERVING_MODEL_SERVER_WORKERS_ENV, available_cpus())
        if env.get(MAX_CONTENT_LENGTH_ENV):
            max_payload = _positive_int(env, MAX_CONTENT_LENGTH_ENV, 0)
        else:
            mb = _positive_int(env, contract.SERVING_MAX_PAYLOAD_IN_MB_ENV, DEFAULT_MAX_PAYLOAD_MB)
            max_payload = mb * 1024 * 1024
        strategy = env.get(contract.SERVING_BATCH_STRATEGY_ENV) or "MULTI_RECORD"
        if strategy not in BATCH_STRATEGIES:
            raise ValueError(
                f"{contract.SERVING_BATCH_STRATEGY_ENV}={strategy!r}: "
                f"expected one of {', '.join(BATCH_STRATEGIES)}"
            )
        concurrent = env.get(contract.SERVING_MAX_CONCURRENT_TRANSFORMS_ENV)
        return cls(
            port=contract.serving_port(env),
            address=env.get(BIND_ADDRESS_ENV) or "0.0.0.0",
            workers=workers,
            max_payload_bytes=max_payload,
            default_accept=(env.get(contract.SERVING_DEFAULT_INVOCATIONS_ACCEPT_ENV) or None),
            batch_strategy=strategy,
            max_concurrent_transforms=(
                _positive_int(env, contract.SERVING_MAX_CONCURRENT_TRANSFORMS_ENV, 1)
                if concurrent
                else None
            ),
        )


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None
    if value < 1:
        raise ValueError(f"{name}={raw!r} must be at least 1")
    return value
