"""Instance types to pod resources and placement, through the operator's catalog.

Every kind that runs pods (training instances, endpoint variants, batch transform
instances) names an instance type (``ml.m5.xlarge``); the chart's catalog gives its CPU,
memory and GPUs, node selector and tolerations, and ``podOverrides`` adjusts them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from kubemaker.api.common import PodOverrides
from kubemaker.builders.errors import SpecError
from kubemaker.config import GPU_RESOURCE, OperatorConfig

JSON = dict[str, Any]


@dataclass(frozen=True)
class Resources:
    """One pod's compute and placement after the catalog and the overrides."""

    requests: dict[str, str]
    limits: dict[str, str]
    gpus: int
    cpus: int
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[JSON] = field(default_factory=list)

    def to_kubernetes(self) -> JSON:
        result: JSON = {}
        if self.requests:
            result["requests"] = dict(self.requests)
        if self.limits:
            result["limits"] = dict(self.limits)
        return result


def _cpu_count(quantity: str) -> int:
    """Whole CPUs in a quantity ("4", "3500m" -> 4), at least 1: SM_NUM_CPUS."""
    text = quantity.strip()
    try:
        value = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        return 1
    return max(1, math.ceil(value))


def instance_resources(
    config: OperatorConfig,
    instance_type: str,
    overrides: PodOverrides | None,
    *,
    spot: bool = False,
    field: str = "spec.resourceConfig.instanceType",
) -> Resources:
    """Requests, limits and placement of one instance of ``instance_type``.

    The catalog entry of the instance type gives CPU and memory requests, a memory
    limit and the GPU limit; ``podOverrides.resources`` replaces any of them by
    resource name. GPU pods get the GPU node selector and tolerations, spot jobs the
    spot ones; the overrides' node selector wins and their tolerations are added.
    """
    instance = config.instance_types.get(instance_type)
    if instance is None:
        raise SpecError(
            field,
            f"unknown instance type {instance_type!r}; "
            f"the operator's catalog has: {', '.join(sorted(config.instance_types))}",
        )
    requests: dict[str, str] = {"cpu": instance.cpu, "memory": instance.memory}
    limits: dict[str, str] = {"memory": instance.memory}
    if instance.gpus:
        limits[GPU_RESOURCE] = str(instance.gpus)
    if overrides is not None and overrides.resources is not None:
        requests.update({k: str(v) for k, v in (overrides.resources.requests or {}).items()})
        limits.update({k: str(v) for k, v in (overrides.resources.limits or {}).items()})
    # Kubernetes accepts an extended resource (GPUs) only with requests == limits.
    if GPU_RESOURCE in requests and GPU_RESOURCE not in limits:
        limits[GPU_RESOURCE] = requests[GPU_RESOURCE]
    requests.pop(GPU_RESOURCE, None)
    gpus = _gpu_count(limits.get(GPU_RESOURCE))
    if gpus == 0:
        limits.pop(GPU_RESOURCE, None)

    node_selector: dict[str, str] = dict(instance.node_selector)
    tolerations: list[JSON] = [dict(t) for t in instance.tolerations]
    if gpus:
        node_selector.update(config.gpu.node_selector)
        tolerations.extend(dict(t) for t in config.gpu.tolerations)
    if spot:
        node_selector.update(config.spot.node_selector)
        tolerations.extend(dict(t) for t in config.spot.tolerations)
    if overrides is not None:
        node_selector.update(overrides.node_selector or {})
        tolerations.extend(t.to_kubernetes() for t in overrides.tolerations or ())
    return Resources(
        requests=requests,
        limits=limits,
        gpus=gpus,
        cpus=_cpu_count(requests.get("cpu", limits.get("cpu", "1"))),
        node_selector=node_selector,
        tolerations=_unique(tolerations),
    )


def _gpu_count(value: str | None) -> int:
    if value is None:
        return 0
    try:
        return int(value)
    except ValueError as exc:
        raise SpecError(
            "spec.podOverrides.resources", f"{GPU_RESOURCE} must be a whole number, not {value!r}"
        ) from exc


def _unique(items: list[JSON]) -> list[JSON]:
    seen: set[str] = set()
    result = []
    for item in items:
        key = json.dumps(item, sort_keys=True)
        if key not in seen:
            seen.add(key)
            result.append(item)
    return result


def place_pod(pod_spec: JSON, resources: Resources, overrides: PodOverrides | None) -> None:
    """Put a pod where its instance type goes (node selector, tolerations) and give it
    what ``podOverrides`` asks of the pod itself (service account, priority class, image
    pull secrets); every kind's pods get these the same way."""
    if resources.node_selector:
        pod_spec["nodeSelector"] = dict(resources.node_selector)
    if resources.tolerations:
        pod_spec["tolerations"] = list(resources.tolerations)
    if overrides is None:
        return
    if overrides.service_account_name:
        pod_spec["serviceAccountName"] = overrides.service_account_name
    if overrides.priority_class_name:
        pod_spec["priorityClassName"] = overrides.priority_class_name
    if overrides.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s.name} for s in overrides.image_pull_secrets]
