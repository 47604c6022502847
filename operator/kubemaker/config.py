"""The operator's configuration: images, the instance-type catalog, placement, storage.

The Helm chart renders its values into ``config.yaml`` (mounted at
``/etc/kubemaker/config.yaml``); the operator reads the file named by ``--config`` or
``$KUBEMAKER_CONFIG``. Without a file the built-in defaults apply, so tests and local
runs need no configuration. Keys are camelCase, as in the chart's values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

CONFIG_ENV = "KUBEMAKER_CONFIG"
DEFAULT_CONFIG_PATH = "/etc/kubemaker/config.yaml"
GPU_RESOURCE = "nvidia.com/gpu"


class _Config(BaseModel):
    # extra="forbid": a misspelt key in the chart's values fails at startup with its
    # name, instead of silently falling back to a default.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class Placement(_Config):
    """Node selector and tolerations added to a pod (GPU pods, spot pods)."""

    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)


class InstanceType(_Config):
    """What one SageMaker instance type means on this cluster: one pod's resources."""

    cpu: str
    memory: str
    gpus: int = Field(default=0, ge=0)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("cpu", "memory", mode="before")
    @classmethod
    def _quantity_as_text(cls, value: object) -> object:
        # YAML reads `cpu: 4` as an int; a Kubernetes quantity is a string.
        return str(value) if isinstance(value, int | float) else value


class Images(_Config):
    agent: str = "ghcr.io/kubemaker/runtime:0.1.0"
    algorithms: dict[str, str] = Field(
        default_factory=lambda: {"xgboost": "ghcr.io/kubemaker/xgboost:0.1.0"}
    )
    # The XGBoost image is also SageMaker's XGBoost framework (script mode): it switches
    # when the job names an entry point.
    frameworks: dict[str, str] = Field(
        default_factory=lambda: {
            "mxnet": "ghcr.io/kubemaker/mxnet:0.1.0",
            "xgboost": "ghcr.io/kubemaker/xgboost:0.1.0",
        }
    )
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"


class Storage(_Config):
    s3_endpoint_url: str = ""
    region: str = ""
    credentials_secret: str = Field(
        default="",
        description="Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, in the job's namespace",
    )


def _gib(n: float) -> str:
    return f"{n:g}Gi"


def _catalog() -> dict[str, InstanceType]:
    # SageMaker's published sizes (vCPU, GiB, GPUs). A platform team scales these to
    # its nodes in the chart's values: a pod that asks for a whole machine's memory
    # does not fit on a machine of that size once the kubelet reserves its share.
    sizes: dict[str, tuple[int, float, int]] = {
        "ml.t3.medium": (2, 4, 0),
        "ml.t3.large": (2, 8, 0),
        "ml.m5.large": (2, 8, 0),
        "ml.m5.xlarge": (4, 16, 0),
        "ml.m5.2xlarge": (8, 32, 0),
        "ml.m5.4xlarge": (16, 64, 0),
        "ml.m5.12xlarge": (48, 192, 0),
        "ml.m5.24xlarge": (96, 384, 0),
        "ml.c5.xlarge": (4, 8, 0),
        "ml.c5.2xlarge": (8, 16, 0),
        "ml.c5.4xlarge": (16, 32, 0),
        "ml.c5.9xlarge": (36, 72, 0),
        "ml.c5.18xlarge": (72, 144, 0),
        # The workshop notebooks' generation (still offered by SageMaker).
        "ml.c4.xlarge": (4, 7.5, 0),
        "ml.c4.2xlarge": (8, 15, 0),
        "ml.c4.4xlarge": (16, 30, 0),
        "ml.c4.8xlarge": (36, 60, 0),
        "ml.m4.xlarge": (4, 16, 0),
        "ml.m4.2xlarge": (8, 32, 0),
        "ml.m4.4xlarge": (16, 64, 0),
        "ml.m4.10xlarge": (40, 160, 0),
        "ml.m4.16xlarge": (64, 256, 0),
        "ml.p2.xlarge": (4, 61, 1),
        "ml.p2.8xlarge": (32, 488, 8),
        "ml.p2.16xlarge": (64, 732, 16),
        "ml.r5.xlarge": (4, 32, 0),
        "ml.r5.2xlarge": (8, 64, 0),
        "ml.p3.2xlarge": (8, 61, 1),
        "ml.p3.8xlarge": (32, 244, 4),
        "ml.p3.16xlarge": (64, 488, 8),
        "ml.g4dn.xlarge": (4, 16, 1),
        "ml.g4dn.2xlarge": (8, 32, 1),
        "ml.g4dn.12xlarge": (48, 192, 4),
        "ml.g5.xlarge": (4, 16, 1),
        "ml.g5.2xlarge": (8, 32, 1),
        "ml.g5.12xlarge": (48, 192, 4),
        "ml.g5.48xlarge": (192, 768, 8),
        "ml.p4d.24xlarge": (96, 1152, 8),
    }
    return {
        name: InstanceType(cpu=str(cpu), memory=_gib(mem), gpus=gpus)
        for name, (cpu, mem, gpus) in sizes.items()
    }


def _gpu_placement() -> Placement:
    return Placement(
        node_selector={"nvidia.com/gpu.present": "true"},
        tolerations=[{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
    )


class Endpoints(_Config):
    """Where the Endpoint controller reads its data plane's metrics (autoscaling, alarms,
    the routing table each router replica applies)."""

    prometheus_url: str = Field(
        default="",
        description="Prometheus HTTP API base URL; empty: scrape the pods' /metrics directly",
    )
    metrics_interval_seconds: float = Field(default=15.0, gt=0, le=300)
    scrape_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    router_replicas: int = Field(
        default=2, ge=1, le=100, description="Router pods of an Endpoint that needs one"
    )
    router_resources: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {
            "requests": {"cpu": "500m", "memory": "256Mi"},
            "limits": {"memory": "1Gi"},
        },
        description="The router container's resources (requests, limits), as in a pod spec",
    )


class OperatorConfig(_Config):
    images: Images = Field(default_factory=Images)
    instance_types: dict[str, InstanceType] = Field(default_factory=_catalog)
    gpu: Placement = Field(default_factory=_gpu_placement)
    spot: Placement = Field(default_factory=Placement)
    storage: Storage = Field(default_factory=Storage)
    endpoints: Endpoints = Field(default_factory=Endpoints)
    watch_namespaces: list[str] = Field(default_factory=list)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> OperatorConfig:
        return cls.model_validate(dict(data or {}))


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid (a deployment error)."""


def load_config(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> OperatorConfig:
    """The configuration from ``path``, else ``$KUBEMAKER_CONFIG``, else the defaults.

    A path that was named but does not exist is an error: a mis-mounted ConfigMap must
    not silently run the operator with the built-in catalog and images.
    """
    env = os.environ if environ is None else environ
    chosen = path if path is not None else env.get(CONFIG_ENV) or None
    if chosen is None:
        return OperatorConfig()
    file = Path(chosen)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or exc
        raise ConfigError(f"cannot read the operator configuration {file}: {reason}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"the operator configuration {file} is not UTF-8 text (byte {exc.start})"
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file} is not valid YAML: {exc}") from exc
    except RecursionError:
        raise ConfigError(f"{file} is nested too deeply") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{file} must hold a mapping, not {type(data).__name__}")
    try:
        return OperatorConfig.from_mapping(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid operator configuration in {file}: {_fields(exc)}") from exc


def _fields(exc: ValidationError) -> str:
    """Each invalid key of a ValidationError as ``path.to.key: problem``, on one line."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '<root>'}: {error['msg']}"
        for error in exc.errors(include_url=False)
    )
