"""The TuningJob planner: the trials (child TrainingJobs) -> a :class:`Plan`. Pure.

The trials are the truth. The search state is rebuilt from them at every reconcile
(:mod:`.tuning_search`): the tuned hyperparameters each trial was created with, and
its final objective from its ``finalMetricDataList``. Suggestions are deterministic in
the trial's index, so a restarted operator neither repeats a trial nor loses one, and
trial names are deterministic (``{name}-001``...), so a trial is never created twice.

The search runs at most ``maxParallelTrainingJobs`` trials at once until
``maxNumberOfTrainingJobs`` have been created (Grid: every combination), a completion
criterion is met or ``maxRuntimeInSeconds`` has passed; then the running trials are
stopped (``spec.stop``) and the TuningJob ends ``Completed`` with the reason.
``spec.stop`` ends it ``Stopped`` the same way. A trial whose log gave no objective
counts as a failed objective; the search goes on. A spec the search cannot run (a range
the algorithm does not accept, an objective no metric definition produces) ends
``Failed`` before any trial, naming the field.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from kubemaker.api.common import (
    CONDITION_FAILED,
    CONDITION_READY,
    CONDITION_RECONCILING,
    CONDITION_STALLED,
    CONDITION_SUCCEEDED,
)
from kubemaker.api.training import TrainingJobStatusString
from kubemaker.api.tuning import (
    ConsumedResources,
    FinalHyperParameterTuningJobObjectiveMetric,
    HyperParameterTrainingJobSummary,
    ObjectiveStatusCounters,
    TrainingJobStatusCounters,
    TuningJobCompletionDetails,
    TuningJobSpec,
    TuningJobStatus,
)
from kubemaker.builders import tuning as tb
from kubemaker.builders.errors import SpecError
from kubemaker.failures import FailureKind, failure
from kubemaker.planners import tuning_search as search
from kubemaker.planners.training_status import parse_time
from kubemaker.planners.tuning_views import TrialView
from kubemaker.reconcile.conditions import Cond, merge_conditions
from kubemaker_runtime.algorithms.xgboost import hyperparameters as xgboost_hyperparameters

JSON = dict[str, Any]
TERMINAL = frozenset({"Completed", "Failed", "Stopped"})
# Trials are looked at this often while they run (their events wake the planner too).
POLL_SECONDS = 30.0


@dataclass(frozen=True)
class Observation:
    name: str
    namespace: str
    uid: str
    generation: int | None
    spec: TuningJobSpec
    status: TuningJobStatus
    trials: Sequence[TrialView]
    now: datetime
    creation_timestamp: str | None = None


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


@dataclass
class Plan:
    status: TuningJobStatus
    create: list[JSON] = field(default_factory=list)  # trial TrainingJobs
    stop: list[str] = field(default_factory=list)  # trials to stop (spec.stop: true)
    # Trials the search stops early (the median rule, Hyperband), with why: also stopped
    # through spec.stop, and marked with the stopped-early annotation.
    stop_early: dict[str, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None


def plan_tuning(obs: Observation) -> Plan:
    status = obs.status.model_copy(deep=True)
    plan = Plan(status=status)
    state = status.hyper_parameter_tuning_job_status
    status.creation_time = status.creation_time or parse_time(obs.creation_timestamp) or obs.now
    config = obs.spec.hyper_parameter_tuning_job_config
    maximize = config.hyper_parameter_tuning_job_objective.type == "Maximize"
    trials = sorted(obs.trials, key=lambda t: t.index)
    _describe(obs, plan, trials, maximize)
    if state in TERMINAL:
        return _finish(obs, plan)
    if state is None:
        try:
            _check(obs.spec)
        except SpecError as exc:
            return _end(obs, plan, "Failed", failure(FailureKind.CLIENT, str(exc)).reason)
        status.hyper_parameter_tuning_job_status = "InProgress"
        plan.events.append(Event("Normal", "InProgress", _start_message(obs.spec)))

    running = [t for t in trials if t.running]
    reason = _ending(obs, trials, maximize)
    if reason is not None or state == "Stopping" or obs.spec.stop:
        stopping = obs.spec.stop or state == "Stopping"
        if stopping and state != "Stopping":
            status.hyper_parameter_tuning_job_status = "Stopping"
            plan.events.append(Event("Normal", "Stopping", "Stopping every running trial"))
        plan.stop = [t.name for t in running if not t.stop_requested]
        if running:
            plan.requeue_after = POLL_SECONDS
            return _finish(obs, plan)
        if stopping:
            return _end(obs, plan, "Stopped", "Stopped as requested (spec.stop)")
        return _end(obs, plan, "Completed", reason or "")

    budget = _budget(obs.spec)
    free = config.resource_limits.max_parallel_training_jobs - len(running)
    count = min(free, budget - len(trials))
    if count > 0:
        hyperparameters = search.suggest(
            config, [_trial(t, obs.spec) for t in trials], count, seed=_seed(obs)
        )
        owner = tb.tuning_owner(obs.name, obs.namespace, obs.uid)
        first = len(trials)
        for offset, tuned in enumerate(hyperparameters):
            plan.create.append(
                tb.build_trial(obs.spec, owner=owner, index=first + offset, tuned=tuned)
            )
        if hyperparameters:
            names = ", ".join(
                tb.trial_name(obs.name, first + i) for i in range(len(hyperparameters))
            )
            plan.events.append(Event("Normal", "TrialsCreated", f"Created {names}"))
    if running or plan.create:
        plan.requeue_after = POLL_SECONDS
    return _finish(obs, plan)


# Parts of the API this controller does not run yet: refused by name rather than
# silently ignored (a Hyperband search without its early stops would spend the budget
# of a random search while claiming otherwise).
_NOT_YET = (
    (
        lambda spec: spec.hyper_parameter_tuning_job_config.strategy == "Hyperband",
        "spec.hyperParameterTuningJobConfig.strategy",
        "Hyperband is not run by this operator yet (its early stops need the trials' "
        "intermediate values); use Bayesian or Random",
    ),
    (
        lambda spec: (
            spec.hyper_parameter_tuning_job_config.training_job_early_stopping_type == "Auto"
        ),
        "spec.hyperParameterTuningJobConfig.trainingJobEarlyStoppingType",
        "early stopping (Auto) is not run by this operator yet; set Off",
    ),
    (
        lambda spec: spec.warm_start_config is not None,
        "spec.warmStartConfig",
        "warm start is not run by this operator yet",
    ),
)


def _check(spec: TuningJobSpec) -> None:
    for applies, field_name, message in _NOT_YET:
        if applies(spec):
            raise SpecError(field_name, message)
    tb.check_objective(spec)
    algorithm = spec.training_job_definition.algorithm_specification
    tunable = (
        xgboost_hyperparameters.tunable_ranges() if algorithm.algorithm_name == "xgboost" else None
    )
    errors = search.check_ranges(
        spec.hyper_parameter_tuning_job_config,
        tunable,
        algorithm=algorithm.algorithm_name or "the algorithm",
    )
    if errors:
        field_name, _, message = errors[0].partition(": ")
        raise SpecError(
            field_name, message + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
        )
    if _budget(spec) > tb.MAX_TRIALS:
        raise SpecError(
            "spec.hyperParameterTuningJobConfig.resourceLimits.maxNumberOfTrainingJobs",
            f"at most {tb.MAX_TRIALS} trials",
        )


def _budget(spec: TuningJobSpec) -> int:
    config = spec.hyper_parameter_tuning_job_config
    limit = config.resource_limits.max_number_of_training_jobs
    if config.strategy == "Grid":
        combinations = len(search.grid(config))
        return combinations if limit is None else min(limit, combinations)
    assert limit is not None  # the API requires it unless Grid
    return limit


def _ending(obs: Observation, trials: Sequence[TrialView], maximize: bool) -> str | None:
    """Why the search ends now, if it does."""
    config = obs.spec.hyper_parameter_tuning_job_config
    done = [_trial(t, obs.spec) for t in trials]
    reason = search.completion_reason(config, done)
    if reason is not None:
        return reason
    limit = config.resource_limits.max_runtime_in_seconds
    started = obs.status.creation_time or parse_time(obs.creation_timestamp)
    if limit is not None and started is not None and (obs.now - started).total_seconds() >= limit:
        return f"the search ran for resourceLimits.maxRuntimeInSeconds ({limit} s)"
    if len(trials) >= _budget(obs.spec) and not any(t.running for t in trials):
        return f"all {len(trials)} training jobs of the budget have ended"
    return None


def _trial(view: TrialView, spec: TuningJobSpec) -> search.Trial:
    config = spec.hyper_parameter_tuning_job_config
    metric = config.hyper_parameter_tuning_job_objective.metric_name
    tuned = _tuned_names(spec)
    objective = view.final_metrics.get(metric)
    state: Literal["running", "completed", "failed", "stopped"]
    if view.running:
        state = "running"
    elif view.training_job_status == "Completed":
        state = "completed" if objective is not None else "failed"
    elif view.training_job_status == "Stopped":
        state = "stopped"
    else:
        state = "failed"
    return search.Trial(
        index=view.index,
        hyperparameters={k: v for k, v in view.hyperparameters.items() if k in tuned},
        state=state,
        objective=objective if state == "completed" else None,
        intermediate=(),
    )


def _tuned_names(spec: TuningJobSpec) -> set[str]:
    ranges = spec.hyper_parameter_tuning_job_config.parameter_ranges
    return {
        r.name
        for group in (
            ranges.integer_parameter_ranges,
            ranges.continuous_parameter_ranges,
            ranges.categorical_parameter_ranges,
        )
        for r in group or ()
    }


def _seed(obs: Observation) -> int:
    """The config's randomSeed, else one derived from the object's uid (stable for its life)."""
    configured = obs.spec.hyper_parameter_tuning_job_config.random_seed
    if configured is not None:
        return configured
    return int(hashlib.sha256(obs.uid.encode()).hexdigest()[:8], 16)


# --- status ---------------------------------------------------------------------------------


def _describe(obs: Observation, plan: Plan, trials: Sequence[TrialView], maximize: bool) -> None:
    status = plan.status
    spec = obs.spec
    metric = spec.hyper_parameter_tuning_job_config.hyper_parameter_tuning_job_objective
    done = [_trial(t, spec) for t in trials]
    counters = TrainingJobStatusCounters()
    objectives = ObjectiveStatusCounters()
    for view, trial in zip(trials, done, strict=True):
        if trial.state == "running":
            counters.in_progress += 1
            objectives.pending += 1
        elif view.training_job_status == "Completed":
            counters.completed += 1
        elif trial.state == "stopped":
            counters.stopped += 1
        else:
            counters.non_retryable_error += 1
        if trial.state == "completed":
            objectives.succeeded += 1
        elif trial.state != "running":
            objectives.failed += 1
    status.training_job_status_counters = counters
    status.objective_status_counters = objectives
    best = search.best(done, maximize=maximize)
    if best is not None:
        view = next(t for t in trials if t.index == best.index)
        assert best.objective is not None
        status.best_training_job = HyperParameterTrainingJobSummary(
            training_job_name=view.name,
            training_job_status=TrainingJobStatusString(view.training_job_status or "Completed"),
            tuned_hyper_parameters=dict(best.hyperparameters),
            final_hyper_parameter_tuning_job_objective_metric=(
                FinalHyperParameterTuningJobObjectiveMetric(
                    type=metric.type, metric_name=metric.metric_name, value=best.objective
                )
            ),
            objective_status="Succeeded",
            creation_time=parse_time(view.creation_time),
            training_start_time=parse_time(view.training_start_time),
            training_end_time=parse_time(view.training_end_time),
        )
    not_improving = search.not_improving_count(done, maximize=maximize)
    status.tuning_job_completion_details = TuningJobCompletionDetails(
        number_of_training_jobs_objective_not_improving=not_improving
    )
    start = status.creation_time or parse_time(obs.creation_timestamp)
    end = status.hyper_parameter_tuning_end_time or obs.now
    if start is not None:
        status.consumed_resources = ConsumedResources(
            runtime_in_seconds=max(0, int((end - start).total_seconds()))
        )


def _start_message(spec: TuningJobSpec) -> str:
    config = spec.hyper_parameter_tuning_job_config
    objective = config.hyper_parameter_tuning_job_objective
    return (
        f"{config.strategy} search of {objective.type.lower()} {objective.metric_name}: "
        f"{_budget(spec)} training jobs, {config.resource_limits.max_parallel_training_jobs} "
        "at a time"
    )


def _end(obs: Observation, plan: Plan, state: str, reason: str) -> Plan:
    status = plan.status
    status.hyper_parameter_tuning_job_status = state  # type: ignore[assignment]
    status.hyper_parameter_tuning_end_time = obs.now
    status.completion_reason = reason if state != "Failed" else None
    status.failure_reason = reason if state == "Failed" else None
    kind = "Warning" if state == "Failed" else "Normal"
    plan.events.append(Event(kind, state, reason or state))
    return _finish(obs, plan)


def _finish(obs: Observation, plan: Plan) -> Plan:
    status = plan.status
    state = status.hyper_parameter_tuning_job_status or "InProgress"
    message = status.failure_reason or status.completion_reason or ""
    ended = state in TERMINAL
    desired = [
        Cond(CONDITION_READY, "True" if state == "Completed" else "False", state, message),
        Cond(
            CONDITION_SUCCEEDED,
            "True" if state == "Completed" else ("Unknown" if not ended else "False"),
            state,
            message,
        ),
        Cond(CONDITION_FAILED, "True" if state == "Failed" else "False", state, ""),
        Cond(CONDITION_RECONCILING, "False" if ended else "True", state, ""),
        Cond(CONDITION_STALLED, "True" if state == "Failed" else "False", state, ""),
    ]
    status.conditions = merge_conditions(
        obs.status.conditions, desired, generation=obs.generation, now=obs.now
    )
    status.observed_generation = obs.generation
    return plan
