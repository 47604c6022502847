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
``spec.stop`` ends it ``Stopped`` the same way. Raising ``maxNumberOfTrainingJobs`` or
``maxParallelTrainingJobs`` while it runs takes effect at the next reconcile; lowering
the parallelism only holds back new trials.

Early stopping (``Auto``: the median rule) and the Hyperband strategy judge each running
trial by its intermediate objective values (the trial's ``status.metricSeries``, which
its TrainingJob records from its log); a trial they stop is stopped through
``spec.stop``, annotated with why, and counts as stopped, not failed.

A warm start waits for its parent TuningJobs to end, checks what its type requires of
them, and seeds the search (Bayesian) with their trials; ``overallBestTrainingJob`` is
the best of the parents' and its own. A trial whose log gave no objective
counts as a failed objective; the search goes on. A spec the search cannot run (a range
the algorithm does not accept, an objective no metric definition produces) ends
``Failed`` before any trial, naming the field.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
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
    MAX_STEPS_KEYS,
    ConsumedResources,
    FinalHyperParameterTuningJobObjectiveMetric,
    HyperParameterTrainingJobSummary,
    ObjectiveStatusCounters,
    TrainingJobStatusCounters,
    TrainingJobTemplate,
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
class Parent:
    """A warm start's parent TuningJob, as found in the cluster."""

    name: str
    spec: TuningJobSpec
    state: str | None  # its hyperParameterTuningJobStatus
    trials: Sequence[TrialView] = ()


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
    # Warm start: each parent named by the spec that exists (a missing one is absent).
    parents: Mapping[str, Parent] = field(default_factory=dict)


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
    prior = _prior_trials(obs)
    _describe(obs, plan, trials, prior, maximize)
    if state in TERMINAL:
        return _finish(obs, plan)
    if state is None:
        try:
            _check(obs.spec)
            waiting = _check_parents(obs)
        except SpecError as exc:
            return _end(obs, plan, "Failed", failure(FailureKind.CLIENT, str(exc)).reason)
        if waiting and not obs.spec.stop:
            plan.requeue_after = POLL_SECONDS
            return _finish(obs, plan, waiting)
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

    plan.stop_early = _early_stops(obs.spec, trials, maximize)
    plan.stop = list(plan.stop_early)
    for name, why in plan.stop_early.items():
        plan.events.append(Event("Normal", "StoppedEarly", f"Stopping {name}: {why}"))
    running = [t for t in running if t.name not in plan.stop_early]
    budget = _budget(obs.spec)
    # Lowering the parallelism never stops a running trial: it only holds back new ones.
    free = config.resource_limits.max_parallel_training_jobs - len(running)
    count = min(free, budget - len(trials))
    if count > 0:
        hyperparameters = search.suggest(
            config,
            [_trial(t, obs.spec) for t in trials],
            count,
            seed=_seed(obs),
            prior=[trial for _, trial in prior],
            space=_space(obs.spec),
        )
        owner = tb.tuning_owner(obs.name, obs.namespace, obs.uid)
        first = len(trials)
        for offset, tuned in enumerate(hyperparameters):
            values = dict(tuned)
            definition = tb.definition(obs.spec, values.pop(search.DEFINITION, None))
            assert definition is not None  # the search picks one of the spec's
            plan.create.append(
                tb.build_trial(definition, owner=owner, index=first + offset, tuned=values)
            )
        if hyperparameters:
            names = ", ".join(
                tb.trial_name(obs.name, first + i) for i in range(len(hyperparameters))
            )
            plan.events.append(Event("Normal", "TrialsCreated", f"Created {names}"))
    if running or plan.create or plan.stop:
        plan.requeue_after = POLL_SECONDS
    return _finish(obs, plan)


def _early_stops(
    spec: TuningJobSpec, trials: Sequence[TrialView], maximize: bool
) -> dict[str, str]:
    """Running trials the median rule or Hyperband stops now, with why."""
    config = spec.hyper_parameter_tuning_job_config
    hyperband = config.strategy == "Hyperband"
    if not hyperband and config.training_job_early_stopping_type != "Auto":
        return {}
    done = [_trial(t, spec) for t in trials]
    stops: dict[str, str] = {}
    for view, trial in zip(trials, done, strict=True):
        if trial.state != "running" or view.stop_requested or not trial.intermediate:
            continue
        step, value = trial.intermediate[-1]
        definition = tb.definition(spec, view.definition)
        metric = definition.metric if definition else "objective"
        if hyperband:
            low, high = hyperband_resources(spec)
            if step >= high:
                continue  # it has trained all it will: a stop now saves nothing
            if search.hyperband_stop(
                trial, done, min_resource=low, max_resource=high, maximize=maximize
            ):
                stops[view.name] = f"Hyperband stopped it at step {step} ({metric} {value:g})"
        elif search.median_stop(trial, done, maximize=maximize):
            stops[view.name] = (
                f"at step {step} its {metric} ({value:g}) was worse than the median of the "
                "completed trials' running averages (early stopping Auto)"
            )
    return stops


_HYPERBAND = "spec.hyperParameterTuningJobConfig.strategyConfig.hyperbandStrategyConfig"


def hyperband_resources(spec: TuningJobSpec) -> tuple[int, int]:
    """Hyperband's (minResource, maxResource): as configured; else 1, and SageMaker's
    default for maxResource, the epochs hyperparameter (``epochs``, ``num_round``...)."""
    config = spec.hyper_parameter_tuning_job_config.strategy_config
    bounds = config.hyperband_strategy_config if config else None
    low = (bounds.min_resource if bounds else None) or 1
    high = bounds.max_resource if bounds else None
    if high is None:
        # Several definitions: the most epochs any of them runs.
        epochs = []
        for definition in tb.definitions(spec):
            static = definition.template.static_hyper_parameters or {}
            found = next((static[k] for k in MAX_STEPS_KEYS if k in static), "")
            if found.strip().isdigit():
                epochs.append(int(found))
        high = max(epochs, default=None)
    if high is None:
        raise SpecError(
            f"{_HYPERBAND}.maxResource",
            f"set it, or give the epochs as a static hyperparameter ({', '.join(MAX_STEPS_KEYS)})",
        )
    if low > high:
        raise SpecError(f"{_HYPERBAND}.minResource", f"{low} is above maxResource {high}")
    return low, high


def _check(spec: TuningJobSpec) -> None:
    config = spec.hyper_parameter_tuning_job_config
    if config.strategy == "Hyperband":
        hyperband_resources(spec)
    if spec.warm_start_config is not None and config.strategy == "Grid":
        raise SpecError(
            "spec.warmStartConfig",
            "the Grid strategy tries every combination whatever parents tried: use "
            "Bayesian or Random with a warm start",
        )
    errors = []
    for definition in tb.definitions(spec):
        tb.check_objective(definition)
        algorithm = definition.template.algorithm_specification
        tunable = (
            xgboost_hyperparameters.tunable_ranges()
            if algorithm.algorithm_name == "xgboost"
            else None
        )
        errors += search.check_ranges(
            definition.ranges,
            tunable,
            algorithm=algorithm.algorithm_name or "the algorithm",
            where=definition.ranges_field,
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
        combinations = len(_space(spec).grid())
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
    """A trial as the search sees it: its definition's tuned hyperparameters (and, with
    several definitions, which one), its state, and its objective's values."""
    definition = tb.definition(spec, view.definition)
    metric = definition.metric if definition else ""
    objective = view.final_metrics.get(metric)
    state: Literal["running", "completed", "failed", "stopped"]
    if view.running:
        state = "running"
    elif view.training_job_status == "Completed" and definition is not None:
        state = "completed" if objective is not None else "failed"
    elif view.training_job_status == "Stopped":
        state = "stopped"
    else:
        state = "failed"
    tuned = set(definition.ranges.names()) if definition else set()
    hyperparameters = {k: v for k, v in view.hyperparameters.items() if k in tuned}
    if view.definition is not None:
        hyperparameters[search.DEFINITION] = view.definition
    return search.Trial(
        index=view.index,
        hyperparameters=hyperparameters,
        state=state,
        objective=objective if state == "completed" else None,
        intermediate=tuple(view.series.get(metric, ())),
    )


def _space(spec: TuningJobSpec) -> search.Space:
    return search.Space.of({d.name: d.ranges for d in tb.definitions(spec)})


_PARENTS = "spec.warmStartConfig.parentHyperParameterTuningJobs"


def _check_parents(obs: Observation) -> str | None:
    """A warm start's parents exist, have ended and fit its type (else a SpecError naming
    the parent); a message while some still run (the search waits for them)."""
    warm = obs.spec.warm_start_config
    if warm is None:
        return None
    running = []
    for i, ref in enumerate(warm.parent_hyper_parameter_tuning_jobs):
        where = f"{_PARENTS}[{i}]"
        name = ref.hyper_parameter_tuning_job_name
        parent = obs.parents.get(name)
        if name == obs.name:
            raise SpecError(where, "a TuningJob cannot be its own parent")
        if parent is None:
            raise SpecError(where, f"TuningJob {name!r} not found in namespace {obs.namespace}")
        if parent.state == "Failed":
            raise SpecError(where, f"TuningJob {name!r} failed: it has no results to start from")
        if parent.state not in TERMINAL:
            running.append(name)
        difference = _warm_start_difference(obs.spec, parent.spec, warm.warm_start_type)
        if difference:
            raise SpecError(where, f"TuningJob {name!r} {difference}")
    if running:
        return f"Waiting for the parent TuningJobs to end: {', '.join(running)}"
    return None


def _warm_start_difference(child: TuningJobSpec, parent: TuningJobSpec, kind: str) -> str | None:
    """What in ``parent`` the warm start type forbids (SageMaker's rules), or None."""
    mine = child.hyper_parameter_tuning_job_config.hyper_parameter_tuning_job_objective
    theirs = parent.hyper_parameter_tuning_job_config.hyper_parameter_tuning_job_objective
    if (mine.type, mine.metric_name) != (theirs.type, theirs.metric_name):
        return (
            f"has another objective ({theirs.type} {theirs.metric_name}): a warm start "
            "keeps the objective"
        )
    if kind != "IdenticalDataAndAlgorithm":
        return None
    ours, their = tb.definitions(child), tb.definitions(parent)
    if [d.name for d in ours] != [d.name for d in their]:
        return "has other trainingJobDefinitions: IdenticalDataAndAlgorithm keeps them"
    for a, b in zip((d.template for d in ours), (d.template for d in their), strict=True):
        for label, left, right in (
            ("input data", a.input_data_config, b.input_data_config),
            ("algorithm", _algorithm(a), _algorithm(b)),
            ("static hyperparameters", a.static_hyper_parameters, b.static_hyper_parameters),
        ):
            if left != right:
                return (
                    f"has other {label}: IdenticalDataAndAlgorithm keeps them "
                    "(use TransferLearning)"
                )
    return None


def _algorithm(template: TrainingJobTemplate) -> tuple[str | None, ...]:
    algo = template.algorithm_specification
    return (algo.training_image, algo.algorithm_name, algo.framework, algo.framework_version)


def _prior_trials(obs: Observation) -> list[tuple[TrialView, search.Trial]]:
    """The parents' trials, as this search sees them (their own objective and ranges)."""
    return [
        (view, _trial(view, parent.spec))
        for parent in obs.parents.values()
        for view in sorted(parent.trials, key=lambda t: t.index)
        if obs.spec.warm_start_config is not None
    ]


def _seed(obs: Observation) -> int:
    """The config's randomSeed, else one derived from the object's uid (stable for its life)."""
    configured = obs.spec.hyper_parameter_tuning_job_config.random_seed
    if configured is not None:
        return configured
    return int(hashlib.sha256(obs.uid.encode()).hexdigest()[:8], 16)


# --- status ---------------------------------------------------------------------------------


def _describe(
    obs: Observation,
    plan: Plan,
    trials: Sequence[TrialView],
    prior: Sequence[tuple[TrialView, search.Trial]],
    maximize: bool,
) -> None:
    status = plan.status
    spec = obs.spec
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
        # A trial stopped early was judged by its intermediate values: they count.
        if trial.state == "completed" or (view.stopped_early and trial.intermediate):
            objectives.succeeded += 1
        elif trial.state != "running":
            objectives.failed += 1
    status.training_job_status_counters = counters
    status.objective_status_counters = objectives
    views = {id(t): v for t, v in zip(done, trials, strict=True)}
    best = search.best(done, maximize=maximize)
    status.best_training_job = _summary(spec, views[id(best)], best) if best else None
    if spec.warm_start_config is not None:
        views.update((id(trial), view) for view, trial in prior)
        overall = search.best([*(t for _, t in prior), *done], maximize=maximize)
        status.overall_best_training_job = (
            _summary(spec, views[id(overall)], overall) if overall else None
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


def _summary(
    spec: TuningJobSpec, view: TrialView, trial: search.Trial
) -> HyperParameterTrainingJobSummary:
    """A completed trial as SageMaker's HyperParameterTrainingJobSummary."""
    objective = spec.hyper_parameter_tuning_job_config.hyper_parameter_tuning_job_objective
    definition = tb.definition(spec, view.definition)
    assert trial.objective is not None
    tuned = {k: v for k, v in trial.hyperparameters.items() if k != search.DEFINITION}
    return HyperParameterTrainingJobSummary(
        training_job_name=view.name,
        training_job_definition_name=view.definition,
        training_job_status=TrainingJobStatusString(view.training_job_status or "Completed"),
        tuned_hyper_parameters=tuned,
        final_hyper_parameter_tuning_job_objective_metric=(
            FinalHyperParameterTuningJobObjectiveMetric(
                type=objective.type,
                metric_name=definition.metric if definition else objective.metric_name,
                value=trial.objective,
            )
        ),
        objective_status="Succeeded",
        creation_time=parse_time(view.creation_time),
        training_start_time=parse_time(view.training_start_time),
        training_end_time=parse_time(view.training_end_time),
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


def _finish(obs: Observation, plan: Plan, waiting: str | None = None) -> Plan:
    status = plan.status
    state = status.hyper_parameter_tuning_job_status or "InProgress"
    message = status.failure_reason or status.completion_reason or waiting or ""
    ended = state in TERMINAL
    reason = "WaitingForParents" if waiting else state
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
    status.conditions = merge_conditions(
        obs.status.conditions, desired, generation=obs.generation, now=obs.now
    )
    status.observed_generation = obs.generation
    return plan
