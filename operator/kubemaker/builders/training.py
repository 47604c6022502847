"""A TrainingJob's children: the Indexed Job of one attempt and the headless Service.

Pod shape (see docs/trainingjob.md): the data-plane agent runs as a native sidecar
(an init container with ``restartPolicy: Always``) whose startup probe passes once the
config files are written and input is staged, which gates the ``algorithm`` container,
started with ``train``. Both share one emptyDir, mounted by subPath at /opt/ml/input,
/opt/ml/model, /opt/ml/output and /opt/ml/checkpoints. When the algorithm ends the
kubelet stops the agent, which uploads the model and writes its AgentReport to its
termination message. Both containers get the job's storage settings (credentials,
endpoint, region): SageMaker images read S3 themselves too (a framework image fetches
its ``sourceDir``), as every container of a pod could with a pod identity (IRSA).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from kubemaker.api.training import TrainingJobSpec
from kubemaker.builders import naming
from kubemaker.builders.errors import SpecError
from kubemaker.builders.owner import Owner
from kubemaker.builders.resources import Resources, instance_resources, place_pod
from kubemaker.builders.security import (
    OWN_CONTAINER,
    container_security_context,
    pod_security_context,
)
from kubemaker.builders.storage import build_storage_env, pvc_claim, storage_settings
from kubemaker.config import OperatorConfig
from kubemaker_runtime import contract
from kubemaker_runtime.protocol import (
    AGENT_CONFIG_ENV,
    AgentConfig,
    ChannelConfig,
    CheckpointConfig,
)

JSON = dict[str, Any]

AGENT_CONTAINER = "agent"
ALGORITHM_CONTAINER = "algorithm"
WORK_VOLUME = "opt-ml"
AGENT_TMP_VOLUME = "agent-tmp"
HOST_INDEX_ENV = "KUBEMAKER_HOST_INDEX"
# What SageMaker gives an algorithm between SIGTERM and SIGKILL, plus time for the agent
# to upload the model once the algorithm has exited.
ALGORITHM_STOP_SECONDS = 120
UPLOAD_SECONDS = 60
TERMINATION_GRACE_SECONDS = ALGORITHM_STOP_SECONDS + UPLOAD_SECONDS
# Slack on top of maxRuntimeInSeconds before the Job's own activeDeadlineSeconds fires:
# the operator stops the job gracefully at the deadline; the Job deadline is a backstop
# for when the operator is down.
DEADLINE_BACKSTOP_SECONDS = TERMINATION_GRACE_SECONDS + 60
AGENT_RESOURCES: JSON = {
    "requests": {"cpu": "100m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}
# The agent's startup probe may take as long as staging input takes: up to a day.
PROBE_PERIOD_SECONDS = 2
PROBE_FAILURE_THRESHOLD = 43200
OPT_ML = contract.Paths()
# subPath of the shared volume -> where both containers see it.
WORK_MOUNTS = {
    "input": str(OPT_ML.input_dir),
    "model": str(OPT_ML.model_dir),
    "output": str(OPT_ML.output_dir),
    "checkpoints": str(OPT_ML.checkpoints_dir),
}


# --- resolution against the operator's configuration -------------------------------------


def resolve_image(spec: TrainingJobSpec, config: OperatorConfig) -> str:
    """The algorithm image: trainingImage, else the catalog's image for the name."""
    algo = spec.algorithm_specification
    if algo.training_image:
        return algo.training_image
    if algo.algorithm_name:
        return _catalog_image(
            config.images.algorithms, algo.algorithm_name, "algorithmName", "built-in algorithm"
        )
    assert algo.framework is not None  # the model guarantees one of the three
    return _catalog_image(config.images.frameworks, algo.framework, "framework", "framework")


def _catalog_image(catalog: Mapping[str, str], name: str, field: str, what: str) -> str:
    image = catalog.get(name)
    if image is None:
        known = ", ".join(sorted(catalog)) or "none"
        raise SpecError(
            f"spec.algorithmSpecification.{field}",
            f"unknown {what} {name!r} (this operator has: {known})",
        )
    return image


def resolve_resources(spec: TrainingJobSpec, config: OperatorConfig) -> Resources:
    """Requests, limits and placement of one training instance (spot jobs on spot nodes)."""
    return instance_resources(
        config,
        spec.resource_config.instance_type,
        spec.pod_overrides,
        spot=spec.enable_managed_spot_training,
    )


# --- the agent's configuration ------------------------------------------------------------


def output_path(spec: TrainingJobSpec, training_job: str) -> str:
    """``<s3OutputPath>/<job name>/output``: SageMaker's layout for model.tar.gz."""
    return f"{spec.output_data_config.s3_output_path.rstrip('/')}/{training_job}/output"


def model_artifacts_uri(spec: TrainingJobSpec, training_job: str) -> str:
    return f"{output_path(spec, training_job)}/model.tar.gz"


def build_hyperparameters(spec: TrainingJobSpec, training_job: str) -> dict[str, str]:
    """hyperparameters.json: the spec's, plus script mode's as the SageMaker SDK adds them."""
    values = dict(spec.hyper_parameters or {})
    algo = spec.algorithm_specification
    if algo.framework:
        script = {
            "sagemaker_program": algo.entry_point,
            "sagemaker_submit_directory": algo.source_dir,
            "sagemaker_job_name": training_job,
        }
        for key, value in script.items():
            if value is not None:
                values.setdefault(key, value)
    return values


def build_channels(spec: TrainingJobSpec) -> list[ChannelConfig]:
    default_mode = spec.algorithm_specification.training_input_mode
    return [
        ChannelConfig(
            name=channel.channel_name,
            uri=channel.source_uri,
            distribution=channel.distribution,
            content_type=channel.content_type,
            compression=channel.compression_type,
            input_mode=channel.input_mode or default_mode,
        )
        for channel in spec.input_data_config or ()
    ]


def build_agent_config(
    spec: TrainingJobSpec, config: OperatorConfig, *, training_job: str, hosts: list[str]
) -> AgentConfig:
    checkpoint = None
    if spec.checkpoint_config is not None:
        # The agent syncs its own mount of the shared volume; the algorithm sees the
        # same files at checkpointConfig.localPath.
        checkpoint = CheckpointConfig(
            uri=spec.checkpoint_config.s3_uri, local_path=str(OPT_ML.checkpoints_dir)
        )
    return AgentConfig(
        job_name=training_job,
        hosts=hosts,
        instance_type=spec.resource_config.instance_type,
        hyper_parameters=build_hyperparameters(spec, training_job),
        channels=build_channels(spec),
        output_path=output_path(spec, training_job),
        checkpoint=checkpoint,
        storage=storage_settings(spec.storage, config),
    )


def pvc_claims(agent_config: AgentConfig) -> list[str]:
    """PersistentVolumeClaims named by pvc:// URIs, mounted into the agent."""
    uris = [c.uri for c in agent_config.channels] + [agent_config.output_path]
    if agent_config.checkpoint is not None:
        uris.append(agent_config.checkpoint.uri)
    uris.append(agent_config.hyper_parameters.get("sagemaker_submit_directory"))
    claims = []
    for uri in uris:
        claim = pvc_claim(uri)
        if claim and claim not in claims:
            claims.append(claim)
    return claims


# --- the algorithm's environment ----------------------------------------------------------


def build_algorithm_env(
    spec: TrainingJobSpec,
    *,
    training_job: str,
    job: str,
    hosts: list[str],
    resources: Resources,
    agent_config: AgentConfig,
    storage_env: Sequence[JSON],
) -> list[JSON]:
    """The algorithm container's environment: SageMaker's ``SM_*``, the job's storage
    (:func:`build_storage_env`) and the spec's own.

    Values that differ per host are written with ``$(KUBEMAKER_HOST_INDEX)``, which the
    kubelet expands from the pod's completion index (downward API), so one pod
    template serves every instance. ``SM_TRAINING_ENV`` leaves out ``is_master`` on
    multi-instance jobs: it cannot be expressed per pod (compare ``current_host`` with
    ``master_hostname``). The spec's ``environment`` wins over any other value.
    """
    resource_config = contract.build_resource_config(
        hosts=hosts,
        current_host=hosts[0],
        instance_type=spec.resource_config.instance_type,
    )
    sm_env = contract.build_training_env(
        OPT_ML,
        hyperparameters=agent_config.hyper_parameters,
        input_data_config=contract.build_input_data_config(agent_config.channels),
        resource_config=resource_config,
        num_cpus=resources.cpus,
        num_gpus=resources.gpus,
        job_name=training_job,
    )
    this_host = f"{job}-$({HOST_INDEX_ENV})"
    per_host_resource_config = {**resource_config, "current_host": this_host}
    sm_env["SM_CURRENT_HOST"] = this_host
    sm_env["SM_RESOURCE_CONFIG"] = _compact(per_host_resource_config)
    training_env = json.loads(sm_env["SM_TRAINING_ENV"])
    training_env["current_host"] = this_host
    training_env["resource_config"] = per_host_resource_config
    if len(hosts) > 1:
        training_env.pop("is_master", None)
    sm_env["SM_TRAINING_ENV"] = _compact(training_env)

    env: list[JSON] = [
        {
            "name": HOST_INDEX_ENV,
            "valueFrom": {
                "fieldRef": {"fieldPath": f"metadata.annotations['{naming.COMPLETION_INDEX}']"}
            },
        }
    ]
    user_env = dict(spec.environment or {})
    own = [{"name": name, "value": value} for name, value in sm_env.items()] + list(storage_env)
    env.extend(entry for entry in own if entry["name"] not in user_env)
    env.extend({"name": name, "value": value} for name, value in user_env.items())
    return env


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# --- pod, Job, Service --------------------------------------------------------------------


def _work_mounts(checkpoint_path: str | None = None) -> list[JSON]:
    mounts = [
        {"name": WORK_VOLUME, "mountPath": path, "subPath": sub}
        for sub, path in WORK_MOUNTS.items()
    ]
    if checkpoint_path and checkpoint_path != WORK_MOUNTS["checkpoints"]:
        mounts.append({"name": WORK_VOLUME, "mountPath": checkpoint_path, "subPath": "checkpoints"})
    return mounts


def build_pod_template(
    spec: TrainingJobSpec,
    config: OperatorConfig,
    *,
    training_job: str,
    namespace: str,
    attempt: int,
    image: str | None = None,
) -> JSON:
    """The pod template of one attempt's Indexed Job; ``image`` is the one the job
    recorded when it started (every attempt runs it), else resolved now."""
    job = naming.job_name(training_job, attempt)
    hosts = naming.host_names(job, spec.resource_config.instance_count)
    image = image or resolve_image(spec, config)
    resources = resolve_resources(spec, config)
    agent_config = build_agent_config(spec, config, training_job=training_job, hosts=hosts)
    service = naming.service_name(training_job)
    overrides = spec.pod_overrides
    claims = pvc_claims(agent_config)
    storage_env = build_storage_env(spec.storage, config)

    agent_env: list[JSON] = [
        {
            "name": AGENT_CONFIG_ENV,
            "value": agent_config.model_dump_json(by_alias=True, exclude_none=True),
        },
        *storage_env,
    ]
    pvc_root = agent_config.storage.pvc_root
    # The agent's root filesystem is read-only: its state and upload archives go to /tmp.
    agent_mounts = [*_work_mounts(), {"name": AGENT_TMP_VOLUME, "mountPath": "/tmp"}] + [
        {"name": _claim_volume(claim), "mountPath": f"{pvc_root}/{claim}"} for claim in claims
    ]
    # A framework image stages a pvc:// sourceDir itself: it reads the claim where the
    # agent does (read-only; the agent may write outputs to the same claim).
    code_claim = pvc_claim(spec.algorithm_specification.source_dir)
    algorithm_mounts = _work_mounts(
        spec.checkpoint_config.local_path if spec.checkpoint_config else None
    )
    if code_claim:
        algorithm_mounts.append(
            {
                "name": _claim_volume(code_claim),
                "mountPath": f"{pvc_root}/{code_claim}",
                "readOnly": True,
            }
        )
    agent = {
        "name": AGENT_CONTAINER,
        "image": config.images.agent,
        "imagePullPolicy": config.images.pull_policy,
        "args": ["sidecar"],
        "restartPolicy": "Always",
        "env": agent_env,
        "resources": AGENT_RESOURCES,
        "startupProbe": {
            "exec": {"command": ["kubemaker-agent", "probe"]},
            "periodSeconds": PROBE_PERIOD_SECONDS,
            "failureThreshold": PROBE_FAILURE_THRESHOLD,
        },
        "volumeMounts": agent_mounts,
        "terminationMessagePolicy": "File",
        "securityContext": dict(OWN_CONTAINER),
    }
    algorithm = {
        "name": ALGORITHM_CONTAINER,
        "image": image,
        "imagePullPolicy": config.images.pull_policy,
        "args": ["train"],
        "env": build_algorithm_env(
            spec,
            training_job=training_job,
            job=job,
            hosts=hosts,
            resources=resources,
            agent_config=agent_config,
            storage_env=storage_env,
        ),
        "resources": resources.to_kubernetes(),
        "volumeMounts": algorithm_mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": container_security_context(overrides),
    }
    labels = {**naming.child_labels(training_job, attempt)}
    annotations = {naming.ANNOTATION_MODEL_ARTIFACTS: model_artifacts_uri(spec, training_job)}
    if overrides is not None:
        # The operator's own labels win: the Service and the controller select on them.
        labels = {**(overrides.labels or {}), **labels}
        annotations = {**(overrides.annotations or {}), **annotations}

    work_volume: JSON = {
        "name": WORK_VOLUME,
        "emptyDir": {"sizeLimit": f"{spec.resource_config.volume_size_in_gb}Gi"},
    }
    pod_spec: JSON = {
        "restartPolicy": "Never",
        "subdomain": service,
        "dnsConfig": {"searches": [f"{service}.{namespace}.svc.cluster.local"]},
        # Hundreds of Services in a namespace would otherwise flood every container's
        # environment with *_SERVICE_HOST variables.
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": pod_security_context(overrides),
        "initContainers": [agent],
        "containers": [algorithm],
        "volumes": [work_volume, {"name": AGENT_TMP_VOLUME, "emptyDir": {}}]
        + [
            {"name": _claim_volume(claim), "persistentVolumeClaim": {"claimName": claim}}
            for claim in claims
        ],
    }
    place_pod(pod_spec, resources, overrides)
    return {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec}


def _claim_volume(claim: str) -> str:
    return naming.volume_name("pvc", claim)


def active_deadline_seconds(spec: TrainingJobSpec, runtime_used: float = 0.0) -> int:
    """The Job's own deadline: what is left of maxRuntimeInSeconds, plus a backstop margin."""
    remaining = spec.stopping_condition.max_runtime_in_seconds - max(0.0, runtime_used)
    return max(1, math.ceil(remaining)) + DEADLINE_BACKSTOP_SECONDS


def build_job(
    spec: TrainingJobSpec,
    config: OperatorConfig,
    *,
    owner: Owner,
    attempt: int,
    runtime_used: float = 0.0,
    image: str | None = None,
) -> JSON:
    """The Indexed Job of one attempt: one pod per instance, all-or-nothing.

    ``backoffLimit: 0`` with a pod failure policy: the algorithm's non-zero exit fails
    the Job at once (never retried, as in SageMaker); a disruption (eviction, node
    lost, preemption) fails it too, and the operator replaces the whole Job with the
    next attempt, so every host of a multi-host job restarts together from checkpoints.
    """
    count = spec.resource_config.instance_count
    name = naming.job_name(owner.name, attempt)
    labels = naming.child_labels(owner.name, attempt)
    job_spec: JSON = {
        "completionMode": "Indexed",
        "completions": count,
        "parallelism": count,
        "backoffLimit": 0,
        "podReplacementPolicy": "Failed",
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                },
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": ALGORITHM_CONTAINER,
                        "operator": "NotIn",
                        "values": [0],
                    },
                },
            ]
        },
        "activeDeadlineSeconds": active_deadline_seconds(spec, runtime_used),
        "template": build_pod_template(
            spec,
            config,
            training_job=owner.name,
            namespace=owner.namespace,
            attempt=attempt,
            image=image,
        ),
    }
    if spec.queue_name:
        # Kueue admits the Job by unsuspending it.
        labels[naming.LABEL_KUEUE_QUEUE] = spec.queue_name
        job_spec["suspend"] = True
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": labels,
            "ownerReferences": [owner.reference()],
        },
        "spec": job_spec,
    }


def build_service(owner: Owner) -> JSON:
    """The headless Service that gives every pod the DNS name ``{host}.{service}``.

    Only multi-instance jobs need it (peers resolve each other); a single pod finds its
    own host name in /etc/hosts, which the kubelet writes.
    """
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": naming.service_name(owner.name),
            "namespace": owner.namespace,
            "labels": naming.child_labels(owner.name),
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "clusterIP": "None",
            "selector": naming.selector_labels(owner.name),
            # Peers must resolve each other while the agents are still staging data.
            "publishNotReadyAddresses": True,
        },
    }


def pod_env_value(env: list[Mapping[str, Any]], name: str) -> str | None:
    """The literal value of ``name`` in a container's env list (for tests and tools)."""
    for entry in env:
        if entry.get("name") == name:
            value = entry.get("value")
            return None if value is None else str(value)
    return None
