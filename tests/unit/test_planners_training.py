"""The TrainingJob state machine: status and actions from the observed Jobs and pods."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from training_support import (
    MODEL,
    T0,
    container,
    downloading_pod,
    evicted_pod,
    failed_pod,
    job_body,
    make_spec,
    observe,
    pending_pod,
    pod_body,
    report,
    succeeded_pod,
    training_pod,
    uploading_pod,
)

from kubemaker.api.common import Condition
from kubemaker.api.training import TrainingJobSpec
from kubemaker.builders.errors import validation_message
from kubemaker.config import OperatorConfig
from kubemaker.failures import FailureKind, failure
from kubemaker.planners.training import plan_training
from kubemaker.planners.training_status import Observation, Plan, invalid_status, status_body
from kubemaker.planners.training_views import ContainerView
from kubemaker.reconcile.conditions import Cond, merge_conditions


def step(obs: Observation) -> Plan:
    """Plan, and check the plan is stable: replanning on its own status changes nothing."""
    plan = plan_training(obs)
    again = plan_training(
        replace(
            obs,
            status=plan.body,
            expected_jobs=frozenset(
                {plan.body["jobName"]} if plan.create_attempt is not None else obs.expected_jobs
            ),
        )
    )
    assert again.body == plan.body, "replanning on the written status must change nothing"
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
    status = plan.body
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
    plan = plan_training(observe(first.body, expected_jobs=frozenset({"bank"})))
    assert plan.create_attempt is None


def progress(pods: list[dict[str, Any]], status: dict[str, Any], **kw: Any) -> Plan:
    return step(observe(status, jobs=[job_body()], pods=pods, **kw))


def test_status_follows_the_pods_through_a_successful_run() -> None:
    status = plan_training(observe()).body
    seen = []
    for pods in ([], [pending_pod()], [downloading_pod()], [training_pod()], [uploading_pod()]):
        status = progress(pods, status).body
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
    status = plan.body
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
    status = plan_training(observe()).body
    plan = progress([training_pod()], status)
    assert [(e.type, e.reason) for e in plan.events] == [("Normal", "Training")]


def test_progress_never_goes_back_within_an_attempt() -> None:
    status = plan_training(observe()).body
    status = progress([training_pod(index=0)], status).body
    # A second host still downloading does not move the job back to Downloading.
    status2 = progress([training_pod(index=0), downloading_pod(index=1)], status).body
    assert status2["secondaryStatus"] == "Training"
    status3 = progress([downloading_pod(index=1)], status2).body
    assert status3["secondaryStatus"] == "Training"


def test_final_metrics_from_the_reports() -> None:
    status = plan_training(observe()).body
    pod = succeeded_pod()
    pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["message"] = report(
        modelArtifacts=MODEL, finalMetrics={"validation:auc": 0.91, "train:auc": 0.95}
    )
    status = step(observe(status, jobs=[job_body(complete=True)], pods=[pod])).body
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
    status = plan_training(observe(spec=spec)).body
    logs = {0: {"validation:auc": 0.88, "train:auc": 0.9}}
    # The algorithm has ended, the agent is uploading: the log's values are in already.
    plan = step(
        observe(status, spec=spec, jobs=[job_body()], pods=[uploading_pod()], log_metrics=logs)
    )
    assert {m["metricName"]: m["value"] for m in plan.body["finalMetricDataList"]} == {
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
            plan.body,
            spec=spec,
            jobs=[job_body(complete=True)],
            pods=[pod],
            log_metrics=logs,
            now=later,
        )
    ).body
    assert done["trainingJobStatus"] == "Completed"
    assert done["finalMetricDataList"] == [
        {"metricName": "train:auc", "value": 0.9, "timestamp": "2025-01-01T12:00:00Z"},
        {"metricName": "validation:auc", "value": 0.91, "timestamp": "2025-01-01T12:00:30Z"},
    ]
    # Once the controller has dropped the log's values, nothing is lost.
    again = step(observe(done, spec=spec, jobs=[job_body(complete=True)], pods=[pod], now=later))
    assert again.body == done
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
    assert "finalMetricDataList" not in other.body


def test_the_annotated_metrics_series_goes_into_the_status_and_only_grows() -> None:
    spec = make_spec(
        algorithmSpecification={
            "algorithmName": "xgboost",
            "metricDefinitions": [{"name": "validation:auc", "regex": "auc:(\\S+)"}],
        }
    )
    status = plan_training(observe(spec=spec)).body
    points = [(1, 0.7), (2, 0.75)]
    series = {0: {"validation:auc": points, "train:auc": [(1, 0.9)]}}
    running = step(
        observe(
            status,
            spec=spec,
            jobs=[job_body()],
            pods=[uploading_pod()],
            log_series=series,
            series_metrics=("validation:auc",),
        )
    ).body
    assert running["metricSeries"] == [
        {"metricName": "validation:auc", "attempt": 0, "steps": [1, 2], "values": [0.7, 0.75]}
    ]
    # A restarted operator that has read less of the log keeps what the status has.
    shorter = step(
        observe(
            running,
            spec=spec,
            jobs=[job_body()],
            pods=[uploading_pod()],
            log_series={0: {"validation:auc": points[:1]}},
            series_metrics=("validation:auc",),
        )
    ).body
    assert shorter["metricSeries"] == running["metricSeries"]
    # Without the annotation no series is recorded.
    plain = step(
        observe(status, spec=spec, jobs=[job_body()], pods=[uploading_pod()], log_series=series)
    ).body
    assert "metricSeries" not in plain


def test_an_invalid_metric_regex_fails_the_job_naming_the_definition() -> None:
    # The spec model refuses the regex, so the job fails as the controller fails any spec
    # that does not parse: before a Job or pod exists, naming the field.
    with pytest.raises(ValidationError) as refused:
        make_spec(
            algorithmSpecification={
                "algorithmName": "xgboost",
                "metricDefinitions": [{"name": "auc", "regex": "auc:(["}],
            }
        )
    found = failure(FailureKind.VALIDATION, validation_message(refused.value))
    status = status_body(invalid_status({}, found, generation=1, now=T0))
    assert status["trainingJobStatus"] == "Failed"
    assert status["failureReason"].startswith(
        "ValidationError: spec.algorithmSpecification.metricDefinitions.0.regex: "
    )
    assert "not a valid" in status["failureReason"]


def test_kueue_jobs_are_pending_until_admitted() -> None:
    spec = make_spec(queueName="team-a")
    status = plan_training(observe(spec=spec)).body
    assert status["secondaryStatus"] == "Pending"
    status = step(observe(status, jobs=[job_body(suspend=True)], spec=spec)).body
    assert status["secondaryStatus"] == "Pending"
    assert "team-a" in status["secondaryStatusTransitions"][-1]["statusMessage"]
    status = step(observe(status, jobs=[job_body()], pods=[downloading_pod()], spec=spec)).body
    assert status["secondaryStatus"] == "Downloading"


def test_unschedulable_pods_are_pending_with_the_schedulers_reason() -> None:
    status = plan_training(observe()).body
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
    status = progress([pod], status).body
    assert status["secondaryStatus"] == "Pending"
    assert (
        "Insufficient nvidia.com/gpu" in status["secondaryStatusTransitions"][-1]["statusMessage"]
    )


def test_image_pull_trouble_is_shown_while_starting() -> None:
    status = plan_training(observe()).body
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
    status = progress([pod], status).body
    assert status["trainingJobStatus"] == "InProgress"
    assert "ImagePullBackOff" in status["secondaryStatusTransitions"][-1]["statusMessage"]


def test_an_invalid_image_name_fails_the_job() -> None:
    status = plan_training(observe()).body
    pod = pod_body(
        phase="Pending",
        agent=container("agent", "running", started=True),
        algorithm=container("algorithm", "InvalidImageName"),
    )
    plan = progress([pod], status)
    assert plan.body["trainingJobStatus"] == "Failed"
    assert plan.body["failureReason"].startswith("ClientError: ")
    # The pod is stopped in place, not deleted: its events and logs stay.
    assert plan.expire_pods == [("bank-0-abcde", 1)] and plan.delete_jobs == []


# --- failures ---------------------------------------------------------------------------


def test_algorithm_failure_reason_from_the_failure_file_via_the_agent() -> None:
    status = progress([training_pod()], plan_training(observe()).body).body
    pod = failed_pod(
        2,
        algorithm_message="Traceback ... ValueError",
        agent_report=report(outcome="Completed", failureReason="num_round must be positive"),
    )
    plan = step(observe(status, jobs=[job_body(failed=("PodFailurePolicy", "x"))], pods=[pod]))
    status = plan.body
    assert status["trainingJobStatus"] == "Failed"
    assert status["secondaryStatus"] == "Failed"
    assert status["failureReason"] == "AlgorithmError: num_round must be positive"
    assert conditions(status)["Failed"] == ("True", "AlgorithmError")
    assert conditions(status)["Stalled"] == ("True", "AlgorithmError")
    assert conditions(status)["Succeeded"] == ("False", "AlgorithmError")
    assert plan.create_attempt is None  # an algorithm error is never retried
    assert [e.type for e in plan.events] == ["Warning"]


def test_algorithm_failure_reason_from_the_termination_message_then_exit_code() -> None:
    status = plan_training(observe()).body
    job = job_body(failed=("PodFailurePolicy", "x"))
    with_message = failed_pod(3, algorithm_message="out of cheese")
    assert step(observe(status, jobs=[job], pods=[with_message])).body["failureReason"] == (
        "AlgorithmError: out of cheese"
    )
    bare = failed_pod(3)
    assert step(observe(status, jobs=[job], pods=[bare])).body["failureReason"] == (
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
    status = plan_training(observe()).body
    pod = failed_pod(2, agent_report=report(failureReason=written))
    plan = step(observe(status, jobs=[job_body(failed=("PodFailurePolicy", "x"))], pods=[pod]))
    assert plan.body["failureReason"] == written.strip()
    assert conditions(plan.body)["Failed"] == ("True", kind)
    assert conditions(plan.body)["Ready"] == ("False", kind)
    assert plan.create_attempt is None
    # Read back (a restarted operator), the status still says the same.
    assert conditions(step(observe(plan.body)).body)["Stalled"] == ("True", kind)


def test_an_unprefixed_reason_that_mentions_a_kind_is_still_prefixed() -> None:
    status = plan_training(observe()).body
    pod = failed_pod(2, agent_report=report(failureReason="raised ClientError: no such key"))
    plan = step(observe(status, jobs=[job_body(failed=("PodFailurePolicy", "x"))], pods=[pod]))
    assert plan.body["failureReason"] == "AlgorithmError: raised ClientError: no such key"


def test_algorithm_failure_known_only_from_the_job_condition() -> None:
    status = plan_training(observe()).body
    job = job_body(
        failed=(
            "PodFailurePolicy",
            "Container algorithm for pod ml/bank-0-x failed with exit code 4 "
            "matching FailJob rule at index 1",
        )
    )
    plan = step(observe(status, jobs=[job], pods=[]))
    assert plan.body["failureReason"] == "AlgorithmError: the algorithm exited with code 4"


def test_an_algorithm_error_is_not_retried_even_with_a_retry_strategy() -> None:
    spec = make_spec(retryStrategy={"maximumRetryAttempts": 3})
    status = plan_training(observe(spec=spec)).body
    plan = step(
        observe(
            status,
            jobs=[job_body(failed=("PodFailurePolicy", "x"))],
            pods=[failed_pod(1)],
            spec=spec,
        )
    )
    assert plan.body["trainingJobStatus"] == "Failed"
    assert plan.create_attempt is None


def test_a_platform_failure_is_retried_as_a_new_attempt() -> None:
    spec = make_spec(retryStrategy={"maximumRetryAttempts": 2})
    status = progress([training_pod()], plan_training(observe(spec=spec)).body, spec=spec).body
    plan = step(
        observe(
            status,
            jobs=[job_body(failed=("PodFailurePolicy", "x"))],
            pods=[evicted_pod()],
            spec=spec,
            now=T0 + timedelta(minutes=5),
        )
    )
    status = plan.body
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
    ).body
    assert status["secondaryStatus"] == "Training"
    plan = step(
        observe(
            status,
            jobs=[job_body(attempt=1, complete=True)],
            pods=[succeeded_pod(attempt=1)],
            spec=spec,
        )
    )
    assert plan.body["trainingJobStatus"] == "Completed"


def test_retries_run_out() -> None:
    spec = make_spec(retryStrategy={"maximumRetryAttempts": 1})
    status = {**plan_training(observe(spec=spec)).body, "retryCount": 1, "jobName": "bank-r1"}
    plan = step(
        observe(
            status,
            jobs=[job_body(attempt=1, failed=("PodFailurePolicy", "x"))],
            pods=[evicted_pod(attempt=1)],
            spec=spec,
        )
    )
    assert plan.create_attempt is None
    assert plan.body["trainingJobStatus"] == "Failed"
    assert plan.body["failureReason"].startswith("PlatformError: pod bank-r1-0")
    assert "after 1 of 1 retries" in plan.body["failureReason"]


def test_without_a_retry_strategy_a_platform_failure_fails_the_job() -> None:
    status = plan_training(observe()).body
    plan = step(
        observe(status, jobs=[job_body(failed=("PodFailurePolicy", "x"))], pods=[evicted_pod()])
    )
    assert plan.body["trainingJobStatus"] == "Failed"
    assert conditions(plan.body)["Failed"] == ("True", "PlatformError")


def test_an_agent_user_error_fails_the_job() -> None:
    status = plan_training(observe()).body
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
    assert plan.body["trainingJobStatus"] == "Failed"
    assert plan.body["failureReason"] == (
        "ClientError: channel train: s3://data/train has no objects"
    )
    # The agent's log says what it found: the pod is stopped in place, not deleted.
    assert plan.expire_pods == [("bank-0-abcde", 1)] and plan.delete_jobs == []


def test_an_upload_failure_after_a_successful_run_fails_the_job() -> None:
    status = plan_training(observe()).body
    pod = succeeded_pod(model=None)
    pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["message"] = report(
        outcome="Failed",
        agentError="upload to s3://models failed: AccessDenied",
        agentErrorKind="platform",
    )
    plan = step(observe(status, jobs=[job_body(complete=True)], pods=[pod]))
    assert plan.body["trainingJobStatus"] == "Failed"
    assert "AccessDenied" in plan.body["failureReason"]


# --- stopping ---------------------------------------------------------------------------


def test_stop_stops_the_pods_in_place_and_keeps_the_job_for_its_logs() -> None:
    status = progress([training_pod()], plan_training(observe()).body).body
    spec = make_spec(stop=True)
    now = T0 + timedelta(seconds=61)
    plan = step(observe(status, jobs=[job_body()], pods=[training_pod()], spec=spec, now=now))
    assert plan.body["trainingJobStatus"] == "Stopping"
    assert plan.body["secondaryStatus"] == "Stopping"
    # The pod started at T0 + 1 s: its deadline falls a second from now.
    assert plan.expire_pods == [("bank-0-abcde", 61)]
    assert plan.delete_jobs == []
    # The pod is stopping (the agent uploads what there is): nothing more to do.
    status = plan.body
    stopping = uploading_pod(deadline=61)
    plan = step(observe(status, jobs=[job_body()], pods=[stopping], spec=spec, now=now))
    assert plan.body["trainingJobStatus"] == "Stopping"
    assert plan.expire_pods == [] and plan.delete_jobs == []
    # The kubelet ended it: Failed, DeadlineExceeded; the Job failed with it. Both stay.
    ended = failed_pod(
        143,
        reason="DeadlineExceeded",
        deadline=61,
        agent_report=report(modelArtifacts=MODEL),
    )
    failed_job = job_body(failed=("PodFailurePolicy", "Container algorithm exited with 143"))
    plan = step(observe(status, jobs=[failed_job], pods=[ended], spec=spec, now=now))
    status = plan.body
    assert status["trainingJobStatus"] == "Stopped"
    assert status["secondaryStatus"] == "Stopped"
    assert status["modelArtifacts"] == {"s3ModelArtifacts": MODEL}
    assert plan.delete_jobs == []
    assert secondary_history(status)[-2:] == ["Stopping", "Stopped"]
    assert conditions(status)["Succeeded"] == ("False", "Stopped")
    assert conditions(status)["Failed"] == ("False", "Stopped")


def test_a_stopped_job_s_pods_go_with_the_ttl() -> None:
    spec = make_spec(stop=True, ttlSecondsAfterFinished=600)
    status = progress([training_pod()], plan_training(observe()).body).body
    status = step(observe(status, jobs=[job_body()], pods=[training_pod()], spec=spec)).body
    ended = failed_pod(143, reason="DeadlineExceeded", deadline=1)
    failed_job = job_body(failed=("PodFailurePolicy", "exited with 143"))
    status = step(observe(status, jobs=[failed_job], pods=[ended], spec=spec)).body
    assert status["trainingJobStatus"] == "Stopped"
    later = T0 + timedelta(seconds=700)
    plan = step(observe(status, jobs=[failed_job], pods=[ended], spec=spec, now=later))
    assert plan.delete_jobs == [("bank", "job-uid-0")]


def test_a_queued_job_is_deleted_on_stop_as_nothing_ran() -> None:
    queued = make_spec(queueName="team-a")
    status = plan_training(observe(spec=queued)).body
    spec = make_spec(stop=True, queueName="team-a")
    plan = step(observe(status, jobs=[job_body(suspend=True)], spec=spec))
    assert plan.delete_jobs == [("bank", "job-uid-0")] and plan.expire_pods == []


def test_stop_before_the_job_exists() -> None:
    status = plan_training(observe()).body
    plan = step(observe(status, spec=make_spec(stop=True), expected_jobs=frozenset()))
    assert plan.body["trainingJobStatus"] == "Stopped"
    assert plan.create_attempt is None


def test_a_job_that_already_finished_wins_over_a_stop() -> None:
    status = plan_training(observe()).body
    plan = step(
        observe(
            status,
            jobs=[job_body(complete=True)],
            pods=[succeeded_pod()],
            spec=make_spec(stop=True),
        )
    )
    assert plan.body["trainingJobStatus"] == "Completed"


def test_max_runtime_is_enforced_from_the_training_start() -> None:
    spec = make_spec(stoppingCondition={"maxRuntimeInSeconds": 600})
    status = progress([training_pod()], plan_training(observe(spec=spec)).body, spec=spec).body
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
    assert plan.body["trainingJobStatus"] == "Stopping"
    assert plan.body["secondaryStatus"] == "MaxRuntimeExceeded"
    assert plan.expire_pods == [("bank-0-abcde", 605)] and plan.delete_jobs == []
    plan = step(observe(plan.body, spec=spec, now=T0 + timedelta(seconds=620)))
    assert plan.body["trainingJobStatus"] == "Stopped"
    assert plan.body["secondaryStatus"] == "MaxRuntimeExceeded"
    assert conditions(plan.body)["Succeeded"] == ("False", "MaxRuntimeExceeded")


def test_the_jobs_deadline_is_a_backstop_for_max_runtime() -> None:
    status = progress([training_pod()], plan_training(observe()).body).body
    plan = step(observe(status, jobs=[job_body(failed=("DeadlineExceeded", "too long"))]))
    assert plan.body["trainingJobStatus"] == "Stopped"
    assert plan.body["secondaryStatus"] == "MaxRuntimeExceeded"


def test_max_wait_time_counts_from_creation() -> None:
    spec = make_spec(
        stoppingCondition={"maxRuntimeInSeconds": 600, "maxWaitTimeInSeconds": 900},
        queueName="team-a",
    )
    status = plan_training(observe(spec=spec)).body
    plan = step(
        observe(status, jobs=[job_body(suspend=True)], spec=spec, now=T0 + timedelta(seconds=901))
    )
    assert plan.body["secondaryStatus"] == "MaxWaitTimeExceeded"
    assert plan.body["trainingJobStatus"] == "Stopping"


# --- after the end ----------------------------------------------------------------------


def finished(spec: TrainingJobSpec) -> dict[str, Any]:
    status = plan_training(observe(spec=spec)).body
    return step(
        observe(status, jobs=[job_body(complete=True)], pods=[succeeded_pod()], spec=spec)
    ).body


def test_ttl_deletes_the_children_after_the_job_finished() -> None:
    spec = make_spec(ttlSecondsAfterFinished=60)
    # The reconcile that sees the end already schedules the deletion.
    start = plan_training(observe(spec=spec)).body
    ending = plan_training(
        observe(start, jobs=[job_body(complete=True)], pods=[succeeded_pod()], spec=spec)
    )
    assert ending.body["trainingJobStatus"] == "Completed"
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
    assert plan.body == status  # the TrainingJob keeps its status
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
    assert plan.body == status
    assert plan.delete_jobs == [] and plan.requeue_after is None and plan.create_attempt is None


def test_an_unknown_instance_type_fails_without_creating_anything() -> None:
    plan = step(observe(spec=make_spec(resourceConfig={"instanceType": "ml.zz.large"})))
    assert plan.create_attempt is None
    assert plan.body["trainingJobStatus"] == "Failed"
    assert plan.body["failureReason"].startswith(
        "ClientError: spec.resourceConfig.instanceType: unknown instance type 'ml.zz.large'"
    )
    assert conditions(plan.body)["Failed"] == ("True", "ClientError")


def test_an_invalid_spec_becomes_a_failed_status_naming_the_field() -> None:
    def invalid(body: dict[str, Any], message: str, kind: FailureKind, **kw: Any) -> Any:
        return status_body(invalid_status(body, failure(kind, message), **kw))

    status = invalid(
        {},
        "spec.resourceConfig.instanceCount: must be >= 1",
        FailureKind.VALIDATION,
        generation=3,
        now=T0,
    )
    assert status["trainingJobStatus"] == "Failed"
    assert status["failureReason"] == (
        "ValidationError: spec.resourceConfig.instanceCount: must be >= 1"
    )
    assert conditions(status)["Failed"] == ("True", "ValidationError")
    assert status["observedGeneration"] == 3
    # Terminal statuses are never rewritten.
    assert invalid(status, "other", FailureKind.VALIDATION, generation=4, now=T0) == status
    refused = invalid(
        {}, "the Job was rejected: denied by policy", FailureKind.CLIENT, generation=1, now=T0
    )
    assert refused["failureReason"] == "ClientError: the Job was rejected: denied by policy"
    assert conditions(refused)["Failed"] == ("True", "ClientError")


# --- pieces -----------------------------------------------------------------------------


def test_conditions_keep_their_transition_time_while_unchanged() -> None:
    def at(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    first = merge_conditions(
        None, [Cond("Ready", "False", "Starting")], generation=1, now=at("2025-01-01T00:00:00Z")
    )
    same = merge_conditions(
        first,
        [Cond("Ready", "False", "Training", "m")],
        generation=2,
        now=at("2025-01-01T00:05:00Z"),
    )
    assert same[0].last_transition_time == at("2025-01-01T00:00:00Z")
    assert same[0].reason == "Training" and same[0].observed_generation == 2
    flipped = merge_conditions(
        same, [Cond("Ready", "True", "Completed")], generation=2, now=at("2025-01-01T00:09:00Z")
    )
    assert flipped[0].last_transition_time == at("2025-01-01T00:09:00Z")
    # Conditions someone else set are kept.
    other = merge_conditions(
        [Condition(type="Custom", status="True")],
        [Cond("Ready", "True", "X")],
        generation=1,
        now=T0,
    )
    assert [c.type for c in other] == ["Ready", "Custom"]


def test_container_views_read_reports_from_the_last_state() -> None:
    status = {
        "name": "agent",
        "state": {"running": {}},
        "lastState": {"terminated": {"message": report(modelArtifacts=MODEL)}},
    }
    view = ContainerView.from_status(status)
    found, error = view.report()
    assert found is not None and found.model_artifacts == MODEL and error is None
    garbage = ContainerView.from_status(
        {"name": "agent", "state": {"terminated": {"exitCode": 1, "message": "not json"}}}
    )
    assert garbage.report()[0] is None
    # Never silence: why it could not be read is kept for the status and an event.
    assert garbage.report()[1]


# --- what a replaced operator, a skewed agent or a changed catalog must not lose ------------


def test_a_report_the_operator_cannot_read_is_said_not_dropped() -> None:
    status = progress([uploading_pod()], plan_training(observe()).body).body
    # An agent of another version wrote something this operator's model refuses.
    unreadable = succeeded_pod(model=None)
    unreadable["status"]["initContainerStatuses"][0]["state"]["terminated"]["message"] = (
        '{"version": 1, "outcome": 7}'
    )
    plan = step(observe(status, jobs=[job_body(complete=True)], pods=[unreadable]))
    assert plan.body["trainingJobStatus"] == "Completed"
    message = plan.body["secondaryStatusTransitions"][-1]["statusMessage"]
    assert "cannot read" in message and "bank-0-abcde" in message
    assert [e.reason for e in plan.events] == ["AgentReportUnreadable", "Completed"]


def test_a_replacement_operator_keeps_the_whole_history() -> None:
    # The operator was down from Downloading to the end: the pods' times fill the gap.
    status = progress([downloading_pod()], plan_training(observe()).body).body
    plan = step(observe(status, jobs=[job_body(complete=True)], pods=[succeeded_pod()]))
    history = plan.body["secondaryStatusTransitions"]
    assert [t["status"] for t in history] == [
        "Starting",
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]
    assert history[2]["startTime"] == "2025-01-01T12:00:05Z"  # the algorithm's startedAt
    assert history[3]["startTime"] == "2025-01-01T12:10:00Z"  # ... and its finishedAt
    assert all(t.get("endTime") for t in history[:-1])
    # History is not news: no Training or Uploading event is posted late.
    assert [e.reason for e in plan.events] == ["Completed"]


def test_the_image_is_recorded_once_for_the_job() -> None:
    status = plan_training(observe()).body
    assert status["trainingImage"] == OperatorConfig().images.algorithms["xgboost"]
    changed = OperatorConfig.model_validate(
        {"images": {"algorithms": {"xgboost": "registry.example/xgboost:2"}}}
    )
    plan = step(replace(observe(status, jobs=[job_body()], pods=[training_pod()]), config=changed))
    assert plan.body["trainingImage"] == status["trainingImage"]


def test_steps_skipped_between_reconciles_are_not_filled_in_out_of_order() -> None:
    # Downloading was too fast to be seen; Training was seen. Only Uploading is filled in.
    status = progress([training_pod()], plan_training(observe()).body).body
    plan = step(observe(status, jobs=[job_body(complete=True)], pods=[succeeded_pod()]))
    history = [t["status"] for t in plan.body["secondaryStatusTransitions"]]
    assert history == ["Starting", "Training", "Uploading", "Completed"]


# --- pods the cluster refuses to create ---------------------------------------------------

REFUSED = (
    'Error creating: pods "bank-0-x" is forbidden: violates PodSecurity "restricted:latest": '
    "runAsNonRoot != true"
)


def test_a_job_without_pods_is_looked_at_again_when_its_events_are_read() -> None:
    status = plan_training(observe()).body
    plan = step(observe(status, jobs=[job_body()], now=T0 + timedelta(seconds=2)))
    assert plan.requeue_after == pytest.approx(3.0)  # job_body was created at T0


def test_a_refusal_that_cannot_heal_fails_the_job_naming_it() -> None:
    status = plan_training(observe()).body
    plan = step(observe(status, jobs=[job_body()], pod_refusals={"bank": REFUSED}))
    assert plan.body["trainingJobStatus"] == "Failed"
    assert plan.body["failureReason"] == (
        f"ClientError: the cluster refuses to create the pods of Job bank: {REFUSED}"
    )
    assert conditions(plan.body)["Failed"] == ("True", "ClientError")
    assert plan.delete_jobs == [("bank", "job-uid-0")]


def test_a_refusal_that_may_heal_is_shown_while_the_job_waits() -> None:
    quota = 'Error creating: pods "bank-0-x" is forbidden: exceeded quota: gpus'
    status = plan_training(observe()).body
    plan = step(observe(status, jobs=[job_body()], pod_refusals={"bank": quota}))
    assert plan.body["trainingJobStatus"] == "InProgress"
    assert plan.body["secondaryStatus"] == "Starting"
    assert "exceeded quota" in plan.body["secondaryStatusTransitions"][-1]["statusMessage"]
    assert (
        "exceeded quota"
        in dict((c["type"], c["message"]) for c in plan.body["conditions"])["Reconciling"]
    )
    assert [e.reason for e in plan.events] == ["PodsRefused"]
    assert plan.requeue_after is not None and plan.requeue_after <= 30
    assert plan.delete_jobs == []


def test_a_failed_job_points_at_no_model() -> None:
    # Two hosts: the first uploaded a model, the second's algorithm failed.
    spec = make_spec(resourceConfig={"instanceType": "ml.m5.xlarge", "instanceCount": 2})
    status = plan_training(observe(spec=spec)).body
    pods = [succeeded_pod(index=0), failed_pod(1, algorithm_message="boom", index=1)]
    failed = job_body(failed=("PodFailurePolicy", "Container algorithm failed"))
    plan = step(observe(status, jobs=[failed], pods=pods, spec=spec))
    assert plan.body["trainingJobStatus"] == "Failed"
    assert plan.body["failureReason"] == "AlgorithmError: boom"
    assert "modelArtifacts" not in plan.body


def test_a_stop_before_any_pod_started_deletes_the_job() -> None:
    status = plan_training(observe()).body
    unscheduled = pod_body(phase="Pending")
    del unscheduled["status"]["startTime"]
    spec = make_spec(stop=True)
    plan = step(observe(status, jobs=[job_body()], pods=[unscheduled], spec=spec))
    assert plan.body["trainingJobStatus"] == "Stopping"
    assert plan.delete_jobs == [("bank", "job-uid-0")] and plan.expire_pods == []
