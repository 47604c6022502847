"""TrainingJobs end to end: the operator, the agent, the XGBoost and MXNet images as
containers in a kind cluster, the data and the model in the cluster's S3 server (moto;
docs/e2e.md; `make e2e-kind`)."""

from __future__ import annotations

import csv
import io
import json
import tarfile
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
    output = kind_env.apply_bank_job(e2e_namespace, name)

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
    # docs/trainingjob.md, "Logs": the algorithm's log, as the metrics were read from it.
    logs = kind_env.cluster.kubectl(
        "logs", "-n", e2e_namespace, "-l", f"kubemaker.io/training-job={name}",
        "-c", "algorithm", "--tail=-1",
    ).stdout  # fmt: skip
    assert "validation-auc:" in logs, logs[-2000:]

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
    # XGBoost's eta is in [0, 1].
    kind_env.apply_bank_job(e2e_namespace, name, hyperparameters={"eta": "1.5"})

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


def _operator_pod(env: kindharness.Environment) -> dict[str, Any]:
    pods = env.cluster.kubectl_json(
        "get", "pods", "-n", kindharness.OPERATOR_NAMESPACE,
        "-l", "app.kubernetes.io/name=kubemaker",
    )["items"]  # fmt: skip
    running = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(running) == 1, [p["metadata"]["name"] for p in pods]
    return dict(running[0])


def _operator_ready(env: kindharness.Environment, before: dict[str, Any], restarts: int) -> bool:
    """The operator runs again: its container restarted, or (forced deletion) a new pod."""
    pod = _operator_pod(env)
    (status,) = pod["status"].get("containerStatuses") or [{}]
    restarted = (
        pod["metadata"]["uid"] != before["metadata"]["uid"]
        or status.get("restartCount", 0) > restarts
    )
    return restarted and bool(status.get("ready"))


def _kill(env: kindharness.Environment, pod: dict[str, Any], container_id: str) -> None:
    """SIGKILL a container's process, as the OOM killer or a crash ends it: no shutdown
    handler runs. On kind, from the node; on another cluster (no node to reach), a
    forced deletion of the pod, the nearest a client can get."""
    node = getattr(env.cluster, "node_container", None)
    if node is None:
        env.cluster.kubectl(
            "delete", "pod", "-n", pod["metadata"]["namespace"], pod["metadata"]["name"],
            "--grace-period=0", "--force",
        )  # fmt: skip
        return
    docker = env.cluster.tools.docker
    cid = container_id.partition("://")[2]
    pid = kindharness.run(
        [docker, "exec", node, "crictl", "inspect", "--output", "go-template",
         "--template", "{{.info.pid}}", cid],
    ).stdout.strip()  # fmt: skip
    assert pid.isdigit(), pid
    kindharness.run([docker, "exec", node, "kill", "-KILL", pid])


def test_the_operator_killed_during_training_completes_the_job_once(
    kind_env: kindharness.Environment, e2e_namespace: str
) -> None:
    name = "xgboost-crash"
    output = kind_env.apply_bank_job(e2e_namespace, name)

    def training() -> dict[str, Any] | None:
        pods = kind_env.cluster.kubectl_json(
            "get", "pods", "-n", e2e_namespace, "-l", f"kubemaker.io/training-job={name}"
        )["items"]  # fmt: skip
        if len(pods) != 1:
            return None
        statuses = pods[0].get("status", {}).get("containerStatuses") or []
        state = next((c["state"] for c in statuses if c["name"] == "algorithm"), {})
        assert "terminated" not in state, f"the algorithm ended before the kill: {state}"
        return dict(pods[0]) if "running" in state else None

    # Training takes seconds here: look often enough not to miss it.
    pod = kindharness.wait_for(
        "the algorithm container to run",
        training,
        kind_env.settings.job_timeout,
        interval=0.3,
        max_interval=0.3,
    )
    (batch_job,) = kind_env.cluster.kubectl_json(
        "get", "jobs", "-n", e2e_namespace, "-l", f"kubemaker.io/training-job={name}"
    )["items"]  # fmt: skip

    # SIGKILL, as the kernel's OOM killer or a crash would end it: no shutdown handler runs.
    operator = _operator_pod(kind_env)
    (container,) = operator["status"]["containerStatuses"]
    restarts = int(container.get("restartCount", 0))
    _kill(kind_env, operator, container["containerID"])
    kindharness.wait_for(
        "the operator to restart and be ready",
        lambda: _operator_ready(kind_env, operator, restarts),
        kind_env.settings.setup_timeout,
    )

    obj = kindharness.wait_for_training_end(
        kind_env.cluster, name, e2e_namespace, kind_env.settings.job_timeout
    )
    succeeded = kindharness.condition_status(obj, "Succeeded")
    assert succeeded == "True", kindharness.describe_status(obj)
    status = obj["status"]
    assert not status.get("retryCount"), status
    # Nothing twice: the same Job and pod, the algorithm run once, one model.
    jobs = kind_env.cluster.kubectl_json(
        "get", "jobs", "-n", e2e_namespace, "-l", f"kubemaker.io/training-job={name}"
    )["items"]  # fmt: skip
    assert [j["metadata"]["uid"] for j in jobs] == [batch_job["metadata"]["uid"]]
    (after,) = _pods(kind_env, e2e_namespace, name)
    assert after["metadata"]["uid"] == pod["metadata"]["uid"]
    assert _container_status(after, "algorithm")["restartCount"] == 0
    bucket, prefix = kindharness.split_s3_uri(f"{output}/{name}/")
    listed = kind_env.storage.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    keys = [o["Key"] for o in listed.get("Contents", [])]
    assert [k for k in keys if k.endswith("model.tar.gz")] == [f"{prefix}output/model.tar.gz"]
    assert status["modelArtifacts"]["s3ModelArtifacts"] == f"{output}/{name}/output/model.tar.gz"
    created = kind_env.cluster.kubectl_json(
        "get", "events", "-n", e2e_namespace,
        "--field-selector", f"involvedObject.name={name},reason=JobCreated",
    )["items"]  # fmt: skip
    assert len(created) == 1, [e["message"] for e in created]


def test_mxnet_dist_sync_across_two_pods_resolves_its_hosts_and_trains(
    kind_env: kindharness.Environment, e2e_namespace: str
) -> None:
    """Two pods of the MXNet image, a parameter server each (SageMaker's
    `parameter_server` distribution): algo-1 and algo-2 find each other by their DNS
    names through the job's headless Service, and dist_sync keeps their weights equal."""
    name = "mxnet-dist"
    bucket = kind_env.settings.bucket
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        tar.add(kindharness.REPO_ROOT / "tests" / "scripts" / "mxnet_dist_sync.py", "dist.py")
    source = f"{e2e_namespace}/code/sourcedir.tar.gz"
    kind_env.storage.client().put_object(Bucket=bucket, Key=source, Body=archive.getvalue())
    job = {
        "apiVersion": "kubemaker.io/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": e2e_namespace},
        "spec": {
            "algorithmSpecification": {
                "framework": "mxnet",
                "entryPoint": "dist.py",
                "sourceDir": f"s3://{bucket}/{source}",
            },
            "hyperParameters": {"epochs": "20", "sagemaker_parameter_server_enabled": "true"},
            "outputDataConfig": {"s3OutputPath": f"s3://{bucket}/{e2e_namespace}/output"},
            "resourceConfig": {"instanceType": "ml.m5.xlarge", "instanceCount": 2},
            "stoppingCondition": {"maxRuntimeInSeconds": 900},
            # Two pods of values-e2e.yaml's 500m do not fit on the 2-CPU kind node next
            # to the control plane; this tiny model needs little CPU.
            "podOverrides": {"resources": {"requests": {"cpu": "200m"}}},
        },
    }
    kind_env.cluster.apply([job])

    obj = kindharness.wait_for_training_end(
        kind_env.cluster, name, e2e_namespace, kind_env.settings.job_timeout
    )
    succeeded = kindharness.condition_status(obj, "Succeeded")
    assert succeeded == "True", kindharness.describe_status(obj)
    pods = _pods(kind_env, e2e_namespace, name)
    assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
    seen = []
    for pod in pods:
        log = kind_env.cluster.kubectl(
            "logs", "-n", e2e_namespace, pod["metadata"]["name"], "-c", "algorithm"
        ).stdout  # fmt: skip
        (line,) = [x for x in log.splitlines() if x.startswith("dist.json ")]
        seen.append(json.loads(line.removeprefix("dist.json ")))
    assert sorted(s["rank"] for s in seen) == [0, 1], seen
    assert all(s["num_workers"] == 2 and s["type"] == "dist_sync" for s in seen), seen
    assert seen[0]["weight"] == seen[1]["weight"], seen
