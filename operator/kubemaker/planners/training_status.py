"""The TrainingJob status, as the planner writes it: the plan's types and bookkeeping.

:class:`Plan` carries the new status as the typed ``TrainingJobStatus``; every change
of the secondary status goes through :func:`transition`, and every terminal status
through one of :func:`complete`, :func:`stopped` and :func:`fail` (the only way to
Failed, with a failure classified by :mod:`kubemaker.failures`). :func:`finish`
derives the conditions from the rest, so they can never disagree with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubemaker.api.common import (
    CONDITION_FAILED,
    CONDITION_READY,
    CONDITION_RECONCILING,
    CONDITION_STALLED,
    CONDITION_SUCCEEDED,
    ConditionStatus,
)
from kubemaker.api.training import (
    TERMINAL_TRAINING_STATUSES,
    SecondaryStatus,
    SecondaryStatusTransition,
    TrainingJobSpec,
    TrainingJobStatus,
)
from kubemaker.api.training import TrainingJobStatusString as Primary
from kubemaker.config import OperatorConfig
from kubemaker.failures import (
    Failure,
    FailureKind,
    clip,
    prefix_of,
)
from kubemaker.planners.training_views import JobView, PodView
from kubemaker.reconcile.conditions import Cond, merge_conditions
from kubemaker_runtime.protocol import AgentReport

JSON = dict[str, Any]
Step = SecondaryStatus

_EVENT_STEPS = frozenset({Step.DOWNLOADING, Step.TRAINING, Step.UPLOADING})
TRANSITIONS_KEPT = 50
MESSAGE_LIMIT = 512


def parse_time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def read_status(body: Mapping[str, Any] | None) -> TrainingJobStatus:
    """The status as stored (camelCase dict) as the typed model; unknown keys ignored."""
    return TrainingJobStatus.model_validate(dict(body or {}))


def status_body(status: TrainingJobStatus) -> JSON:
    """The status as written to the API: camelCase, unset fields left out."""
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- input and output -------------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """Everything :func:`plan_training` decides from."""

    name: str
    generation: int | None
    spec: TrainingJobSpec
    status: Mapping[str, Any]  # as stored
    jobs: Sequence[JobView]
    pods: Sequence[PodView]
    now: datetime
    config: OperatorConfig
    creation_timestamp: str | None = None
    # Jobs created by this operator that the watch has not delivered yet.
    expected_jobs: frozenset[str] = frozenset()
    # Reports of pods that are already gone (kept by the controller), by pod name.
    reports: Mapping[str, tuple[int, AgentReport]] = field(default_factory=dict)
    # Last values the job's metricDefinitions found in the algorithm's log, by attempt.
    log_metrics: Mapping[int, Mapping[str, float]] = field(default_factory=dict)
    # Each metric's values so far in that log, as (step, value), by attempt; recorded in
    # status.metricSeries for the metrics named in ``series_metrics`` (the job's
    # kubemaker.io/metric-series annotation), which a TuningJob's early stopping reads.
    log_series: Mapping[int, Mapping[str, Sequence[tuple[int, float]]]] = field(
        default_factory=dict
    )
    series_metrics: tuple[str, ...] = ()
    # Why the cluster refused to create a Job's pods (its newest FailedCreate event), by
    # Job name: looked up only for a Job that has had no pod for REFUSAL_CHECK_SECONDS.
    pod_refusals: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Plan:
    status: TrainingJobStatus
    now: datetime
    create_attempt: int | None = None
    runtime_used: float = 0.0
    delete_jobs: list[tuple[str, str]] = field(default_factory=list)
    # Pods to stop in place: (name, activeDeadlineSeconds). The kubelet stops them as at
    # a deletion (SIGTERM, the grace period, sidecars last), and they stay, with their
    # logs, until the TrainingJob's TTL deletes the Job.
    expire_pods: list[tuple[str, int]] = field(default_factory=list)
    delete_service: bool = False
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    failure_kind: FailureKind | None = None

    @property
    def body(self) -> JSON:
        return status_body(self.status)

    def wake_in(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after = seconds

    def event(self, type_: str, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))


# --- the ends: every terminal status is reached through one of these three -------------


def complete(plan: Plan, job: JobView, pods: Sequence[PodView]) -> None:
    status = plan.status
    status.training_job_status = Primary.COMPLETED
    status.failure_reason = None
    _backfill_progress(plan, pods)
    message = "Training job completed"
    unreadable = next((p for p in pods if p.report_error), None)
    if unreadable is not None:
        # Never silence: the model and metrics that report held are missing from the
        # status, and the user must hear why.
        message = clip(
            f"Training job completed, but the agent of pod {unreadable.name} wrote a report "
            f"this operator cannot read (are the agent image and the operator of different "
            f"versions?): {unreadable.report_error}",
            MESSAGE_LIMIT,
        )
        plan.event("Warning", "AgentReportUnreadable", message)
    transition(plan, Step.COMPLETED, message)
    _end(plan, parse_time(job.completion_time))
    artifacts = status.model_artifacts.s3_model_artifacts if status.model_artifacts else None
    plan.event("Normal", "Completed", f"Training job completed; model: {artifacts or 'none'}")


def stopped(plan: Plan, final: Step, message: str | None) -> None:
    plan.status.training_job_status = Primary.STOPPED
    if plan.status.secondary_status != final:
        transition(plan, final, message)
    _end(plan, None)
    plan.event(
        "Normal" if final == Step.STOPPED else "Warning",
        final.value,
        message or f"Training job stopped ({final.value})",
    )


def fail(plan: Plan, found: Failure) -> None:
    """The one way to Failed: the classified failure becomes the reason and condition."""
    status = plan.status
    if status.training_job_status in TERMINAL_TRAINING_STATUSES:
        return
    status.creation_time = status.creation_time or plan.now
    status.training_job_status = Primary.FAILED
    status.failure_reason = found.reason
    # A failed job has no model (SageMaker's rule), even if one host uploaded one.
    status.model_artifacts = None
    plan.failure_kind = found.kind
    transition(plan, Step.FAILED, found.reason)
    _end(plan, None)
    plan.event("Warning", "Failed", found.reason)


def _end(plan: Plan, when: datetime | None) -> None:
    status = plan.status
    end = when or plan.now
    status.training_end_time = end
    start = status.training_start_time
    if start is not None:
        status.training_time_in_seconds = max(0, int((end - start).total_seconds()))


def _backfill_progress(plan: Plan, pods: Sequence[PodView]) -> None:
    """Steps the pods went through after the last one a reconcile saw (an operator
    replaced while the job ran): added from the containers' own times, in order, so the
    history ends whole. Steps skipped between two reconciles (a download faster than a
    reconcile) stay skipped: filling them in would put them out of order."""
    first = min(pods, key=lambda p: p.index or 0, default=None)
    if first is None or first.agent is None or first.algorithm is None:
        return
    steps = (
        (Step.DOWNLOADING, first.agent.started_at),
        (Step.TRAINING, first.algorithm.started_at),
        (Step.UPLOADING, first.algorithm.finished_at),
    )
    order = [step for step, _ in steps]
    transitions = plan.status.secondary_status_transitions or []
    reached = -1
    for entry in transitions:
        if entry.status in (Step.STARTING, Step.RESTARTING, Step.PENDING):
            reached = -1  # a new attempt starts over
        elif entry.status in order:
            reached = max(reached, order.index(entry.status))
    for step, started in steps[reached + 1 :]:
        moment = parse_time(started)
        last = plan.status.secondary_status_transitions
        if moment is not None and last and moment >= last[-1].start_time:
            transition(plan, step, None, at=moment)


def transition(plan: Plan, step: Step, message: str | None, *, at: datetime | None = None) -> None:
    status = plan.status
    moment = at or plan.now
    transitions = list(status.secondary_status_transitions or ())
    if transitions and transitions[-1].status == step:
        if message:
            transitions[-1] = transitions[-1].model_copy(update={"status_message": message})
    else:
        if transitions and transitions[-1].end_time is None:
            transitions[-1] = transitions[-1].model_copy(update={"end_time": moment})
        transitions.append(
            SecondaryStatusTransition(status=step, start_time=moment, status_message=message)
        )
        # Terminal steps, stops and restarts post their own (more specific) events, and
        # the start has the controller's JobCreated.
        # A step filled in afterwards (``at``) is history, not news.
        if at is None and (step in _EVENT_STEPS or (step == Step.PENDING and len(transitions) > 1)):
            plan.event("Normal", step.value, message or step.value)
    status.secondary_status_transitions = transitions[-TRANSITIONS_KEPT:]
    status.secondary_status = step


def last_message(status: TrainingJobStatus) -> str | None:
    transitions = status.secondary_status_transitions
    return transitions[-1].status_message if transitions else None


# --- conditions -------------------------------------------------------------------------


def desired_conditions(status: TrainingJobStatus, kind: FailureKind | None) -> list[Cond]:
    primary = status.training_job_status or Primary.IN_PROGRESS
    secondary = (status.secondary_status or Step.STARTING).value
    message = last_message(status) or ""
    if primary == Primary.COMPLETED:
        artifacts = status.model_artifacts.s3_model_artifacts if status.model_artifacts else None
        done = f"Model: {artifacts}" if artifacts else "Training job completed"
        return _verdict(primary.value, done, ready="True", succeeded="True")
    if primary == Primary.FAILED:
        text = status.failure_reason or ""
        reason = (kind or prefix_of(text) or FailureKind.ALGORITHM).value
        return [
            Cond(CONDITION_READY, "False", reason, text),
            Cond(CONDITION_SUCCEEDED, "False", reason, text),
            Cond(CONDITION_FAILED, "True", reason, text),
            Cond(CONDITION_RECONCILING, "False", reason, ""),
            Cond(CONDITION_STALLED, "True", reason, text),
        ]
    if primary == Primary.STOPPED:
        return _verdict(secondary, message, ready="False", succeeded="False")
    return [
        Cond(CONDITION_READY, "False", secondary, message),
        Cond(CONDITION_SUCCEEDED, "Unknown", secondary, message),
        Cond(CONDITION_FAILED, "False", secondary, ""),
        Cond(CONDITION_RECONCILING, "True", secondary, message),
        Cond(CONDITION_STALLED, "False", secondary, ""),
    ]


def _verdict(
    reason: str, message: str, *, ready: ConditionStatus, succeeded: ConditionStatus
) -> list[Cond]:
    """Conditions of a job that ended without failing."""
    return [
        Cond(CONDITION_READY, ready, reason, message),
        Cond(CONDITION_SUCCEEDED, succeeded, reason, message),
        Cond(CONDITION_FAILED, "False", reason, ""),
        Cond(CONDITION_RECONCILING, "False", reason, ""),
        Cond(CONDITION_STALLED, "False", reason, ""),
    ]


def finish(plan: Plan, generation: int | None, stored: Mapping[str, Any]) -> Plan:
    """Conditions and bookkeeping, computed from the rest of the status; ``stored`` is
    the status as the API holds it (lastModifiedTime moves only when this differs)."""
    status = plan.status
    status.observed_generation = generation
    status.conditions = merge_conditions(
        status.conditions,
        desired_conditions(status, plan.failure_kind),
        generation=generation,
        now=plan.now,
    )
    before = read_status(stored)
    status.last_modified_time = before.last_modified_time
    if status_body(status) != status_body(before):
        status.last_modified_time = plan.now
    return plan


def invalid_status(
    body: Mapping[str, Any], found: Failure, *, generation: int | None, now: datetime
) -> TrainingJobStatus:
    """The status of a TrainingJob whose spec cannot be parsed (no Observation exists):
    Failed through the same path as every other failure."""
    plan = Plan(status=read_status(body), now=now.replace(microsecond=0))
    if plan.status.training_job_status in TERMINAL_TRAINING_STATUSES:
        return plan.status
    fail(plan, found)
    return finish(plan, generation, body).status
