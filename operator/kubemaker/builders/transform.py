"""A BatchTransform's children and settings. Pure.

Shared with ``kubemaker local transform``: the spec becomes the
:class:`~kubemaker_runtime.protocol.TransformConfig` each instance's transformer reads,
and the environment SageMaker gives a serving container in a batch transform
(``SAGEMAKER_BATCH``, the payload limit, the batch strategy, the concurrency), so an
unmodified SageMaker serving image answers as it would there.

On a cluster: one Indexed Job, one pod per instance. In each pod the agent image's
``fetch-model`` init container unpacks the model, the serving image runs ``serve`` as a
native sidecar whose startup probe (``GET /ping``) holds back the main container, and
the main container is the transformer (``kubemaker-agent transform``), which takes the
objects of its completion index. An instance is retried on its own (a platform
failure: ``backoffLimitPerIndex``) and skips the objects whose output is complete; a
record the model refuses (the transformer's exit code
:data:`~kubemaker_runtime.protocol.TRANSFORM_USER_ERROR_EXIT`) fails the Job at once; a
disrupted pod (eviction, node loss) is replaced without counting.
"""

from __future__ import annotations

import math
from typing import Any

from kubemaker.api.transform import BatchTransformSpec
from kubemaker.builders import naming
from kubemaker.builders.endpoint import (
    MODEL_VOLUME,
    PROBE_PERIOD_SECONDS,
    ServedModel,
    fetch_model_container,
)
from kubemaker.builders.owner import Owner
from kubemaker.builders.resources import instance_resources, place_pod
from kubemaker.builders.security import (
    OWN_CONTAINER,
    container_security_context,
    pod_security_context,
)
from kubemaker.builders.storage import build_storage_env, pvc_claim, storage_settings
from kubemaker.config import OperatorConfig
from kubemaker_runtime import contract
from kubemaker_runtime.protocol import (
    TRANSFORM_CONFIG_ENV,
    TRANSFORM_USER_ERROR_EXIT,
    StorageConfig,
    TransformConfig,
)

JSON = dict[str, Any]

LABEL_BATCH_TRANSFORM = f"{naming.DOMAIN}/batch-transform"
COMPONENT = "batch-transform"
ANNOTATION_IMAGE = f"{naming.DOMAIN}/image"
ANNOTATION_MODEL = f"{naming.DOMAIN}/model-data-url"
SERVER_CONTAINER = "model-server"
TRANSFORMER_CONTAINER = "transformer"
METRICS_PORT = 9102
METRICS_PORT_ENV = "KUBEMAKER_METRICS_PORT"
# Tries of one instance after a platform failure (the first included: 3, as the
# transformer's own retries of a request).
RETRIES_PER_INSTANCE = 2
# SageMaker's ContainerStartupHealthCheckTimeoutInSeconds default: the model server's
# first /ping answer.
STARTUP_SECONDS = 600
# The transformer stops between requests on SIGTERM; the longest request it waits for.
TERMINATION_GRACE_SECONDS = 60
TRANSFORMER_RESOURCES: JSON = {
    "requests": {"cpu": "250m", "memory": "256Mi"},
    # maxConcurrentTransforms x maxPayloadInMB is at most 100 MB, requests and answers.
    "limits": {"memory": "1Gi"},
}

#: How a SageMaker serving container spells the strategy in its environment.
_STRATEGY_ENV = {"MultiRecord": "MULTI_RECORD", "SingleRecord": "SINGLE_RECORD"}
BATCH_ENV = "SAGEMAKER_BATCH"


def transform_config(
    spec: BatchTransformSpec,
    *,
    job_name: str,
    storage: StorageConfig,
    server_url: str = f"http://127.0.0.1:{contract.DEFAULT_SERVING_PORT}",
) -> TransformConfig:
    """What every instance's transformer is told (its index comes from its pod)."""
    source = spec.transform_input
    processing = spec.data_processing
    client = spec.model_client_config
    return TransformConfig(
        job_name=job_name,
        input_uri=source.source_uri,
        output_uri=spec.transform_output.s3_output_path,
        content_type=source.content_type,
        accept=spec.transform_output.accept,
        compression=source.compression_type,
        split_type=source.split_type,
        assemble_with=spec.transform_output.assemble_with,
        batch_strategy=spec.batch_strategy,
        max_payload_in_mb=spec.max_payload_in_mb,
        max_concurrent_transforms=spec.max_concurrent_transforms,
        input_filter=processing.input_filter if processing else "$",
        output_filter=processing.output_filter if processing else "$",
        join_source=processing.join_source if processing else "None",
        invocations_timeout_in_seconds=(client.invocations_timeout_in_seconds if client else 600),
        invocations_max_retries=client.invocations_max_retries if client else 3,
        storage=storage,
        instance_count=spec.transform_resources.instance_count,
        server_url=server_url,
    )


def server_environment(spec: BatchTransformSpec) -> dict[str, str]:
    """The model server's environment in a batch transform, under the spec's own."""
    env = {BATCH_ENV: "true"}
    if spec.max_payload_in_mb is not None:
        env[contract.SERVING_MAX_PAYLOAD_IN_MB_ENV] = str(spec.max_payload_in_mb)
    if spec.batch_strategy is not None:
        env[contract.SERVING_BATCH_STRATEGY_ENV] = _STRATEGY_ENV[spec.batch_strategy]
    if spec.max_concurrent_transforms:
        env[contract.SERVING_MAX_CONCURRENT_TRANSFORMS_ENV] = str(spec.max_concurrent_transforms)
    return {**env, **(spec.environment or {})}


# --- the Job ----------------------------------------------------------------------------


def job_name(batch_transform: str) -> str:
    return naming.child_base(batch_transform)


def transform_labels(batch_transform: str) -> dict[str, str]:
    return {
        LABEL_BATCH_TRANSFORM: naming.child_base(batch_transform),
        naming.LABEL_MANAGED_BY: naming.MANAGED_BY,
        naming.LABEL_COMPONENT: COMPONENT,
    }


def _claim_volume(claim: str) -> str:
    return naming.volume_name("pvc", claim)


def build_job(
    spec: BatchTransformSpec,
    model: ServedModel,
    config: OperatorConfig,
    *,
    owner: Owner,
    suspend: bool = False,
) -> JSON:
    """The Indexed Job: ``instanceCount`` pods, each transforming its share."""
    field = "spec.transformResources.instanceType"
    resources = instance_resources(
        config, spec.transform_resources.instance_type, spec.pod_overrides, field=field
    )
    overrides = spec.pod_overrides
    storage = storage_settings(spec.storage, config)
    storage_env = build_storage_env(spec.storage, config)
    settings = transform_config(spec, job_name=owner.name, storage=storage)
    server_env = [
        *(
            {"name": k, "value": v}
            for k, v in sorted({**model.environment, **server_environment(spec)}.items())
        ),
        *storage_env,
    ]
    if resources.gpus:
        server_env.append({"name": "SM_NUM_GPUS", "value": str(resources.gpus)})
    port = contract.DEFAULT_SERVING_PORT
    server = {
        "name": SERVER_CONTAINER,
        "image": model.image,
        "imagePullPolicy": config.images.pull_policy,
        "args": ["serve"],
        "restartPolicy": "Always",
        "env": server_env,
        "ports": [{"name": "http", "containerPort": port}],
        "resources": resources.to_kubernetes(),
        "volumeMounts": [{"name": MODEL_VOLUME, "mountPath": "/opt/ml/model", "readOnly": True}],
        "startupProbe": {
            "httpGet": {"path": "/ping", "port": port},
            "periodSeconds": PROBE_PERIOD_SECONDS,
            "failureThreshold": math.ceil(STARTUP_SECONDS / PROBE_PERIOD_SECONDS),
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": container_security_context(overrides),
    }
    claims = [
        c
        for c in dict.fromkeys(pvc_claim(u) for u in (settings.input_uri, settings.output_uri))
        if c
    ]
    transformer = {
        "name": TRANSFORMER_CONTAINER,
        "image": config.images.agent,
        "imagePullPolicy": config.images.pull_policy,
        "args": ["transform"],
        "env": [
            {
                "name": TRANSFORM_CONFIG_ENV,
                "value": settings.model_dump_json(by_alias=True, exclude_none=True),
            },
            {"name": METRICS_PORT_ENV, "value": str(METRICS_PORT)},
            *storage_env,
        ],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
        "resources": TRANSFORMER_RESOURCES,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]
        + [{"name": _claim_volume(c), "mountPath": f"{storage.pvc_root}/{c}"} for c in claims],
        "terminationMessagePolicy": "File",
        "securityContext": dict(OWN_CONTAINER),
    }
    labels = transform_labels(owner.name)
    annotations = {ANNOTATION_IMAGE: model.image, ANNOTATION_MODEL: model.model_data_url}
    pod_labels, pod_annotations = dict(labels), dict(annotations)
    if overrides is not None:
        # The operator's own labels win: the controller selects on them.
        pod_labels = {**(overrides.labels or {}), **labels}
        pod_annotations = {**(overrides.annotations or {}), **annotations}
    pod_spec: JSON = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": pod_security_context(overrides),
        "initContainers": [
            fetch_model_container(model.model_data_url, config, storage_env),
            server,
        ],
        "containers": [transformer],
        "volumes": [{"name": MODEL_VOLUME, "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
        + [{"name": _claim_volume(c), "persistentVolumeClaim": {"claimName": c}} for c in claims],
    }
    place_pod(pod_spec, resources, overrides)
    count = spec.transform_resources.instance_count
    job_labels = dict(labels)
    if spec.queue_name:
        # Kueue admits the Job by unsuspending it.
        job_labels[naming.LABEL_KUEUE_QUEUE] = spec.queue_name
        suspend = True
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": owner.metadata(job_name(owner.name), job_labels, annotations=annotations),
        "spec": {
            "completionMode": "Indexed",
            "completions": count,
            "parallelism": count,
            "backoffLimitPerIndex": RETRIES_PER_INSTANCE,
            "maxFailedIndexes": 0,
            "podReplacementPolicy": "Failed",
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": TRANSFORMER_CONTAINER,
                            "operator": "In",
                            "values": [TRANSFORM_USER_ERROR_EXIT],
                        },
                    },
                    {
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                ]
            },
            "suspend": suspend,
            "template": {
                "metadata": {"labels": pod_labels, "annotations": pod_annotations},
                "spec": pod_spec,
            },
        },
    }
