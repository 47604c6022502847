"""TrainingJobs end to end: the operator, the agent and the XGBoost image as containers
in a kind cluster, the data and the model in the cluster's S3 server (moto; docs/e2e.md;
`make e2e-kind`)."""

from __future__ import annotations

import csv
import json
from typing import Any

import kindharness
import pytest

from kubemaker_runtime.protocol import AgentReport

pytestmark = pytest.mark.e2e


def _pods(env: kindharness.Environment, namespace: str, job: str) -> list[dict[str, Any]]:
    pods = env.cluster.kubectl_json(
        "get", "pods", "-n", namespace, "-l", f"kubemaker.io/training-job={job}"
    )["items"]
    assert pods, f"no pods of TrainingJob {job} in {namespace}"
    return list(pods)


def _container_status(pod: dict[str, Any], name: str) -> dict[str, Any]:
    status = pod.get("status", {})
    for entry in status.get("initContainerStatuses", []) + status.get("containerStatuses", []):
        if entry["name"] == name:
            return dict(entry)
    raise AssertionError(f"pod {pod['metadata']['name']} has no container {name!r}")


def _score_test_split(env: kindharness.Environment, model: bytes) -> tuple[int, float]:
    """(number of features, AUC on the held-out test split) of a trained model."""
    import numpy as np
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(bytearray(model))
    with (env.data_dir / "test" / "test.csv").open() as handle:
        rows = [[float(x) for x in row] for row in csv.reader(handle)]
    labels = [row[0] for row in rows]
    features = np.array([row[1:] for row in rows], dtype=np.float32)
    scores = booster.predict(xgb.DMatrix(features)).tolist()
    return booster.num_features(), kindharness.roc_auc(labels, scores)


def test_xgboost_bank_trains_to_a_model_in_object_storage(
    kind_env: kindharness.Environment, e2e_namespace: str
) -> None:
    name = "xgboost-bank"
    output = f"s3://{kind_env.settings.bucket}/{e2e_namespace}/output"
    job = kindharness.build_trainingjob(
        kindharness.bank_example(),
        name=name,
        namespace=e2e_namespace,
        data_uri=kind_env.data_uri,
        output_uri=output,
    )
    kind_env.cluster.apply([job])

    obj = kindharness.wait_for_training_end(
        kind_env.cluster, name, e2e_namespace, kind_env.settings.job_timeout
    )
    status = obj["status"]
    succeeded = kindharness.condition_status(obj, "Succeeded")
    assert succeeded == "True", kindharness.describe_status(obj)
    assert status["trainingJobStatus"] == "Completed"
    assert kindharness.condition_status(obj, "Ready") == "True"
    # What the README tells users to run works on the finished job.
    kind_env.cluster.kubectl(
        "wait", "--for=condition=Succeeded", f"trainingjob/{name}", "-n", e2e_namespace,
        "--timeout=30s",
    )  # fmt: skip

    # The model is where SageMaker puts it, and it is the real trained model.
    uri = status["modelArtifacts"]["s3ModelArtifacts"]
    assert uri == f"{output}/{name}/output/model.tar.gz"
    model = kindharness.model_from_tarball(kind_env.storage.get(uri))
    features = json.loads((kind_env.data_dir / "features.json").read_text())["features"]
    num_features, test_auc = _score_test_split(kind_env, model)
    assert num_features == len(features)
    # README: test AUC 0.919 with these hyperparameters and data.
    assert test_auc >= 0.85, f"test AUC {test_auc:.3f}"

    metrics = {m["metricName"]: m["value"] for m in status.get("finalMetricDataList", [])}
    assert metrics.get("validation:auc", 0.0) >= 0.9, metrics

    # The kubelet ran the agent as a native sidecar: it ended after the algorithm and
    # left its report (the operator's source for modelArtifacts) in its termination message.
    (pod,) = _pods(kind_env, e2e_namespace, name)
    algorithm = _container_status(pod, "algorithm")["state"]["terminated"]
    assert algorithm["exitCode"] == 0
    agent = _container_status(pod, "agent")["state"]["terminated"]
    report = AgentReport.from_message(agent["message"])
    assert report.outcome == "Completed", report
    assert report.model_artifacts == uri
    assert agent["finishedAt"] >= algorithm["finishedAt"]


def test_bad_hyperparameter_fails_with_a_reason_naming_it(
    kind_env: kindharness.Environment, e2e_namespace: str
) -> None:
    name = "bad-eta"
    job = kindharness.build_trainingjob(
        kindharness.bank_example(),
        name=name,
        namespace=e2e_namespace,
        data_uri=kind_env.data_uri,
        output_uri=f"s3://{kind_env.settings.bucket}/{e2e_namespace}/output",
        hyperparameters={"eta": "1.5"},  # XGBoost's eta is in [0, 1]
    )
    kind_env.cluster.apply([job])

    obj = kindharness.wait_for_training_end(
        kind_env.cluster, name, e2e_namespace, kind_env.settings.job_timeout
    )
    status = obj["status"]
    succeeded = kindharness.condition_status(obj, "Succeeded")
    assert succeeded == "False", kindharness.describe_status(obj)
    assert kindharness.condition_status(obj, "Failed") == "True"
    assert status["trainingJobStatus"] == "Failed"
    # The algorithm's own message, from its failure file through the agent's report.
    assert "Hyperparameter eta" in status["failureReason"], status["failureReason"]
    assert "1.5" in status["failureReason"]
    # An algorithm's error is never retried.
    assert not status.get("retryCount")
    (pod,) = _pods(kind_env, e2e_namespace, name)
    algorithm = _container_status(pod, "algorithm")["state"]["terminated"]
    assert algorithm["exitCode"] != 0
    assert pod["status"]["phase"] == "Failed"
