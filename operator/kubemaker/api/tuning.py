"""TuningJob: SageMaker's CreateHyperParameterTuningJob as a Kubernetes object.

The spec keeps SageMaker's request shape (``hyperParameterTuningJobConfig``,
``trainingJobDefinition``, ``warmStartConfig``), so boto3 arguments translate key by key
into camelCase. Two deliberate differences: range bounds are numbers, not strings, and
the enums of deployment-style settings use Kubernetes' CamelCase.

Why a module of this size: it is declarations only (models whose field descriptions
are the CRD's documentation for ``kubectl explain``), one kind's API in one place.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from kubemaker.api.common import (
    ApiModel,
    PrinterColumn,
    ResourceBase,
    ResourceInfo,
    StatusBase,
    StatusModel,
    cel,
    list_map,
    name_rules,
)
from kubemaker.api.training import (
    HyperParameters,
    TrainingJobDefinition,
    TrainingJobStatusString,
    check_unique,
)

ScalingType = Literal["Auto", "Linear", "Logarithmic", "ReverseLogarithmic"]
MAX_TUNING_JOB_NAME = 32  # SageMaker's limit; children are named <tuning job>-<NNN>

_RANGE_NAME = Field(
    min_length=1,
    max_length=256,
    description="Hyperparameter name, as the algorithm reads it.",
)


class IntegerParameterRange(ApiModel):
    """An integer hyperparameter searched between minValue and maxValue (inclusive)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.minValue <= self.maxValue", "minValue must be <= maxValue", ".minValue"),
                cel(
                    "self.scalingType != 'Logarithmic' || self.minValue > 0",
                    "Logarithmic scaling needs minValue > 0",
                    ".minValue",
                ),
                cel(
                    "self.scalingType != 'ReverseLogarithmic'",
                    "ReverseLogarithmic scaling is for continuous ranges only",
                    ".scalingType",
                ),
            ]
        }
    )

    name: str = _RANGE_NAME
    min_value: int = Field(description="Smallest value tried.")
    max_value: int = Field(description="Largest value tried.")
    scaling_type: ScalingType = Field(
        default="Auto",
        description=(
            "How values are spread: Auto (the tuner chooses), Linear, Logarithmic "
            "(minValue > 0). ReverseLogarithmic is for continuous ranges only."
        ),
    )

    @model_validator(mode="after")
    def _check(self) -> IntegerParameterRange:
        if self.min_value > self.max_value:
            raise ValueError("minValue must be <= maxValue")
        if self.scaling_type == "Logarithmic" and self.min_value <= 0:
            raise ValueError("Logarithmic scaling needs minValue > 0")
        if self.scaling_type == "ReverseLogarithmic":
            raise ValueError("ReverseLogarithmic scaling is for continuous ranges only")
        return self


class ContinuousParameterRange(ApiModel):
    """A real-valued hyperparameter searched between minValue and maxValue."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.minValue <= self.maxValue", "minValue must be <= maxValue", ".minValue"),
                cel(
                    "self.scalingType != 'Logarithmic' || self.minValue > 0.0",
                    "Logarithmic scaling needs minValue > 0",
                    ".minValue",
                ),
                cel(
                    "self.scalingType != 'ReverseLogarithmic'"
                    " || (self.minValue >= 0.0 && self.maxValue < 1.0)",
                    "ReverseLogarithmic scaling needs 0 <= minValue and maxValue < 1",
                    ".minValue",
                ),
            ]
        }
    )

    name: str = _RANGE_NAME
    min_value: float = Field(description="Smallest value tried.")
    max_value: float = Field(description="Largest value tried.")
    scaling_type: ScalingType = Field(
        default="Auto",
        description=(
            "How values are spread: Auto, Linear, Logarithmic (minValue > 0) or "
            "ReverseLogarithmic (0 <= minValue, maxValue < 1: values close to 1)."
        ),
    )

    @model_validator(mode="after")
    def _check(self) -> ContinuousParameterRange:
        if self.min_value > self.max_value:
            raise ValueError("minValue must be <= maxValue")
        if self.scaling_type == "Logarithmic" and self.min_value <= 0:
            raise ValueError("Logarithmic scaling needs minValue > 0")
        if self.scaling_type == "ReverseLogarithmic" and not (
            self.min_value >= 0 and self.max_value < 1
        ):
            raise ValueError("ReverseLogarithmic scaling needs 0 <= minValue and maxValue < 1")
        return self


class CategoricalParameterRange(ApiModel):
    """A hyperparameter chosen from a list of values."""

    name: str = _RANGE_NAME
    values: list[str] = Field(
        min_length=1,
        max_length=30,
        description="The values to try, as strings (e.g. ['gbtree', 'dart']).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )

    @field_validator("values")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        check_unique(value, "value")
        return value


_RANGE_LISTS = ("integerParameterRanges", "continuousParameterRanges", "categoricalParameterRanges")


class ParameterRanges(ApiModel):
    """The hyperparameters to search and their ranges (SageMaker's ParameterRanges)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    " || ".join(f"(has(self.{n}) && size(self.{n}) > 0)" for n in _RANGE_LISTS),
                    "give at least one parameter range",
                ),
                cel(
                    "!has(self.integerParameterRanges) || !has(self.continuousParameterRanges)"
                    " || self.integerParameterRanges.all(x,"
                    " !self.continuousParameterRanges.exists(y, y.name == x.name))",
                    "a hyperparameter cannot have two ranges",
                ),
                cel(
                    "!has(self.integerParameterRanges) || !has(self.categoricalParameterRanges)"
                    " || self.integerParameterRanges.all(x,"
                    " !self.categoricalParameterRanges.exists(y, y.name == x.name))",
                    "a hyperparameter cannot have two ranges",
                ),
                cel(
                    "!has(self.continuousParameterRanges) || !has(self.categoricalParameterRanges)"
                    " || self.continuousParameterRanges.all(x,"
                    " !self.categoricalParameterRanges.exists(y, y.name == x.name))",
                    "a hyperparameter cannot have two ranges",
                ),
            ]
        }
    )

    integer_parameter_ranges: list[IntegerParameterRange] | None = Field(
        default=None,
        max_length=30,
        description="Integer hyperparameters.",
        json_schema_extra=list_map("name"),
    )
    continuous_parameter_ranges: list[ContinuousParameterRange] | None = Field(
        default=None,
        max_length=30,
        description="Real-valued hyperparameters.",
        json_schema_extra=list_map("name"),
    )
    categorical_parameter_ranges: list[CategoricalParameterRange] | None = Field(
        default=None,
        max_length=30,
        description="Categorical hyperparameters.",
        json_schema_extra=list_map("name"),
    )

    @model_validator(mode="after")
    def _check(self) -> ParameterRanges:
        names = self.names()
        if not names:
            raise ValueError("give at least one parameter range")
        check_unique(names, "hyperparameter in parameter ranges")
        return self

    def names(self) -> list[str]:
        return [
            r.name
            for ranges in (
                self.integer_parameter_ranges,
                self.continuous_parameter_ranges,
                self.categorical_parameter_ranges,
            )
            for r in ranges or ()
        ]


class HyperParameterTuningJobObjective(ApiModel):
    """The metric to optimise (SageMaker's HyperParameterTuningJobObjective)."""

    type: Literal["Maximize", "Minimize"] = Field(description="Maximize or Minimize.")
    metric_name: str = Field(
        min_length=1,
        max_length=255,
        description=(
            "Metric to optimise: one of the training job's metricDefinitions, or a metric "
            "the built-in algorithm reports (e.g. validation:auc)."
        ),
    )


class ResourceLimits(ApiModel):
    """The tuning budget (SageMaker's ResourceLimits)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.maxNumberOfTrainingJobs)"
                    " || self.maxParallelTrainingJobs <= self.maxNumberOfTrainingJobs",
                    "maxParallelTrainingJobs must be <= maxNumberOfTrainingJobs",
                    ".maxParallelTrainingJobs",
                ),
                cel(
                    "!has(oldSelf.maxNumberOfTrainingJobs) || (has(self.maxNumberOfTrainingJobs)"
                    " && self.maxNumberOfTrainingJobs >= oldSelf.maxNumberOfTrainingJobs)",
                    "maxNumberOfTrainingJobs can be raised, not lowered",
                    ".maxNumberOfTrainingJobs",
                ),
            ]
        }
    )

    max_number_of_training_jobs: int | None = Field(
        default=None,
        ge=1,
        le=500,
        description=(
            "Most training jobs to launch. Required except for Grid, which tries every "
            "combination (at most this many when set)."
        ),
    )
    max_parallel_training_jobs: int = Field(
        default=1, ge=1, le=100, description="Most training jobs running at once."
    )
    max_runtime_in_seconds: int | None = Field(
        default=None,
        ge=120,
        le=15_768_000,
        description="Longest time the whole tuning job may run; then it stops its jobs.",
    )

    @model_validator(mode="after")
    def _check(self) -> ResourceLimits:
        if (
            self.max_number_of_training_jobs is not None
            and self.max_parallel_training_jobs > self.max_number_of_training_jobs
        ):
            raise ValueError("maxParallelTrainingJobs must be <= maxNumberOfTrainingJobs")
        return self


class HyperbandStrategyConfig(ApiModel):
    """Hyperband's resource bounds, in the unit the algorithm reports (usually epochs)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.minResource) || !has(self.maxResource)"
                    " || self.minResource <= self.maxResource",
                    "minResource must be <= maxResource",
                    ".minResource",
                )
            ]
        }
    )

    min_resource: int | None = Field(
        default=None,
        ge=1,
        description="Fewest steps a job runs before it may be stopped (default 1).",
    )
    max_resource: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Most steps a job runs; default: the static hyperparameter epochs, max_epochs, "
            "n_epochs, num_epochs or num_round. A step is one value of the objective metric "
            "in the job's log."
        ),
    )

    @model_validator(mode="after")
    def _check(self) -> HyperbandStrategyConfig:
        if (
            self.min_resource is not None
            and self.max_resource is not None
            and self.min_resource > self.max_resource
        ):
            raise ValueError("minResource must be <= maxResource")
        return self


#: Static hyperparameters that give a job's epochs, SageMaker's default for Hyperband's
#: maxResource (``num_round``: the XGBoost built-in's).
MAX_STEPS_KEYS = ("epochs", "max_epochs", "n_epochs", "num_epochs", "num_round")


class StrategyConfig(ApiModel):
    """Strategy-specific settings (SageMaker's HyperParameterTuningJobStrategyConfig)."""

    hyperband_strategy_config: HyperbandStrategyConfig | None = Field(
        default=None, description="Settings of the Hyperband strategy."
    )


class BestObjectiveNotImproving(ApiModel):
    """Stop when the best objective has not improved for a number of jobs."""

    max_number_of_training_jobs_not_improving: int = Field(
        ge=3, description="Training jobs in a row without a better objective."
    )


class ConvergenceDetected(ApiModel):
    """Stop when the tuner detects convergence."""

    complete_on_convergence: Literal["Disabled", "Enabled"] = Field(
        default="Disabled", description="Enabled: stop once the search has converged."
    )


class TuningJobCompletionCriteria(ApiModel):
    """When to stop before the budget is spent (SageMaker's TuningJobCompletionCriteria)."""

    target_objective_metric_value: float | None = Field(
        default=None, description="Stop once a training job reaches this objective value."
    )
    best_objective_not_improving: BestObjectiveNotImproving | None = Field(
        default=None, description="Stop when the best objective stops improving."
    )
    convergence_detected: ConvergenceDetected | None = Field(
        default=None, description="Stop on convergence."
    )


Strategy = Literal["Bayesian", "Random", "Grid", "Hyperband"]


class HyperParameterTuningJobConfig(ApiModel):
    """How to search (SageMaker's HyperParameterTuningJobConfig)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.strategy == 'Hyperband' || !has(self.strategyConfig)",
                    "strategyConfig is for the Hyperband strategy only",
                    ".strategyConfig",
                ),
                cel(
                    "self.strategy != 'Hyperband' || self.trainingJobEarlyStoppingType == 'Off'",
                    "Hyperband stops jobs early itself: trainingJobEarlyStoppingType must be Off",
                    ".trainingJobEarlyStoppingType",
                ),
                cel(
                    "self.strategy != 'Grid' || !has(self.parameterRanges)"
                    " || (!has(self.parameterRanges.integerParameterRanges)"
                    " && !has(self.parameterRanges.continuousParameterRanges))",
                    "the Grid strategy takes categoricalParameterRanges only",
                    ".parameterRanges",
                ),
                cel(
                    "self.strategy == 'Grid' || has(self.resourceLimits.maxNumberOfTrainingJobs)",
                    "resourceLimits.maxNumberOfTrainingJobs is required unless strategy is Grid",
                    ".resourceLimits",
                ),
            ]
        }
    )

    strategy: Strategy = Field(
        default="Bayesian",
        description=(
            "Bayesian (a model of the objective picks the next values), Random, Grid (every "
            "combination of categorical values) or Hyperband (stops weak jobs early)."
        ),
    )
    strategy_config: StrategyConfig | None = Field(default=None, description="Hyperband settings.")
    hyper_parameter_tuning_job_objective: HyperParameterTuningJobObjective = Field(
        description="The metric to optimise and its direction."
    )
    resource_limits: ResourceLimits = Field(description="How many jobs, how many at once.")
    parameter_ranges: ParameterRanges | None = Field(
        default=None,
        description=(
            "What to search, with trainingJobDefinition (with trainingJobDefinitions, each "
            "definition has its own hyperParameterRanges)."
        ),
    )
    training_job_early_stopping_type: Literal["Off", "Auto"] = Field(
        default="Off",
        description="Auto: stop training jobs unlikely to beat the best one so far.",
    )
    tuning_job_completion_criteria: TuningJobCompletionCriteria | None = Field(
        default=None, description="Stop early when a goal is met."
    )
    random_seed: int | None = Field(
        default=None,
        ge=0,
        le=2**31 - 1,
        description="Seed of the search, for reproducible suggestions.",
    )

    @model_validator(mode="after")
    def _check(self) -> HyperParameterTuningJobConfig:
        if self.strategy_config is not None and self.strategy != "Hyperband":
            raise ValueError("strategyConfig is for the Hyperband strategy only")
        if self.strategy == "Hyperband" and self.training_job_early_stopping_type != "Off":
            raise ValueError(
                "Hyperband stops jobs early itself: trainingJobEarlyStoppingType must be Off"
            )
        if self.strategy == "Grid" and not _categorical_only(self.parameter_ranges):
            raise ValueError("the Grid strategy takes categoricalParameterRanges only")
        if self.strategy != "Grid" and self.resource_limits.max_number_of_training_jobs is None:
            raise ValueError(
                "resourceLimits.maxNumberOfTrainingJobs is required unless strategy is Grid"
            )
        return self


def _categorical_only(ranges: ParameterRanges | None) -> bool:
    return ranges is None or not (
        ranges.integer_parameter_ranges or ranges.continuous_parameter_ranges
    )


class TrainingJobTemplate(TrainingJobDefinition):
    """The training jobs to launch (SageMaker's HyperParameterTrainingJobDefinition).

    A TrainingJob spec without hyperParameters (the tuner sets them, over
    ``staticHyperParameters``), stop and ttlSecondsAfterFinished. In
    ``trainingJobDefinitions`` each has a name and its own ranges, and may have its own
    objective metric.
    """

    static_hyper_parameters: HyperParameters | None = Field(
        default=None,
        description="Hyperparameters every training job gets, as strings. Not tuned.",
    )
    definition_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,63}$",
        description=(
            "With trainingJobDefinitions (required there): the definition's name, in each "
            "trial's kubemaker.io/definition label."
        ),
    )
    tuning_objective: HyperParameterTuningJobObjective | None = Field(
        default=None,
        description=(
            "With trainingJobDefinitions: this definition's objective metric, when its "
            "algorithm names it otherwise (type as hyperParameterTuningJobObjective's)."
        ),
    )
    hyper_parameter_ranges: ParameterRanges | None = Field(
        default=None,
        description="With trainingJobDefinitions (required there): what to search.",
    )


class ParentHyperParameterTuningJob(ApiModel):
    """A finished TuningJob whose results seed this one."""

    hyper_parameter_tuning_job_name: str = Field(
        min_length=1, max_length=253, description="Name of the TuningJob, in the same namespace."
    )


class WarmStartConfig(ApiModel):
    """Start from what earlier tuning jobs learned (SageMaker's WarmStartConfig)."""

    parent_hyper_parameter_tuning_jobs: list[ParentHyperParameterTuningJob] = Field(
        min_length=1, max_length=5, description="The earlier TuningJobs."
    )
    warm_start_type: Literal["IdenticalDataAndAlgorithm", "TransferLearning"] = Field(
        description=(
            "IdenticalDataAndAlgorithm: same data and image, other ranges. TransferLearning: "
            "other data, image or ranges."
        )
    )


class TuningJobSpec(ApiModel):
    """Desired state of a TuningJob: SageMaker's CreateHyperParameterTuningJob request.

    Immutable once created, except ``stop`` and the budget: ``maxNumberOfTrainingJobs``
    may be raised and ``maxParallelTrainingJobs`` changed while it runs.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.trainingJobDefinition) != has(self.trainingJobDefinitions)",
                    "set trainingJobDefinition or trainingJobDefinitions (one of them)",
                ),
                cel(
                    "!has(self.trainingJobDefinition)"
                    " || has(self.hyperParameterTuningJobConfig.parameterRanges)",
                    "trainingJobDefinition needs hyperParameterTuningJobConfig.parameterRanges",
                    ".hyperParameterTuningJobConfig",
                ),
                cel(
                    "!has(self.trainingJobDefinition)"
                    " || !(has(self.trainingJobDefinition.hyperParameterRanges)"
                    " || has(self.trainingJobDefinition.tuningObjective))",
                    "hyperParameterRanges and tuningObjective are for trainingJobDefinitions",
                    ".trainingJobDefinition",
                ),
                cel(
                    "!has(self.trainingJobDefinition)"
                    " || !has(self.trainingJobDefinition.staticHyperParameters) || "
                    + " && ".join(
                        f"(!has(self.hyperParameterTuningJobConfig.parameterRanges.{n})"
                        f" || self.hyperParameterTuningJobConfig.parameterRanges.{n}.all(r,"
                        " !(r.name in self.trainingJobDefinition.staticHyperParameters)))"
                        for n in _RANGE_LISTS
                    ),
                    "a tuned hyperparameter cannot also be in staticHyperParameters",
                    ".trainingJobDefinition.staticHyperParameters",
                ),
                cel(
                    "!has(self.trainingJobDefinitions)"
                    " || (!has(self.hyperParameterTuningJobConfig.parameterRanges)"
                    " && self.trainingJobDefinitions.all(d,"
                    " has(d.definitionName) && has(d.hyperParameterRanges)))",
                    "each of trainingJobDefinitions has a definitionName and its "
                    "hyperParameterRanges (and hyperParameterTuningJobConfig has no "
                    "parameterRanges)",
                    ".trainingJobDefinitions",
                ),
                cel(
                    "!has(self.trainingJobDefinitions) || self.trainingJobDefinitions.all(a,"
                    " !has(a.definitionName) || self.trainingJobDefinitions.exists_one(b,"
                    " has(b.definitionName) && b.definitionName == a.definitionName))",
                    "definitionName must be unique",
                    ".trainingJobDefinitions",
                ),
                cel(
                    "!has(self.trainingJobDefinitions) || self.trainingJobDefinitions.all(d,"
                    " !has(d.staticHyperParameters) || !has(d.hyperParameterRanges) || "
                    + " && ".join(
                        f"(!has(d.hyperParameterRanges.{n}) || d.hyperParameterRanges.{n}.all(r,"
                        " !(r.name in d.staticHyperParameters)))"
                        for n in _RANGE_LISTS
                    )
                    + ")",
                    "a tuned hyperparameter cannot also be in staticHyperParameters",
                    ".trainingJobDefinitions",
                ),
                cel(
                    "self.hyperParameterTuningJobConfig.strategy != 'Grid'"
                    " || !has(self.trainingJobDefinitions) || self.trainingJobDefinitions.all(d,"
                    " !has(d.hyperParameterRanges)"
                    " || (!has(d.hyperParameterRanges.integerParameterRanges)"
                    " && !has(d.hyperParameterRanges.continuousParameterRanges)))",
                    "the Grid strategy takes categoricalParameterRanges only",
                    ".trainingJobDefinitions",
                ),
                cel(
                    "!has(self.trainingJobDefinitions) || self.trainingJobDefinitions.all(d,"
                    " !has(d.tuningObjective) || d.tuningObjective.type =="
                    " self.hyperParameterTuningJobConfig.hyperParameterTuningJobObjective.type)",
                    "a definition's tuningObjective has the type of "
                    "hyperParameterTuningJobObjective",
                    ".trainingJobDefinitions",
                ),
            ]
        }
    )

    hyper_parameter_tuning_job_config: HyperParameterTuningJobConfig = Field(
        description="Strategy, objective, budget and ranges."
    )
    training_job_definition: TrainingJobTemplate | None = Field(
        default=None,
        description="The TrainingJob spec each trial runs, minus the tuned hyperparameters.",
    )
    training_job_definitions: list[TrainingJobTemplate] | None = Field(
        default=None,
        min_length=1,
        max_length=10,
        description=(
            "Instead of trainingJobDefinition: several algorithms or images searched together, "
            "each with its definitionName, hyperParameterRanges and, if its metric is named "
            "otherwise, tuningObjective (SageMaker's multi-algorithm tuning)."
        ),
    )
    warm_start_config: WarmStartConfig | None = Field(
        default=None, description="Seed the search with earlier TuningJobs' results."
    )
    stop: bool = Field(
        default=False,
        description=(
            "Set to true to stop the tuning job and its running training jobs (SageMaker's "
            "StopHyperParameterTuningJob). Cannot be set back to false."
        ),
    )

    @model_validator(mode="after")
    def _check(self) -> TuningJobSpec:
        config = self.hyper_parameter_tuning_job_config
        if (self.training_job_definition is None) == (self.training_job_definitions is None):
            raise ValueError("set trainingJobDefinition or trainingJobDefinitions (one of them)")
        if self.training_job_definition is not None:
            single = self.training_job_definition
            if config.parameter_ranges is None:
                raise ValueError(
                    "trainingJobDefinition needs hyperParameterTuningJobConfig.parameterRanges"
                )
            if single.hyper_parameter_ranges is not None or single.tuning_objective is not None:
                raise ValueError(
                    "hyperParameterRanges and tuningObjective are for trainingJobDefinitions"
                )
            _check_static(single, config.parameter_ranges, "trainingJobDefinition")
            return self
        assert self.training_job_definitions is not None
        if config.parameter_ranges is not None:
            raise ValueError(
                "with trainingJobDefinitions, each definition has its hyperParameterRanges "
                "and hyperParameterTuningJobConfig has no parameterRanges"
            )
        names = []
        for i, definition in enumerate(self.training_job_definitions):
            where = f"trainingJobDefinitions[{i}]"
            if definition.definition_name is None or definition.hyper_parameter_ranges is None:
                raise ValueError(f"{where} needs a definitionName and its hyperParameterRanges")
            names.append(definition.definition_name)
            _check_static(definition, definition.hyper_parameter_ranges, where)
            if config.strategy == "Grid" and not _categorical_only(
                definition.hyper_parameter_ranges
            ):
                raise ValueError("the Grid strategy takes categoricalParameterRanges only")
            objective = definition.tuning_objective
            if (
                objective is not None
                and objective.type != config.hyper_parameter_tuning_job_objective.type
            ):
                raise ValueError(
                    f"{where}.tuningObjective must have the type of "
                    "hyperParameterTuningJobObjective"
                )
        check_unique(names, "definitionName")
        return self


def _check_static(template: TrainingJobTemplate, ranges: ParameterRanges, where: str) -> None:
    static = template.static_hyper_parameters or {}
    for name in ranges.names():
        if name in static:
            raise ValueError(
                f"hyperparameter {name!r} is tuned and cannot also be in "
                f"{where}.staticHyperParameters"
            )


TuningJobStatusString = Literal["InProgress", "Completed", "Failed", "Stopping", "Stopped"]


class TrainingJobStatusCounters(StatusModel):
    """How many training jobs are in which state."""

    completed: int = Field(default=0, ge=0, description="Completed training jobs.")
    in_progress: int = Field(default=0, ge=0, description="Training jobs in progress.")
    retryable_error: int = Field(
        default=0, ge=0, description="Jobs failed by a platform error (retried)."
    )
    non_retryable_error: int = Field(
        default=0, ge=0, description="Jobs failed by an algorithm or spec error."
    )
    stopped: int = Field(default=0, ge=0, description="Stopped jobs (early stopping included).")


class ObjectiveStatusCounters(StatusModel):
    """How many training jobs reported the objective metric."""

    succeeded: int = Field(default=0, ge=0, description="Jobs whose objective was read.")
    pending: int = Field(default=0, ge=0, description="Jobs not finished yet.")
    failed: int = Field(default=0, ge=0, description="Jobs without an objective value.")


class FinalHyperParameterTuningJobObjectiveMetric(StatusModel):
    """A job's final objective value."""

    type: Literal["Maximize", "Minimize"] | None = Field(default=None, description="Direction.")
    metric_name: str = Field(description="Objective metric.")
    value: float = Field(description="Its final value.")


class HyperParameterTrainingJobSummary(StatusModel):
    """One training job of the search (SageMaker's HyperParameterTrainingJobSummary)."""

    training_job_name: str = Field(description="Name of the child TrainingJob.")
    training_job_definition_name: str | None = Field(
        default=None, description="Its definition, with trainingJobDefinitions."
    )
    training_job_status: TrainingJobStatusString | None = Field(
        default=None, description="Its trainingJobStatus."
    )
    tuned_hyper_parameters: dict[str, str] | None = Field(
        default=None, description="The values the tuner chose."
    )
    final_hyper_parameter_tuning_job_objective_metric: (
        FinalHyperParameterTuningJobObjectiveMetric | None
    ) = Field(default=None, description="Its objective value.")
    objective_status: Literal["Succeeded", "Pending", "Failed"] | None = Field(
        default=None, description="Whether the objective was read."
    )
    creation_time: datetime | None = Field(default=None, description="When it was created.")
    training_start_time: datetime | None = Field(default=None, description="When it started.")
    training_end_time: datetime | None = Field(default=None, description="When it ended.")
    failure_reason: str | None = Field(default=None, max_length=1024, description="Why it failed.")


class TuningJobCompletionDetails(StatusModel):
    """Why and when the completion criteria stopped the search."""

    number_of_training_jobs_objective_not_improving: int | None = Field(
        default=None, ge=0, description="Jobs in a row without a better objective."
    )
    convergence_detected_time: datetime | None = Field(
        default=None, description="When convergence was detected."
    )


class ConsumedResources(StatusModel):
    """What the tuning job used so far."""

    runtime_in_seconds: int | None = Field(
        default=None, ge=0, description="Seconds since the tuning job started."
    )


class TuningJobStatus(StatusBase):
    """Observed state of a TuningJob: SageMaker's DescribeHyperParameterTuningJob response."""

    hyper_parameter_tuning_job_status: TuningJobStatusString | None = Field(
        default=None,
        description=(
            "InProgress, Completed, Failed, Stopping or Stopped, with SageMaker's meanings."
        ),
    )
    hyper_parameter_tuning_end_time: datetime | None = Field(
        default=None, description="When the tuning job ended."
    )
    training_job_status_counters: TrainingJobStatusCounters | None = Field(
        default=None, description="Training jobs by state."
    )
    objective_status_counters: ObjectiveStatusCounters | None = Field(
        default=None, description="Training jobs by objective state."
    )
    best_training_job: HyperParameterTrainingJobSummary | None = Field(
        default=None,
        description="The best training job so far: its name, objective value and hyperparameters.",
    )
    overall_best_training_job: HyperParameterTrainingJobSummary | None = Field(
        default=None,
        description=(
            "With a warm start: the best training job of this search and its parents' together."
        ),
    )
    tuning_job_completion_details: TuningJobCompletionDetails | None = Field(
        default=None, description="Progress toward the completion criteria."
    )
    consumed_resources: ConsumedResources | None = Field(default=None, description="Runtime used.")
    completion_reason: str | None = Field(
        default=None,
        max_length=1024,
        description=(
            "Why the search ended: the budget spent, a completion criterion met, the "
            "runtime limit, or a stop."
        ),
    )


TUNING_JOB = ResourceInfo(
    kind="TuningJob",
    plural="tuningjobs",
    singular="tuningjob",
    short_names=("hpt",),
    spec_model=TuningJobSpec,
    status_model=TuningJobStatus,
    description=(
        "A TuningJob searches hyperparameters by launching TrainingJobs "
        "(SageMaker's CreateHyperParameterTuningJob)."
    ),
    printer_columns=(
        PrinterColumn("Status", ".status.hyperParameterTuningJobStatus"),
        PrinterColumn("Strategy", ".spec.hyperParameterTuningJobConfig.strategy"),
        PrinterColumn("Completed", ".status.trainingJobStatusCounters.completed", type="integer"),
        PrinterColumn("Running", ".status.trainingJobStatusCounters.inProgress", type="integer"),
        PrinterColumn("Best", ".status.bestTrainingJob.trainingJobName"),
        PrinterColumn(
            "Objective",
            ".status.bestTrainingJob.finalHyperParameterTuningJobObjectiveMetric.value",
            type="number",
        ),
        PrinterColumn(
            "Metric",
            ".spec.hyperParameterTuningJobConfig.hyperParameterTuningJobObjective.metricName",
            priority=1,
        ),
        PrinterColumn("Reason", ".status.failureReason", priority=1),
        PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
    mutable_spec_fields=(
        "stop",
        "hyperParameterTuningJobConfig.resourceLimits.maxNumberOfTrainingJobs",
        "hyperParameterTuningJobConfig.resourceLimits.maxParallelTrainingJobs",
    ),
    latching_spec_fields=("stop",),
    object_rules=name_rules(MAX_TUNING_JOB_NAME),
    max_name_length=MAX_TUNING_JOB_NAME,
)


class TuningJob(ResourceBase):
    """A TuningJob object as a whole."""

    kind: Literal["TuningJob"] = "TuningJob"
    spec: TuningJobSpec
    status: TuningJobStatus | None = None

    info: ClassVar[ResourceInfo] = TUNING_JOB


__all__ = [
    "TUNING_JOB",
    "CategoricalParameterRange",
    "ContinuousParameterRange",
    "HyperParameterTrainingJobSummary",
    "HyperParameterTuningJobConfig",
    "HyperParameterTuningJobObjective",
    "IntegerParameterRange",
    "ParameterRanges",
    "ResourceLimits",
    "TrainingJobTemplate",
    "TuningJob",
    "TuningJobSpec",
    "TuningJobStatus",
    "WarmStartConfig",
]
