"""A TuningJob's search: what to try next, what to stop, when to finish. Pure, no Kubernetes.

**The children are the truth.** Every call rebuilds the search from the child TrainingJobs
(:class:`Trial`: their number, tuned hyperparameters, state, objective and intermediate
values) into an in-memory Optuna study, and keeps nothing between calls. A restarted
operator therefore neither repeats a trial nor loses one, and no store has to agree with
the cluster.

**Determinism.** The same config, trials and ``seed`` give the same answers. Trial *n*'s
sampler is seeded from ``(seed, n)``, and a batch is suggested one trial at a time, each
added to the history as a running trial from its strings exactly as a rebuilt study would
see it; so a restart asking for trial 7 again gets the same values. ``seed`` is the
config's ``randomSeed`` or one the caller derives from the TuningJob's uid.

**SageMaker's definitions and ours.** SageMaker's: the scaling types (see
:mod:`kubemaker.planners.tuning_space`, whose ``Auto`` rule is ours), Grid as every
combination of the categorical values, the target objective value, best objective not
improving over N jobs, and early stopping ``Auto`` as SageMaker documents it (a running
job is stopped when its latest value is worse than the median of the previous jobs'
running averages up to the same epoch). Ours: Bayesian is Optuna's multivariate TPE with
the constant liar (running trials count as bad, so they are not proposed again); Hyperband
samples at random, as Hyperband's paper does, and stops with Optuna's ``HyperbandPruner``
replayed over the trials' intermediate values; convergence (SageMaker's rule is not
published) is :func:`converged`'s rule. "In a row" and "previous" follow the trials'
numbers.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import statistics
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.pruners import BasePruner, HyperbandPruner
from optuna.samplers import BaseSampler, RandomSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState, create_trial

from kubemaker.api.tuning import HyperParameterTuningJobConfig, ParameterRanges
from kubemaker.planners.tuning_space import Dimension, dimensions, resolve_scale

TrialStateName = Literal["running", "completed", "failed", "stopped"]
_STUDY_NAME = "kubemaker"  # fixed: HyperbandPruner assigns brackets from name and number
_RANGES = "spec.hyperParameterTuningJobConfig.parameterRanges"
#: Convergence (ours): at least MIN_COMPLETED completed jobs, and the last WINDOW completed
#: objectives all within a relative TOLERANCE of the best.
CONVERGENCE_MIN_COMPLETED = 10
CONVERGENCE_WINDOW = 5
CONVERGENCE_TOLERANCE = 1e-3

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class Trial:
    """A child TrainingJob as the search sees it."""

    index: int
    hyperparameters: Mapping[str, str]
    state: TrialStateName
    objective: float | None = None
    intermediate: Sequence[tuple[int, float]] = field(default=())


def trial_seed(seed: int, index: int) -> int:
    """Trial ``index``'s sampler seed: stable across processes (no ``hash()``)."""
    digest = hashlib.sha256(f"{seed}/{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _series(trial: Trial) -> list[tuple[int, float]]:
    """Finite intermediate values by step (the last one logged for a step wins)."""
    by_step = {int(s): float(v) for s, v in trial.intermediate if math.isfinite(v) and s >= 0}
    return sorted(by_step.items())


def _direction(config: HyperParameterTuningJobConfig) -> Literal["maximize", "minimize"]:
    maximize = config.hyper_parameter_tuning_job_objective.type == "Maximize"
    return "maximize" if maximize else "minimize"


#: The key of a suggestion's (and a trial's) definition when a search has several
#: (``trainingJobDefinitions``); never passed to the trial as a hyperparameter.
DEFINITION = "kubemaker.io/definition"
_CHOICE = "definition"  # the Optuna parameter that picks a definition


@dataclass(frozen=True)
class Space:
    """What a search samples: the dimensions of its one definition (key None), or of each
    named definition; then a trial first picks a definition, and its parameters are named
    ``{definition}/{hyperparameter}`` in the study (TPE models each definition's own)."""

    dims: Mapping[str | None, Sequence[Dimension]]

    @classmethod
    def of(cls, ranges: Mapping[str | None, ParameterRanges]) -> Space:
        return cls({name: dimensions(r) for name, r in ranges.items()})

    @classmethod
    def single(cls, config: HyperParameterTuningJobConfig) -> Space:
        assert config.parameter_ranges is not None
        return cls.of({None: config.parameter_ranges})

    @property
    def multi(self) -> bool:
        return None not in self.dims

    def _param(self, definition: str | None, dim: Dimension) -> str:
        return dim.name if definition is None else f"{definition}/{dim.name}"

    def distributions(self, definition: str | None) -> dict[str, BaseDistribution]:
        found: dict[str, BaseDistribution] = {}
        if self.multi:
            found[_CHOICE] = CategoricalDistribution(tuple(self.dims))
        for dim in self.dims[definition]:
            found[self._param(definition, dim)] = dim.distribution()
        return found

    def encode(
        self, hyperparameters: Mapping[str, str], *, strict: bool = False
    ) -> tuple[str | None, dict[str, Any]] | None:
        """A trial's strings as Optuna's params; None when they do not fit this space."""
        definition = hyperparameters.get(DEFINITION) if self.multi else None
        if definition not in self.dims:
            return None
        params: dict[str, Any] = {_CHOICE: definition} if self.multi else {}
        for dim in self.dims[definition]:
            value = dim.encode(hyperparameters.get(dim.name, ""), strict=strict)
            if value is None:
                return None
            params[self._param(definition, dim)] = value
        return definition, params

    def decode(self, definition: str | None, params: Mapping[str, Any]) -> dict[str, str]:
        values = {
            d.name: d.decode(params[self._param(definition, d)]) for d in self.dims[definition]
        }
        if definition is not None:
            values[DEFINITION] = definition
        return values

    def grid(self) -> list[dict[str, str]]:
        """Every combination of each definition's categorical values, definitions in order."""
        combos = []
        for definition, dims in self.dims.items():
            categorical = [d for d in dims if d.kind == "categorical"]
            if not categorical:
                continue  # Grid takes categorical ranges only: the API refuses others
            for combo in itertools.product(*(d.values for d in categorical)):
                values = dict(zip((d.name for d in categorical), combo, strict=True))
                if definition is not None:
                    values[DEFINITION] = definition
                combos.append(values)
        return combos


def _frozen(trial: Trial, space: Space, *, strict: bool = False) -> FrozenTrial:
    encoded = space.encode(trial.hyperparameters, strict=strict)
    if encoded is None:  # not from this space: nothing to learn
        return create_trial(state=TrialState.FAIL)
    definition, params = encoded
    series = dict(_series(trial))
    state, value = TrialState.FAIL, None  # failed, or completed without an objective
    if trial.state == "completed" and trial.objective is not None:
        if math.isfinite(trial.objective):
            state, value = TrialState.COMPLETE, trial.objective
    elif trial.state == "stopped":
        state, value = TrialState.PRUNED, series[max(series)] if series else None
    elif trial.state == "running":
        state = TrialState.RUNNING
    return create_trial(
        state=state,
        value=value,
        params=params,
        distributions=space.distributions(definition),
        intermediate_values=series,
    )


def _sample(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> None:
    if isinstance(distribution, FloatDistribution):
        trial.suggest_float(name, distribution.low, distribution.high)
    elif isinstance(distribution, IntDistribution):
        trial.suggest_int(name, distribution.low, distribution.high)
    else:
        assert isinstance(distribution, CategoricalDistribution)
        trial.suggest_categorical(name, distribution.choices)


def _study(
    config: HyperParameterTuningJobConfig,
    sampler: BaseSampler,
    pruner: BasePruner | None = None,
) -> optuna.Study:
    return optuna.create_study(
        study_name=_STUDY_NAME, direction=_direction(config), sampler=sampler, pruner=pruner
    )


def _next_index(trials: Sequence[Trial]) -> int:
    return max((t.index for t in trials), default=-1) + 1


def _suggest_one(
    config: HyperParameterTuningJobConfig,
    space: Space,
    trials: Sequence[Trial],
    seed: int,
    prior: Sequence[Trial],
) -> dict[str, str]:
    trial_seed_ = trial_seed(seed, _next_index(trials))
    if config.strategy == "Bayesian":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler: BaseSampler = TPESampler(
                multivariate=True,
                group=space.multi,  # each definition's parameters are a group
                constant_liar=True,
                seed=trial_seed_,
            )
        study = _study(config, sampler)
        # A warm start's parent trials first: completed ones inside this space teach the
        # model; the rest would only add failures.
        for parent in prior:
            frozen = _frozen(parent, space, strict=True)
            if frozen.state == TrialState.COMPLETE:
                study.add_trial(frozen)
        by_index = {t.index: t for t in trials}
        # Then this search's trials in order: gaps (a child gone) are failed trials.
        for number in range(_next_index(trials)):
            known = by_index.get(number)
            frozen = _frozen(known, space) if known else create_trial(state=TrialState.FAIL)
            study.add_trial(frozen)
    else:  # Random, and Hyperband (random sampling, as in Hyperband's paper)
        study = _study(config, RandomSampler(seed=trial_seed_))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if not space.multi:
            asked = study.ask(space.distributions(None))
            return space.decode(None, asked.params)
        asked = study.ask()
        definition = str(asked.suggest_categorical(_CHOICE, [str(d) for d in space.dims]))
        for name, distribution in space.distributions(definition).items():
            if name != _CHOICE:
                _sample(asked, name, distribution)
    return space.decode(definition, asked.params)


def suggest(
    config: HyperParameterTuningJobConfig,
    trials: Sequence[Trial],
    count: int,
    *,
    seed: int,
    prior: Sequence[Trial] = (),
    space: Space | None = None,
) -> list[dict[str, str]]:
    """The next ``count`` hyperparameter sets, for the trials after the highest index.

    For trials numbered 0..n-1 (none missing) these are trials n, n+1, ...; Grid returns
    fewer when the combinations run out. ``prior``: a warm start's parent trials, which
    Bayesian learns from (Random and Hyperband sample regardless of history). ``space``:
    several definitions' (default: the config's ranges); then each suggestion names its
    definition under :data:`DEFINITION`, and so must each trial's hyperparameters.
    """
    if count <= 0:
        return []
    space = space or Space.single(config)
    if config.strategy == "Grid":
        tried = {_grid_key(t.hyperparameters) for t in trials}
        return [c for c in space.grid() if _grid_key(c) not in tried][:count]
    known = list(trials)
    suggestions: list[dict[str, str]] = []
    for _ in range(count):
        values = _suggest_one(config, space, known, seed, prior)
        suggestions.append(values)
        known.append(Trial(_next_index(known), values, "running"))
    return suggestions


def grid(config: HyperParameterTuningJobConfig, space: Space | None = None) -> list[dict[str, str]]:
    """Every combination of the categorical values: ranges in the spec's order, each range's
    values in its order, the last range varying fastest."""
    return (space or Space.single(config)).grid()


def _grid_key(values: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(values.items()))


def _parse_interval(text: str) -> tuple[float | None, float | None, bool, bool] | None:
    """``"[0, 1]"``, ``"(0, +inf)"`` (the tunable table's ``allowed``) as bounds."""
    text = text.strip()
    if len(text) < 5 or text[0] not in "[(" or text[-1] not in "])" or "," not in text:
        return None
    low_text, high_text = (p.strip() for p in text[1:-1].split(",", 1))
    try:
        low = None if low_text == "-inf" else float(low_text)
        high = None if high_text in ("+inf", "inf") else float(high_text)
    except ValueError:
        return None
    return low, high, text[0] == "(", text[-1] == ")"


def _outside(value: float, bounds: tuple[float | None, float | None, bool, bool]) -> bool:
    low, high, low_open, high_open = bounds
    if low is not None and (value <= low if low_open else value < low):
        return True
    return high is not None and (value >= high if high_open else value > high)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def check_ranges(
    ranges: ParameterRanges,
    tunable: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    algorithm: str = "the algorithm",
    where: str = _RANGES,
) -> list[str]:
    """The user's errors in the parameter ranges (at ``where`` in the spec), each naming
    its field.

    ``tunable`` is the algorithm's table (``tunable_ranges()``'s shape): a range must stay
    within a hyperparameter's ``allowed`` interval, and an integer hyperparameter needs an
    integer range.
    """
    errors: list[str] = []
    numeric = [
        ("integerParameterRanges", i, r, True)
        for i, r in enumerate(ranges.integer_parameter_ranges or ())
    ] + [
        ("continuousParameterRanges", i, r, False)
        for i, r in enumerate(ranges.continuous_parameter_ranges or ())
    ]
    for list_name, i, r, integer in numeric:
        at = f"{where}.{list_name}[{i}]"
        low, high = float(r.min_value), float(r.max_value)
        span = f"[{_number(low)}, {_number(high)}]"
        if low > high:
            errors.append(f"{at}: {r.name} minValue {_number(low)} is above maxValue")
            continue
        try:
            resolve_scale(r.scaling_type, low, high, integer=integer)
        except ValueError as e:
            errors.append(f"{at}: {r.name} range {span}: {e}")
        entry = (tunable or {}).get(r.name)
        if entry is None:
            continue
        if entry.get("type") == "Integer" and not integer:
            errors.append(
                f"{at}: {r.name} is an integer in {algorithm}: use integerParameterRanges"
            )
        bounds = _parse_interval(str(entry.get("allowed", "")))
        if bounds is not None and (_outside(low, bounds) or _outside(high, bounds)):
            errors.append(
                f"{at}: {r.name} range {span} is outside what {algorithm} accepts "
                f"{entry['allowed']}"
            )
    for i, c in enumerate(ranges.categorical_parameter_ranges or ()):
        if not c.values:
            errors.append(f"{where}.categoricalParameterRanges[{i}]: {c.name} has no values")
    return errors


def median_stop(
    trial: Trial, others: Sequence[Trial], *, maximize: bool, min_completed: int = 3
) -> bool:
    """Early stopping ``Auto``, as SageMaker documents it.

    At the running trial's latest step s: each completed trial's running average of its
    values at steps <= s, the median of those averages; stop when the trial's value is worse
    than that median. Never before ``min_completed`` completed trials have a value by s.
    """
    series = _series(trial)
    if trial.state != "running" or not series:
        return False
    step, value = series[-1]
    averages = []
    for other in others:
        if other.state != "completed" or other.index == trial.index:
            continue
        upto = [v for s, v in _series(other) if s <= step]
        if upto:
            averages.append(statistics.fmean(upto))
    if len(averages) < min_completed:
        return False
    median = statistics.median(averages)
    return value < median if maximize else value > median


def hyperband_stop(
    trial: Trial,
    others: Sequence[Trial],
    *,
    min_resource: int,
    max_resource: int,
    reduction_factor: int = 3,
    maximize: bool,
) -> bool:
    """Whether Hyperband stops the running ``trial`` at a rung it has reached.

    Optuna's ``HyperbandPruner`` decides, over a study replayed from the trials: every other
    trial reports its values step by step (recording its value at each rung it reached),
    then ``trial`` does, and it is stopped if the pruner prunes it at any of its rungs. So
    it is judged against every other trial's rung values known now, in its bracket (fixed by
    its number).
    """
    if trial.state != "running" or not _series(trial):
        return False
    pruner = HyperbandPruner(
        min_resource=min_resource, max_resource=max_resource, reduction_factor=reduction_factor
    )
    study = optuna.create_study(
        study_name=_STUDY_NAME,
        direction="maximize" if maximize else "minimize",
        sampler=RandomSampler(seed=0),
        pruner=pruner,
    )
    everyone = {o.index: o for o in others if o.index != trial.index}
    everyone[trial.index] = trial
    live: optuna.Trial | None = None
    for number in range(max(everyone) + 1):
        handle = study.ask()
        known = everyone.get(number)
        if known is None:
            study.tell(handle, state=TrialState.FAIL)
        elif known.index == trial.index:
            live = handle
        else:
            for step, value in _series(known):
                handle.report(value, step)
                handle.should_prune()  # records the rung values the trial reached
    assert live is not None
    for step, value in _series(trial):
        live.report(value, step)
        if live.should_prune():
            return True
    return False


def best(trials: Sequence[Trial], *, maximize: bool) -> Trial | None:
    """The completed trial with the best objective; on a tie, the lower index."""
    done = _completed(trials)
    if not done:
        return None
    sign = -1.0 if maximize else 1.0
    return min(done, key=lambda t: (sign * _objective(t), t.index))


def _completed(trials: Sequence[Trial]) -> list[Trial]:
    return sorted(
        (
            t
            for t in trials
            if t.state == "completed" and t.objective is not None and math.isfinite(t.objective)
        ),
        key=lambda t: t.index,
    )


def _objective(trial: Trial) -> float:
    assert trial.objective is not None
    return trial.objective


def not_improving_count(trials: Sequence[Trial], *, maximize: bool) -> int:
    """Completed trials (by index) since the last one that beat the best before it."""
    count = 0
    best_value: float | None = None
    for t in _completed(trials):
        value = _objective(t)
        if best_value is None or (value > best_value if maximize else value < best_value):
            best_value, count = value, 0
        else:
            count += 1
    return count


def converged(trials: Sequence[Trial], *, maximize: bool) -> bool:
    """Our convergence rule (SageMaker's is not published): see the CONVERGENCE_ constants."""
    done = _completed(trials)
    top = best(done, maximize=maximize)
    if len(done) < CONVERGENCE_MIN_COMPLETED or top is None:
        return False
    return all(
        math.isclose(_objective(t), _objective(top), rel_tol=CONVERGENCE_TOLERANCE)
        for t in done[-CONVERGENCE_WINDOW:]
    )


def completion_reason(config: HyperParameterTuningJobConfig, trials: Sequence[Trial]) -> str | None:
    """Why the completion criteria end the search now (a sentence for the status), or None."""
    criteria = config.tuning_job_completion_criteria
    if criteria is None:
        return None
    maximize = config.hyper_parameter_tuning_job_objective.type == "Maximize"
    metric = config.hyper_parameter_tuning_job_objective.metric_name
    target = criteria.target_objective_metric_value
    if target is not None:
        for t in _completed(trials):
            if _objective(t) >= target if maximize else _objective(t) <= target:
                return (
                    f"Training job {t.index} reached the target {metric} of "
                    f"{_number(target)} ({_number(_objective(t))})."
                )
    if criteria.best_objective_not_improving is not None:
        limit = criteria.best_objective_not_improving.max_number_of_training_jobs_not_improving
        count = not_improving_count(trials, maximize=maximize)
        if count >= limit:
            return f"{count} training jobs in a row did not improve the best {metric}."
    convergence = criteria.convergence_detected
    enabled = convergence is not None and convergence.complete_on_convergence == "Enabled"
    if enabled and converged(trials, maximize=maximize):
        return (
            f"The search converged: the last {CONVERGENCE_WINDOW} completed training jobs' "
            f"{metric} are within {CONVERGENCE_TOLERANCE:.1%} of the best."
        )
    return None
