"""Invalid manifests, each rejected with a message that names the bad field.

The same cases run twice: here against the pydantic models (what local mode and the
operator use), and in ``tests/cluster/test_crd_validation.py`` against the real apiserver
with the generated CRDs. Keeping one list keeps the two validators in step.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import ValidationError

from kubemaker.api import BatchTransform, Endpoint, TrainingJob, TuningJob

Manifest = dict[str, Any]

TRAINING_JOB: Manifest = {
    "apiVersion": "kubemaker.io/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "valid-training"},
    "spec": {
        "algorithmSpecification": {"algorithmName": "xgboost"},
        "hyperParameters": {"num_round": "10", "objective": "binary:logistic"},
        "inputDataConfig": [
            {"channelName": "train", "uri": "s3://bucket/train/", "contentType": "text/csv"}
        ],
        "outputDataConfig": {"s3OutputPath": "s3://bucket/output"},
        "resourceConfig": {"instanceType": "ml.m5.xlarge"},
    },
}

TUNING_JOB: Manifest = {
    "apiVersion": "kubemaker.io/v1alpha1",
    "kind": "TuningJob",
    "metadata": {"name": "valid-tuning"},
    "spec": {
        "hyperParameterTuningJobConfig": {
            "strategy": "Bayesian",
            "hyperParameterTuningJobObjective": {
                "type": "Maximize",
                "metricName": "validation:auc",
            },
            "resourceLimits": {"maxNumberOfTrainingJobs": 4, "maxParallelTrainingJobs": 2},
            "parameterRanges": {
                "integerParameterRanges": [{"name": "max_depth", "minValue": 2, "maxValue": 8}],
                "continuousParameterRanges": [{"name": "eta", "minValue": 0.05, "maxValue": 0.5}],
            },
        },
        "trainingJobDefinition": {
            "algorithmSpecification": {"algorithmName": "xgboost"},
            "staticHyperParameters": {"num_round": "10"},
            "inputDataConfig": [{"channelName": "train", "uri": "s3://bucket/train/"}],
            "outputDataConfig": {"s3OutputPath": "s3://bucket/tuning"},
            "resourceConfig": {"instanceType": "ml.m5.xlarge"},
        },
    },
}

ENDPOINT: Manifest = {
    "apiVersion": "kubemaker.io/v1alpha1",
    "kind": "Endpoint",
    "metadata": {"name": "valid-endpoint"},
    "spec": {
        "productionVariants": [
            {
                "variantName": "AllTraffic",
                "model": {"trainingJobRef": {"name": "valid-training"}},
                "instanceType": "ml.m5.large",
                "autoScaling": {
                    "minCapacity": 1,
                    "maxCapacity": 3,
                    "targetInvocationsPerInstance": 100,
                },
            }
        ],
    },
}

BATCH_TRANSFORM: Manifest = {
    "apiVersion": "kubemaker.io/v1alpha1",
    "kind": "BatchTransform",
    "metadata": {"name": "valid-transform"},
    "spec": {
        "model": {"modelDataUrl": "s3://bucket/model.tar.gz", "algorithmName": "xgboost"},
        "transformInput": {
            "uri": "s3://bucket/batch/",
            "contentType": "text/csv",
            "splitType": "Line",
        },
        "transformOutput": {"s3OutputPath": "s3://bucket/batch-out", "assembleWith": "Line"},
        "transformResources": {"instanceType": "ml.m5.large"},
    },
}

VALID: dict[str, Manifest] = {
    "TrainingJob": TRAINING_JOB,
    "TuningJob": TUNING_JOB,
    "Endpoint": ENDPOINT,
    "BatchTransform": BATCH_TRANSFORM,
}

MODELS = {
    "TrainingJob": TrainingJob,
    "TuningJob": TuningJob,
    "Endpoint": Endpoint,
    "BatchTransform": BatchTransform,
}

_DELETE = object()


@dataclass(frozen=True)
class Case:
    """A valid manifest of ``kind`` with ``changes`` applied; ``field`` must be named."""

    id: str
    kind: str
    changes: dict[str, Any]
    field: str

    def manifest(self) -> Manifest:
        obj = copy.deepcopy(VALID[self.kind])
        for path, value in self.changes.items():
            set_path(obj, path, value)
        return obj


def set_path(obj: Manifest, path: str, value: Any) -> None:
    """Set (or with ``_DELETE`` remove) a dotted path; integer parts index lists."""
    parts = path.split(".")
    node: Any = obj
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last = parts[-1]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


TJ = "spec."
ALGO = "spec.algorithmSpecification."
HPT = "spec.hyperParameterTuningJobConfig."
VARIANT = "spec.productionVariants.0."

CASES: list[Case] = [
    # --- TrainingJob ---
    Case(
        "hyperparameter-not-string",
        "TrainingJob",
        {TJ + "hyperParameters.num_round": 10},
        "num_round",
    ),
    Case(
        "instance-count-zero",
        "TrainingJob",
        {TJ + "resourceConfig.instanceCount": 0},
        "instanceCount",
    ),
    Case(
        "volume-too-large",
        "TrainingJob",
        {TJ + "resourceConfig.volumeSizeInGB": 20000},
        "volumeSizeInGB",
    ),
    Case(
        "missing-resource-config", "TrainingJob", {TJ + "resourceConfig": _DELETE}, "resourceConfig"
    ),
    Case(
        "image-and-algorithm",
        "TrainingJob",
        {ALGO + "trainingImage": "example.com/algo:1"},
        "algorithmName",
    ),
    Case("no-algorithm", "TrainingJob", {ALGO + "algorithmName": _DELETE}, "trainingImage"),
    Case(
        "framework-without-entry-point",
        "TrainingJob",
        {ALGO + "algorithmName": _DELETE, ALGO + "framework": "mxnet"},
        "entryPoint",
    ),
    Case(
        "input-mode", "TrainingJob", {ALGO + "trainingInputMode": "FastFile"}, "trainingInputMode"
    ),
    # The apiserver compiles it as RE2 (CEL's matches), the models as Python's re.
    Case(
        "metric-regex-invalid",
        "TrainingJob",
        {ALGO + "metricDefinitions": [{"name": "validation:auc", "regex": "validation-auc:(["}]},
        "regex",
    ),
    Case(
        "channel-two-sources",
        "TrainingJob",
        {TJ + "inputDataConfig.0.dataSource": {"s3DataSource": {"s3Uri": "s3://bucket/x"}}},
        "dataSource",
    ),
    Case(
        "channel-uri-scheme",
        "TrainingJob",
        {TJ + "inputDataConfig.0.uri": "http://host/data"},
        "uri",
    ),
    Case(
        "distribution-type",
        "TrainingJob",
        {
            TJ + "inputDataConfig.0.uri": _DELETE,
            TJ + "inputDataConfig.0.dataSource": {
                "s3DataSource": {"s3Uri": "s3://bucket/x", "s3DataDistributionType": "Sharded"}
            },
        },
        "s3DataDistributionType",
    ),
    Case(
        "duplicate-channel",
        "TrainingJob",
        {
            TJ + "inputDataConfig": [
                {"channelName": "train", "uri": "s3://bucket/a"},
                {"channelName": "train", "uri": "s3://bucket/b"},
            ]
        },
        "inputDataConfig",
    ),
    Case(
        "wait-shorter-than-runtime",
        "TrainingJob",
        {TJ + "stoppingCondition": {"maxRuntimeInSeconds": 3600, "maxWaitTimeInSeconds": 60}},
        "maxWaitTimeInSeconds",
    ),
    Case(
        "too-many-retries",
        "TrainingJob",
        {TJ + "retryStrategy": {"maximumRetryAttempts": 31}},
        "maximumRetryAttempts",
    ),
    Case("environment-name", "TrainingJob", {TJ + "environment": {"1BAD": "x"}}, "environment"),
    Case(
        "resource-quantity",
        "TrainingJob",
        {TJ + "podOverrides": {"resources": {"limits": {"cpu": "lots"}}}},
        "cpu",
    ),
    Case(
        "toleration-operator",
        "TrainingJob",
        {TJ + "podOverrides": {"tolerations": [{"key": "a", "operator": "Sometimes"}]}},
        "operator",
    ),
    Case("misspelt-field", "TrainingJob", {TJ + "hyperparameters": {"a": "1"}}, "hyperparameters"),
    Case("name-too-long", "TrainingJob", {"metadata.name": "x" * 53}, "metadata.name"),
    Case(
        "name-not-dns-label",
        "TrainingJob",
        {"metadata.name": "1-starts-with-digit"},
        "metadata.name",
    ),
    # --- TuningJob ---
    Case(
        "range-min-above-max",
        "TuningJob",
        {HPT + "parameterRanges.integerParameterRanges.0.minValue": 9},
        "minValue",
    ),
    Case("strategy", "TuningJob", {HPT + "strategy": "Evolutionary"}, "strategy"),
    Case(
        "hyperband-early-stopping",
        "TuningJob",
        {HPT + "strategy": "Hyperband", HPT + "trainingJobEarlyStoppingType": "Auto"},
        "trainingJobEarlyStoppingType",
    ),
    Case(
        "parallel-above-total",
        "TuningJob",
        {HPT + "resourceLimits.maxParallelTrainingJobs": 5},
        "maxParallelTrainingJobs",
    ),
    Case(
        "tuned-and-static",
        "TuningJob",
        {"spec.trainingJobDefinition.staticHyperParameters": {"eta": "0.1"}},
        "staticHyperParameters",
    ),
    Case(
        "logarithmic-from-zero",
        "TuningJob",
        {
            HPT + "parameterRanges.continuousParameterRanges.0.minValue": 0,
            HPT + "parameterRanges.continuousParameterRanges.0.scalingType": "Logarithmic",
        },
        "minValue",
    ),
    Case("tuning-name-too-long", "TuningJob", {"metadata.name": "t" * 33}, "metadata.name"),
    Case(
        "one-and-several-definitions",
        "TuningJob",
        {
            "spec.trainingJobDefinitions": [
                {**TUNING_JOB["spec"]["trainingJobDefinition"], "definitionName": "a"}
            ]
        },
        "trainingJobDefinitions",
    ),
    Case(
        "definition-without-its-ranges",
        "TuningJob",
        {
            "spec.trainingJobDefinition": _DELETE,
            HPT + "parameterRanges": _DELETE,
            "spec.trainingJobDefinitions": [
                {**TUNING_JOB["spec"]["trainingJobDefinition"], "definitionName": "a"}
            ],
        },
        "hyperParameterRanges",
    ),
    Case(
        "definition-objective-of-another-type",
        "TuningJob",
        {
            "spec.trainingJobDefinition": _DELETE,
            "spec.trainingJobDefinitions": [
                {
                    **TUNING_JOB["spec"]["trainingJobDefinition"],
                    "definitionName": "a",
                    "hyperParameterRanges": TUNING_JOB["spec"]["hyperParameterTuningJobConfig"][
                        "parameterRanges"
                    ],
                    "tuningObjective": {"type": "Minimize", "metricName": "validation:error"},
                }
            ],
            HPT + "parameterRanges": _DELETE,
        },
        "tuningObjective",
    ),
    # --- Endpoint ---
    Case(
        "two-model-sources",
        "Endpoint",
        {VARIANT + "model.modelDataUrl": "s3://bucket/model.tar.gz"},
        "modelDataUrl",
    ),
    Case(
        "autoscaling-min-above-max",
        "Endpoint",
        {VARIANT + "autoScaling.minCapacity": 5},
        "minCapacity",
    ),
    Case(
        "canary-without-size",
        "Endpoint",
        {
            "spec.deploymentConfig": {
                "blueGreenUpdatePolicy": {"trafficRoutingConfiguration": {"type": "Canary"}}
            }
        },
        "canarySize",
    ),
    Case("no-variants", "Endpoint", {"spec.productionVariants": []}, "productionVariants"),
    # --- BatchTransform ---
    Case(
        "split-type", "BatchTransform", {"spec.transformInput.splitType": "Paragraph"}, "splitType"
    ),
    Case("payload-too-large", "BatchTransform", {"spec.maxPayloadInMB": 101}, "maxPayloadInMB"),
    Case(
        "transform-no-input", "BatchTransform", {"spec.transformInput.uri": _DELETE}, "dataSource"
    ),
]


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_manifests_parse(kind: str) -> None:
    MODELS[kind].model_validate(VALID[kind])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_model_rejects_and_names_the_field(case: Case) -> None:
    with pytest.raises(ValidationError) as error:
        MODELS[case.kind].model_validate(case.manifest())
    assert case.field in str(error.value)


def test_enough_cases() -> None:
    assert len(CASES) >= 15
    assert len({c.id for c in CASES}) == len(CASES)
