"""The BatchTransform planner: the Job, its pods and their progress -> a :class:`Plan`. Pure.

The Job is the truth: created once (named after the BatchTransform) when the model is
known, it runs ``instanceCount`` pods, retries an instance after a platform failure on
its own and fails at once when the model or the data refuse a record. The planner maps
it to SageMaker's statuses:

- ``InProgress`` from the first reconcile (waiting for a ``trainingJobRef`` /
  ``tuningJobRef`` to finish, then running);
- ``Completed`` when the Job is, ``Failed`` when it fails (the reason from the
  transformers' reports, which name the object and the record), or before any pod
  when the model or the spec cannot work;
- ``spec.stop``: ``Stopping`` while the Job, suspended, lets its pods stop (each
  transformer stops between requests, leaving no partial output), then ``Stopped``.
  A Job in a Kueue queue is deleted instead (Kueue resumes a suspended Job it has
  admitted); it ends ``Stopped`` once the Job and its pods are gone.

Progress (objects done of the total, records) is summed over the instances: for each
completion index the furthest of its pods' final reports and, while it runs, its
transformer's metrics (``Observation.progress``). It never goes down while the
transform runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubemaker.api.common import (
    CONDITION_FAILED,
    CONDITION_READY,
    CONDITION_RECONCILING,
    CONDITION_STALLED,
    CONDITION_SUCCEEDED,
)
from kubemaker.api.transform import (
    BatchTransformSpec,
    BatchTransformStatus,
    TransformObjectCounters,
)
from kubemaker.builders import transform as tb
from kubemaker.builders.errors import SpecError
from kubemaker.builders.owner import Owner
from kubemaker.config import OperatorConfig
from kubemaker.failures import FailureKind, failure
from kubemaker.planners.training_views import JobView
from kubemaker.planners.transform_views import TransformPodView
from kubemaker.reconcile.conditions import Cond, merge_conditions
from kubemaker.reconcile.models import ModelState
from kubemaker_runtime.protocol import TRANSFORM_USER_ERROR_EXIT

JSON = dict[str, Any]
TERMINAL = frozenset({"Completed", "Failed", "Stopped"})
# While it runs, progress is read this often (pod events wake the planner too).
PROGRESS_SECONDS = 10.0
WAITING_FOR_MODEL_SECONDS = 30.0


@dataclass(frozen=True)
class Progress:
    """One instance's progress, from its transformer's metrics or its report."""

    objects_found: int = 0
    objects_total: int = 0
    objects_done: int = 0
    records: int = 0


@dataclass(frozen=True)
class Observation:
    name: str
    namespace: str
    uid: str
    generation: int | None
    spec: BatchTransformSpec
    status: BatchTransformStatus
    job: JobView | None
    pods: Sequence[TransformPodView]
    config: OperatorConfig
    now: datetime
    # The model, resolved by the controller while there is no Job yet (None: not asked).
    model: ModelState | None = None
    # Completion index -> what its running transformer's metrics say.
    progress: Mapping[int, Progress] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


@dataclass
class Plan:
    status: BatchTransformStatus
    create: JSON | None = None  # the Job
    # Posted when the create made the Job (not when it found the one made before).
    created_event: Event | None = None
    suspend: bool = False  # stop: suspend the Job, whose controller stops the pods
    # The Job goes: ttlSecondsAfterFinished has passed, or a stop under Kueue (which
    # would resume a Job it admitted if it were only suspended); Foreground, so that
    # the Job is there until its pods are gone.
    delete_job: bool = False
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None


def plan_transform(obs: Observation) -> Plan:
    status = obs.status.model_copy(deep=True)
    plan = Plan(status)
    state = status.transform_job_status
    if state in TERMINAL:
        _plan_ttl(obs, plan)
        return _finish(obs, plan)
    if state is None:
        status.transform_job_status = "InProgress"
        status.transform_start_time = obs.now
        status.creation_time = status.creation_time or obs.now
    job = obs.job
    if job is None:
        return _without_job(obs, plan)
    status.job_name = job.name
    _count(obs, status)
    if job.complete:
        return _end(obs, plan, "Completed", "")
    if job.failed_reason is not None:
        return _end(obs, plan, "Failed", _failure_reason(obs, job))
    if obs.spec.stop:
        active = job.active or any(not p.terminal for p in obs.pods)
        if not active and job.suspended:
            return _end(obs, plan, "Stopped", "")
        if status.transform_job_status != "Stopping":
            status.transform_job_status = "Stopping"
            plan.events.append(Event("Normal", "Stopping", "spec.stop: stopping the instances"))
        if obs.spec.queue_name:
            plan.delete_job = not job.deleting
        else:
            plan.suspend = not job.suspended
        plan.requeue_after = PROGRESS_SECONDS
        return _finish(obs, plan)
    plan.requeue_after = PROGRESS_SECONDS
    # A pod the Job has replaced is no problem any more; an unreadable report stays one.
    problem = _problem([p for p in obs.pods if not p.terminal or p.report_error])
    return _finish(obs, plan, note=("InstanceProblem", problem) if problem else None)


def _without_job(obs: Observation, plan: Plan) -> Plan:
    if obs.spec.stop:
        return _end(obs, plan, "Stopped", "")
    model = obs.model or ModelState(waiting="the model is not resolved yet")
    if model.error is not None:
        return _end(obs, plan, "Failed", failure(FailureKind.CLIENT, model.error).reason)
    if model.model is None:
        plan.requeue_after = WAITING_FOR_MODEL_SECONDS
        return _finish(obs, plan, note=("WaitingForModel", f"waiting for {model.waiting}"))
    owner = Owner(obs.name, obs.namespace, obs.uid, kind="BatchTransform")
    try:
        plan.create = tb.build_job(obs.spec, model.model, obs.config, owner=owner)
    except SpecError as exc:
        return _end(obs, plan, "Failed", failure(FailureKind.CLIENT, str(exc)).reason)
    status = plan.status
    status.job_name = tb.job_name(obs.name)
    status.model_data_url = model.model.model_data_url
    status.image = model.model.image
    count = obs.spec.transform_resources.instance_count
    plan.created_event = Event(
        "Normal",
        "Created",
        f"Job {status.job_name}: {count} instance(s) of "
        f"{obs.spec.transform_resources.instance_type}, model {status.model_data_url}",
    )
    plan.requeue_after = PROGRESS_SECONDS
    return _finish(obs, plan)


def _instances(obs: Observation) -> dict[int, Progress]:
    """Each completion index's furthest progress: reports of its pods, live metrics."""
    best: dict[int, Progress] = {}
    candidates: list[tuple[int, Progress]] = list(obs.progress.items())
    for pod in obs.pods:
        if pod.index is not None and pod.report is not None:
            r = pod.report
            candidates.append(
                (pod.index, Progress(r.objects_found, r.objects_total, r.objects_done, r.records))
            )
    for index, seen in candidates:
        old = best.get(index, Progress())
        best[index] = Progress(
            max(old.objects_found, seen.objects_found),
            max(old.objects_total, seen.objects_total),
            max(old.objects_done, seen.objects_done),
            max(old.records, seen.records),
        )
    return best


def _count(obs: Observation, status: BatchTransformStatus) -> None:
    instances = _instances(obs)
    found = max((p.objects_found for p in instances.values()), default=0)
    total = found or sum(p.objects_total for p in instances.values())
    done = sum(p.objects_done for p in instances.values())
    # An instance's failure counts once it is final: the model refused a record, or the
    # Job failed; a failure the Job retries, and one an instance got over, do not.
    outcomes: dict[int, set[str]] = {}
    for pod in obs.pods:
        if pod.index is not None and pod.report is not None and pod.terminal:
            outcome = pod.report.outcome
            user = outcome == "Failed" and pod.report.error_kind == "user"
            outcomes.setdefault(pod.index, set()).add("Refused" if user else outcome)
    job_failed = obs.job is not None and obs.job.failed_reason is not None
    failed = sum(
        1
        for seen in outcomes.values()
        if "Completed" not in seen and ("Refused" in seen or (job_failed and "Failed" in seen))
    )
    old = status.object_counters or TransformObjectCounters()
    status.object_counters = TransformObjectCounters(
        total=max(total, old.total),
        completed=max(done, old.completed),
        failed=max(failed, old.failed),
    )
    status.records_transformed = max(
        sum(p.records for p in instances.values()), status.records_transformed or 0
    )


def _failure_reason(obs: Observation, job: JobView) -> str:
    """The transformers' own words first: a refused record (the user's error), then any
    failed report, then what the pods and the Job say."""
    failed = [p for p in obs.pods if p.report is not None and p.report.outcome == "Failed"]
    failed.sort(key=lambda p: (p.exit_code != TRANSFORM_USER_ERROR_EXIT, p.index or 0))
    for pod in failed:
        assert pod.report is not None
        kind = FailureKind.CLIENT if pod.report.error_kind == "user" else FailureKind.PLATFORM
        where = f"instance {pod.index}: " if obs.spec.transform_resources.instance_count > 1 else ""
        return failure(
            kind, f"{where}{pod.report.failure_reason or 'the transformer failed'}"
        ).reason
    problem = _problem(obs.pods)
    if problem is not None:
        return failure(FailureKind.CLIENT, problem).reason
    detail = " ".join(x for x in (job.failed_reason, job.failed_message) if x)
    return failure(FailureKind.PLATFORM, f"the Job failed: {detail}").reason


def _problem(pods: Sequence[TransformPodView]) -> str | None:
    for pod in sorted(pods, key=lambda p: p.index or 0):
        if pod.problem is not None:
            return f"pod {pod.name}: {pod.problem}"
        if pod.report_error is not None:
            return f"pod {pod.name}: {pod.report_error}"
    return None


def _plan_ttl(obs: Observation, plan: Plan) -> None:
    ttl = obs.spec.ttl_seconds_after_finished
    end = plan.status.transform_end_time
    if ttl is None or end is None or obs.job is None:
        return
    remaining = ttl - (obs.now - end).total_seconds()
    if remaining <= 0:
        plan.delete_job = not obs.job.deleting
    else:
        plan.requeue_after = remaining


def _end(obs: Observation, plan: Plan, state: str, reason: str) -> Plan:
    status = plan.status
    status.transform_job_status = state  # type: ignore[assignment]
    status.transform_end_time = obs.now
    status.failure_reason = reason or None
    counters = status.object_counters
    summary = (
        f"{counters.completed} of {counters.total} objects, {status.records_transformed or 0} "
        "records"
        if counters is not None
        else ""
    )
    kind = "Warning" if state == "Failed" else "Normal"
    plan.events.append(Event(kind, state, reason or summary or state))
    _plan_ttl(obs, plan)
    return _finish(obs, plan)


def _finish(obs: Observation, plan: Plan, note: tuple[str, str] | None = None) -> Plan:
    """Conditions and generation; ``note``: why an InProgress transform does not move
    (a reason and a message for the Ready condition)."""
    status = plan.status
    state = status.transform_job_status or "InProgress"
    ended = state in TERMINAL
    reason, note_message = note if note and not ended else (state, "")
    message = status.failure_reason or note_message
    desired = [
        Cond(CONDITION_READY, "True" if state == "Completed" else "False", reason, message),
        Cond(
            CONDITION_SUCCEEDED,
            "True" if state == "Completed" else ("Unknown" if not ended else "False"),
            reason,
            message,
        ),
        Cond(CONDITION_FAILED, "True" if state == "Failed" else "False", state, ""),
        Cond(CONDITION_RECONCILING, "False" if ended else "True", state, ""),
        Cond(CONDITION_STALLED, "True" if state == "Failed" else "False", state, ""),
    ]
    old = {c.type: c.message for c in obs.status.conditions or ()}
    if reason == "InstanceProblem" and old.get(CONDITION_READY) != note_message:
        plan.events.append(Event("Warning", reason, note_message))
    status.conditions = merge_conditions(
        obs.status.conditions, desired, generation=obs.generation, now=obs.now
    )
    status.observed_generation = obs.generation
    return plan
