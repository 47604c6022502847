"""Our images, built from this checkout (scripts/images.sh) and run as containers.

No cluster: each test runs the containers as a pod would, with the same arguments,
users and mounts the operator's builders give them: the XGBoost image trains through
SageMaker's container contract and serves the model it wrote; a BatchTransform pod's
two containers (the serving image and the runtime image's transformer) share one
network namespace, as in a pod, and predict the test split. Predictions are compared with the
same booster loaded in this process. The data and the manifests are the bank example's
(examples/xgboost-bank). Skipped, as every e2e test, without a Docker
engine (``KUBEMAKER_E2E_REQUIRE=1`` makes that a failure).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
import yaml

from kubemaker.api.training import TrainingJob
from kubemaker.api.transform import BatchTransform
from kubemaker.builders.transform import server_environment, transform_config
from kubemaker.metric_definitions import MetricParser
from kubemaker_runtime import contract
from kubemaker_runtime.protocol import StorageConfig, TransformReport

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "xgboost-bank"
DOCKER = os.environ.get("KUBEMAKER_DOCKER", "/usr/bin/docker")
VERSION = "0.1.0"
UID = "65532"
TIMEOUT = 120.0


def image(name: str) -> str:
    return f"ghcr.io/kubemaker/{name}:{VERSION}"


def docker(*args: str, timeout: float = TIMEOUT, check: bool = True) -> str:
    done = subprocess.run(
        [DOCKER, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
    return done.stdout


@pytest.fixture(scope="module")
def images() -> list[str]:
    """scripts/images.sh: built once, then cached by their inputs."""
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "images.sh"), "operator", "runtime", "xgboost", "mxnet"],
        capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.fixture
def containers() -> Iterator[list[str]]:
    """Names of the containers a test starts; each is removed after the test."""
    names: list[str] = []
    yield names
    for name in names:
        docker("rm", "-f", name, check=False)


def shared(path: Path) -> Path:
    """A directory the images' non-root users may write."""
    path.mkdir(parents=True, exist_ok=True)
    for root, _dirs, files in os.walk(path):
        os.chmod(root, 0o777)
        for f in files:
            os.chmod(os.path.join(root, f), 0o666)
    return path


def csv(x: np.ndarray) -> str:
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in x)


def wait_ping(url: str, container: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/ping", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        running = docker("inspect", "--format", "{{.State.Running}}", container).strip()
        if running != "true":
            break
        time.sleep(0.2)
    raise AssertionError(f"{container} never answered /ping:\n{docker('logs', container)}")


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bank example's channels, written by its own prepare.py."""
    out = tmp_path_factory.mktemp("bank")
    done = subprocess.run(
        [sys.executable, str(EXAMPLE / "prepare.py"), "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def trained(images: list[str], bank: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The XGBoost image's `train` on the bank example's channels with the example's
    hyperparameters, as the algorithm container of its training pod runs it; the
    validation AUC is read from the container's log by the example's metricDefinitions,
    as the operator reads it for finalMetricDataList."""
    spec = TrainingJob.model_validate(
        yaml.safe_load((EXAMPLE / "trainingjob.yaml").read_text())
    ).spec
    base = tmp_path_factory.mktemp("opt-ml")
    paths = contract.Paths(base)
    paths.create_training_dirs()
    contract.write_hyperparameters(paths, dict(spec.hyper_parameters or {}))
    channels = [c.channel_name for c in spec.input_data_config or ()]
    contract.write_input_data_config(
        paths, {c: {"ContentType": "text/csv", "TrainingInputMode": "File"} for c in channels}
    )
    contract.write_resource_config(
        paths, contract.build_resource_config(hosts=["algo-1"], current_host="algo-1")
    )
    for channel in channels:
        shutil.copytree(bank / channel, paths.channel_dir(channel))
    shared(base)
    log = subprocess.run(
        [DOCKER, "run", "--rm", "--user", UID, "--read-only", "--tmpfs", "/tmp",
         "-v", f"{base}:/opt/ml", image("xgboost"), "train"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert log.returncode == 0, log.stdout + log.stderr
    assert (paths.model_dir / "xgboost-model").exists()
    parser = MetricParser(spec.algorithm_specification.metric_definitions)
    parser.feed_lines((log.stdout + log.stderr).splitlines())
    assert parser.latest["validation:auc"] >= 0.9, parser.latest
    return paths.model_dir


def booster_predictions(model_dir: Path, x: np.ndarray) -> np.ndarray:
    booster = xgb.Booster()
    booster.load_model(bytearray((model_dir / "xgboost-model").read_bytes()))
    return np.asarray(booster.inplace_predict(x))


def test_the_images_build_and_run_as_their_non_root_users(images: list[str]) -> None:
    assert [line.split()[0] for line in images] == [
        image("operator"), image("runtime"), image("xgboost"), image("mxnet"),
    ]  # fmt: skip
    for name, user in (("operator", "65532:65532"), ("runtime", "65532:65532")):
        assert (
            docker("image", "inspect", "--format", "{{.Config.User}}", image(name)).strip() == user
        )
    help_text = docker("run", "--rm", "--read-only", image("operator"), "--help")
    assert "kubemaker-operator" in help_text
    agent = docker("run", "--rm", "--read-only", image("runtime"), "--help")
    assert "transform" in agent and "fetch-model" in agent
    # MXNet computes in its image, as its non-root user.
    computed = docker(
        "run", "--rm", "--entrypoint", "python", image("mxnet"), "-c",
        "import os, mxnet as mx; print(os.getuid(), mx.nd.ones((3, 4)).sum().asscalar())",
    )  # fmt: skip
    assert computed.split() == ["1000", "12.0"]


def test_the_xgboost_image_serves_what_it_trained(
    trained: Path, bank: Path, containers: list[str]
) -> None:
    name = f"kubemaker-serve-{uuid.uuid4().hex[:8]}"
    containers.append(name)
    docker(
        "run", "-d", "--name", name, "--user", UID, "--read-only", "--tmpfs", "/tmp",
        "-p", "127.0.0.1::8080", "-v", f"{trained}:/opt/ml/model:ro", image("xgboost"), "serve",
    )  # fmt: skip
    port = docker("port", name, "8080/tcp").split(":")[-1].strip()
    url = f"http://127.0.0.1:{port}"
    wait_ping(url, name)
    rows = (bank / "test" / "test.csv").read_text().splitlines()[:40]
    x = np.array([[float(v) for v in row.split(",")[1:]] for row in rows], np.float32)
    request = urllib.request.Request(
        url + "/invocations", data=csv(x).encode(),
        headers={"Content-Type": "text/csv", "Accept": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as answer:
        body = json.loads(answer.read())
    scores = np.array([p["score"] for p in body["predictions"]], dtype=np.float32)
    np.testing.assert_allclose(scores, booster_predictions(trained, x), rtol=1e-6)


def test_the_bank_examples_transform_runs_as_a_pods_containers(
    trained: Path, bank: Path, containers: list[str], tmp_path: Path
) -> None:
    """examples/xgboost-bank/batchtransform.yaml over the example's test split, by the
    serving image and the runtime image's transformer sharing a network namespace, as
    the containers of a transform pod do."""
    data = tmp_path / "data"
    shutil.copytree(bank / "test", data / "in")
    shared(data)
    manifest = yaml.safe_load((EXAMPLE / "batchtransform.yaml").read_text())
    manifest["spec"]["transformInput"]["uri"] = "file:///data/in/"
    manifest["spec"]["transformOutput"]["s3OutputPath"] = "file:///data/out/"
    spec = BatchTransform.model_validate(manifest).spec
    server = f"kubemaker-bt-server-{uuid.uuid4().hex[:8]}"
    containers.append(server)
    env = [arg for k, v in server_environment(spec).items() for arg in ("-e", f"{k}={v}")]
    docker(
        "run", "-d", "--name", server, "--user", UID, "--read-only", "--tmpfs", "/tmp",
        "-p", "127.0.0.1::8080", *env, "-v", f"{trained}:/opt/ml/model:ro",
        image("xgboost"), "serve",
    )  # fmt: skip
    port = docker("port", server, "8080/tcp").split(":")[-1].strip()
    wait_ping(f"http://127.0.0.1:{port}", server)
    config = transform_config(spec, job_name="xgboost-bank-test", storage=StorageConfig())
    done = subprocess.run(
        [DOCKER, "run", "--rm", "--user", UID, "--read-only", "--tmpfs", "/tmp",
         "--network", f"container:{server}", "-v", f"{data}:/data",
         "-e", f"KUBEMAKER_TRANSFORM_CONFIG={config.model_dump_json(by_alias=True)}",
         "-e", "JOB_COMPLETION_INDEX=0", "-e", "KUBEMAKER_TERMINATION_LOG=/data/report.json",
         image("runtime"), "transform"],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = TransformReport.model_validate_json((data / "report.json").read_text())
    rows = (data / "in" / "test.csv").read_text().splitlines()
    assert (report.outcome, report.objects_done, report.records) == ("Completed", 1, len(rows))
    lines = (data / "out" / "test.csv.out").read_text().splitlines()
    # outputFilter $[0,-1]: the row's label, then its prediction.
    assert [line.split(",")[0] for line in lines] == [row.split(",")[0] for row in rows]
    features = np.array([[float(v) for v in row.split(",")[1:]] for row in rows], np.float32)
    scores = np.array([float(line.split(",")[1]) for line in lines], dtype=np.float32)
    np.testing.assert_allclose(scores, booster_predictions(trained, features), rtol=1e-6)


def test_local_mode_trains_with_an_image_through_docker(
    images: list[str], bank: Path, tmp_path: Path
) -> None:
    """`kubemaker local train` of the example with `trainingImage`: the image runs in
    Docker with the contract's directories mounted, as SageMaker's local mode does."""
    manifest = yaml.safe_load((EXAMPLE / "trainingjob.yaml").read_text())
    spec = manifest["spec"]
    spec["algorithmSpecification"].pop("algorithmName", None)
    spec["algorithmSpecification"]["trainingImage"] = image("xgboost")
    for channel in spec["inputDataConfig"]:
        channel["uri"] = (bank / channel["channelName"]).as_uri()
    spec["outputDataConfig"]["s3OutputPath"] = (tmp_path / "output").as_uri()
    path = tmp_path / "trainingjob.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    done = subprocess.run(
        [sys.executable, "-m", "kubemaker", "local", "train", "-f", str(path),
         "--workdir", str(tmp_path / "work"), "--no-progress"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads((tmp_path / "work" / "xgboost-bank" / "trainingjob.json").read_text())
    status = record["status"]
    assert status["trainingJobStatus"] == "Completed"
    metrics = {m["metricName"]: m["value"] for m in status["finalMetricDataList"]}
    assert metrics["validation:auc"] >= 0.9
    artifacts = status["modelArtifacts"]["s3ModelArtifacts"]
    assert Path(artifacts.removeprefix("file://")).stat().st_size > 0


def test_two_mxnet_containers_train_with_dist_sync_finding_each_other_by_name(
    images: list[str], tmp_path: Path
) -> None:
    """Script mode in the MXNet image on two hosts (`kubemaker local train`, one
    container per host on a Docker network): each resolves the other by its host name,
    and dist_sync keeps their weights equal from different seeds and data."""
    code = tmp_path / "code"
    code.mkdir()
    shutil.copy(REPO / "tests" / "scripts" / "mxnet_dist_sync.py", code / "dist.py")
    manifest = {
        "apiVersion": "kubemaker.io/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "mxnet-dist"},
        "spec": {
            "algorithmSpecification": {
                "framework": "mxnet",
                "trainingImage": image("mxnet"),
                "entryPoint": "dist.py",
                "sourceDir": code.as_uri(),
            },
            "hyperParameters": {"epochs": "20"},
            "outputDataConfig": {"s3OutputPath": (tmp_path / "output").as_uri()},
            "resourceConfig": {"instanceType": "ml.m5.large", "instanceCount": 2},
        },
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(manifest))
    done = subprocess.run(
        [sys.executable, "-m", "kubemaker", "local", "train", "-f", str(path),
         "--workdir", str(tmp_path / "work"), "--no-progress"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "in Docker on 2 host(s)" in done.stdout + done.stderr
    seen = [
        json.loads((tmp_path / "work" / "mxnet-dist" / f"host-{i}" / "output" / "data"
                    / "dist.json").read_text())
        for i in range(2)
    ]  # fmt: skip
    assert sorted(s["rank"] for s in seen) == [0, 1]
    assert all(s["num_workers"] == 2 and s["type"] == "dist_sync" for s in seen)
    assert seen[0]["weight"] == seen[1]["weight"]
