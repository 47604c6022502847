"""The API models: names on the wire, defaults, helpers, and what every field must carry."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, ValidationError

from kubemaker.api import (
    KINDS,
    BatchTransformSpec,
    Channel,
    EndpointSpec,
    ModelSource,
    ResourceConfig,
    TrainingJob,
    TrainingJobSpec,
    TrainingJobStatus,
    TuningJobSpec,
)
from kubemaker.api.common import PodOverrides
from kubemaker.api.tuning import TrainingJobTemplate

MINIMAL_TRAINING = {
    "algorithmSpecification": {"trainingImage": "example.com/algo:1"},
    "outputDataConfig": {"s3OutputPath": "s3://bucket/out"},
    "resourceConfig": {"instanceType": "ml.m5.large"},
}


def test_training_defaults_are_sagemakers() -> None:
    spec = TrainingJobSpec.model_validate(MINIMAL_TRAINING)
    assert spec.algorithm_specification.training_input_mode == "File"
    assert spec.resource_config.instance_count == 1
    assert spec.resource_config.volume_size_in_gb == 30
    assert spec.stopping_condition.max_runtime_in_seconds == 86400
    assert spec.stopping_condition.max_wait_time_in_seconds is None
    assert spec.retry_strategy is None
    assert spec.enable_managed_spot_training is False
    assert spec.stop is False


def test_camel_case_on_the_wire_and_snake_case_in_python() -> None:
    by_alias = ResourceConfig.model_validate({"instanceType": "ml.m5.large", "volumeSizeInGB": 5})
    by_name = ResourceConfig(instance_type="ml.m5.large", volume_size_in_gb=5)
    assert by_alias == by_name
    assert by_name.dump() == {
        "instanceType": "ml.m5.large",
        "instanceCount": 1,
        "volumeSizeInGB": 5,
    }


def test_dump_leaves_out_unset_fields() -> None:
    dumped = TrainingJobSpec.model_validate(MINIMAL_TRAINING).dump()
    assert "retryStrategy" not in dumped
    assert "hyperParameters" not in dumped
    assert dumped["stoppingCondition"] == {"maxRuntimeInSeconds": 86400}
    # What dump() writes parses back to the same model.
    assert TrainingJobSpec.model_validate(dumped) == TrainingJobSpec.model_validate(
        MINIMAL_TRAINING
    )


def test_special_aliases() -> None:
    spec = BatchTransformSpec.model_validate(
        {
            "model": {"modelDataUrl": "s3://bucket/m.tar.gz", "image": "example.com/serve:1"},
            "transformInput": {"uri": "s3://bucket/in"},
            "transformOutput": {"s3OutputPath": "s3://bucket/out"},
            "transformResources": {"instanceType": "ml.m5.large"},
            "maxPayloadInMB": 10,
        }
    )
    assert spec.max_payload_in_mb == 10
    assert spec.dump()["maxPayloadInMB"] == 10
    assert spec.model.model_data_url == "s3://bucket/m.tar.gz"


def test_channel_forms_give_one_uri_and_distribution() -> None:
    short = Channel.model_validate({"channelName": "train", "uri": "pvc://data/train"})
    assert (short.source_uri, short.distribution) == ("pvc://data/train", "FullyReplicated")
    long = Channel.model_validate(
        {
            "channelName": "train",
            "dataSource": {
                "s3DataSource": {
                    "s3Uri": "s3://bucket/train",
                    "s3DataDistributionType": "ShardedByS3Key",
                }
            },
        }
    )
    assert (long.source_uri, long.distribution) == ("s3://bucket/train", "ShardedByS3Key")


@pytest.mark.parametrize(
    "uri", ["s3://my-bucket/a/b", "s3://bucket", "pvc://claim/path/x", "pvc://claim", "file:///x"]
)
def test_storage_uris_accepted(uri: str) -> None:
    Channel.model_validate({"channelName": "c", "uri": uri})


@pytest.mark.parametrize(
    "uri", ["http://x/y", "s3:/bucket", "pvc://Claim/x", "file://relative", "/abs/path", ""]
)
def test_storage_uris_rejected(uri: str) -> None:
    with pytest.raises(ValidationError, match="uri"):
        Channel.model_validate({"channelName": "c", "uri": uri})


def test_quantities_int_or_string() -> None:
    overrides = PodOverrides.model_validate(
        {"resources": {"limits": {"cpu": 2, "memory": "4Gi", "nvidia.com/gpu": 1}}}
    )
    assert overrides.resources is not None
    assert overrides.resources.limits == {"cpu": 2, "memory": "4Gi", "nvidia.com/gpu": 1}
    with pytest.raises(ValidationError, match="memory"):
        PodOverrides.model_validate({"resources": {"requests": {"memory": "4 GB"}}})


def test_model_source_forms() -> None:
    ModelSource.model_validate({"modelDataUrl": "s3://bkt/m.tar.gz", "image": "img:1"})
    ModelSource.model_validate({"modelDataUrl": "s3://bkt/m.tar.gz", "algorithmName": "xgboost"})
    ModelSource.model_validate({"trainingJobRef": {"name": "train-1"}})
    ModelSource.model_validate({"tuningJobRef": {"name": "tune-1"}, "image": "img:2"})
    with pytest.raises(ValidationError, match="exactly one"):
        ModelSource.model_validate({})
    with pytest.raises(ValidationError, match="needs an image"):
        ModelSource.model_validate({"modelDataUrl": "s3://bkt/m.tar.gz"})


def test_grid_needs_no_job_count_but_bayesian_does() -> None:
    template = {**MINIMAL_TRAINING}
    config = {
        "strategy": "Grid",
        "hyperParameterTuningJobObjective": {"type": "Minimize", "metricName": "loss"},
        "resourceLimits": {"maxParallelTrainingJobs": 2},
        "parameterRanges": {"categoricalParameterRanges": [{"name": "a", "values": ["x", "y"]}]},
    }
    spec = TuningJobSpec.model_validate(
        {"hyperParameterTuningJobConfig": config, "trainingJobDefinition": template}
    )
    ranges = spec.hyper_parameter_tuning_job_config.parameter_ranges
    assert ranges is not None and ranges.names() == ["a"]
    with pytest.raises(ValidationError, match="maxNumberOfTrainingJobs"):
        TuningJobSpec.model_validate(
            {
                "hyperParameterTuningJobConfig": {**config, "strategy": "Random"},
                "trainingJobDefinition": template,
            }
        )


def test_tuning_template_has_no_per_job_fields() -> None:
    names = set(TrainingJobTemplate.model_fields)
    assert "static_hyper_parameters" in names
    assert not names & {"hyper_parameters", "stop", "ttl_seconds_after_finished"}


def test_endpoint_variant_names_unique() -> None:
    variant = {
        "variantName": "A",
        "model": {"trainingJobRef": {"name": "t"}},
        "instanceType": "ml.m5.large",
    }
    with pytest.raises(ValidationError, match="duplicate variantName"):
        EndpointSpec.model_validate({"productionVariants": [variant, variant]})
    with pytest.raises(ValidationError, match="shadow"):
        EndpointSpec.model_validate(
            {"productionVariants": [variant], "shadowProductionVariants": [variant]}
        )


def test_status_round_trip_and_unknown_keys_ignored() -> None:
    status = TrainingJobStatus.model_validate(
        {
            "trainingJobStatus": "Completed",
            "secondaryStatus": "Completed",
            "conditions": [
                {
                    "type": "Succeeded",
                    "status": "True",
                    "reason": "Completed",
                    "lastTransitionTime": "2025-01-02T03:04:05Z",
                    "observedGeneration": 1,
                }
            ],
            "modelArtifacts": {"s3ModelArtifacts": "s3://bkt/out/job/output/model.tar.gz"},
            "kopf": {"progress": {}},
        }
    )
    succeeded = status.condition("Succeeded")
    assert succeeded is not None
    assert succeeded.last_transition_time == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert status.condition("Failed") is None
    dumped = status.dump()
    assert dumped["conditions"][0]["lastTransitionTime"] == "2025-01-02T03:04:05Z"
    assert "kopf" not in dumped


def test_whole_object_checks_the_name() -> None:
    obj = {"metadata": {"name": "ok-name"}, "spec": MINIMAL_TRAINING}
    assert TrainingJob.model_validate(obj).metadata.name == "ok-name"
    with pytest.raises(ValidationError, match=r"metadata\.name"):
        TrainingJob.model_validate({**obj, "metadata": {"name": "Upper"}})


def _models(model: type[BaseModel], seen: set[type[BaseModel]]) -> None:
    if model in seen:
        return
    seen.add(model)
    for info in model.model_fields.values():
        for arg in _flatten(info.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                _models(arg, seen)


def _flatten(annotation: object) -> list[object]:
    args = getattr(annotation, "__args__", None)
    if not args:
        return [annotation]
    return [a for arg in args for a in _flatten(arg)]


def test_every_field_has_a_description() -> None:
    seen: set[type[BaseModel]] = set()
    for info in KINDS:
        _models(info.spec_model, seen)
        _models(info.status_model, seen)
    missing = [
        f"{model.__name__}.{name}"
        for model in seen
        for name, field in model.model_fields.items()
        if not field.description
    ]
    assert not missing, missing
    undocumented = [model.__name__ for model in seen if not model.__doc__]
    assert not undocumented
