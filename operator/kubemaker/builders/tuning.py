"""A TuningJob's children: one TrainingJob per trial, and the checks made before any.

A trial is a whole TrainingJob, so everything a TrainingJob does (retries, checkpoints,
stop, status, metrics from the log) works for trials as it does alone, and
``kubectl get tj -l kubemaker.io/tuning-job=<name>`` lists a search's trials.

Names are deterministic, ``{tuning job}-{NNN}`` from 001 (SageMaker numbers them so),
so a restarted operator finds the trials it created and creates none twice. The trial
gets the template's ``staticHyperParameters`` and the tuned values on top, as strings.

The objective must be a metric some definition produces: the template's
``metricDefinitions``, or a built-in algorithm's own (SageMaker's built-ins define
theirs; kubemaker's XGBoost declares SageMaker's in
:func:`kubemaker_runtime.algorithms.xgboost.hyperparameters.metric_definitions`, a
module without xgboost's imports).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubemaker.api.common import API_VERSION
from kubemaker.api.training import ANNOTATION_METRIC_SERIES, MetricDefinition
from kubemaker.api.tuning import ParameterRanges, TrainingJobTemplate, TuningJobSpec
from kubemaker.builders import naming
from kubemaker.builders.errors import SpecError
from kubemaker.builders.owner import Owner
from kubemaker_runtime.algorithms.xgboost import hyperparameters as xgboost_hyperparameters

JSON = dict[str, Any]

LABEL_TUNING_JOB = f"{naming.DOMAIN}/tuning-job"
LABEL_TRIAL = f"{naming.DOMAIN}/trial"
LABEL_DEFINITION = f"{naming.DOMAIN}/definition"
MAX_TRIALS = 999  # three digits in a trial's name
OBJECTIVE_FIELD = "spec.hyperParameterTuningJobConfig.hyperParameterTuningJobObjective.metricName"


@dataclass(frozen=True)
class Definition:
    """What a trial runs: ``trainingJobDefinition`` with the config's ranges and objective
    (``name`` None), or one of ``trainingJobDefinitions``."""

    name: str | None
    template: TrainingJobTemplate
    ranges: ParameterRanges
    metric: str  # the objective metric in this definition's log
    field: str  # where it is in the spec, for errors

    @property
    def objective_field(self) -> str:
        if self.name is None or self.template.tuning_objective is None:
            return OBJECTIVE_FIELD
        return f"{self.field}.tuningObjective.metricName"

    @property
    def ranges_field(self) -> str:
        if self.name is None:
            return "spec.hyperParameterTuningJobConfig.parameterRanges"
        return f"{self.field}.hyperParameterRanges"


def definitions(spec: TuningJobSpec) -> list[Definition]:
    """The spec's training job definitions, in its order."""
    config = spec.hyper_parameter_tuning_job_config
    metric = config.hyper_parameter_tuning_job_objective.metric_name
    if spec.training_job_definition is not None:
        assert config.parameter_ranges is not None  # the API requires them together
        return [
            Definition(
                None,
                spec.training_job_definition,
                config.parameter_ranges,
                metric,
                "spec.trainingJobDefinition",
            )
        ]
    found = []
    for i, template in enumerate(spec.training_job_definitions or ()):
        assert template.hyper_parameter_ranges is not None  # the API requires them
        own = template.tuning_objective
        found.append(
            Definition(
                template.definition_name,
                template,
                template.hyper_parameter_ranges,
                own.metric_name if own is not None else metric,
                f"spec.trainingJobDefinitions[{i}]",
            )
        )
    return found


def definition(spec: TuningJobSpec, name: str | None) -> Definition | None:
    """The definition a trial ran (by its kubemaker.io/definition label's value)."""
    return next((d for d in definitions(spec) if d.name == name), None)


def tuning_owner(name: str, namespace: str, uid: str) -> Owner:
    return Owner(name, namespace, uid, kind="TuningJob")


def trial_name(tuning_job: str, index: int) -> str:
    """The TrainingJob of trial ``index`` (0-based): ``{tuning job}-001`` first."""
    if not 0 <= index < MAX_TRIALS:
        raise ValueError(f"trial index {index} is outside 0..{MAX_TRIALS - 1}")
    return f"{tuning_job}-{index + 1:03d}"


def trial_index(tuning_job: str, name: str) -> int | None:
    """The index of a trial's TrainingJob name, None when it is not one of this search's."""
    prefix = f"{tuning_job}-"
    digits = name[len(prefix) :] if name.startswith(prefix) else ""
    if len(digits) != 3 or not digits.isdigit() or digits == "000":
        return None
    return int(digits) - 1


def builtin_metric_definitions(algorithm_name: str | None) -> list[MetricDefinition]:
    """A built-in algorithm's own metric definitions (none for other images)."""
    if algorithm_name != "xgboost":
        return []
    return [
        MetricDefinition(name=d["Name"], regex=d["Regex"])
        for d in xgboost_hyperparameters.metric_definitions()
    ]


def metric_definitions(definition: Definition) -> list[MetricDefinition]:
    """What a trial's log is read with: the template's definitions, and the built-in's
    definition of the objective when the template does not define it (a TrainingJob
    takes 40 definitions at most; SageMaker's XGBoost defines 56)."""
    algorithm = definition.template.algorithm_specification
    own = list(algorithm.metric_definitions or [])
    if any(d.name == definition.metric for d in own):
        return own
    builtin = builtin_metric_definitions(algorithm.algorithm_name)
    return own + [d for d in builtin if d.name == definition.metric]


def check_objective(definition: Definition) -> None:
    """The objective metric is one the trials' logs produce; else a SpecError naming it."""
    if any(d.name == definition.metric for d in metric_definitions(definition)):
        return
    algorithm = definition.template.algorithm_specification
    names = [d.name for d in algorithm.metric_definitions or []]
    names += [d.name for d in builtin_metric_definitions(algorithm.algorithm_name)]
    known = ", ".join(sorted(names)[:20]) + (", ..." if len(names) > 20 else "") or "none"
    raise SpecError(
        definition.objective_field,
        f"no metric definition produces {definition.metric!r}: add one to "
        f"{definition.field.removeprefix('spec.')}.algorithmSpecification.metricDefinitions "
        f"(defined: {known})",
    )


def build_trial(
    definition: Definition,
    *,
    owner: Owner,
    index: int,
    tuned: Mapping[str, str],
) -> JSON:
    """The TrainingJob of one trial: the definition's template, its static and tuned
    hyperparameters, every metric definition the objective needs."""
    template = definition.template
    body = template.model_dump(
        by_alias=True,
        exclude_none=True,
        mode="json",
        exclude={
            "static_hyper_parameters",
            "definition_name",
            "tuning_objective",
            "hyper_parameter_ranges",
        },
    )
    body["hyperParameters"] = {**(template.static_hyper_parameters or {}), **tuned}
    metric_defs = metric_definitions(definition)
    if metric_defs:
        body["algorithmSpecification"]["metricDefinitions"] = [
            d.model_dump(by_alias=True, exclude_none=True) for d in metric_defs
        ]
    labels = {
        LABEL_TUNING_JOB: owner.name,
        LABEL_TRIAL: str(index),
        naming.LABEL_MANAGED_BY: naming.MANAGED_BY,
    }
    if definition.name is not None:
        labels[LABEL_DEFINITION] = definition.name
    # The objective's intermediate values, recorded in the trial's status, are what early
    # stopping and Hyperband judge it by (and what `kubemaker tuning plot` draws).
    annotations = {ANNOTATION_METRIC_SERIES: definition.metric}
    return {
        "apiVersion": API_VERSION,
        "kind": "TrainingJob",
        "metadata": owner.metadata(trial_name(owner.name, index), labels, annotations=annotations),
        "spec": body,
    }
