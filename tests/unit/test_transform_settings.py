"""A BatchTransform's settings: the spec, else the server's /execution-parameters, else
SageMaker's defaults; SageMaker's limits; what the model server and transformer are told."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubemaker.api import BatchTransform
from kubemaker.builders.transform import server_environment, transform_config
from kubemaker_runtime.protocol import StorageConfig, TransformConfig
from kubemaker_runtime.transform.client import ExecutionParameters
from kubemaker_runtime.transform.runner import Plan, TransformError, resolve

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "xgboost-bank"
CONFIG = TransformConfig(job_name="bt", input_uri="s3://b/in/", output_uri="s3://b/out/")


def config(**fields: Any) -> TransformConfig:
    return CONFIG.model_copy(update=fields)


def test_the_server_fills_what_the_spec_leaves_unset() -> None:
    asked = ExecutionParameters.from_json(
        {"MaxConcurrentTransforms": 4, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 6}
    )
    assert asked == ExecutionParameters(4, "MultiRecord", 6)
    assert resolve(config(split_type="Line"), asked) == Plan("MultiRecord", 6, 4)
    spec_wins = config(split_type="Line", batch_strategy="SingleRecord", max_payload_in_mb=2)
    assert resolve(spec_wins, asked) == Plan("SingleRecord", 2, 4)
    assert resolve(config(), ExecutionParameters()) == Plan("SingleRecord", 6, 1)
    assert ExecutionParameters.from_json(["not", "an", "object"]) == ExecutionParameters()


def test_sagemakers_limits_are_refused_naming_the_fields() -> None:
    with pytest.raises(TransformError, match=r"maxConcurrentTransforms x spec\.maxPayloadInMB"):
        resolve(config(max_concurrent_transforms=20, max_payload_in_mb=6), ExecutionParameters())
    with pytest.raises(TransformError, match=r"spec\.batchStrategy: MultiRecord needs records"):
        resolve(config(batch_strategy="MultiRecord"), ExecutionParameters())


def test_the_example_becomes_the_transformers_config_and_the_servers_environment() -> None:
    body = yaml.safe_load((EXAMPLE / "batchtransform.yaml").read_text())
    spec = BatchTransform.model_validate(body).spec
    settings = transform_config(spec, job_name="bt", storage=StorageConfig())
    assert (settings.split_type, settings.batch_strategy, settings.max_payload_in_mb) == (
        "Line",
        "MultiRecord",
        6,
    )
    assert (settings.input_filter, settings.join_source, settings.output_filter) == (
        "$[1:]",
        "Input",
        "$[0,-1]",
    )
    assert settings.server_url == "http://127.0.0.1:8080"
    assert server_environment(spec) == {
        "SAGEMAKER_BATCH": "true",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "6",
        "SAGEMAKER_BATCH_STRATEGY": "MULTI_RECORD",
    }
