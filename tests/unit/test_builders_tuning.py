"""A TuningJob's trials as TrainingJobs: names, labels, hyperparameters, the objective's
metric definitions, and the check that the objective is produced at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubemaker.api.training import TrainingJob
from kubemaker.api.tuning import TuningJob, TuningJobSpec
from kubemaker.builders.errors import SpecError
from kubemaker.builders.tuning import (
    LABEL_DEFINITION,
    LABEL_TRIAL,
    LABEL_TUNING_JOB,
    OBJECTIVE_FIELD,
    Definition,
    build_trial,
    check_objective,
    definitions,
    trial_index,
    trial_name,
    tuning_owner,
)

BANK = Path(__file__).resolve().parents[2] / "examples" / "xgboost-bank" / "trainingjob.yaml"


def tuning_spec(objective: str = "validation:auc", **template: Any) -> TuningJobSpec:
    job = yaml.safe_load(BANK.read_text())["spec"]
    static = dict(job.pop("hyperParameters"))
    static.pop("eta"), static.pop("max_depth")
    job.update(template)
    body = {
        "apiVersion": "kubemaker.io/v1alpha1",
        "kind": "TuningJob",
        "metadata": {"name": "bank-tune"},
        "spec": {
            "hyperParameterTuningJobConfig": {
                "strategy": "Bayesian",
                "hyperParameterTuningJobObjective": {"type": "Maximize", "metricName": objective},
                "resourceLimits": {"maxNumberOfTrainingJobs": 20, "maxParallelTrainingJobs": 2},
                "parameterRanges": {
                    "continuousParameterRanges": [
                        {"name": "eta", "minValue": 0.1, "maxValue": 0.5}
                    ],
                    "integerParameterRanges": [{"name": "max_depth", "minValue": 3, "maxValue": 9}],
                },
            },
            "trainingJobDefinition": {**job, "staticHyperParameters": static},
        },
    }
    return TuningJob.model_validate(body).spec


OWNER = tuning_owner("bank-tune", "ml", "uid-1")


def only(spec: TuningJobSpec) -> Definition:
    (definition,) = definitions(spec)
    return definition


def test_trial_names_are_numbered_from_001_and_read_back() -> None:
    assert trial_name("bank-tune", 0) == "bank-tune-001"
    assert trial_name("bank-tune", 998) == "bank-tune-999"
    assert trial_index("bank-tune", "bank-tune-042") == 41
    assert trial_index("bank-tune", "bank-tune-000") is None
    assert trial_index("bank-tune", "bank-tune-x42") is None
    assert trial_index("bank-tune", "other-001") is None
    with pytest.raises(ValueError, match="outside"):
        trial_name("bank-tune", 999)


def test_a_trial_is_a_valid_trainingjob_with_static_and_tuned_hyperparameters() -> None:
    spec = tuning_spec()
    body = build_trial(only(spec), owner=OWNER, index=4, tuned={"eta": "0.25", "max_depth": "7"})
    assert body["metadata"]["name"] == "bank-tune-005"
    assert body["metadata"]["labels"][LABEL_TUNING_JOB] == "bank-tune"
    assert body["metadata"]["labels"][LABEL_TRIAL] == "4"
    reference = body["metadata"]["ownerReferences"][0]
    assert (reference["kind"], reference["name"], reference["uid"]) == (
        "TuningJob",
        "bank-tune",
        "uid-1",
    )
    trial = TrainingJob.model_validate(body)
    hyperparameters = trial.spec.hyper_parameters or {}
    assert hyperparameters["eta"] == "0.25" and hyperparameters["max_depth"] == "7"
    assert hyperparameters["objective"] == "binary:logistic"  # static, from the template
    assert "staticHyperParameters" not in body["spec"]


def test_a_trial_reads_the_objective_with_the_builtin_definition_when_none_is_given() -> None:
    spec = tuning_spec(
        algorithmSpecification={"algorithmName": "xgboost", "trainingInputMode": "File"}
    )
    body = build_trial(only(spec), owner=OWNER, index=0, tuned={"eta": "0.3", "max_depth": "5"})
    definitions = {
        d["name"]: d["regex"] for d in body["spec"]["algorithmSpecification"]["metricDefinitions"]
    }
    assert definitions["validation:auc"] == r".*\[[0-9]+\].*#011validation-auc:(\S+)"
    check_objective(only(spec))


def test_an_objective_no_definition_produces_is_refused_naming_the_field() -> None:
    spec = tuning_spec(
        objective="validation:f2",
        algorithmSpecification={"trainingImage": "example/train:1", "trainingInputMode": "File"},
    )
    with pytest.raises(SpecError) as raised:
        check_objective(only(spec))
    assert str(raised.value).startswith(f"{OBJECTIVE_FIELD}: no metric definition produces")
    assert "'validation:f2'" in str(raised.value) and "(defined: none)" in str(raised.value)


def test_each_of_several_definitions_builds_its_own_trials() -> None:
    spec = tuning_spec()
    template = spec.training_job_definition
    assert template is not None and spec.hyper_parameter_tuning_job_config.parameter_ranges
    body = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    ranges = body["hyperParameterTuningJobConfig"].pop("parameterRanges")
    single = body.pop("trainingJobDefinition")
    body["trainingJobDefinitions"] = [
        {**single, "definitionName": "deep", "hyperParameterRanges": ranges},
        {
            **single,
            "definitionName": "shallow",
            "hyperParameterRanges": {
                "categoricalParameterRanges": [{"name": "max_depth", "values": ["2", "3"]}]
            },
            "tuningObjective": {"type": "Maximize", "metricName": "train:auc"},
        },
    ]
    multi = TuningJobSpec.model_validate(body)
    deep, shallow = definitions(multi)
    assert (deep.name, deep.metric, shallow.metric) == ("deep", "validation:auc", "train:auc")
    assert shallow.ranges_field == "spec.trainingJobDefinitions[1].hyperParameterRanges"
    trial = build_trial(shallow, owner=OWNER, index=2, tuned={"max_depth": "3"})
    assert trial["metadata"]["labels"][LABEL_DEFINITION] == "shallow"
    assert trial["metadata"]["annotations"]["kubemaker.io/metric-series"] == "train:auc"
    spec_of_trial = TrainingJob.model_validate(trial).spec
    assert (spec_of_trial.hyper_parameters or {})["max_depth"] == "3"
    for key in ("definitionName", "hyperParameterRanges", "tuningObjective"):
        assert key not in trial["spec"]
    check_objective(shallow)
    body["trainingJobDefinitions"][1]["definitionName"] = "deep"
    with pytest.raises(ValueError, match="definitionName"):
        TuningJobSpec.model_validate(body)
