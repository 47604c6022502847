"""Builders of observed TrainingJob children (Jobs, pods, container states) for the
planner's tests and the failure-wording tests: real API shapes, as the apiserver has them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubemaker.api.training import TrainingJobSpec
from kubemaker.config import OperatorConfig
from kubemaker.planners.training_status import Observation
from kubemaker.planners.training_views import JobView, PodView
from kubemaker_runtime.protocol import AgentReport

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
MODEL = "s3://models/bank/bank/output/model.tar.gz"


def make_spec(**overrides: Any) -> TrainingJobSpec:
    spec: dict[str, Any] = {
        "algorithmSpecification": {"algorithmName": "xgboost"},
        "outputDataConfig": {"s3OutputPath": "s3://models/bank"},
        "resourceConfig": {"instanceType": "ml.m5.xlarge", "instanceCount": 1},
    }
    spec.update(overrides)
    return TrainingJobSpec.model_validate(spec)


def job_body(
    attempt: int = 0,
    *,
    complete: bool = False,
    failed: tuple[str, str] | None = None,
    suspend: bool = False,
    deleting: bool = False,
) -> dict[str, Any]:
    conditions = []
    if complete:
        conditions.append({"type": "Complete", "status": "True"})
    if failed:
        conditions.append(
            {"type": "Failed", "status": "True", "reason": failed[0], "message": failed[1]}
        )
    meta: dict[str, Any] = {
        "name": "bank" if attempt == 0 else f"bank-r{attempt}",
        "uid": f"job-uid-{attempt}",
        "creationTimestamp": "2025-01-01T12:00:00Z",
        "labels": {"kubemaker.io/training-job": "bank", "kubemaker.io/attempt": str(attempt)},
    }
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T12:00:00Z"
    return {
        "metadata": meta,
        "spec": {"suspend": suspend},
        "status": {"conditions": conditions, "startTime": "2025-01-01T12:00:00Z"},
    }


def container(
    name: str, state: str | tuple[Any, ...], *, started: bool = False, message: str | None = None
) -> dict[str, Any]:
    if isinstance(state, tuple):  # ("terminated", exit code, reason)
        detail: dict[str, Any] = {
            "exitCode": state[1],
            "reason": state[2],
            "startedAt": "2025-01-01T12:00:05Z",
            "finishedAt": "2025-01-01T12:10:00Z",
        }
        if message is not None:
            detail["message"] = message
        body_state = {"terminated": detail}
    elif state == "running":
        body_state = {"running": {"startedAt": "2025-01-01T12:00:05Z"}}
    else:
        body_state = {"waiting": {"reason": state}}
    return {"name": name, "state": body_state, "started": started, "ready": started}


def pod_body(
    index: int = 0,
    attempt: int = 0,
    *,
    phase: str = "Running",
    agent: dict[str, Any] | None = None,
    algorithm: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    reason: str | None = None,
    deadline: int | None = None,
) -> dict[str, Any]:
    job = "bank" if attempt == 0 else f"bank-r{attempt}"
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions or [],
        "startTime": "2025-01-01T12:00:01Z",
    }
    if agent is not None:
        status["initContainerStatuses"] = [agent]
    if algorithm is not None:
        status["containerStatuses"] = [algorithm]
    if reason:
        status["reason"] = reason
    body: dict[str, Any] = {
        "metadata": {
            "name": f"{job}-{index}-abcde",
            "labels": {
                "kubemaker.io/training-job": "bank",
                "kubemaker.io/attempt": str(attempt),
                "batch.kubernetes.io/job-completion-index": str(index),
            },
        },
        "status": status,
    }
    if deadline is not None:
        body["spec"] = {"activeDeadlineSeconds": deadline}
    return body


def report(**fields: Any) -> str:
    return AgentReport.model_validate({"outcome": "Completed", **fields}).to_message()


def pending_pod(**kw: Any) -> dict[str, Any]:
    return pod_body(
        phase="Pending",
        agent=container("agent", "PodInitializing"),
        algorithm=container("algorithm", "PodInitializing"),
        **kw,
    )


def downloading_pod(**kw: Any) -> dict[str, Any]:
    return pod_body(
        phase="Pending",
        agent=container("agent", "running"),
        algorithm=container("algorithm", "PodInitializing"),
        **kw,
    )


def training_pod(**kw: Any) -> dict[str, Any]:
    return pod_body(
        agent=container("agent", "running", started=True),
        algorithm=container("algorithm", "running", started=True),
        **kw,
    )


def uploading_pod(**kw: Any) -> dict[str, Any]:
    return pod_body(
        agent=container("agent", "running", started=True),
        algorithm=container("algorithm", ("terminated", 0, "Completed")),
        **kw,
    )


def succeeded_pod(model: str | None = MODEL, **kw: Any) -> dict[str, Any]:
    message = report(modelArtifacts=model) if model else None
    return pod_body(
        phase="Succeeded",
        agent=container("agent", ("terminated", 0, "Completed"), message=message),
        algorithm=container("algorithm", ("terminated", 0, "Completed")),
        **kw,
    )


def failed_pod(
    code: int = 1,
    *,
    algorithm_message: str | None = None,
    agent_report: str | None = None,
    **kw: Any,
) -> dict[str, Any]:
    return pod_body(
        phase="Failed",
        agent=container("agent", ("terminated", 0, "Completed"), message=agent_report),
        algorithm=container("algorithm", ("terminated", code, "Error"), message=algorithm_message),
        **kw,
    )


def evicted_pod(**kw: Any) -> dict[str, Any]:
    return pod_body(
        phase="Failed",
        reason="Evicted",
        conditions=[
            {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "TerminationByKubelet",
                "message": "The node was low on resource: memory.",
            }
        ],
        agent=container("agent", ("terminated", 0, "Completed")),
        algorithm=container("algorithm", ("terminated", 137, "Error")),
        **kw,
    )


def observe(
    status: dict[str, Any] | None = None,
    *,
    jobs: list[dict[str, Any]] = (),  # type: ignore[assignment]
    pods: list[dict[str, Any]] = (),  # type: ignore[assignment]
    now: datetime = T0,
    spec: TrainingJobSpec | None = None,
    **kw: Any,
) -> Observation:
    return Observation(
        name="bank",
        generation=1,
        spec=spec or make_spec(),
        status=status or {},
        jobs=[JobView.from_body(j) for j in jobs],
        pods=[PodView.from_body(p) for p in pods],
        now=now,
        config=OperatorConfig(),
        creation_timestamp="2025-01-01T12:00:00Z",
        **kw,
    )
