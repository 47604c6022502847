"""The BatchTransform planner over realistic Job and pod bodies: creation once the model
is known, waiting for it, failing before any pod, stop, completion, progress summed over
the instances (never going down), the failure reason (the transformers' reports first),
pod problems while it runs, and ttlSecondsAfterFinished."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubemaker.api.transform import (
    BatchTransformSpec,
    BatchTransformStatus,
    TransformObjectCounters,
)
from kubemaker.builders.endpoint import ServedModel
from kubemaker.builders.naming import COMPLETION_INDEX
from kubemaker.builders.transform import LABEL_BATCH_TRANSFORM
from kubemaker.config import OperatorConfig
from kubemaker.planners.training_views import JobView
from kubemaker.planners.transform import (
    PROGRESS_SECONDS,
    WAITING_FOR_MODEL_SECONDS,
    Event,
    Observation,
    Plan,
    Progress,
    plan_transform,
)
from kubemaker.planners.transform_views import TransformPodView
from kubemaker.reconcile.models import ModelState

CONFIG = OperatorConfig()
T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
NAME = "bank-test"
MODEL = ServedModel(
    "s3://models/bank/model.tar.gz", "registry.example/xgboost:1.7", {"SAGEMAKER_PROGRAM": "x.py"}
)
RESOLVED = ModelState(model=MODEL)
AGENT_IMAGE = "registry.example/kubemaker-agent:bad"


# --- the spec and the observation --------------------------------------------------------


def make_spec(
    instances: int = 2, instance_type: str = "ml.m5.large", **extra: Any
) -> BatchTransformSpec:
    return BatchTransformSpec.model_validate(
        {
            "model": {"modelDataUrl": MODEL.model_data_url, "image": MODEL.image},
            "transformInput": {
                "uri": "s3://data/bank/test/",
                "contentType": "text/csv",
                "splitType": "Line",
            },
            "transformOutput": {"s3OutputPath": "s3://data/bank/out/"},
            "transformResources": {"instanceType": instance_type, "instanceCount": instances},
            **extra,
        }
    )


def observe(
    spec: BatchTransformSpec,
    status: BatchTransformStatus | None = None,
    *,
    job: JobView | None = None,
    pods: Sequence[TransformPodView] = (),
    model: ModelState | None = None,
    progress: Mapping[int, Progress] | None = None,
    now: datetime = T0,
) -> Plan:
    return plan_transform(
        Observation(
            name=NAME,
            namespace="ml",
            uid="bt-uid",
            generation=1,
            spec=spec,
            status=status or BatchTransformStatus(),
            job=job,
            pods=list(pods),
            config=CONFIG,
            now=now,
            model=model,
            progress=progress or {},
        )
    )


def started(spec: BatchTransformSpec) -> BatchTransformStatus:
    """The status after the reconcile that created the Job (at T0)."""
    plan = observe(spec, model=RESOLVED)
    assert plan.create is not None
    return plan.status


def condition(status: BatchTransformStatus, kind: str) -> tuple[str, str, str]:
    for c in status.conditions or ():
        if c.type == kind:
            return c.status, c.reason, c.message
    raise AssertionError(f"no {kind} condition")


# --- Job bodies ----------------------------------------------------------------------------


def job(
    *,
    active: int = 0,
    succeeded: int = 0,
    failed: int = 0,
    suspend: bool = False,
    conditions: Sequence[tuple[str, str, str]] = (),
    deleting: bool = False,
) -> JobView:
    """The batch/v1 Job the planner created, as the watch delivers it."""
    meta: dict[str, Any] = {
        "name": NAME,
        "namespace": "ml",
        "uid": "job-uid",
        "labels": {LABEL_BATCH_TRANSFORM: NAME},
        "creationTimestamp": "2026-12-02T08:00:00Z",
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-12-02T09:00:00Z"
    return JobView.from_body(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": meta,
            "spec": {"completionMode": "Indexed", "completions": 2, "suspend": suspend},
            "status": {
                "active": active,
                "succeeded": succeeded,
                "failed": failed,
                "startTime": "2026-12-02T08:00:01Z",
                "conditions": [
                    {"type": kind, "status": "True", "reason": reason, "message": message}
                    for kind, reason, message in conditions
                ],
            },
        }
    )


def complete_job() -> JobView:
    return job(
        succeeded=2,
        conditions=[
            (
                "SuccessCriteriaMet",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            ),
            ("Complete", "CompletionsReached", "Reached expected number of succeeded pods"),
        ],
    )


def failed_job(reason: str, message: str) -> JobView:
    return job(
        failed=1, conditions=[("FailureTarget", reason, message), ("Failed", reason, message)]
    )


# --- pod bodies ----------------------------------------------------------------------------


def running() -> dict[str, Any]:
    return {"running": {"startedAt": "2026-12-02T08:01:00Z"}}


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    return {"waiting": {"reason": reason, **({"message": message} if message else {})}}


def terminated(exit_code: int, message: str | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": "Completed" if exit_code == 0 else "Error",
        "startedAt": "2026-12-02T08:01:00Z",
        "finishedAt": "2026-12-02T08:09:00Z",
    }
    if message is not None:
        state["message"] = message
    return {"terminated": state}


def report(
    outcome: str = "Completed",
    *,
    found: int = 5,
    total: int = 3,
    done: int = 3,
    records: int = 12,
    reason: str | None = None,
    kind: str | None = None,
) -> str:
    """A transformer's TransformReport, as it writes it to its termination message."""
    body: dict[str, Any] = {
        "outcome": outcome,
        "objectsFound": found,
        "objectsTotal": total,
        "objectsDone": done,
        "records": records,
    }
    if reason is not None:
        body["failureReason"] = reason
    if kind is not None:
        body["errorKind"] = kind
    return json.dumps(body, separators=(",", ":"))


def pod(
    index: int,
    *,
    suffix: str = "a1",
    phase: str = "Running",
    transformer: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
    unschedulable: str | None = None,
    deleting: bool = False,
) -> TransformPodView:
    """One instance's pod: ``model`` (init), ``model-server`` (native sidecar) and the
    ``transformer``; by default all three fine and the transformer running."""
    meta: dict[str, Any] = {
        "name": f"{NAME}-{index}-{suffix}",
        "namespace": "ml",
        "labels": {
            LABEL_BATCH_TRANSFORM: NAME,
            COMPLETION_INDEX: str(index),
            "batch.kubernetes.io/job-name": NAME,
        },
        "annotations": {COMPLETION_INDEX: str(index)},
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-12-02T08:30:00Z"
    status: dict[str, Any] = {"phase": phase, "podIP": f"10.1.0.{10 + index}"}
    if unschedulable is not None:
        status["conditions"] = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": unschedulable,
            }
        ]
        status["phase"] = "Pending"
    else:
        status["conditions"] = [{"type": "PodScheduled", "status": "True"}]
        status["initContainerStatuses"] = [
            {"name": "model", "state": model or terminated(0), "ready": False, "restartCount": 0},
            {
                "name": "model-server",
                "state": server or running(),
                "started": True,
                "ready": True,
                "restartCount": 0,
            },
        ]
        status["containerStatuses"] = [
            {"name": "transformer", "state": transformer or running(), "restartCount": 0}
        ]
    return TransformPodView.from_body({"metadata": meta, "spec": {}, "status": status})


def finished(
    index: int, message: str | None, exit_code: int = 0, suffix: str = "a1"
) -> TransformPodView:
    """A pod whose transformer has ended (its sidecar stopped by SIGTERM)."""
    return pod(
        index,
        suffix=suffix,
        phase="Succeeded" if exit_code == 0 else "Failed",
        transformer=terminated(exit_code, message),
        server=terminated(143),
    )


# --- creation and the model ----------------------------------------------------------------


def test_the_first_reconcile_creates_an_indexed_job_named_after_the_transform() -> None:
    plan = observe(make_spec(), model=RESOLVED)
    status = plan.status
    assert status.transform_job_status == "InProgress"
    assert status.transform_start_time == T0 and status.creation_time == T0
    assert status.transform_end_time is None
    created = plan.create
    assert created is not None
    assert (created["apiVersion"], created["kind"]) == ("batch/v1", "Job")
    assert created["metadata"]["name"] == NAME
    assert created["metadata"]["ownerReferences"][0]["kind"] == "BatchTransform"
    assert created["metadata"]["ownerReferences"][0]["uid"] == "bt-uid"
    assert created["spec"]["completionMode"] == "Indexed"
    assert created["spec"]["completions"] == 2
    assert (status.job_name, status.model_data_url, status.image) == (
        NAME,
        "s3://models/bank/model.tar.gz",
        "registry.example/xgboost:1.7",
    )
    # Posted only if the create makes the Job (not when it finds the one made before).
    assert plan.created_event == Event(
        "Normal",
        "Created",
        f"Job {NAME}: 2 instance(s) of ml.m5.large, model s3://models/bank/model.tar.gz",
    )
    assert plan.events == []
    assert plan.requeue_after == PROGRESS_SECONDS
    assert not plan.suspend and not plan.delete_job
    assert condition(status, "Ready") == ("False", "InProgress", "")
    assert condition(status, "Succeeded") == ("Unknown", "InProgress", "")
    assert condition(status, "Reconciling") == ("True", "InProgress", "")
    assert status.observed_generation == 1


def test_the_start_time_stays_once_the_job_runs() -> None:
    spec = make_spec()
    status = started(spec)
    later = T0 + timedelta(minutes=3)
    plan = observe(spec, status, job=job(active=2), pods=[pod(0), pod(1)], now=later)
    assert plan.create is None and plan.events == []
    assert plan.status.transform_job_status == "InProgress"
    assert plan.status.transform_start_time == T0
    assert plan.status.job_name == NAME
    assert plan.requeue_after == PROGRESS_SECONDS


def test_a_model_not_ready_yet_is_waited_for_without_a_job() -> None:
    waiting_model = ModelState(waiting="TrainingJob bank is InProgress")
    plan = observe(make_spec(), model=waiting_model)
    assert plan.create is None
    assert plan.status.transform_job_status == "InProgress"
    assert plan.status.job_name is None
    assert condition(plan.status, "Ready") == (
        "False",
        "WaitingForModel",
        "waiting for TrainingJob bank is InProgress",
    )
    assert plan.requeue_after == WAITING_FOR_MODEL_SECONDS
    assert plan.events == []


def test_a_model_that_cannot_be_resolved_fails_the_transform() -> None:
    error = "trainingJobRef: TrainingJob bank is Failed: AlgorithmError: it broke"
    plan = observe(make_spec(), model=ModelState(error=error))
    status = plan.status
    assert plan.create is None
    assert status.transform_job_status == "Failed"
    assert status.failure_reason == f"ClientError: {error}"
    assert status.transform_end_time == T0
    assert plan.events == [Event("Warning", "Failed", f"ClientError: {error}")]
    assert condition(status, "Failed") == ("True", "Failed", "")
    assert condition(status, "Stalled") == ("True", "Failed", "")
    assert condition(status, "Reconciling") == ("False", "Failed", "")
    assert condition(status, "Ready") == ("False", "Failed", f"ClientError: {error}")


def test_an_unknown_instance_type_fails_naming_the_field_before_any_pod() -> None:
    plan = observe(make_spec(instance_type="ml.nope.large"), model=RESOLVED)
    assert plan.create is None
    assert plan.status.transform_job_status == "Failed"
    reason = plan.status.failure_reason
    assert reason is not None
    assert reason.startswith(
        "ClientError: spec.transformResources.instanceType: unknown instance type 'ml.nope.large'"
    )
    assert plan.status.job_name is None
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "Failed")]


# --- stop ------------------------------------------------------------------------------------


def test_stop_before_the_job_exists_stops_at_once() -> None:
    plan = observe(make_spec(stop=True))
    assert plan.create is None
    assert plan.status.transform_job_status == "Stopped"
    assert plan.status.transform_end_time == T0
    assert plan.status.failure_reason is None
    assert plan.events == [Event("Normal", "Stopped", "Stopped")]
    assert condition(plan.status, "Succeeded") == ("False", "Stopped", "")
    assert condition(plan.status, "Reconciling") == ("False", "Stopped", "")


def test_stop_suspends_the_job_then_waits_for_its_pods_to_end() -> None:
    status = started(make_spec())
    spec = make_spec(stop=True)
    now = T0 + timedelta(minutes=5)
    plan = observe(spec, status, job=job(active=2), pods=[pod(0), pod(1)], now=now)
    assert plan.suspend is True
    assert plan.status.transform_job_status == "Stopping"
    assert plan.events == [Event("Normal", "Stopping", "spec.stop: stopping the instances")]
    assert plan.requeue_after == PROGRESS_SECONDS
    assert condition(plan.status, "Reconciling") == ("True", "Stopping", "")

    # Suspended: one transformer still finishing its request.
    stopping = [pod(0, deleting=True), finished(1, report("Stopped", done=1, records=4))]
    plan = observe(spec, plan.status, job=job(suspend=True, active=1), pods=stopping, now=now)
    assert plan.status.transform_job_status == "Stopping"
    assert plan.suspend is False
    assert plan.events == []

    # Suspended, no pod active or left running: Stopped.
    done = [finished(1, report("Stopped", done=1, records=4))]
    plan = observe(spec, plan.status, job=job(suspend=True), pods=done, now=now)
    assert plan.status.transform_job_status == "Stopped"
    assert plan.status.transform_end_time == now
    assert plan.suspend is False
    assert plan.events == [Event("Normal", "Stopped", "1 of 5 objects, 4 records")]


def test_a_suspended_job_whose_pod_still_runs_is_not_stopped_yet() -> None:
    status = started(make_spec())
    # The Job counts no active pod any more, but the pod has not ended.
    plan = observe(make_spec(stop=True), status, job=job(suspend=True), pods=[pod(0)])
    assert plan.status.transform_job_status == "Stopping"
    assert plan.status.transform_end_time is None


def test_an_ended_transform_ignores_a_later_stop() -> None:
    status = started(make_spec())
    done = observe(make_spec(), status, job=complete_job(), pods=[])
    assert done.status.transform_job_status == "Completed"
    plan = observe(make_spec(stop=True), done.status, job=complete_job())
    assert plan.status.transform_job_status == "Completed"
    assert plan.suspend is False and plan.events == [] and plan.create is None


# --- completion and progress -------------------------------------------------------------


def test_a_complete_job_is_completed_with_its_instances_reports_summed() -> None:
    spec = make_spec()
    pods = [
        finished(0, report(total=3, done=3, records=12)),
        finished(1, report(total=2, done=2, records=9)),
    ]
    now = T0 + timedelta(minutes=9)
    plan = observe(spec, started(spec), job=complete_job(), pods=pods, now=now)
    status = plan.status
    assert status.transform_job_status == "Completed"
    assert status.transform_end_time == now
    assert status.failure_reason is None
    assert status.object_counters == TransformObjectCounters(total=5, completed=5, failed=0)
    assert status.records_transformed == 21
    assert plan.events == [Event("Normal", "Completed", "5 of 5 objects, 21 records")]
    assert plan.requeue_after is None and not plan.delete_job
    assert condition(status, "Ready") == ("True", "Completed", "")
    assert condition(status, "Succeeded") == ("True", "Completed", "")
    assert condition(status, "Failed") == ("False", "Completed", "")
    assert condition(status, "Reconciling") == ("False", "Completed", "")


def test_the_total_is_every_object_found_not_the_shares_reported_so_far() -> None:
    spec = make_spec()
    live = {0: Progress(objects_found=5, objects_total=3, objects_done=1, records=2)}
    plan = observe(spec, started(spec), job=job(active=2), pods=[pod(0), pod(1)], progress=live)
    assert plan.status.object_counters == TransformObjectCounters(total=5, completed=1, failed=0)
    assert plan.status.records_transformed == 2


def test_without_objects_found_the_total_is_the_sum_of_the_shares() -> None:
    spec = make_spec()
    live = {
        0: Progress(objects_total=3, objects_done=1, records=2),
        1: Progress(objects_total=2, objects_done=0, records=0),
    }
    plan = observe(spec, started(spec), job=job(active=2), pods=[pod(0), pod(1)], progress=live)
    counters = plan.status.object_counters
    assert counters is not None and (counters.total, counters.completed) == (5, 1)


def test_progress_takes_each_instances_furthest_and_never_goes_down() -> None:
    spec = make_spec()
    status = started(spec)
    # Index 1 has ended (its report); its metrics, read before, lag behind.
    pods = [pod(0), finished(1, report(total=2, done=2, records=9))]
    live = {
        0: Progress(objects_found=5, objects_total=3, objects_done=1, records=4),
        1: Progress(objects_found=5, objects_total=2, objects_done=1, records=3),
    }
    plan = observe(spec, status, job=job(active=1, succeeded=1), pods=pods, progress=live)
    assert plan.status.transform_job_status == "InProgress"
    assert plan.status.object_counters == TransformObjectCounters(total=5, completed=3, failed=0)
    assert plan.status.records_transformed == 13  # 4 + 9

    # Index 0's pod was evicted (its transformer stopped between requests, its report
    # says so); the new pod's metrics start again from zero.
    evicted = pod(
        0,
        phase="Failed",
        transformer=terminated(0, report("Stopped", done=1, records=4)),
        server=terminated(143),
    )
    pods = [evicted, pod(0, suffix="b2"), finished(1, report(total=2, done=2, records=9))]
    live = {0: Progress(objects_found=5, objects_total=3, objects_done=0, records=0)}
    later = observe(spec, plan.status, job=job(active=1, succeeded=1), pods=pods, progress=live)
    assert later.status.object_counters == TransformObjectCounters(total=5, completed=3, failed=0)
    assert later.status.records_transformed == 13

    # The new pod moves on past where the evicted one was.
    live = {0: Progress(objects_found=5, objects_total=3, objects_done=2, records=8)}
    moved = observe(spec, later.status, job=job(active=1, succeeded=1), pods=pods, progress=live)
    assert moved.status.object_counters == TransformObjectCounters(total=5, completed=4, failed=0)
    assert moved.status.records_transformed == 17  # 8 + 9


def test_counters_stay_when_no_progress_could_be_read() -> None:
    spec = make_spec()
    status = started(spec).model_copy(
        update={
            "object_counters": TransformObjectCounters(total=5, completed=3, failed=0),
            "records_transformed": 13,
        }
    )
    plan = observe(spec, status, job=job(active=2), pods=[pod(0), pod(1)], progress={})
    assert plan.status.object_counters == TransformObjectCounters(total=5, completed=3, failed=0)
    assert plan.status.records_transformed == 13


def test_a_retried_instance_that_completes_counts_no_failed_object() -> None:
    spec = make_spec()
    pods = [
        # Index 0's first pod: a platform failure, retried by the Job (backoffLimitPerIndex);
        # the failed pod stays until the Job is deleted.
        finished(
            0,
            report(
                "Failed", done=1, records=4, reason="s3://data/a.csv: timed out", kind="platform"
            ),
            exit_code=1,
        ),
        finished(0, report(total=3, done=3, records=12), suffix="b2"),
        finished(1, report(total=2, done=2, records=9)),
    ]
    plan = observe(spec, started(spec), job=complete_job(), pods=pods)
    assert plan.status.transform_job_status == "Completed"
    counters = plan.status.object_counters
    assert counters is not None
    assert (counters.total, counters.completed) == (5, 5)
    assert plan.status.records_transformed == 21
    # The instance's first pod failed for the platform; its retry completed every object.
    assert counters.failed == 0


# --- failure ---------------------------------------------------------------------------------


USER_REASON = "s3://data/bank/test/b.csv, record 7: the model answered 400: bad input"
PLATFORM_REASON = "s3://data/bank/test/a.csv: the object store did not answer"


def test_a_refused_record_is_the_failure_reason_over_a_platform_failure() -> None:
    spec = make_spec()
    pods = [
        # Index 0 sorts first, but only failed on the platform's side.
        finished(0, report("Failed", done=1, reason=PLATFORM_REASON, kind="platform"), 1),
        finished(1, report("Failed", total=2, done=0, reason=USER_REASON, kind="user"), 3),
    ]
    message = (
        f"Container transformer for pod ml/{NAME}-1-a1 failed with exit code 3 matching "
        "FailJob rule at index 0"
    )
    now = T0 + timedelta(minutes=4)
    plan = observe(
        spec, started(spec), job=failed_job("PodFailurePolicy", message), pods=pods, now=now
    )
    status = plan.status
    assert status.transform_job_status == "Failed"
    assert status.failure_reason == f"ClientError: instance 1: {USER_REASON}"
    assert status.transform_end_time == now
    assert status.object_counters == TransformObjectCounters(total=5, completed=1, failed=2)
    assert plan.events == [Event("Warning", "Failed", f"ClientError: instance 1: {USER_REASON}")]
    assert condition(status, "Failed") == ("True", "Failed", "")
    assert condition(status, "Ready") == ("False", "Failed", status.failure_reason)


def test_a_platform_failure_of_a_single_instance_names_no_instance() -> None:
    spec = make_spec(instances=1)
    pods = [finished(0, report("Failed", reason=PLATFORM_REASON, kind="platform"), exit_code=1)]
    job_ = failed_job("FailedIndexes", "Job has failed indexes")
    plan = observe(spec, started(spec), job=job_, pods=pods)
    assert plan.status.transform_job_status == "Failed"
    assert plan.status.failure_reason == f"PlatformError: {PLATFORM_REASON}"


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (
            {
                "phase": "Failed",
                "model": terminated(1, "s3://models/bank/model.tar.gz: NoSuchKey"),
                "server": waiting("PodInitializing"),
                "transformer": waiting("PodInitializing"),
            },
            f"ClientError: pod {NAME}-0-a1: fetching the model failed: "
            "s3://models/bank/model.tar.gz: NoSuchKey",
        ),
        (
            {
                "phase": "Pending",
                "transformer": waiting(
                    "ImagePullBackOff", f'Back-off pulling image "{AGENT_IMAGE}"'
                ),
            },
            f"ClientError: pod {NAME}-0-a1: the transformer: ImagePullBackOff: "
            f'Back-off pulling image "{AGENT_IMAGE}"',
        ),
    ],
    ids=["model-fetch", "image-pull"],
)
def test_without_a_report_the_pods_problem_is_the_failure_reason(
    broken: dict[str, Any], expected: str
) -> None:
    spec = make_spec()
    job_ = failed_job("FailedIndexes", "Job has failed indexes")
    plan = observe(spec, started(spec), job=job_, pods=[pod(0, **broken), pod(1)])
    assert plan.status.transform_job_status == "Failed"
    assert plan.status.failure_reason == expected


def test_without_a_report_or_a_problem_the_jobs_condition_is_the_reason() -> None:
    spec = make_spec()
    oom = pod(
        0,
        phase="Failed",
        transformer={"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
        server=terminated(143),
    )
    job_ = failed_job("FailedIndexes", "Job has failed indexes")
    plan = observe(spec, started(spec), job=job_, pods=[oom])
    assert (
        plan.status.failure_reason
        == "PlatformError: the Job failed: FailedIndexes Job has failed indexes"
    )


# --- problems while it runs ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        (
            {"phase": "Pending", "transformer": waiting("ImagePullBackOff", "Back-off pulling")},
            "the transformer: ImagePullBackOff: Back-off pulling",
        ),
        (
            {"unschedulable": "0/3 nodes are available: 3 Insufficient cpu."},
            "unschedulable: 0/3 nodes are available: 3 Insufficient cpu.",
        ),
        (
            {
                "phase": "Pending",
                "server": waiting("CrashLoopBackOff", "back-off 40s restarting failed container"),
                "transformer": waiting("PodInitializing"),
            },
            "the model server: CrashLoopBackOff: back-off 40s restarting failed container",
        ),
    ],
    ids=["image-pull", "unschedulable", "server-crash"],
)
def test_a_pod_problem_while_running_is_shown_and_told_once(
    broken: dict[str, Any], problem: str
) -> None:
    spec = make_spec()
    status = started(spec)
    pods = [pod(0), pod(1, **broken)]
    message = f"pod {NAME}-1-a1: {problem}"
    plan = observe(spec, status, job=job(active=2), pods=pods)
    assert plan.status.transform_job_status == "InProgress"
    assert condition(plan.status, "Ready") == ("False", "InstanceProblem", message)
    assert condition(plan.status, "Succeeded") == ("Unknown", "InstanceProblem", message)
    assert plan.events == [Event("Warning", "InstanceProblem", message)]
    assert plan.requeue_after == PROGRESS_SECONDS

    # The same problem the next time: the stored condition already says it.
    again = observe(spec, plan.status, job=job(active=2), pods=pods)
    assert condition(again.status, "Ready") == ("False", "InstanceProblem", message)
    assert again.events == []

    # Gone: the condition says InProgress again, without an event.
    fine = observe(spec, again.status, job=job(active=2), pods=[pod(0), pod(1)])
    assert condition(fine.status, "Ready") == ("False", "InProgress", "")
    assert fine.events == []


def test_an_unreadable_report_is_a_problem_naming_the_pod() -> None:
    spec = make_spec()
    odd = finished(1, "not json", exit_code=0)
    plan = observe(spec, started(spec), job=job(active=1, succeeded=1), pods=[pod(0), odd])
    status, reason, message = condition(plan.status, "Ready")
    assert (status, reason) == ("False", "InstanceProblem")
    assert message.startswith(f"pod {NAME}-1-a1: ")
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "InstanceProblem")]


# --- ttlSecondsAfterFinished -------------------------------------------------------------


def completed(spec: BatchTransformSpec) -> BatchTransformStatus:
    plan = observe(spec, started(spec), job=complete_job())
    assert plan.status.transform_job_status == "Completed"
    assert plan.status.transform_end_time == T0
    return plan.status


def test_a_finished_transform_deletes_its_job_once_its_ttl_has_passed() -> None:
    spec = make_spec(ttlSecondsAfterFinished=3600)
    status = completed(spec)
    before = observe(spec, status, job=complete_job(), now=T0 + timedelta(seconds=1000))
    assert before.delete_job is False
    assert before.requeue_after == pytest.approx(2600)
    assert before.status.transform_job_status == "Completed"
    assert before.events == []

    after = observe(spec, status, job=complete_job(), now=T0 + timedelta(seconds=3600))
    assert after.delete_job is True
    assert after.status.transform_job_status == "Completed"
    assert after.status.transform_end_time == T0


def test_a_job_being_deleted_or_gone_is_not_deleted_again() -> None:
    spec = make_spec(ttlSecondsAfterFinished=60)
    status = completed(spec)
    now = T0 + timedelta(hours=1)
    deleting = observe(spec, status, job=job(succeeded=2, deleting=True), now=now)
    assert deleting.delete_job is False
    gone = observe(spec, status, job=None, now=now)
    assert gone.delete_job is False and gone.requeue_after is None and gone.create is None


def test_a_ttl_of_zero_deletes_the_job_as_the_transform_ends() -> None:
    spec = make_spec(ttlSecondsAfterFinished=0)
    plan = observe(spec, started(spec), job=complete_job())
    assert plan.status.transform_job_status == "Completed"
    assert plan.delete_job is True


def test_the_ttl_is_counted_from_the_end_when_it_ends() -> None:
    spec = make_spec(ttlSecondsAfterFinished=300)
    plan = observe(spec, started(spec), job=complete_job())
    assert plan.delete_job is False
    assert plan.requeue_after == pytest.approx(300)


def test_a_stop_under_kueue_deletes_the_job_and_ends_when_it_is_gone() -> None:
    # Kueue resumes a suspended Job it has admitted: the Job is deleted instead.
    spec = make_spec(stop=True, queueName="team-a")
    status = started(make_spec(queueName="team-a"))
    plan = observe(spec, status, job=job(active=1), pods=[pod(0)])
    assert (plan.delete_job, plan.suspend) == (True, False)
    assert plan.status.transform_job_status == "Stopping"
    plan = observe(spec, plan.status, job=job(active=1, deleting=True), pods=[pod(0)])
    assert plan.delete_job is False  # deleting already
    assert plan.status.transform_job_status == "Stopping"
    plan = observe(spec, plan.status, job=None, pods=[])
    assert plan.status.transform_job_status == "Stopped"


def test_a_pod_the_job_replaced_is_no_problem_any_more() -> None:
    spec = make_spec()
    fetch_failed = pod(0, phase="Failed", model=terminated(1, "SlowDown: reduce your request rate"))
    replacement = pod(0, suffix="b2")
    plan = observe(spec, started(spec), job=job(active=2), pods=[fetch_failed, replacement, pod(1)])
    assert condition(plan.status, "Ready") == ("False", "InProgress", "")
    assert plan.events == []


def test_a_platform_failure_counts_as_a_failed_object_once_the_job_has_failed() -> None:
    spec = make_spec()
    lost = finished(1, report("Failed", reason="storage unreachable", kind="platform"), exit_code=1)
    # Retried by the Job: not failed yet.
    plan = observe(spec, started(spec), job=job(active=2), pods=[pod(0), lost])
    assert plan.status.object_counters is not None
    assert plan.status.object_counters.failed == 0
    # The Job gave up on the instance.
    failed = failed_job("FailedIndexes", "Job has failed indexes")
    plan = observe(spec, plan.status, job=failed, pods=[pod(0), lost])
    assert plan.status.object_counters is not None
    assert plan.status.object_counters.failed == 1
    assert plan.status.failure_reason == "PlatformError: instance 1: storage unreachable"
