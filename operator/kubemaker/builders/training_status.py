"""A TrainingJob's status, computed from its Jobs and pods: the controller's decisions.

:func:`plan_training` is a pure function of what the controller observed (the spec, the
status it wrote last, the Jobs and pods of the job, the agents' reports, the time) and
returns the status to write and the actions to take. It is level-based: given the same
observation it returns the same plan, so a restarted operator (or a repeated event)
changes nothing, and nothing it decides depends on having seen an event.

Status machine (SageMaker's, see docs/trainingjob.md):

    InProgress: Pending -> Starting -> Downloading -> Training -> Uploading
                (-> Restarting -> Starting ... after a platform failure, per retryStrategy)
    Completed:  Completed
    Failed:     Failed           (algorithm error, user error, retries exhausted)
    Stopping:   Stopping | MaxRuntimeExceeded | MaxWaitTimeExceeded
    Stopped:    Stopped  | MaxRuntimeExceeded | MaxWaitTimeExceeded
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError

from kubemaker.api.common import (
    CONDITION_FAILED,
    CONDITION_READY,
    CONDITION_RECONCILING,
    CONDITION_STALLED,
    CONDITION_SUCCEEDED,
)
from kubemaker.api.training import TrainingJobSpec
from kubemaker.builders import naming
from kubemaker.builders.errors import SpecError
from kubemaker.builders.training import (
    AGENT_CONTAINER,
    ALGORITHM_CONTAINER,
    resolve_image,
    resolve_resources,
)
from kubemaker.config import OperatorConfig
from kubemaker.metric_definitions import compile_definitions, merge_final_metrics
from kubemaker.reconcile.conditions import Cond, merge_conditions
from kubemaker_runtime.protocol import AgentReport

JSON = dict[str, Any]

IN_PROGRESS = "InProgress"
COMPLETED = "Completed"
FAILED = "Failed"
STOPPING = "Stopping"
STOPPED = "Stopped"
TERMINAL = frozenset({COMPLETED, FAILED, STOPPED})

# Secondary statuses while running, in the order a job goes through them. Within one
# attempt the shown progress never goes back (pods of a multi-host job progress at
# different speeds; the furthest one is shown).
_PROGRESS = {
    "Pending": 0,
    "Starting": 0,
    "Restarting": 0,
    "Downloading": 1,
    "Training": 2,
    "Uploading": 3,
}
_EVENT_STEPS = frozenset({"Downloading", "Training", "Uploading"})
STOP_CAUSES = frozenset({"Stopping", "MaxRuntimeExceeded", "MaxWaitTimeExceeded"})

# Failure classes: the condition reason, and the prefix of failureReason (SageMaker's).
ALGORITHM_ERROR = "AlgorithmError"
CLIENT_ERROR = "ClientError"
PLATFORM_ERROR = "PlatformError"
VALIDATION_ERROR = "ValidationError"
# A failure reason that already starts with one of these (SageMaker's, and ours) is kept
# as it is and classified by it: SageMaker's algorithms write ``ClientError: ...`` to
# the failure file for the user's errors (a bad hyperparameter, unreadable data).
FAILURE_KINDS = (
    ALGORITHM_ERROR,
    CLIENT_ERROR,
    "InternalServerError",
    "CapacityError",
    PLATFORM_ERROR,
    VALIDATION_ERROR,
)
FAILURE_REASON_LIMIT = 1024

# Container waiting reasons that no amount of waiting fixes: the spec is at fault.
_PERMANENT_WAITING = frozenset({"InvalidImageName", "ErrImageNeverPull"})
# Waiting reasons worth showing while a job is Starting. A missing Secret or image may
# still appear (GitOps tools apply objects in any order): shown, not fatal.
_NOTABLE_WAITING = (
    frozenset(
        {
            "ErrImagePull",
            "ImagePullBackOff",
            "CrashLoopBackOff",
            "CreateContainerConfigError",
            "CreateContainerError",
        }
    )
    | _PERMANENT_WAITING
)
_EXIT_CODE_IN_MESSAGE = re.compile(r"Container (\S+) for pod \S+ failed with exit code (\d+)")


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def clip(text: str, limit: int = FAILURE_REASON_LIMIT) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- what the controller observes -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContainerView:
    """The parts of a container status the state machine reads."""

    name: str
    state: str  # waiting | running | terminated | unknown
    reason: str | None = None
    message: str | None = None
    exit_code: int | None = None
    started: bool = False
    started_at: str | None = None
    finished_at: str | None = None
    last_message: str | None = None  # lastState.terminated.message (a restarted sidecar)

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> ContainerView:
        state = status.get("state") or {}
        kind = next((k for k in ("terminated", "running", "waiting") if state.get(k)), None)
        detail = state.get(kind) or {} if kind else {}
        last = (status.get("lastState") or {}).get("terminated") or {}
        exit_code = detail.get("exitCode")
        return cls(
            name=str(status.get("name", "")),
            state=kind or ("running" if state.get("running") == {} else "unknown"),
            reason=detail.get("reason"),
            message=detail.get("message"),
            exit_code=int(exit_code) if exit_code is not None else None,
            started=bool(status.get("started")),
            started_at=detail.get("startedAt"),
            finished_at=detail.get("finishedAt"),
            last_message=last.get("message"),
        )

    def report(self) -> AgentReport | None:
        """The AgentReport in this (agent) container's termination message, if any."""
        for text in (self.message if self.state == "terminated" else None, self.last_message):
            if text:
                try:
                    return AgentReport.from_message(text)
                except (ValidationError, ValueError):
                    continue
        return None


@dataclass(frozen=True, slots=True)
class PodView:
    """One training pod, reduced to what the state machine reads (kept in the index)."""

    name: str
    attempt: int
    index: int | None
    phase: str
    deleting: bool = False
    reason: str | None = None
    message: str | None = None
    disruption: str | None = None  # why it was disrupted (eviction, preemption, node loss)
    unschedulable: str | None = None
    start_time: str | None = None
    agent: ContainerView | None = None
    algorithm: ContainerView | None = None
    # Parsed once, when the pod is observed: the agent's termination message.
    agent_report: AgentReport | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> PodView:
        meta = body.get("metadata") or {}
        labels = meta.get("labels") or {}
        annotations = meta.get("annotations") or {}
        status = body.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or ()}
        disruption = None
        target = conditions.get("DisruptionTarget")
        if target is not None and target.get("status") == "True":
            disruption = (
                " ".join(x for x in (target.get("reason"), target.get("message")) if x)
                or "DisruptionTarget"
            )
        elif status.get("reason") in (
            "Evicted",
            "Preempting",
            "NodeLost",
            "Shutdown",
            "Terminated",
            "UnexpectedAdmissionError",
        ):
            disruption = " ".join(x for x in (status.get("reason"), status.get("message")) if x)
        unschedulable = None
        scheduled = conditions.get("PodScheduled")
        if scheduled is not None and scheduled.get("status") == "False":
            unschedulable = scheduled.get("message") or scheduled.get("reason") or "Unschedulable"
        containers = {
            c.get("name"): ContainerView.from_status(c)
            for c in (status.get("initContainerStatuses") or [])
            + (status.get("containerStatuses") or [])
        }
        index = labels.get(naming.COMPLETION_INDEX, annotations.get(naming.COMPLETION_INDEX))
        attempt = labels.get(naming.LABEL_ATTEMPT, "0")
        agent = containers.get(AGENT_CONTAINER)
        return cls(
            name=str(meta.get("name", "")),
            attempt=int(attempt) if str(attempt).isdigit() else 0,
            index=int(index) if index is not None and str(index).isdigit() else None,
            phase=str(status.get("phase") or "Pending"),
            deleting=bool(meta.get("deletionTimestamp")),
            reason=status.get("reason"),
            message=status.get("message"),
            disruption=disruption,
            unschedulable=unschedulable,
            start_time=status.get("startTime"),
            agent=agent,
            algorithm=containers.get(ALGORITHM_CONTAINER),
            agent_report=agent.report() if agent is not None else None,
        )

    @property
    def terminal(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    def report(self) -> AgentReport | None:
        return self.agent_report


@dataclass(frozen=True, slots=True)
class JobView:
    """One attempt's batch/v1 Job, reduced to what the state machine reads."""

    name: str
    uid: str
    attempt: int
    suspended: bool = False
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    complete: bool = False
    failed_reason: str | None = None
    failed_message: str | None = None
    start_time: str | None = None
    completion_time: str | None = None
    deleting: bool = False

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> JobView:
        meta = body.get("metadata") or {}
        labels = meta.get("labels") or {}
        spec = body.get("spec") or {}
        status = body.get("status") or {}
        conditions = {
            c.get("type"): c for c in status.get("conditions") or () if c.get("status") == "True"
        }
        failed = conditions.get("Failed")
        attempt = labels.get(naming.LABEL_ATTEMPT, "0")
        return cls(
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            attempt=int(attempt) if str(attempt).isdigit() else 0,
            suspended=bool(spec.get("suspend")),
            active=int(status.get("active") or 0),
            succeeded=int(status.get("succeeded") or 0),
            failed=int(status.get("failed") or 0),
            complete="Complete" in conditions,
            failed_reason=failed.get("reason") if failed else None,
            failed_message=failed.get("message") if failed else None,
            start_time=status.get("startTime"),
            completion_time=status.get("completionTime"),
            deleting=bool(meta.get("deletionTimestamp")),
        )


@dataclass(frozen=True)
class Observation:
    """Everything :func:`plan_training` decides from."""

    name: str
    generation: int | None
    spec: TrainingJobSpec
    status: Mapping[str, Any]
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


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Plan:
    status: JSON
    create_attempt: int | None = None
    runtime_used: float = 0.0
    delete_jobs: list[tuple[str, str]] = field(default_factory=list)
    delete_service: bool = False
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    failure_kind: str | None = None

    def wake_in(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after = seconds


# --- the state machine ------------------------------------------------------------------


def plan_training(obs: Observation) -> Plan:
    status: JSON = {k: v for k, v in obs.status.items() if v is not None}
    plan = Plan(status=status)
    now = rfc3339(obs.now)
    primary = status.get("trainingJobStatus")

    if primary in TERMINAL:
        _record_reports(plan, obs, _current_attempt(obs))
        _finish_status(plan, obs)
        return plan

    if primary is None:
        status["trainingJobStatus"] = IN_PROGRESS
        status.setdefault("creationTime", obs.creation_timestamp or now)
        status["retryCount"] = 0
        if obs.spec.queue_name:
            _transition(plan, obs, "Pending", _kueue_message(obs.spec.queue_name))
        else:
            _transition(plan, obs, "Starting", "Preparing the instances for training")

    try:
        status["trainingImage"] = resolve_image(obs.spec, obs.config)
        resolve_resources(obs.spec, obs.config)
        compile_definitions(obs.spec.algorithm_specification.metric_definitions)
    except SpecError as exc:
        _fail(plan, obs, CLIENT_ERROR, str(exc))
        _finish_status(plan, obs)
        return plan

    attempt = _current_attempt(obs)
    status["retryCount"] = attempt
    status["jobName"] = naming.job_name(obs.name, attempt)
    job = next((j for j in obs.jobs if j.attempt == attempt), None)
    pods = [p for p in obs.pods if p.attempt == attempt]
    _record_reports(plan, obs, attempt)

    if status["trainingJobStatus"] == STOPPING:
        _plan_stopping(plan, obs, job, pods)
        _finish_status(plan, obs)
        return plan

    # A Job that has already finished decides the outcome, even if a stop was asked.
    if job is not None and (job.complete or job.failed_reason):
        _plan_finished_job(plan, obs, job, pods, attempt)
        _finish_status(plan, obs)
        return plan

    cause = _stop_cause(plan, obs)
    if cause is not None:
        status["trainingJobStatus"] = STOPPING
        messages = {
            "Stopping": "Stopping the training job as requested (spec.stop)",
            "MaxRuntimeExceeded": "The job reached stoppingCondition.maxRuntimeInSeconds "
            f"({obs.spec.stopping_condition.max_runtime_in_seconds} s); stopping it",
            "MaxWaitTimeExceeded": "The job reached stoppingCondition.maxWaitTimeInSeconds "
            f"({obs.spec.stopping_condition.max_wait_time_in_seconds} s); stopping it",
        }
        _transition(plan, obs, cause, messages[cause])
        plan.events.append(
            Event("Normal" if cause == "Stopping" else "Warning", cause, messages[cause])
        )
        _plan_stopping(plan, obs, job, pods)
        _finish_status(plan, obs)
        return plan

    if job is None:
        if status["jobName"] not in obs.expected_jobs:
            plan.create_attempt = attempt
            plan.runtime_used = _runtime_used(obs)
        _finish_status(plan, obs)
        return plan

    agent_failure = _agent_failure(pods)
    if agent_failure is not None:
        _plan_agent_failure(plan, obs, job, attempt, *agent_failure)
        _finish_status(plan, obs)
        return plan

    permanent = _permanent_waiting(pods)
    if permanent is not None:
        plan.delete_jobs.append((job.name, job.uid))
        _fail(plan, obs, CLIENT_ERROR, permanent)
        _finish_status(plan, obs)
        return plan

    secondary, message = _progress(job, pods, obs)
    current = status.get("secondaryStatus")
    if (
        current in _PROGRESS
        and _PROGRESS[secondary] < _PROGRESS[current]
        and current != "Restarting"
    ):
        secondary, message = current, None  # never show a step back within an attempt
    if secondary != current or (message and message != _last_message(status)):
        _transition(plan, obs, secondary, message)
    if _PROGRESS[secondary] >= 1 and not status.get("trainingStartTime"):
        status["trainingStartTime"] = _earliest_start(pods) or now
    _schedule_deadlines(plan, obs)
    _finish_status(plan, obs)
    return plan


def _current_attempt(obs: Observation) -> int:
    recorded = int(obs.status.get("retryCount") or 0)
    seen = max((j.attempt for j in obs.jobs), default=0)
    return max(recorded, seen)


def _runtime_used(obs: Observation) -> float:
    start = parse_time(obs.status.get("trainingStartTime"))
    return (obs.now - start).total_seconds() if start else 0.0


def _stop_cause(plan: Plan, obs: Observation) -> str | None:
    if obs.spec.stop:
        return "Stopping"
    start = parse_time(plan.status.get("trainingStartTime"))
    limit = obs.spec.stopping_condition.max_runtime_in_seconds
    if start is not None and (obs.now - start).total_seconds() >= limit:
        return "MaxRuntimeExceeded"
    wait = obs.spec.stopping_condition.max_wait_time_in_seconds
    created = parse_time(plan.status.get("creationTime")) or parse_time(obs.creation_timestamp)
    if wait is not None and created is not None and (obs.now - created).total_seconds() >= wait:
        return "MaxWaitTimeExceeded"
    return None


def _schedule_deadlines(plan: Plan, obs: Observation) -> None:
    start = parse_time(plan.status.get("trainingStartTime"))
    if start is not None:
        limit = obs.spec.stopping_condition.max_runtime_in_seconds
        plan.wake_in(limit - (obs.now - start).total_seconds())
    wait = obs.spec.stopping_condition.max_wait_time_in_seconds
    created = parse_time(plan.status.get("creationTime")) or parse_time(obs.creation_timestamp)
    if wait is not None and created is not None:
        plan.wake_in(wait - (obs.now - created).total_seconds())


def _progress(job: JobView, pods: Sequence[PodView], obs: Observation) -> tuple[str, str | None]:
    """The furthest step any pod of the attempt has reached, with a message."""
    count = obs.spec.resource_config.instance_count
    if job.suspended and not any(p.phase == "Running" for p in pods):
        queue = obs.spec.queue_name
        return "Pending", _kueue_message(queue) if queue else "The Job is suspended"
    live = [p for p in pods if not p.terminal]
    if any(p.algorithm is not None and p.algorithm.state == "running" for p in live):
        running = sum(1 for p in live if p.algorithm and p.algorithm.state == "running")
        return "Training", f"Training on {running} of {count} instance(s)"
    if any(
        p.algorithm is not None
        and p.algorithm.state == "terminated"
        and p.agent is not None
        and p.agent.state == "running"
        for p in live
    ):
        return "Uploading", "Uploading the model and output data"
    trouble = _waiting_trouble(live)
    if any(p.agent is not None and p.agent.state == "running" for p in live):
        return "Downloading", trouble or "Downloading input data"
    unschedulable = next((p.unschedulable for p in live if p.unschedulable), None)
    if unschedulable:
        return "Pending", clip(f"Waiting for nodes: {unschedulable}", 512)
    return "Starting", trouble or "Preparing the instances for training"


def _kueue_message(queue: str) -> str:
    return f"Waiting for Kueue to admit the job (queue {queue})"


def _waiting_trouble(pods: Sequence[PodView]) -> str | None:
    """Why a container is not starting (image pulls, missing Secrets), if one is stuck."""
    for pod in pods:
        for container in (pod.agent, pod.algorithm):
            if container is not None and container.reason in _NOTABLE_WAITING:
                detail = f": {container.message}" if container.message else ""
                return clip(f"{container.name} container {container.reason}{detail}", 512)
    return None


def _earliest_start(pods: Sequence[PodView]) -> str | None:
    times = sorted(t for p in pods for t in (p.agent.started_at if p.agent else None,) if t)
    return times[0] if times else None


def _permanent_waiting(pods: Sequence[PodView]) -> str | None:
    for pod in pods:
        for container in (pod.agent, pod.algorithm):
            if (
                container is not None
                and container.state == "waiting"
                and container.reason in _PERMANENT_WAITING
            ):
                detail = f": {container.message}" if container.message else ""
                return f"the {container.name} container cannot start ({container.reason}){detail}"
    return None


def _agent_failure(pods: Sequence[PodView]) -> tuple[str, str] | None:
    """(kind, message) when an agent reported its own failure while the job runs."""
    for pod in sorted(pods, key=lambda p: p.index or 0):
        report = pod.report()
        if report is not None and report.outcome == "Failed" and report.agent_error:
            algorithm_done = pod.algorithm is not None and pod.algorithm.state == "terminated"
            if not algorithm_done:
                return report.agent_error_kind or "platform", report.agent_error
    return None


def _plan_agent_failure(
    plan: Plan, obs: Observation, job: JobView, attempt: int, kind: str, message: str
) -> None:
    plan.delete_jobs.append((job.name, job.uid))
    if kind == "user":
        _fail(plan, obs, CLIENT_ERROR, message)
    else:
        _retry_or_fail(plan, obs, attempt, f"the data-plane agent failed: {message}")


def _plan_finished_job(
    plan: Plan, obs: Observation, job: JobView, pods: Sequence[PodView], attempt: int
) -> None:
    reports = _reports_by_index(obs, attempt)
    if job.complete:
        failed = next((r for r in reports if r.outcome == "Failed" and r.agent_error), None)
        if failed is not None:
            error = failed.agent_error or "upload failed"
            if failed.agent_error_kind == "user":
                _fail(plan, obs, CLIENT_ERROR, error)
            else:
                _fail(plan, obs, PLATFORM_ERROR, f"the data-plane agent failed: {error}")
            return
        _complete(plan, obs, job)
        return
    if job.failed_reason == "DeadlineExceeded":
        _stopped(
            plan,
            obs,
            "MaxRuntimeExceeded",
            "The Job reached its activeDeadlineSeconds (maxRuntimeInSeconds)",
        )
        return
    algorithm = _algorithm_failure(job, pods, reports)
    if algorithm is not None:
        _fail(plan, obs, ALGORITHM_ERROR, algorithm)
        return
    user = next((r for r in reports if r.agent_error and r.agent_error_kind == "user"), None)
    if user is not None and user.agent_error:
        _fail(plan, obs, CLIENT_ERROR, user.agent_error)
        return
    _retry_or_fail(plan, obs, attempt, _platform_failure(job, pods))


def _algorithm_failure(
    job: JobView, pods: Sequence[PodView], reports: Sequence[AgentReport]
) -> str | None:
    """failureReason for the algorithm's own error, or None when it did not fail."""
    failed = [
        p
        for p in pods
        if p.disruption is None
        and p.algorithm is not None
        and p.algorithm.state == "terminated"
        and (p.algorithm.exit_code or 0) != 0
    ]
    exit_code: int | None = None
    message: str | None = None
    if failed:
        pod = min(failed, key=lambda p: p.index or 0)
        assert pod.algorithm is not None
        exit_code = pod.algorithm.exit_code
        message = pod.algorithm.message
        if pod.algorithm.reason == "OOMKilled":
            message = message or "the algorithm ran out of memory (OOMKilled)"
        own = pod.report()
        own_reason: str | None = own.failure_reason if own is not None else None
        if own_reason:
            return own_reason
    elif job.failed_reason == "PodFailurePolicy" and job.failed_message:
        found = _EXIT_CODE_IN_MESSAGE.search(job.failed_message)
        if found is None or found.group(1) != ALGORITHM_CONTAINER:
            return None
        exit_code = int(found.group(2))
    else:
        return None
    for report in reports:
        reported: str | None = report.failure_reason
        if reported:
            return reported
    if message and message.strip():
        return message
    return f"the algorithm exited with code {exit_code}"


def _platform_failure(job: JobView, pods: Sequence[PodView]) -> str:
    for pod in sorted(pods, key=lambda p: p.index or 0):
        if pod.disruption:
            return f"pod {pod.name} was disrupted: {pod.disruption}"
    for pod in pods:
        if pod.phase == "Failed":
            detail = " ".join(x for x in (pod.reason, pod.message) if x) or "no reason given"
            return f"pod {pod.name} failed: {detail}"
    detail = " ".join(x for x in (job.failed_reason, job.failed_message) if x)
    return f"Job {job.name} failed: {detail or 'no reason given'}"


def _retry_or_fail(plan: Plan, obs: Observation, attempt: int, reason: str) -> None:
    strategy = obs.spec.retry_strategy
    allowed = strategy.maximum_retry_attempts if strategy is not None else 0
    if attempt < allowed and not obs.spec.stop:
        nxt = attempt + 1
        plan.status["retryCount"] = nxt
        plan.status["jobName"] = naming.job_name(obs.name, nxt)
        _transition(plan, obs, "Interrupted", clip(reason, 512))
        message = f"Retrying after a platform failure (retry {nxt} of {allowed}): {reason}"
        _transition(plan, obs, "Restarting", clip(message, 512))
        plan.events.append(Event("Warning", "Restarting", clip(message)))
        plan.create_attempt = nxt
        plan.runtime_used = _runtime_used(obs)
        return
    if allowed:
        reason = f"{reason} (after {attempt} of {allowed} retries)"
    _fail(plan, obs, PLATFORM_ERROR, reason)


def _plan_stopping(
    plan: Plan, obs: Observation, job: JobView | None, pods: Sequence[PodView]
) -> None:
    cause = plan.status.get("secondaryStatus")
    if cause not in STOP_CAUSES:
        cause = "Stopping"
    if job is not None and not job.deleting:
        plan.delete_jobs.append((job.name, job.uid))
    if job is None and all(p.terminal for p in pods):
        # Every pod has ended (or is gone): the agents have uploaded what there was.
        final = "Stopped" if cause == "Stopping" else cause
        _stopped(plan, obs, final, None)


def _complete(plan: Plan, obs: Observation, job: JobView) -> None:
    status = plan.status
    status["trainingJobStatus"] = COMPLETED
    status.pop("failureReason", None)
    _transition(plan, obs, "Completed", "Training job completed")
    _end(plan, obs, job.completion_time)
    artifacts = (status.get("modelArtifacts") or {}).get("s3ModelArtifacts")
    plan.events.append(
        Event(
            "Normal", "Completed", f"Training job completed; model: {artifacts or 'none reported'}"
        )
    )


def _stopped(plan: Plan, obs: Observation, final: str, message: str | None) -> None:
    plan.status["trainingJobStatus"] = STOPPED
    if plan.status.get("secondaryStatus") != final:
        _transition(plan, obs, final, message)
    _end(plan, obs, None)
    plan.events.append(
        Event(
            "Normal" if final == "Stopped" else "Warning",
            final,
            message or f"Training job stopped ({final})",
        )
    )


def _fail(plan: Plan, obs: Observation, kind: str, reason: str) -> None:
    own = failure_prefix(reason)
    text = clip(reason if own else f"{kind}: {reason}")
    kind = own or kind
    plan.status["trainingJobStatus"] = FAILED
    plan.status["failureReason"] = text
    plan.failure_kind = kind
    _transition(plan, obs, "Failed", text)
    _end(plan, obs, None)
    plan.events.append(Event("Warning", "Failed", text))


def _end(plan: Plan, obs: Observation, when: str | None) -> None:
    status = plan.status
    end = parse_time(when) or obs.now
    status["trainingEndTime"] = rfc3339(end)
    start = parse_time(status.get("trainingStartTime"))
    if start is not None:
        status["trainingTimeInSeconds"] = max(0, int((end - start).total_seconds()))


def _transition(plan: Plan, obs: Observation, secondary: str, message: str | None) -> None:
    status = plan.status
    now = rfc3339(obs.now)
    transitions = [dict(t) for t in status.get("secondaryStatusTransitions") or ()]
    if transitions and transitions[-1].get("status") == secondary:
        if message:
            transitions[-1]["statusMessage"] = message
    else:
        if transitions and not transitions[-1].get("endTime"):
            transitions[-1]["endTime"] = now
        entry: JSON = {"status": secondary, "startTime": now}
        if message:
            entry["statusMessage"] = message
        transitions.append(entry)
        # Terminal steps, stops and restarts post their own (more specific) events, and
        # the start has the controller's JobCreated.
        if secondary in _EVENT_STEPS or (secondary == "Pending" and len(transitions) > 1):
            plan.events.append(Event("Normal", secondary, message or secondary))
    status["secondaryStatusTransitions"] = transitions[-50:]
    status["secondaryStatus"] = secondary


def _last_message(status: Mapping[str, Any]) -> str | None:
    transitions = status.get("secondaryStatusTransitions") or []
    return transitions[-1].get("statusMessage") if transitions else None


def _reports_by_index(obs: Observation, attempt: int) -> list[AgentReport]:
    """The agents' reports of one attempt, first host first; gone pods' reports last."""
    live = sorted((p for p in obs.pods if p.attempt == attempt), key=lambda p: p.index or 0)
    reports = [r for r in (p.report() for p in live) if r is not None]
    names = {p.name for p in live}
    reports.extend(
        report
        for pod_name, (pod_attempt, report) in sorted(obs.reports.items())
        if pod_attempt == attempt and pod_name not in names
    )
    return reports


def _record_reports(plan: Plan, obs: Observation, attempt: int) -> None:
    """Copy the model location and the final metrics (the log's, then the agents') into
    the status."""
    reports = _reports_by_index(obs, attempt)
    status = plan.status
    if not status.get("modelArtifacts"):
        uri = next((r.model_artifacts for r in reports if r.model_artifacts), None)
        if uri:
            status["modelArtifacts"] = {"s3ModelArtifacts": uri}
    metrics = merge_final_metrics(
        obs.log_metrics.get(attempt, {}), [r.final_metrics for r in reports]
    )
    if metrics:
        # Metrics already in the status stay (the log's values are read once), and keep
        # their timestamp while their value is the same.
        merged = {str(m.get("metricName")): m for m in status.get("finalMetricDataList") or ()}
        now = rfc3339(obs.now)
        for name, value in metrics.items():
            if merged.get(name, {}).get("value") != value:
                merged[name] = {"metricName": name, "value": value, "timestamp": now}
        status["finalMetricDataList"] = [merged[name] for name in sorted(merged)]


def _plan_ttl(plan: Plan, obs: Observation) -> None:
    ttl = obs.spec.ttl_seconds_after_finished
    end = parse_time(plan.status.get("trainingEndTime"))
    if ttl is None or end is None:
        return
    remaining = ttl - (obs.now - end).total_seconds()
    if remaining > 0:
        plan.wake_in(remaining)
        return
    live = [j for j in obs.jobs if not j.deleting]
    if live:
        plan.delete_service = obs.spec.resource_config.instance_count > 1
        plan.delete_jobs.extend((j.name, j.uid) for j in live)


# --- conditions -------------------------------------------------------------------------


def desired_conditions(status: Mapping[str, Any], failure_kind: str | None) -> list[Cond]:
    primary = status.get("trainingJobStatus") or IN_PROGRESS
    secondary = status.get("secondaryStatus") or "Starting"
    message = _last_message(status) or ""
    if primary == COMPLETED:
        artifacts = (status.get("modelArtifacts") or {}).get("s3ModelArtifacts")
        done = f"Model: {artifacts}" if artifacts else "Training job completed"
        return [
            Cond(CONDITION_READY, "True", COMPLETED, done),
            Cond(CONDITION_SUCCEEDED, "True", COMPLETED, done),
            Cond(CONDITION_FAILED, "False", COMPLETED, ""),
            Cond(CONDITION_RECONCILING, "False", COMPLETED, ""),
            Cond(CONDITION_STALLED, "False", COMPLETED, ""),
        ]
    if primary == FAILED:
        reason = failure_kind or failure_prefix(status.get("failureReason")) or FAILED
        text = str(status.get("failureReason") or "")
        return [
            Cond(CONDITION_READY, "False", reason, text),
            Cond(CONDITION_SUCCEEDED, "False", reason, text),
            Cond(CONDITION_FAILED, "True", reason, text),
            Cond(CONDITION_RECONCILING, "False", reason, ""),
            Cond(CONDITION_STALLED, "True", reason, text),
        ]
    if primary == STOPPED:
        return [
            Cond(CONDITION_READY, "False", secondary, message),
            Cond(CONDITION_SUCCEEDED, "False", secondary, message),
            Cond(CONDITION_FAILED, "False", secondary, ""),
            Cond(CONDITION_RECONCILING, "False", secondary, ""),
            Cond(CONDITION_STALLED, "False", secondary, ""),
        ]
    return [
        Cond(CONDITION_READY, "False", secondary, message),
        Cond(CONDITION_SUCCEEDED, "Unknown", secondary, message),
        Cond(CONDITION_FAILED, "False", secondary, ""),
        Cond(CONDITION_RECONCILING, "True", secondary, message),
        Cond(CONDITION_STALLED, "False", secondary, ""),
    ]


def failure_prefix(reason: object) -> str | None:
    """The kind a failure reason starts with (``ClientError: ...``), if any."""
    text = str(reason or "").lstrip()
    return next((kind for kind in FAILURE_KINDS if text.startswith(kind + ":")), None)


def _finish_status(plan: Plan, obs: Observation) -> None:
    """Conditions and bookkeeping, computed from the rest of the status."""
    status = plan.status
    if status.get("trainingJobStatus") in TERMINAL:
        _plan_ttl(plan, obs)
    status["observedGeneration"] = obs.generation
    status["conditions"] = merge_conditions(
        obs.status.get("conditions"),
        desired_conditions(status, plan.failure_kind),
        generation=obs.generation,
        now=rfc3339(obs.now),
    )
    if status == {k: v for k, v in obs.status.items() if v is not None}:
        return
    status["lastModifiedTime"] = rfc3339(obs.now)


def invalid_status(
    status: Mapping[str, Any],
    message: str,
    *,
    generation: int | None,
    now: datetime,
    kind: str = VALIDATION_ERROR,
) -> JSON:
    """The status of a TrainingJob that cannot run as specified: Failed, naming the field.

    ``kind`` is ValidationError (the spec does not parse) or ClientError (the cluster
    refused what it asks for, e.g. an admission policy rejected its Job).
    """
    new: JSON = {k: v for k, v in status.items() if v is not None}
    if new.get("trainingJobStatus") in TERMINAL:
        return new
    stamp = rfc3339(now)
    text = clip(f"{kind}: {message}")
    new.setdefault("creationTime", stamp)
    new["trainingJobStatus"] = FAILED
    new["failureReason"] = text
    transitions = [dict(t) for t in new.get("secondaryStatusTransitions") or ()]
    if transitions and not transitions[-1].get("endTime"):
        transitions[-1]["endTime"] = stamp
    transitions.append({"status": "Failed", "startTime": stamp, "statusMessage": text})
    new["secondaryStatusTransitions"] = transitions
    new["secondaryStatus"] = "Failed"
    new["trainingEndTime"] = stamp
    new["observedGeneration"] = generation
    new["conditions"] = merge_conditions(
        status.get("conditions"),
        desired_conditions(new, kind),
        generation=generation,
        now=stamp,
    )
    new["lastModifiedTime"] = stamp
    return new
