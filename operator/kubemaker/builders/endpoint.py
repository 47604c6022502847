"""An Endpoint's children: per variant fleet a Deployment, a Service and a PDB; the router.

A *fleet* is one Deployment of model-server pods for one variant's model, image,
instance type and environment. Its name ends in a hash of exactly those, so a change to
any of them makes a new fleet (a blue/green or rolling update), while a change of
weights or instance counts only is applied to the fleet in place.

Fleet pod: the agent image's ``fetch-model`` init container unpacks ``model.tar.gz``
into ``/opt/ml/model`` (an emptyDir), then the unmodified serving image starts with
``serve`` on 8080; readiness is ``GET /ping``, and the startup probe allows
``containerStartupHealthCheckTimeoutInSeconds`` for the first answer.

The router (``python -m kubemaker_runtime.router``) runs only where it is needed (see
:func:`needs_router`); it reads its routing table from a ConfigMap volume, which it
re-reads when the operator rewrites it. The endpoint's own Service selects the router's
pods, or, without a router, the single variant's pods directly.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubemaker.api.common import ModelSource
from kubemaker.api.endpoint import EndpointSpec, ProductionVariant
from kubemaker.builders import naming
from kubemaker.builders.errors import SpecError
from kubemaker.builders.owner import Owner
from kubemaker.builders.resources import instance_resources, place_pod
from kubemaker.builders.security import (
    OWN_CONTAINER,
    container_security_context,
    pod_security_context,
)
from kubemaker.builders.storage import build_storage_env
from kubemaker.config import OperatorConfig
from kubemaker_runtime import contract
from kubemaker_runtime.routing import ROUTES_FILE, RoutingTable

JSON = dict[str, Any]

LABEL_ENDPOINT = f"{naming.DOMAIN}/endpoint"
LABEL_VARIANT = f"{naming.DOMAIN}/variant"
LABEL_FLEET = f"{naming.DOMAIN}/fleet"
ANNOTATION_IMAGE = f"{naming.DOMAIN}/image"
ANNOTATION_MODEL = f"{naming.DOMAIN}/model-data-url"
# The instance count the spec asked for when the operator last set the fleet's replicas:
# the operator changes replicas only when the spec's count changes (or autoscaling
# decides), so a re-applied manifest does not reset an autoscaled count and a manual
# `kubectl scale` stands.
ANNOTATION_SPEC_COUNT = f"{naming.DOMAIN}/spec-instance-count"
COMPONENT_SERVER = "model-server"
COMPONENT_ROUTER = "router"

PORT = contract.DEFAULT_SERVING_PORT
MODEL_CONTAINER = "model"
SERVER_CONTAINER = "model-server"
ROUTER_CONTAINER = "router"
MODEL_VOLUME = "model"
ROUTES_VOLUME = "routes"
ROUTES_DIR = "/etc/kubemaker/router"
# SageMaker's default for ContainerStartupHealthCheckTimeoutInSeconds.
DEFAULT_HEALTH_CHECK_SECONDS = 600
PROBE_PERIOD_SECONDS = 5
# Time for fetching the model, on top of the health check, before the Deployment
# reports ProgressDeadlineExceeded.
FETCH_SECONDS = 300
# Keeps a terminating pod serving until kube-proxy and the router have stopped sending
# it new requests.
PRE_STOP_SECONDS = 5
HELPER_RESOURCES: JSON = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"memory": "512Mi"},
}


def endpoint_owner(name: str, namespace: str, uid: str) -> Owner:
    return Owner(name, namespace, uid, kind="Endpoint")


@dataclass(frozen=True)
class ServedModel:
    """What a variant serves once its model source is resolved."""

    model_data_url: str
    image: str
    environment: Mapping[str, str]


def resolve_model(
    source: ModelSource,
    config: OperatorConfig,
    *,
    field: str,
    job_model: ServedModel | None = None,
) -> ServedModel:
    """modelDataUrl + image, or the referenced job's model (``job_model``, resolved by
    the caller from the Completed TrainingJob) with this source's overrides."""
    environment = dict(job_model.environment if job_model else {})
    environment.update(source.environment or {})
    if source.entry_point:
        environment[contract.SERVING_PROGRAM_ENV] = source.entry_point
    if source.source_dir:
        environment[contract.SERVING_SUBMIT_DIRECTORY_ENV] = source.source_dir
    if job_model is not None:
        return ServedModel(job_model.model_data_url, source.image or job_model.image, environment)
    assert source.model_data_url is not None  # the API model guarantees one source
    return ServedModel(source.model_data_url, serving_image(source, config, field), environment)


def serving_image(source: ModelSource, config: OperatorConfig, field: str) -> str:
    if source.image:
        return source.image
    catalog, name, what = (
        (config.images.algorithms, source.algorithm_name, "algorithmName")
        if source.algorithm_name
        else (config.images.frameworks, source.framework, "framework")
    )
    image = catalog.get(name or "")
    if image is None:
        known = ", ".join(sorted(catalog)) or "none"
        raise SpecError(
            f"{field}.model.{what}", f"unknown {what} {name!r} (this operator has: {known})"
        )
    return image


# --- names and labels ---------------------------------------------------------------------


def base_name(endpoint: str) -> str:
    return naming.child_base(endpoint)


def endpoint_labels(endpoint: str, component: str) -> dict[str, str]:
    return {
        LABEL_ENDPOINT: base_name(endpoint),
        naming.LABEL_MANAGED_BY: naming.MANAGED_BY,
        naming.LABEL_COMPONENT: component,
    }


def fleet_hash(variant: ProductionVariant, model: ServedModel, spec: EndpointSpec) -> str:
    """Hash of what makes a fleet: a change to any of it is an update to a new fleet."""
    identity = {
        "model": model.model_data_url,
        "image": model.image,
        "environment": dict(sorted(model.environment.items())),
        "instanceType": variant.instance_type,
        "healthCheck": variant.container_startup_health_check_timeout_in_seconds,
        "storage": spec.storage.dump() if spec.storage else None,
        "podOverrides": spec.pod_overrides.dump() if spec.pod_overrides else None,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]


def fleet_name(endpoint: str, variant: str, digest: str) -> str:
    """``{endpoint}-{variant}-{hash}``, shortened to a 63-character DNS label."""
    stem = naming.volume_name(base_name(endpoint), variant)
    return f"{stem[: naming.MAX_LABEL - len(digest) - 1].rstrip('-')}-{digest}"


def router_name(endpoint: str) -> str:
    return f"{base_name(endpoint)}-router"


def service_url(name: str, namespace: str) -> str:
    return f"http://{name}.{namespace}.svc:{PORT}"


def needs_router(spec: EndpointSpec) -> bool:
    """A router is needed for a split, a shadow, capture, a traffic shift in steps, and
    for autoscaling on invocations (the router counts them whatever the serving image,
    and holds requests while a variant scales up from zero); one plain variant is
    served by its Service alone."""
    policy = spec.deployment_config.blue_green_update_policy if spec.deployment_config else None
    stepped = policy is not None and policy.traffic_routing_configuration.type != "AllAtOnce"
    capture = spec.data_capture_config is not None and spec.data_capture_config.enable_capture
    return (
        len(spec.production_variants) > 1
        or bool(spec.shadow_production_variants)
        or capture
        or stepped
        or any(
            v.auto_scaling is not None and v.auto_scaling.target_invocations_per_instance
            for v in spec.production_variants
        )
    )


# --- a variant's fleet ----------------------------------------------------------------------


def build_fleet(
    spec: EndpointSpec,
    variant: ProductionVariant,
    model: ServedModel,
    config: OperatorConfig,
    *,
    owner: Owner,
    name: str,
    replicas: int,
    field: str,
) -> JSON:
    """The Deployment of one fleet of ``variant``."""
    resources = instance_resources(
        config, variant.instance_type, spec.pod_overrides, field=f"{field}.instanceType"
    )
    overrides = spec.pod_overrides
    storage_env = build_storage_env(spec.storage, config)
    selector = {
        LABEL_ENDPOINT: base_name(owner.name),
        LABEL_VARIANT: variant.variant_name,
        LABEL_FLEET: name,
    }
    labels = {**endpoint_labels(owner.name, COMPONENT_SERVER), **selector}
    annotations = {ANNOTATION_IMAGE: model.image, ANNOTATION_MODEL: model.model_data_url}
    health = (
        variant.container_startup_health_check_timeout_in_seconds or DEFAULT_HEALTH_CHECK_SECONDS
    )
    server_env = [
        *({"name": k, "value": v} for k, v in sorted(model.environment.items())),
        *storage_env,
    ]
    if resources.gpus:
        server_env.append({"name": "SM_NUM_GPUS", "value": str(resources.gpus)})
    fetch = fetch_model_container(model.model_data_url, config, storage_env)
    ping = {"httpGet": {"path": "/ping", "port": PORT}, "periodSeconds": PROBE_PERIOD_SECONDS}
    server = {
        "name": SERVER_CONTAINER,
        "image": model.image,
        "imagePullPolicy": config.images.pull_policy,
        "args": ["serve"],
        "env": server_env,
        "ports": [{"name": "http", "containerPort": PORT}],
        "resources": resources.to_kubernetes(),
        "volumeMounts": [{"name": MODEL_VOLUME, "mountPath": "/opt/ml/model", "readOnly": True}],
        "startupProbe": {**ping, "failureThreshold": math.ceil(health / PROBE_PERIOD_SECONDS)},
        "readinessProbe": {**ping, "failureThreshold": 2},
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": container_security_context(overrides),
    }
    pod_labels = dict(labels)
    pod_annotations = dict(annotations)
    if overrides is not None:
        pod_labels = {**(overrides.labels or {}), **labels}
        pod_annotations = {**(overrides.annotations or {}), **annotations}
    pod_spec: JSON = {
        "enableServiceLinks": False,
        "securityContext": pod_security_context(overrides),
        "initContainers": [fetch],
        "containers": [server],
        "volumes": [
            {"name": MODEL_VOLUME, "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    place_pod(pod_spec, resources, overrides)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": owner.metadata(
            name,
            labels,
            annotations={**annotations, ANNOTATION_SPEC_COUNT: str(variant.initial_instance_count)},
        ),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "progressDeadlineSeconds": health + FETCH_SECONDS,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": pod_labels, "annotations": pod_annotations},
                "spec": pod_spec,
            },
        },
    }


def fetch_model_container(model_data_url: str, config: OperatorConfig, env: list[JSON]) -> JSON:
    """The agent image's init container that unpacks ``model.tar.gz`` into the model
    volume (volumes ``model`` and ``tmp``), for a fleet's and a transform's pods."""
    return {
        "name": MODEL_CONTAINER,
        "image": config.images.agent,
        "imagePullPolicy": config.images.pull_policy,
        "args": ["fetch-model", "--uri", model_data_url, "--dest", "/opt/ml/model"],
        "env": env,
        "resources": HELPER_RESOURCES,
        "volumeMounts": [
            {"name": MODEL_VOLUME, "mountPath": "/opt/ml/model"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": dict(OWN_CONTAINER),
    }


def build_service(owner: Owner, name: str, selector: Mapping[str, str], component: str) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": owner.metadata(name, endpoint_labels(owner.name, component)),
        "spec": {
            "selector": dict(selector),
            "ports": [{"name": "http", "port": PORT, "targetPort": PORT}],
        },
    }


def fleet_selector(owner: Owner, variant: str, fleet: str) -> dict[str, str]:
    return {LABEL_ENDPOINT: base_name(owner.name), LABEL_VARIANT: variant, LABEL_FLEET: fleet}


def variant_selector(owner: Owner, variant: str) -> dict[str, str]:
    """Every fleet of a variant: without a router, traffic follows ready instances."""
    return {LABEL_ENDPOINT: base_name(owner.name), LABEL_VARIANT: variant}


def router_selector(owner: Owner) -> dict[str, str]:
    return {
        LABEL_ENDPOINT: base_name(owner.name),
        naming.LABEL_COMPONENT: COMPONENT_ROUTER,
    }


def build_pdb(owner: Owner, name: str, selector: Mapping[str, str], component: str) -> JSON:
    """At most one instance down at a time through voluntary disruptions (drains)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": owner.metadata(name, endpoint_labels(owner.name, component)),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(selector)}},
    }


# --- the router ---------------------------------------------------------------------------


def build_routes(owner: Owner, table: RoutingTable) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": owner.metadata(
            router_name(owner.name), endpoint_labels(owner.name, COMPONENT_ROUTER)
        ),
        "data": {ROUTES_FILE: table.to_json()},
    }


def build_router(owner: Owner, config: OperatorConfig) -> JSON:
    name = router_name(owner.name)
    labels = {**endpoint_labels(owner.name, COMPONENT_ROUTER), **router_selector(owner)}
    ping = {"httpGet": {"path": "/ping", "port": PORT}, "periodSeconds": PROBE_PERIOD_SECONDS}
    container = {
        "name": ROUTER_CONTAINER,
        "image": config.images.agent,
        "imagePullPolicy": config.images.pull_policy,
        "command": ["python", "-m", "kubemaker_runtime.router"],
        "args": ["--routes", f"{ROUTES_DIR}/{ROUTES_FILE}", "--port", str(PORT)],
        "ports": [{"name": "http", "containerPort": PORT}],
        "resources": {k: dict(v) for k, v in config.endpoints.router_resources.items()},
        "readinessProbe": ping,
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
        "volumeMounts": [
            {"name": ROUTES_VOLUME, "mountPath": ROUTES_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": dict(OWN_CONTAINER),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": owner.metadata(name, labels),
        "spec": {
            "replicas": config.endpoints.router_replicas,
            "selector": {"matchLabels": router_selector(owner)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(None),
                    "containers": [container],
                    "volumes": [
                        {"name": ROUTES_VOLUME, "configMap": {"name": name}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def build_hpa(owner: Owner, fleet: str, min_replicas: int, max_replicas: int, cpu: int) -> JSON:
    """CPU-utilization target tracking through a standard HPA (needs metrics-server)."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": owner.metadata(fleet, endpoint_labels(owner.name, COMPONENT_SERVER)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": fleet},
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": cpu},
                    },
                }
            ],
        },
    }
