"""The TrainingJob planner: status and actions from what the controller observed.

:func:`plan_training` is a pure function of an :class:`Observation` (the spec, the
status written last, the Jobs and pods of the job, the agents' reports, the clock) and
returns a :class:`Plan`: the new status, as the typed ``TrainingJobStatus``, and what
to create, delete and announce. It is level-based: the same observation gives the same
plan, so a restarted operator (or a repeated event) changes nothing.

Status machine (SageMaker's, see docs/trainingjob.md):

    InProgress: Pending -> Starting -> Downloading -> Training -> Uploading
                (-> Interrupted -> Restarting -> Starting ... after a platform failure)
    Completed:  Completed
    Failed:     Failed           (every failure goes through :func:`_fail`)
    Stopping:   Stopping | MaxRuntimeExceeded | MaxWaitTimeExceeded
    Stopped:    Stopped  | MaxRuntimeExceeded | MaxWaitTimeExceeded
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import datetime

from kubemaker.api.common import (
    MetricData,
)
from kubemaker.api.training import (
    TERMINAL_TRAINING_STATUSES,
    MetricSeries,
    ModelArtifacts,
    TrainingJobSpec,
)
from kubemaker.api.training import TrainingJobStatusString as Primary
from kubemaker.builders import naming
from kubemaker.builders.errors import SpecError
from kubemaker.builders.training import ALGORITHM_CONTAINER, resolve_image, resolve_resources
from kubemaker.failures import (
    Failure,
    FailureKind,
    agent_failure,
    algorithm_failure,
    clip,
    failure,
)
from kubemaker.metric_definitions import compile_definitions, merge_final_metrics
from kubemaker.planners.training_status import (
    MESSAGE_LIMIT,
    Observation,
    Plan,
    Step,
    complete,
    fail,
    finish,
    last_message,
    parse_time,
    read_status,
    stopped,
    transition,
)
from kubemaker.planners.training_views import EXIT_CODE_IN_MESSAGE, JobView, PodView
from kubemaker_runtime.protocol import AgentReport

# Within one attempt the shown progress never goes back (pods of a multi-host job
# progress at different speeds; the furthest one is shown).
_PROGRESS = {
    Step.PENDING: 0,
    Step.STARTING: 0,
    Step.RESTARTING: 0,
    Step.DOWNLOADING: 1,
    Step.TRAINING: 2,
    Step.UPLOADING: 3,
}
STOP_CAUSES = frozenset({Step.STOPPING, Step.MAX_RUNTIME_EXCEEDED, Step.MAX_WAIT_TIME_EXCEEDED})
# A Job with no pod this long after its creation has its events read for a refusal;
# a refusal that may heal (a full quota) is looked at again this often.
REFUSAL_CHECK_SECONDS = 5.0
REFUSAL_RECHECK_SECONDS = 30.0
# Refusals that only a change of the spec or of the namespace's policy can lift.
_PERMANENT_REFUSAL = re.compile(
    r"violates PodSecurity|denied the request|is invalid|usage per (Container|Pod)"
)

# Container waiting reasons that no amount of waiting fixes: the spec is at fault.
_PERMANENT_WAITING = frozenset({"InvalidImageName", "ErrImageNeverPull"})
# Waiting reasons worth showing while a job is Starting. A missing Secret or image may
# still appear (GitOps tools apply objects in any order): shown, not fatal.
_NOTABLE_WAITING = _PERMANENT_WAITING | {
    "ErrImagePull",
    "ImagePullBackOff",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
}

# --- the state machine ------------------------------------------------------------------


def plan_training(obs: Observation) -> Plan:
    plan = Plan(status=read_status(obs.status), now=obs.now.replace(microsecond=0))
    status = plan.status
    if status.training_job_status in TERMINAL_TRAINING_STATUSES:
        _record_reports(plan, obs, _current_attempt(obs))
        return _finish(plan, obs)

    if status.training_job_status is None:
        status.training_job_status = Primary.IN_PROGRESS
        status.creation_time = status.creation_time or _created(obs, plan)
        status.retry_count = 0
        if obs.spec.queue_name:
            transition(plan, Step.PENDING, _kueue_message(obs.spec.queue_name))
        else:
            transition(plan, Step.STARTING, "Preparing the instances for training")

    try:
        image = resolve_image(obs.spec, obs.config)
        resolve_resources(obs.spec, obs.config)
        compile_definitions(obs.spec.algorithm_specification.metric_definitions)
    except SpecError as exc:
        fail(plan, failure(FailureKind.CLIENT, str(exc)))
        return _finish(plan, obs)
    # What ran is recorded when the first attempt is planned, never recomputed: a later
    # change of the operator's image catalog does not rewrite a running job's history.
    status.training_image = status.training_image or image

    attempt = _current_attempt(obs)
    status.retry_count = attempt
    status.job_name = naming.job_name(obs.name, attempt)
    job = next((j for j in obs.jobs if j.attempt == attempt), None)
    pods = [p for p in obs.pods if p.attempt == attempt]
    _record_reports(plan, obs, attempt)

    if status.training_job_status == Primary.STOPPING:
        _plan_stopping(plan, job, pods)
        return _finish(plan, obs)

    # A Job that has already finished decides the outcome, even if a stop was asked.
    if job is not None and (job.complete or job.failed_reason):
        _plan_finished_job(plan, obs, job, pods, attempt)
        return _finish(plan, obs)

    cause = _stop_cause(plan, obs)
    if cause is not None:
        status.training_job_status = Primary.STOPPING
        stop_message = _stop_message(obs.spec, cause)
        transition(plan, cause, stop_message)
        plan.event("Normal" if cause == Step.STOPPING else "Warning", cause.value, stop_message)
        _plan_stopping(plan, job, pods)
        return _finish(plan, obs)

    if job is None:
        if status.job_name not in obs.expected_jobs:
            plan.create_attempt = attempt
            plan.runtime_used = _runtime_used(obs)
        return _finish(plan, obs)

    if not pods and _plan_refusal(plan, obs, job):
        _schedule_deadlines(plan, obs)
        return _finish(plan, obs)

    found = _agent_failure(pods) or _permanent_waiting(pods)
    if found is not None:
        # The attempt's pods stop in place: their logs say what went wrong.
        _expire(plan, pods)
        if found.retryable:
            _retry_or_fail(plan, obs, attempt, found.message)
        else:
            fail(plan, found)
        return _finish(plan, obs)

    secondary, message = _progress(job, pods, obs)
    current = status.secondary_status
    if (
        current in _PROGRESS
        and _PROGRESS[secondary] < _PROGRESS[current]
        and current != Step.RESTARTING
    ):
        secondary, message = current, None  # never show a step back within an attempt
    if secondary != current or (message and message != last_message(status)):
        transition(plan, secondary, message)
    if _PROGRESS[secondary] >= 1 and status.training_start_time is None:
        status.training_start_time = parse_time(_earliest_start(pods)) or plan.now
    _schedule_deadlines(plan, obs)
    return _finish(plan, obs)


def _plan_refusal(plan: Plan, obs: Observation, job: JobView) -> bool:
    """A Job whose pods the cluster will not create (Pod Security, an admission webhook,
    a LimitRange, a quota): Failed when that cannot heal, else shown while it waits.
    Returns whether the refusal decided the plan."""
    if job.suspended or job.complete or job.failed_reason:
        return False
    refusal = obs.pod_refusals.get(job.name)
    if refusal is None:
        created = parse_time(job.created)
        if created is not None:
            age = (obs.now - created).total_seconds()
            # Look again when the controller would read the Job's events, then now and then.
            young = age < REFUSAL_CHECK_SECONDS
            plan.wake_in(REFUSAL_CHECK_SECONDS - age if young else REFUSAL_RECHECK_SECONDS)
        return False
    if _PERMANENT_REFUSAL.search(refusal):
        # No pod exists: deleting the Job loses no log, and stops its futile retries.
        plan.delete_jobs.append((job.name, job.uid))
        text = f"the cluster refuses to create the pods of Job {job.name}: {refusal}"
        fail(plan, failure(FailureKind.CLIENT, text))
        return True
    message = clip(f"The cluster refuses to create the pods for now: {refusal}", MESSAGE_LIMIT)
    if message != last_message(plan.status):
        transition(plan, plan.status.secondary_status or Step.STARTING, message)
        plan.event("Warning", "PodsRefused", message)
    plan.wake_in(REFUSAL_RECHECK_SECONDS)
    return True


def _created(obs: Observation, plan: Plan) -> datetime:
    return parse_time(obs.creation_timestamp) or plan.now


def _current_attempt(obs: Observation) -> int:
    recorded = int(obs.status.get("retryCount") or 0)
    seen = max((j.attempt for j in obs.jobs), default=0)
    return max(recorded, seen)


def _runtime_used(obs: Observation) -> float:
    start = parse_time(obs.status.get("trainingStartTime"))
    return (obs.now - start).total_seconds() if start else 0.0


def _stop_cause(plan: Plan, obs: Observation) -> Step | None:
    if obs.spec.stop:
        return Step.STOPPING
    start = plan.status.training_start_time
    limit = obs.spec.stopping_condition.max_runtime_in_seconds
    if start is not None and (obs.now - start).total_seconds() >= limit:
        return Step.MAX_RUNTIME_EXCEEDED
    wait = obs.spec.stopping_condition.max_wait_time_in_seconds
    created = plan.status.creation_time or _created(obs, plan)
    if wait is not None and (obs.now - created).total_seconds() >= wait:
        return Step.MAX_WAIT_TIME_EXCEEDED
    return None


def _stop_message(spec: TrainingJobSpec, cause: Step) -> str:
    if cause == Step.MAX_RUNTIME_EXCEEDED:
        return (
            "The job reached stoppingCondition.maxRuntimeInSeconds "
            f"({spec.stopping_condition.max_runtime_in_seconds} s); stopping it"
        )
    if cause == Step.MAX_WAIT_TIME_EXCEEDED:
        return (
            "The job reached stoppingCondition.maxWaitTimeInSeconds "
            f"({spec.stopping_condition.max_wait_time_in_seconds} s); stopping it"
        )
    return "Stopping the training job as requested (spec.stop)"


def _schedule_deadlines(plan: Plan, obs: Observation) -> None:
    start = plan.status.training_start_time
    if start is not None:
        limit = obs.spec.stopping_condition.max_runtime_in_seconds
        plan.wake_in(limit - (obs.now - start).total_seconds())
    wait = obs.spec.stopping_condition.max_wait_time_in_seconds
    if wait is not None:
        created = plan.status.creation_time or _created(obs, plan)
        plan.wake_in(wait - (obs.now - created).total_seconds())


def _progress(job: JobView, pods: Sequence[PodView], obs: Observation) -> tuple[Step, str | None]:
    """The furthest step any pod of the attempt has reached, with a message."""
    count = obs.spec.resource_config.instance_count
    if job.suspended and not any(p.phase == "Running" for p in pods):
        queue = obs.spec.queue_name
        return Step.PENDING, _kueue_message(queue) if queue else "The Job is suspended"
    live = [p for p in pods if not p.terminal]
    running = sum(1 for p in live if p.algorithm and p.algorithm.state == "running")
    if running:
        return Step.TRAINING, f"Training on {running} of {count} instance(s)"
    if any(
        p.algorithm is not None
        and p.algorithm.state == "terminated"
        and p.agent is not None
        and p.agent.state == "running"
        for p in live
    ):
        return Step.UPLOADING, "Uploading the model and output data"
    trouble = _waiting_trouble(live)
    if any(p.agent is not None and p.agent.state == "running" for p in live):
        return Step.DOWNLOADING, trouble or "Downloading input data"
    unschedulable = next((p.unschedulable for p in live if p.unschedulable), None)
    if unschedulable:
        return Step.PENDING, clip(f"Waiting for nodes: {unschedulable}", MESSAGE_LIMIT)
    return Step.STARTING, trouble or "Preparing the instances for training"


def _kueue_message(queue: str) -> str:
    return f"Waiting for Kueue to admit the job (queue {queue})"


def _waiting_trouble(pods: Sequence[PodView]) -> str | None:
    """Why a container is not starting (image pulls, missing Secrets), if one is stuck."""
    for pod in pods:
        for container in (pod.agent, pod.algorithm):
            if container is not None and container.reason in _NOTABLE_WAITING:
                detail = f": {container.message}" if container.message else ""
                text = f"{container.name} container {container.reason}{detail}"
                return clip(text, MESSAGE_LIMIT)
    return None


def _earliest_start(pods: Sequence[PodView]) -> str | None:
    times = sorted(p.agent.started_at for p in pods if p.agent and p.agent.started_at)
    return times[0] if times else None


def _permanent_waiting(pods: Sequence[PodView]) -> Failure | None:
    for pod in pods:
        for container in (pod.agent, pod.algorithm):
            if (
                container is not None
                and container.state == "waiting"
                and container.reason in _PERMANENT_WAITING
            ):
                detail = f": {container.message}" if container.message else ""
                return failure(
                    FailureKind.CLIENT,
                    f"the {container.name} container cannot start ({container.reason}){detail}",
                )
    return None


def _agent_failure(pods: Sequence[PodView]) -> Failure | None:
    """The agent's own failure while the algorithm has not finished (e.g. missing data)."""
    for pod in sorted(pods, key=lambda p: p.index or 0):
        report = pod.report()
        if report is not None and report.outcome == "Failed" and report.agent_error:
            algorithm_done = pod.algorithm is not None and pod.algorithm.state == "terminated"
            if not algorithm_done:
                return agent_failure(report.agent_error_kind, report.agent_error)
    return None


def _plan_finished_job(
    plan: Plan, obs: Observation, job: JobView, pods: Sequence[PodView], attempt: int
) -> None:
    reports = _reports_by_index(obs, attempt)
    if job.complete:
        agent = next((r for r in reports if r.outcome == "Failed" and r.agent_error), None)
        if agent is not None and agent.agent_error:
            # The algorithm succeeded but its model could not be uploaded: not retried,
            # a new attempt would train again.
            fail(plan, agent_failure(agent.agent_error_kind, agent.agent_error))
            return
        complete(plan, job, pods)
        return
    if job.failed_reason == "DeadlineExceeded":
        stopped(
            plan,
            Step.MAX_RUNTIME_EXCEEDED,
            "The Job reached its activeDeadlineSeconds (maxRuntimeInSeconds)",
        )
        return
    found = _algorithm_failure(job, pods, reports) or next(
        (
            agent_failure(r.agent_error_kind, r.agent_error)
            for r in reports
            if r.agent_error and r.agent_error_kind == "user"
        ),
        None,
    )
    if found is not None:
        fail(plan, found)
        return
    _retry_or_fail(plan, obs, attempt, _platform_failure(job, pods))


def _algorithm_failure(
    job: JobView, pods: Sequence[PodView], reports: Sequence[AgentReport]
) -> Failure | None:
    """The algorithm's own failure, or None when it did not fail."""
    failed = [
        p
        for p in pods
        if p.disruption is None
        and p.algorithm is not None
        and p.algorithm.state == "terminated"
        and (p.algorithm.exit_code or 0) != 0
    ]
    exit_code: int | None = None
    output: str | None = None
    out_of_memory = False
    own: str | None = None
    if failed:
        pod = min(failed, key=lambda p: p.index or 0)
        assert pod.algorithm is not None
        exit_code = pod.algorithm.exit_code
        output = pod.algorithm.message
        out_of_memory = pod.algorithm.reason == "OOMKilled"
        report = pod.report()
        own = report.failure_reason if report is not None else None
    elif job.failed_reason == "PodFailurePolicy" and job.failed_message:
        found = EXIT_CODE_IN_MESSAGE.search(job.failed_message)
        if found is None or found.group(1) != ALGORITHM_CONTAINER:
            return None
        exit_code = int(found.group(2))
    else:
        return None
    failure_file = own or next((r.failure_reason for r in reports if r.failure_reason), None)
    return algorithm_failure(
        failure_file=failure_file,
        output=output,
        exit_code=exit_code,
        out_of_memory=out_of_memory,
    )


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
        plan.status.retry_count = nxt
        plan.status.job_name = naming.job_name(obs.name, nxt)
        transition(plan, Step.INTERRUPTED, clip(reason, MESSAGE_LIMIT))
        message = f"Retrying after a platform failure (retry {nxt} of {allowed}): {reason}"
        transition(plan, Step.RESTARTING, clip(message, MESSAGE_LIMIT))
        plan.event("Warning", "Restarting", clip(message))
        plan.create_attempt = nxt
        plan.runtime_used = _runtime_used(obs)
        return
    if allowed:
        reason = f"{reason} (after {attempt} of {allowed} retries)"
    fail(plan, failure(FailureKind.PLATFORM, reason))


def _plan_stopping(plan: Plan, job: JobView | None, pods: Sequence[PodView]) -> None:
    """Stop the pods in place (their logs stay for ``kubectl logs``); a Job none of whose
    pods has started on a node (queued, refused, unschedulable) is deleted, as nothing
    ran that left a log (and a pod never started has no deadline to pass)."""
    cause = plan.status.secondary_status
    if cause not in STOP_CAUSES:
        cause = Step.STOPPING
    started = any(p.start_time for p in pods)
    if job is not None and not job.deleting and not job.failed_reason and not started:
        plan.delete_jobs.append((job.name, job.uid))
    elif started:
        _expire(plan, pods)
    ended = all(p.terminal for p in pods)
    if ended and (pods or job is None or job.deleting or job.failed_reason or job.complete):
        # Every pod has ended: the agents have uploaded what there was.
        stopped(plan, Step.STOPPED if cause == Step.STOPPING else cause, None)


def _expire(plan: Plan, pods: Sequence[PodView]) -> None:
    """Stop the running pods through their activeDeadlineSeconds: the kubelet ends them
    as it would at a deletion, and they stay (Failed, DeadlineExceeded) until the TTL."""
    for pod in pods:
        if pod.terminal or pod.deleting or pod.expiring:
            continue
        started = parse_time(pod.start_time)
        # Due a second from now (a pod not started yet: a second after it starts).
        elapsed = (plan.now - started).total_seconds() if started is not None else 0.0
        plan.expire_pods.append((pod.name, max(1, math.ceil(elapsed) + 1)))


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
    """The model location and the final metrics (the log's, then the agents') into the
    status; a report that could not be read is said, never dropped in silence."""
    status = plan.status
    reports = _reports_by_index(obs, attempt)
    if status.model_artifacts is None and status.training_job_status != Primary.FAILED:
        uri = next((r.model_artifacts for r in reports if r.model_artifacts), None)
        if uri:
            status.model_artifacts = ModelArtifacts(s3_model_artifacts=uri)
    metrics = merge_final_metrics(
        obs.log_metrics.get(attempt, {}), [r.final_metrics for r in reports]
    )
    if metrics:
        # Metrics already in the status stay (the log's values are read once), and keep
        # their timestamp while their value is the same.
        merged = {m.metric_name: m for m in status.final_metric_data_list or ()}
        for name, value in metrics.items():
            if name not in merged or merged[name].value != value:
                merged[name] = MetricData(metric_name=name, value=value, timestamp=plan.now)
        status.final_metric_data_list = [merged[name] for name in sorted(merged)]
    _record_series(plan, obs, attempt)


def _record_series(plan: Plan, obs: Observation, attempt: int) -> None:
    """The series of the metrics the job's annotation names, as far as the log has been
    read. A series already in the status for this attempt is replaced only by a longer
    one (a restarted operator's first read may see less of the log than an earlier one)."""
    series = obs.log_series.get(attempt, {})
    if not obs.series_metrics or not series:
        return
    recorded = {s.metric_name: s for s in plan.status.metric_series or ()}
    for name in obs.series_metrics:
        points = series.get(name)
        old = recorded.get(name)
        if not points or (
            old is not None and old.attempt == attempt and len(old.steps) >= len(points)
        ):
            continue
        recorded[name] = MetricSeries(
            metric_name=name,
            attempt=attempt,
            steps=[step for step, _ in points],
            values=[value for _, value in points],
        )
    plan.status.metric_series = [recorded[name] for name in sorted(recorded)] or None


def _plan_ttl(plan: Plan, obs: Observation) -> None:
    ttl = obs.spec.ttl_seconds_after_finished
    end = plan.status.training_end_time
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


def _finish(plan: Plan, obs: Observation) -> Plan:
    if plan.status.training_job_status in TERMINAL_TRAINING_STATUSES:
        _plan_ttl(plan, obs)
    return finish(plan, obs.generation, obs.status)
