"""A "bring your own container" program trained through the agent, end to end.

tests/dataplane/byoc/train knows only SageMaker's contract (config files, SM_* variables,
channel directories and FIFOs). Here it runs as its own process between the agent's
prepare and finish, reading data staged from the loopback S3 server, and its model
comes back as model.tar.gz in S3.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kubemaker_runtime.agent import Agent
from kubemaker_runtime.contract import Paths
from kubemaker_runtime.protocol import AgentConfig, AgentReport, ChannelConfig, StorageConfig

BYOC_TRAIN = Path(__file__).parent / "byoc" / "train"
TRUE_WEIGHTS = np.array([2.0, -1.0, 0.5])
TRUE_BIAS = 3.0


def make_data(rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, 3))
    labels = features @ TRUE_WEIGHTS + TRUE_BIAS + rng.normal(scale=0.05, size=rows)
    return np.column_stack([labels, features])  # label first, as SageMaker's CSV


def put_csv(s3_client: Any, bucket: str, prefix: str, data: np.ndarray, parts: int) -> None:
    for index, chunk in enumerate(np.array_split(data, parts)):
        body = io.StringIO()
        np.savetxt(body, chunk, delimiter=",", fmt="%.10f")
        s3_client.put_object(
            Bucket=bucket, Key=f"{prefix}/part-{index:02d}.csv", Body=body.getvalue().encode()
        )


def model_from_s3(s3_client: Any, uri: str) -> dict[str, Any]:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    data = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert tar.getnames() == ["model.json"]
        member = tar.extractfile("model.json")
        assert member is not None
        return dict(json.load(member))


def byoc_config(bucket: str, endpoint: str, hps: dict[str, str], mode: str = "File") -> AgentConfig:
    return AgentConfig(
        job_name="byoc-ridge",
        hosts=["algo-1"],
        instance_type="ml.m5.large",
        hyper_parameters=hps,
        channels=[
            ChannelConfig(
                name="train",
                uri=f"s3://{bucket}/byoc/train/",
                content_type="text/csv",
                input_mode=mode,  # type: ignore[arg-type]
            ),
            ChannelConfig(name="validation", uri=f"s3://{bucket}/byoc/validation/"),
        ],
        output_path=f"s3://{bucket}/byoc/byoc-ridge/output",
        storage=StorageConfig(s3_endpoint_url=endpoint),
    )


def run_algorithm(agent: Agent) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **agent.training_env(num_cpus=2),
        "SAGEMAKER_BASE_DIR": str(agent.paths.base),
    }
    return subprocess.run(
        [sys.executable, str(BYOC_TRAIN), "train"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("mode", ["File", "Pipe"])
def test_byoc_program_trains_through_the_agent(
    s3_client: Any, s3_bucket: str, s3_endpoint: str, tmp_path: Path, mode: str
) -> None:
    train, validation = make_data(400, seed=1), make_data(100, seed=2)
    put_csv(s3_client, s3_bucket, "byoc/train", train, parts=4)
    put_csv(s3_client, s3_bucket, "byoc/validation", validation, parts=1)
    agent = Agent(
        byoc_config(s3_bucket, s3_endpoint, {"l2": "0.0", "fit_intercept": "true"}, mode),
        paths=Paths(tmp_path / "ml"),
    )

    agent.prepare()
    with agent.running():
        result = run_algorithm(agent)
    report = agent.finish()

    assert result.returncode == 0, result.stderr
    assert "host algo-1 of ['algo-1'], channels ['train', 'validation']" in result.stdout
    assert report.outcome == "Completed" and report.failure_reason is None
    assert report.model_artifacts == f"s3://{s3_bucket}/byoc/byoc-ridge/output/model.tar.gz"
    model = model_from_s3(s3_client, report.model_artifacts)
    assert model["rows"] == 400 and model["fit_intercept"] is True
    # The fit matches numpy's least squares on the same rows, and the truth.
    design = np.column_stack([train[:, 1:], np.ones(len(train))])
    expected, *_ = np.linalg.lstsq(design, train[:, 0], rcond=None)
    np.testing.assert_allclose(model["weights"], expected, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(model["weights"], [*TRUE_WEIGHTS, TRUE_BIAS], atol=0.02)
    assert set(report.final_metrics) == {"train:mse", "validation:mse"}
    assert report.final_metrics["validation:mse"] < 0.01
    assert report.output_data is not None


def test_failing_byoc_program_reason_reaches_the_report(
    s3_client: Any, s3_bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    put_csv(s3_client, s3_bucket, "byoc/train", make_data(20, seed=3), parts=1)
    put_csv(s3_client, s3_bucket, "byoc/validation", make_data(10, seed=4), parts=1)
    agent = Agent(byoc_config(s3_bucket, s3_endpoint, {"l2": "-1"}), paths=Paths(tmp_path / "ml"))
    agent.prepare()
    with agent.running():
        result = run_algorithm(agent)
    report = agent.finish()

    assert result.returncode == 1
    assert report.failure_reason == "hyperparameter l2 must be >= 0, got -1"
    # The job's outcome, and no model: the algorithm failed.
    assert report.outcome == "Failed" and report.agent_error is None
    assert report.model_artifacts is None
    assert AgentReport.from_message(report.to_message()).failure_reason == report.failure_reason
