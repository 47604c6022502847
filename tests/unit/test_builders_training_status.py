"""The TrainingJob state machine: status and actions from the observed Jobs and pods."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from kubemaker.api.training import TrainingJobSpec
from kubemaker.builders.training_status import (
    ContainerView,
    JobView,
    Observation,
    Plan,
    PodView,
    invalid_status,
    plan_training,
)
from kubemaker.config import OperatorConfig
from kubemaker.reconcile.conditions import Cond, merge_conditions
from kubemaker_runtime.protocol import AgentReport

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
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
    return {
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


def step(obs: Observation) -> Plan:
    """Plan, and check the plan is stable: replanning on its own status changes nothing."""
    plan = plan_training(obs)
    again = plan_training(
        replace(
            obs,
            status=plan.status,
            expected_jobs=frozenset(
                {plan.status["jobName"]} if plan.create_attempt is not None else obs.expected_jobs
            ),
        )
    )
    assert again.status == plan.status, "replanning on the written status must change nothing"
    assert again.create_attempt is None
    assert again.events == []
    return plan


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def secondary_history(status: dict[str, Any]) -> list[str]:
    return [t["status"] for t in status["secondaryStatusTransitions"]]


# --- the happy path ---------------------------------------------------------------------


def test_a_new_job_gets_its_first_attempt() -> None:
    plan = step(observe())
    assert plan.create_attempt == 0
    status = plan.status
    assert status["trainingJobStatus"] == "InProgress"
    assert status["secondaryStatus"] == "Starting"
    assert status["jobName"] == "bank" and status["retryCount"] == 0
    assert status["trainingImage"] == OperatorConfig().images.algorithms["xgboost"]
    assert status["creationTime"] == "2025-01-01T12:00:00Z"
    assert status["observedGeneration"] == 1
    assert conditions(status) == {
        "Ready": ("False", "Starting"),
        "Succeeded": ("Unknown", "Starting"),
        "Failed": ("False", "Starting"),
        "Reconciling": ("True", "Starting"),
        "Stalled": ("False", "Starting"),
    }
    assert all(c["observedGeneration"] == 1 for c in status["conditions"])


def test_a_job_the_watch_has_not_shown_yet_is_not_created_twice() -> None:
    first = plan_training(observe())
    plan = plan_training(observe(first.status, expected_jobs=frozenset({"bank"})))
    assert plan.create_attempt is None


def progress(pods: list[dict[str, Any]], status: dict[str, Any], **kw: Any) -> Plan:
    return step(observe(status, jobs=[job_body()], pods=pods, **kw))


def test_status_follows_the_pods_through_a_successful_run() -> None:
    status = plan_training(observe()).status
    seen = []
    for pods in ([], [pending_pod()], [downloading_pod()], [training_pod()], [uploading_pod()]):
        status = progress(pods, status).status
        seen.append(status["secondaryStatus"])
        assert status["trainingJobStatus"] == "InProgress"
    assert seen == ["Starting", "Starting", "Downloading", "Training", "Uploading"]
    assert status["trainingStartTime"] == "2025-01-01T12:00:05Z"  # the agent started
    plan = step(
        observe(
            status,
            jobs=[job_body(complete=True)],
            pods=[succeeded_pod()],
            now=T0 + timedelta(minutes=10),
        )
    )
    status = plan.status
    assert status["trainingJobStatus"] == "Completed"
    assert status["secondaryStatus"] == "Completed"
    assert status["modelArtifacts"] == {"s3ModelArtifacts": MODEL}
    assert secondary_history(status) == [
        "Starting",
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]
    assert all(t.get("endTime") for t in status["secondaryStatusTransitions"][:-1])
    assert status["trainingEndTime"] == "2025-01-01T12:10:00Z"
    assert status["trainingTimeInSeconds"] == 595
    assert conditions(status) == {
        "Ready": ("True", "Completed"),
        "Succeeded": ("True", "Completed"),
        "Failed": ("False", "Completed"),
        "Reconciling": ("False", "Completed"),
        "Stalled": ("False", "Completed"),
    }
    assert [e.reason for e in plan.events] == ["Completed"]
    assert "failureReason" not in status


def test_transitions_post_events() -> None:
    status = plan_training(observe()).status
    plan = progress([training_pod()], status)
    assert [(e.type, e.reason) for e in plan.events] == [("Normal", "Training")]


def test_progress_never_goes_back_within_an_attempt() -> None:
    status = plan_training(observe()).status
    status = progress([training_pod(index=0)], status).status
    # A second host still downloading does not move the job back to Downloading.
    status2 = progress([training_pod(index=0), downloading_pod(index=1)], status).status
    assert status2["secondaryStatus"] == "Training"
    status3 = progress([downloading_pod(index=1)], status2).status
    assert status3["secondaryStatus"] == "Training"


def test_final_metrics_from_the_reports() -> None:
    status = plan_training(observe()).status
    pod = succeeded_pod()
    pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["message"] = report(
        modelArtifacts=MODEL, finalMetrics={"validation:auc": 0.91, "train:auc": 0.95}
    )
    status = step(observe(status, jobs=[job_body(complete=True)], pods=[pod])).status
    assert status["finalMetricDataList"] == [
        {"metricName": "train:auc", "value": 0.95, "timestamp": "2025-01-01T12:00:00Z"},
        {"metricName": "validation:auc", "value": 0.91, "timestamp": "2025-01-01T12:00:00Z"},
    ]


def test_final_metrics_merge_the_logs_last_values_under_the_reports() -> None:
    spec = make_spec(
        algorithmSpecification={
            "algorithmName": "xgboost",
            "metricDefinitions": [{"name": "validation:auc", "regex": "auc:(\\S+)"}],
        }
    )
    status = plan_training(observe(spec=spec)).status
    logs = {0: {"validation:auc": 0.88, "train:auc": 0.9}}
    # The algorithm has ended, the agent is uploading: the log's values are in already.
    plan = step(
        observe(status, spec=spec, jobs=[job_body()], pods=[uploading_pod()], log_metrics=logs)
    )
    assert {m["metricName"]: m["value"] for m in plan.status["finalMetricDataList"]} == {
        "train:auc": 0.9,
        "validation:auc": 0.88,
    }
    pod = succeeded_pod()
    pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["message"] = report(
        modelArtifacts=MODEL, finalMetrics={"validation:auc": 0.91}
    )
    later = T0 + timedelta(seconds=30)
    done = step(
        observe(
            plan.status,
            spec=spec,
            jobs=[job_body(complete=True)],
            pods=[pod],
            log_metrics=logs,
            now=later,
        )
    ).status
    assert done["trainingJobStatus"] == "Completed"
    assert done["finalMetricDataList"] == [
        {"metricName": "train:auc", "value": 0.9, "timestamp": "2025-01-01T12:00:00Z"},
        {"metricName": "validation:auc", "value": 0.91, "timestamp": "2025-01-01T12:00:30Z"},
    ]
    # Once the controller has dropped the log's values, nothing is lost.
    again = step(observe(done, spec=spec, jobs=[job_body(complete=True)], pods=[pod], now=later))
    assert again.status == done
    # Another attempt's log values are not this attempt's.
    other = step(
        observe(
            status,
            spec=spec,
            jobs=[job_body()],
            pods=[uploading_pod()],
            log_metrics={1: {"x": 1.0}},
        )
    )
    assert "finalMetricDataList" not in other.status


def test_an_invalid_metric_regex_fails_the_job_naming_the_definition() -> None:
    spec = make_spec(
        algorithmSpecification={
            "algorithmName": "xgboost",
            "metricDefinitions": [{"name": "auc", "regex": "auc:(["}],
        }
    )
    plan = step(observe(spec=spec))
    assert plan.create_attempt is None
    assert plan.status["failureReason"].startswith(
        "ClientError: spec.algorithmSpecification.metricDefinitions.0.regex: "
        "not a valid regular expression"
    )


def test_kueue_jobs_are_pending_until_admitted() -> None:
    spec = make_spec(queueName="team-a")
    status = plan_training(observe(spec=spec)).status
    assert status["secondaryStatus"] == "Pending"
    status = step(observe(status, jobs=[job_body(suspend=True)], spec=spec)).status
    assert status["secondaryStatus"] == "Pending"
    assert "team-a" in status["secondaryStatusTransitions"][-1]["statusMessage"]
    status = step(observe(status, jobs=[job_body()], pods=[downloading_pod()], spec=spec)).status
    assert status["secondaryStatus"] == "Downloading"


def test_unschedulable_pods_are_pending_with_the_schedulers_reason() -> None:
    status = plan_training(observe()).status
    pod = pod_body(
        phase="Pending",
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
            }
        ],
    )
    status = progress([pod], status).status
    assert status["secondaryStatus"] == "Pending"
    assert (
        "Insufficient nvidia.com/gpu" in status["secondaryStatusTransitions"][-1]["statusMessage"]
    )


def test_image_pull_trouble_is_shown_while_starting() -> None:
    status = plan_training(observe()).status
    pod = pod_body(
        phase="Pending",
        agent=container("agent", "running", started=True),
        algorithm={
            "name": "algorithm",
            "state": {
                "waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image x"}
            },
        },
    )
    status = progress([pod], status).status
    assert status["trainingJobStatus"] == "InProgress"
    assert "ImagePullBackOff" in status["secondaryStatusTransitions"][-1]["statusMessage"]


def test_an_invalid_image_name_fails_the_job() -> None:
    status = plan_training(observe()).status
    pod = pod_body(
        phase="Pending",
        agent=container("agent", "running", started=True),
        algorithm=container("algorithm", "InvalidImageName"),
    )
    plan = progress([pod], status)
    assert plan.status["trainingJobStatus"] == "Failed"
    assert plan.status["failureReason"].startswith("ClientError: ")
    assert plan.delete_jobs == [("bank", "job-uid-0")]


# --- failures ---------------------------------------------------------------------------


def test_algorithm_failure_reason_from_the_failure_file_via_the_agent() -> None:
    status = progress([training_pod()], plan_training(observe()).status).status
    pod = failed_pod(
        2,
        algorithm_message="Traceback ... ValueError",
        agent_report=report(outcome="Completed", failureReason="num_round must be positive"),
    )
    plan = step(observe(status, jobs=[job_body(failed=("PodFailurePolicy", "x"))], pods=[pod]))
    status = plan.status
    assert status["trainingJobStatus"] == "Failed"
    assert status["secondaryStatus"] == "Failed"
    assert status["failureReason"] == "AlgorithmError: num_round must be positive"
    assert conditions(status)["Failed"] == ("True", "AlgorithmError")
    assert conditions(status)["Stalled"] == ("True", "AlgorithmError")
    assert conditions(status)["Succeeded"] == ("False", "AlgorithmError")
    assert plan.create_attempt is None  # an algorithm error is never retried
    assert [e.type for e in plan.events] == ["Warning"]


def test_algorithm_failure_reason_from_the_termination_message_then_exit_code() -> None:
    status = plan_training(observe()).status
    job = job_body(failed=("PodFailurePolicy", "x"))
    with_message = failed_pod(3, algorithm_message="out of cheese")
    assert step(observe(status, jobs=[job], pods=[with_message])).status["failureReason"] == (
        "AlgorithmError: out of cheese"
    )
    bare = failed_pod(3)
    assert step(observe(status, jobs=[job], pods=[bare])).status["failureReason"] == (
        "AlgorithmError: the algorithm exited with code 3"
    )


@pytest.mark.parametrize(
    ("written", "kind"),
    [
        ("ClientError: Hyperparameter eta: 7 is out of range [0, 1]", "ClientError"),
        ("AlgorithmError: ExecuteUserScriptError:\nCommand train.py exited 1", "AlgorithmError"),
        ("\nInternalServerError: the parameter server went away", "InternalServerError"),
    ],
)
def test_a_failure_reason_with_sagemakers_prefix_is_kept_and_classified(
    written: str, kind: str
) -> None:
    status = plan_training(observe()).status
    pod = failed_pod(2, agent_report=report(failureReason=written))
    plan = step(observe(status, jobs=[job_body(failed=("PodFailurePolicy", "x"))], pods=[pod]))
    assert plan.status["failureReason"] == written.strip()
    assert conditions(plan.status)["Failed"] == ("True", kind)
    assert conditions(plan.status)["Ready"] == ("False", kind)
    assert plan.create_attempt is None
    # Read back (a restarted operator), the status still says the same.
    assert conditions(step(observe(plan.status)).status)["Stalled"] == ("True", kind)


def test_an_unprefixed_reason_that_mentions_a_kind_is_still_prefixed() -> None:
    status = plan_training(observe()).status
    pod = failed_pod(2, agent_report=report(failureReason="raised ClientError: no such key"))
    plan = step(observe(status, jobs=[job_body(failed=("PodFailurePolicy", "x"))], pods=[pod]))
    assert plan.status["failureReason"] == "AlgorithmError: raised ClientError: no such key"


def test_algorithm_failure_known_only_from_the_job_condition() -> None:
    status = plan_training(observe()).status
    job = job_body(
        failed=(
            "PodFailurePolicy",
            "Container algorithm for pod ml/bank-0-x failed with exit code 4 "
            "matching FailJob rule at index 1",
        )
    )
    plan = step(observe(status, jobs=[job], pods=[]))
    assert plan.status["failureReason"] == "AlgorithmError: the algorithm exited with code 4"


def test_an_algorithm_error_is_not_retried_even_with_a_retry_strategy() -> None:
    spec = make_spec(retryStrategy={"maximumRetryAttempts": 3})
    status = plan_training(observe(spec=spec)).status
    plan = step(
        observe(
            status,
            jobs=[job_body(failed=("PodFailurePolicy", "x"))],
            pods=[failed_pod(1)],
            spec=spec,
        )
    )
    assert plan.status["trainingJobStatus"] == "Failed"
    assert plan.create_attempt is None


def test_a_platform_failure_is_retried_as_a_new_attempt() -> None:
    spec = make_spec(retryStrategy={"maximumRetryAttempts": 2})
    status = progress([training_pod()], plan_training(observe(spec=spec)).status, spec=spec).status
    plan = step(
        observe(
            status,
            jobs=[job_body(failed=("PodFailurePolicy", "x"))],
            pods=[evicted_pod()],
            spec=spec,
            now=T0 + timedelta(minutes=5),
        )
    )
    status = plan.status
    assert plan.create_attempt == 1
    assert status["trainingJobStatus"] == "InProgress"
    assert status["secondaryStatus"] == "Restarting"
    assert status["retryCount"] == 1 and status["jobName"] == "bank-r1"
    assert secondary_history(status)[-2:] == ["Interrupted", "Restarting"]
    assert (
        "evict" in status["secondaryStatusTransitions"][-2]["statusMessage"].lower()
        or "TerminationByKubelet" in status["secondaryStatusTransitions"][-2]["statusMessage"]
    )
    assert [e.reason for e in plan.events] == ["Restarting"]
    # The new attempt's Job is created with what is left of the runtime budget.
    assert plan.runtime_used == pytest.approx(295)
    # The old attempt's Job and pods no longer decide anything.
    status = step(
        observe(
            status,
            jobs=[job_body(failed=("PodFailurePolicy", "x")), job_body(attempt=1)],
            pods=[evicted_pod(), training_pod(attempt=1)],
            spec=spec,
        )
    ).status
    assert status["secondaryStatus"] == "Training"
    plan = step(
        observe(
            status,
            jobs=[job_body(attempt=1, complete=True)],
            pods=[succeeded_pod(attempt=1)],
            spec=spec,
        )
    )
    assert plan.status["trainingJobStatus"] == "Completed"


def test_retries_run_out() -> None:
    spec = make_spec(retryStrategy={"maximumRetryAttempts": 1})
    status = {**plan_training(observe(spec=spec)).status, "retryCount": 1, "jobName": "bank-r1"}
    plan = step(
        observe(
            status,
            jobs=[job_body(attempt=1, failed=("PodFailurePolicy", "x"))],
            pods=[evicted_pod(attempt=1)],
            spec=spec,
        )
    )
    assert plan.create_attempt is None
    assert plan.status["trainingJobStatus"] == "Failed"
    assert plan.status["failureReason"].startswith("PlatformError: pod bank-r1-0")
    assert "after 1 of 1 retries" in plan.status["failureReason"]


def test_without_a_retry_strategy_a_platform_failure_fails_the_job() -> None:
    status = plan_training(observe()).status
    plan = step(
        observe(status, jobs=[job_body(failed=("PodFailurePolicy", "x"))], pods=[evicted_pod()])
    )
    assert plan.status["trainingJobStatus"] == "Failed"
    assert conditions(plan.status)["Failed"] == ("True", "PlatformError")


def test_an_agent_user_error_fails_the_job() -> None:
    status = plan_training(observe()).status
    agent = container("agent", "running")
    agent["lastState"] = {
        "terminated": {
            "exitCode": 1,
            "message": report(
                outcome="Failed",
                agentError="channel train: s3://data/train has no objects",
                agentErrorKind="user",
            ),
        }
    }
    pod = pod_body(phase="Pending", agent=agent, algorithm=container("algorithm", "PodInit"))
    plan = progress([pod], status)
    assert plan.status["trainingJobStatus"] == "Failed"
    assert plan.status["failureReason"] == (
        "ClientError: channel train: s3://data/train has no objects"
    )
    assert plan.delete_jobs == [("bank", "job-uid-0")]


def test_an_upload_failure_after_a_successful_run_fails_the_job() -> None:
    status = plan_training(observe()).status
    pod = succeeded_pod(model=None)
    pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["message"] = report(
        outcome="Failed",
        agentError="upload to s3://models failed: AccessDenied",
        agentErrorKind="platform",
    )
    plan = step(observe(status, jobs=[job_body(complete=True)], pods=[pod]))
    assert plan.status["trainingJobStatus"] == "Failed"
    assert "AccessDenied" in plan.status["failureReason"]


# --- stopping ---------------------------------------------------------------------------


def test_stop_deletes_the_job_and_ends_stopped() -> None:
    status = progress([training_pod()], plan_training(observe()).status).status
    spec = make_spec(stop=True)
    plan = step(observe(status, jobs=[job_body()], pods=[training_pod()], spec=spec))
    assert plan.status["trainingJobStatus"] == "Stopping"
    assert plan.status["secondaryStatus"] == "Stopping"
    assert plan.delete_jobs == [("bank", "job-uid-0")]
    # The Job is going; its pod is being terminated (the agent uploads what there is).
    status = plan.status
    plan = step(observe(status, jobs=[job_body(deleting=True)], pods=[uploading_pod()], spec=spec))
    assert plan.status["trainingJobStatus"] == "Stopping" and plan.delete_jobs == []
    gone_report = {"bank-0-abcde": (0, AgentReport(outcome="Completed", model_artifacts=MODEL))}
    plan = step(observe(status, jobs=[], pods=[], spec=spec, reports=gone_report))
    status = plan.status
    assert status["trainingJobStatus"] == "Stopped"
    assert status["secondaryStatus"] == "Stopped"
    assert status["modelArtifacts"] == {"s3ModelArtifacts": MODEL}
    assert secondary_history(status)[-2:] == ["Stopping", "Stopped"]
    assert conditions(status)["Succeeded"] == ("False", "Stopped")
    assert conditions(status)["Failed"] == ("False", "Stopped")


def test_stop_before_the_job_exists() -> None:
    status = plan_training(observe()).status
    plan = step(observe(status, spec=make_spec(stop=True), expected_jobs=frozenset()))
    assert plan.status["trainingJobStatus"] == "Stopped"
    assert plan.create_attempt is None


def test_a_job_that_already_finished_wins_over_a_stop() -> None:
    status = plan_training(observe()).status
    plan = step(
        observe(
            status,
            jobs=[job_body(complete=True)],
            pods=[succeeded_pod()],
            spec=make_spec(stop=True),
        )
    )
    assert plan.status["trainingJobStatus"] == "Completed"


def test_max_runtime_is_enforced_from_the_training_start() -> None:
    spec = make_spec(stoppingCondition={"maxRuntimeInSeconds": 600})
    status = progress([training_pod()], plan_training(observe(spec=spec)).status, spec=spec).status
    # Before the deadline: a requeue for when it comes.
    plan = step(
        observe(
            status,
            jobs=[job_body()],
            pods=[training_pod()],
            spec=spec,
            now=T0 + timedelta(seconds=300),
        )
    )
    assert plan.requeue_after == pytest.approx(305)
    # At the deadline: stopped, gracefully.
    plan = step(
        observe(
            status,
            jobs=[job_body()],
            pods=[training_pod()],
            spec=spec,
            now=T0 + timedelta(seconds=605),
        )
    )
    assert plan.status["trainingJobStatus"] == "Stopping"
    assert plan.status["secondaryStatus"] == "MaxRuntimeExceeded"
    assert plan.delete_jobs == [("bank", "job-uid-0")]
    plan = step(observe(plan.status, spec=spec, now=T0 + timedelta(seconds=620)))
    assert plan.status["trainingJobStatus"] == "Stopped"
    assert plan.status["secondaryStatus"] == "MaxRuntimeExceeded"
    assert conditions(plan.status)["Succeeded"] == ("False", "MaxRuntimeExceeded")


def test_the_jobs_deadline_is_a_backstop_for_max_runtime() -> None:
    status = progress([training_pod()], plan_training(observe()).status).status
    plan = step(observe(status, jobs=[job_body(failed=("DeadlineExceeded", "too long"))]))
    assert plan.status["trainingJobStatus"] == "Stopped"
    assert plan.status["secondaryStatus"] == "MaxRuntimeExceeded"


def test_max_wait_time_counts_from_creation() -> None:
    spec = make_spec(
        stoppingCondition={"maxRuntimeInSeconds": 600, "maxWaitTimeInSeconds": 900},
        queueName="team-a",
    )
    status = plan_training(observe(spec=spec)).status
    plan = step(
        observe(status, jobs=[job_body(suspend=True)], spec=spec, now=T0 + timedelta(seconds=901))
    )
    assert plan.status["secondaryStatus"] == "MaxWaitTimeExceeded"
    assert plan.status["trainingJobStatus"] == "Stopping"


# --- after the end ----------------------------------------------------------------------


def finished(spec: TrainingJobSpec) -> dict[str, Any]:
    status = plan_training(observe(spec=spec)).status
    return step(
        observe(status, jobs=[job_body(complete=True)], pods=[succeeded_pod()], spec=spec)
    ).status


def test_ttl_deletes_the_children_after_the_job_finished() -> None:
    spec = make_spec(ttlSecondsAfterFinished=60)
    # The reconcile that sees the end already schedules the deletion.
    start = plan_training(observe(spec=spec)).status
    ending = plan_training(
        observe(start, jobs=[job_body(complete=True)], pods=[succeeded_pod()], spec=spec)
    )
    assert ending.status["trainingJobStatus"] == "Completed"
    assert ending.requeue_after == pytest.approx(60) and ending.delete_jobs == []
    status = finished(spec)
    plan = step(
        observe(status, jobs=[job_body(complete=True)], spec=spec, now=T0 + timedelta(seconds=30))
    )
    assert plan.delete_jobs == [] and plan.requeue_after == pytest.approx(30)
    plan = plan_training(
        observe(status, jobs=[job_body(complete=True)], spec=spec, now=T0 + timedelta(seconds=61))
    )
    assert plan.delete_jobs == [("bank", "job-uid-0")]
    assert not plan.delete_service  # a single host has no Service
    assert plan.status == status  # the TrainingJob keeps its status
    multi = make_spec(
        ttlSecondsAfterFinished=60,
        resourceConfig={"instanceType": "ml.m5.xlarge", "instanceCount": 2},
    )
    later = T0 + timedelta(seconds=61)
    plan = plan_training(
        observe(finished(multi), jobs=[job_body(complete=True)], spec=multi, now=later)
    )
    assert plan.delete_service
    # Once the Job is gone there is nothing left to delete.
    plan = plan_training(observe(finished(multi), jobs=[], spec=multi, now=later))
    assert plan.delete_jobs == [] and not plan.delete_service


def test_a_finished_job_is_left_alone() -> None:
    spec = make_spec()
    status = finished(spec)
    plan = step(
        observe(status, jobs=[job_body(complete=True)], spec=spec, now=T0 + timedelta(days=3))
    )
    assert plan.status == status
    assert plan.delete_jobs == [] and plan.requeue_after is None and plan.create_attempt is None


def test_an_unknown_instance_type_fails_without_creating_anything() -> None:
    plan = step(observe(spec=make_spec(resourceConfig={"instanceType": "ml.zz.large"})))
    assert plan.create_attempt is None
    assert plan.status["trainingJobStatus"] == "Failed"
    assert plan.status["failureReason"].startswith(
        "ClientError: spec.resourceConfig.instanceType: unknown instance type 'ml.zz.large'"
    )
    assert conditions(plan.status)["Failed"] == ("True", "ClientError")


def test_an_invalid_spec_becomes_a_failed_status_naming_the_field() -> None:
    status = invalid_status(
        {}, "spec.resourceConfig.instanceCount: must be >= 1", generation=3, now=T0
    )
    assert status["trainingJobStatus"] == "Failed"
    assert status["failureReason"] == (
        "ValidationError: spec.resourceConfig.instanceCount: must be >= 1"
    )
    assert conditions(status)["Failed"] == ("True", "ValidationError")
    assert status["observedGeneration"] == 3
    # Terminal statuses are never rewritten.
    assert invalid_status(status, "other", generation=4, now=T0) == status
    refused = invalid_status(
        {}, "the Job was rejected: denied by policy", generation=1, now=T0, kind="ClientError"
    )
    assert refused["failureReason"] == "ClientError: the Job was rejected: denied by policy"
    assert conditions(refused)["Failed"] == ("True", "ClientError")


# --- pieces -----------------------------------------------------------------------------


def test_conditions_keep_their_transition_time_while_unchanged() -> None:
    first = merge_conditions(
        None, [Cond("Ready", "False", "Starting")], generation=1, now="2025-01-01T00:00:00Z"
    )
    same = merge_conditions(
        first, [Cond("Ready", "False", "Training", "m")], generation=2, now="2025-01-01T00:05:00Z"
    )
    assert same[0]["lastTransitionTime"] == "2025-01-01T00:00:00Z"
    assert same[0]["reason"] == "Training" and same[0]["observedGeneration"] == 2
    flipped = merge_conditions(
        same, [Cond("Ready", "True", "Completed")], generation=2, now="2025-01-01T00:09:00Z"
    )
    assert flipped[0]["lastTransitionTime"] == "2025-01-01T00:09:00Z"
    # Conditions someone else set are kept.
    other = merge_conditions(
        [{"type": "Custom", "status": "True"}], [Cond("Ready", "True", "X")], generation=1, now="t"
    )
    assert [c["type"] for c in other] == ["Ready", "Custom"]


def test_container_views_read_reports_from_the_last_state() -> None:
    status = {
        "name": "agent",
        "state": {"running": {}},
        "lastState": {"terminated": {"message": report(modelArtifacts=MODEL)}},
    }
    view = ContainerView.from_status(status)
    found = view.report()
    assert found is not None and found.model_artifacts == MODEL
    garbage = ContainerView.from_status(
        {"name": "agent", "state": {"terminated": {"exitCode": 1, "message": "not json"}}}
    )
    assert garbage.report() is None
