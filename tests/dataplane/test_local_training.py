"""``kubemaker local train``: real manifests, real training, the command as users run it.

The bank-marketing example is prepared with its own prepare.py and trained from a copy
of its trainingjob.yaml whose paths point into the test's directory; S3 runs through
the moto server of conftest.py.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from localmode_support import (
    bank_manifest,
    final_metrics,
    local_train,
    output,
    prepare_bank,
    read_record,
    status_metrics,
    write_manifest,
)


@pytest.fixture(scope="module")
def bank_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_bank(tmp_path_factory.mktemp("bank"))


# --- the bank-marketing example --------------------------------------------------------------


def test_bank_example_reaches_auc_090(bank_data: Path, tmp_path: Path) -> None:
    output_dir = tmp_path / "output"
    manifest = bank_manifest(bank_data, output_dir.as_uri())
    # One more definition, that only the log can answer: the last round printed.
    manifest["spec"]["algorithmSpecification"]["metricDefinitions"].append(
        {"name": "last-round", "regex": r"^\[([0-9]+)\]\t"}
    )
    path = write_manifest(tmp_path / "trainingjob.yaml", manifest)

    done = local_train(path, tmp_path / "work")

    assert done.returncode == 0, output(done)
    metrics = final_metrics(done.stdout)
    print(f"validation:auc {metrics.get('validation:auc')}")
    assert metrics["validation:auc"] >= 0.90, output(done)
    assert "TrainingJob xgboost-bank: Completed" in done.stdout
    artifact = output_dir / "xgboost-bank" / "output" / "model.tar.gz"
    assert f"Model artifacts: {artifact.as_uri()}" in done.stdout
    with tarfile.open(artifact) as tar:
        assert tar.getnames() == ["xgboost-model"]

    # The phases, in the operator's words, and the algorithm's log streamed to stdout.
    for phase in ("Downloading", "Training", "Uploading"):
        assert f"kubemaker: {phase}" in done.stderr
    rounds = re.findall(r"^\[([0-9]+)\]\ttrain-auc:\S+\tvalidation-auc:\S+$", done.stdout, re.M)
    assert rounds, done.stdout
    assert metrics["last-round"] == float(rounds[-1])

    record = read_record(tmp_path / "work", "xgboost-bank")
    status = record["status"]
    assert status["trainingJobStatus"] == "Completed"
    assert status["secondaryStatus"] == "Completed"
    assert status["modelArtifacts"]["s3ModelArtifacts"] == artifact.as_uri()
    assert status["trainingImage"] == "ghcr.io/kubemaker/xgboost:0.1.0"
    assert [t["status"] for t in status["secondaryStatusTransitions"]] == [
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]
    assert status_metrics(record) == pytest.approx(metrics, rel=1e-5)
    log = (tmp_path / "work" / "xgboost-bank" / "xgboost-bank-0.log").read_text()
    assert "validation-auc" in log


def test_a_bad_hyperparameter_fails_with_its_reason(bank_data: Path, tmp_path: Path) -> None:
    manifest = bank_manifest(
        bank_data, (tmp_path / "output").as_uri(), hyperParameters={"max_depth": "deep"}
    )
    done = local_train(write_manifest(tmp_path / "bad.yaml", manifest), tmp_path / "work")

    assert done.returncode == 1, output(done)
    reason = re.search(r"^Failure reason: (.*)$", done.stdout, re.M)
    assert reason is not None, output(done)
    assert reason.group(1).startswith("ClientError: Hyperparameter max_depth"), reason.group(1)
    assert "TrainingJob xgboost-bank: Failed" in done.stdout
    assert "Model artifacts" not in done.stdout
    status = read_record(tmp_path / "work", "xgboost-bank")["status"]
    assert status["trainingJobStatus"] == "Failed"
    assert status["failureReason"] == reason.group(1)
    assert "modelArtifacts" not in status


def test_a_missing_channel_fails_before_training(bank_data: Path, tmp_path: Path) -> None:
    manifest = bank_manifest(bank_data, (tmp_path / "output").as_uri())
    manifest["spec"]["inputDataConfig"][0]["uri"] = (tmp_path / "nowhere").as_uri()
    done = local_train(write_manifest(tmp_path / "missing.yaml", manifest), tmp_path / "work")

    assert done.returncode == 1, output(done)
    # Worded as on a cluster (tests/unit/test_failures.py gives both paths the same cases).
    assert "Failure reason: ClientError: channel 'train'" in done.stdout, output(done)
    assert "does not exist" in done.stdout
    assert "kubemaker: Training" not in done.stderr


def test_max_runtime_stops_the_algorithm(bank_data: Path, tmp_path: Path) -> None:
    manifest = bank_manifest(
        bank_data,
        (tmp_path / "output").as_uri(),
        hyperParameters={"num_round": "100000", "eta": "0.001"},
        stoppingCondition={"maxRuntimeInSeconds": 2},
    )
    del manifest["spec"]["hyperParameters"]["early_stopping_rounds"]
    done = local_train(write_manifest(tmp_path / "slow.yaml", manifest), tmp_path / "work")

    assert done.returncode == 3, output(done)
    assert "TrainingJob xgboost-bank: Stopped (MaxRuntimeExceeded)" in done.stdout
    status = read_record(tmp_path / "work", "xgboost-bank")["status"]
    assert status["trainingJobStatus"] == "Stopped"
    assert status["secondaryStatus"] == "MaxRuntimeExceeded"


# --- S3 ----------------------------------------------------------------------------------


def test_s3_channels_and_output(
    bank_data: Path, tmp_path: Path, s3_client: Any, s3_bucket: str
) -> None:
    for name in ("train", "validation"):
        s3_client.upload_file(
            str(bank_data / name / f"{name}.csv"), s3_bucket, f"bank/{name}/part-0.csv"
        )
    manifest = bank_manifest(bank_data, f"s3://{s3_bucket}/models")
    for channel in manifest["spec"]["inputDataConfig"]:
        channel["uri"] = f"s3://{s3_bucket}/bank/{channel['channelName']}"
    done = local_train(write_manifest(tmp_path / "s3.yaml", manifest), tmp_path / "work")

    assert done.returncode == 0, output(done)
    key = "models/xgboost-bank/output/model.tar.gz"
    assert f"Model artifacts: s3://{s3_bucket}/{key}" in done.stdout
    head = s3_client.head_object(Bucket=s3_bucket, Key=key)
    assert head["ContentLength"] > 1000
    # Downloaded, not linked: the host's channel holds a real copy of the object.
    staged = (
        tmp_path / "work" / "xgboost-bank" / "host-0" / "input" / "data" / "train" / "part-0.csv"
    )
    assert staged.is_file() and not staged.is_symlink()
    assert staged.read_bytes() == (bank_data / "train" / "train.csv").read_bytes()
    assert final_metrics(done.stdout)["validation:auc"] >= 0.90


# --- several hosts ---------------------------------------------------------------------


def test_two_hosts_train_together_on_loopback(bank_data: Path, tmp_path: Path) -> None:
    # Each host gets half the training files (ShardedByS3Key) and half the validation rows.
    shards = tmp_path / "shards"
    for name in ("train", "validation"):
        rows = (bank_data / name / f"{name}.csv").read_text().splitlines(keepends=True)
        for part in range(2):
            target = shards / name / f"part-{part}.csv"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("".join(rows[part::2]))
    manifest = bank_manifest(
        shards,
        (tmp_path / "output").as_uri(),
        resourceConfig={"instanceType": "ml.m5.large", "instanceCount": 2},
    )
    for channel in manifest["spec"]["inputDataConfig"]:
        uri = channel.pop("uri")
        channel["dataSource"] = {
            "s3DataSource": {"s3Uri": uri, "s3DataDistributionType": "ShardedByS3Key"}
        }
    done = local_train(write_manifest(tmp_path / "two.yaml", manifest), tmp_path / "work")

    assert done.returncode == 0, output(done)
    job_dir = tmp_path / "work" / "xgboost-bank"
    for index in range(2):
        staged = sorted(p.name for p in (job_dir / f"host-{index}" / "input/data/train").iterdir())
        assert staged == [f"part-{index}.csv"]
        resource = json.loads(
            (job_dir / f"host-{index}/input/config/resourceconfig.json").read_text()
        )
        assert resource["hosts"] == ["xgboost-bank-0", "xgboost-bank-1"]
        assert resource["current_host"] == f"xgboost-bank-{index}"
    assert "xgboost-bank-1 | " in done.stdout
    assert "rank 1 of 2" in (job_dir / "xgboost-bank-1.log").read_text()
    # Validation metrics are reduced over both hosts' shards: the whole validation set.
    assert final_metrics(done.stdout)["validation:auc"] >= 0.88, output(done)


# --- what local mode cannot run, said clearly -------------------------------------------------


def test_pvc_uris_are_a_clear_error(bank_data: Path, tmp_path: Path) -> None:
    manifest = bank_manifest(bank_data, (tmp_path / "output").as_uri())
    manifest["spec"]["inputDataConfig"][1]["uri"] = "pvc://datasets/bank/validation"
    done = local_train(write_manifest(tmp_path / "pvc.yaml", manifest), tmp_path / "work")

    assert done.returncode == 2, output(done)
    assert "spec.inputDataConfig.1: pvc://datasets/bank/validation" in done.stderr
    assert "PersistentVolumeClaim" in done.stderr
    assert not (tmp_path / "work").exists()


def test_an_image_needs_docker(bank_data: Path, tmp_path: Path) -> None:
    from kubemaker.local.launch import docker_engine

    if docker_engine()[0]:
        pytest.skip("a Docker engine answers here: the image would really run")
    manifest = bank_manifest(bank_data, (tmp_path / "output").as_uri())
    manifest["spec"]["algorithmSpecification"] = {"trainingImage": "example.com/my-algo:1.0"}
    done = local_train(write_manifest(tmp_path / "image.yaml", manifest), tmp_path / "work")

    assert done.returncode == 2, output(done)
    assert "example.com/my-algo:1.0 runs in Docker in local mode" in done.stderr
    assert "no Docker engine answers here" in done.stderr


def test_a_framework_without_its_environment_says_how_to_build_it(
    bank_data: Path, tmp_path: Path
) -> None:
    manifest = bank_manifest(bank_data, (tmp_path / "output").as_uri())
    manifest["spec"]["algorithmSpecification"] = {
        "framework": "mxnet",
        "entryPoint": "train.py",
        "sourceDir": (tmp_path / "code").as_uri(),
    }
    done = local_train(
        write_manifest(tmp_path / "mxnet.yaml", manifest),
        tmp_path / "work",
        env={"KUBEMAKER_MXNET_PYTHON": str(tmp_path / "no-such-venv" / "bin" / "python")},
    )

    assert done.returncode == 2, output(done)
    assert "spec.algorithmSpecification.framework: mxnet script mode runs in its own" in done.stderr
    assert "build it with `scripts/mxnet-env.sh`" in done.stderr


def test_a_rerun_starts_from_clean_host_directories(bank_data: Path, tmp_path: Path) -> None:
    manifest = bank_manifest(
        bank_data, (tmp_path / "output").as_uri(), hyperParameters={"num_round": "3"}
    )
    path = write_manifest(tmp_path / "job.yaml", manifest)
    work = tmp_path / "work"
    stale = work / "xgboost-bank" / "host-0" / "output" / "failure"
    stale.parent.mkdir(parents=True)
    stale.write_text("ClientError: left over from an earlier run")
    shutil.copytree(bank_data / "train", work / "xgboost-bank" / "host-0" / "input/data/train2")

    done = local_train(path, work)

    assert done.returncode == 0, output(done)
    assert not stale.exists()
    assert not (work / "xgboost-bank" / "host-0" / "input/data/train2").exists()


def test_ctrl_c_stops_the_algorithm_gracefully(bank_data: Path, tmp_path: Path) -> None:
    manifest = bank_manifest(
        bank_data,
        (tmp_path / "output").as_uri(),
        hyperParameters={"num_round": "100000", "eta": "0.001"},
    )
    del manifest["spec"]["hyperParameters"]["early_stopping_rounds"]
    path = write_manifest(tmp_path / "long.yaml", manifest)
    process = subprocess.Popen(
        [sys.executable, "-m", "kubemaker", "local", "train", "-f", str(path),
         "--workdir", str(tmp_path / "work"), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    assert process.stdout is not None
    seen = []
    try:
        for line in process.stdout:  # until the algorithm has trained a few rounds
            seen.append(line)
            if line.startswith("[2]\t"):
                break
        process.send_signal(signal.SIGINT)
        rest = process.stdout.read()
        code = process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = "".join(seen) + rest
    assert code == 130, text
    assert "SIGTERM: stopping after the current round" in text  # the algorithm's own handler
    assert "TrainingJob xgboost-bank: Stopped in" in text
    status = read_record(tmp_path / "work", "xgboost-bank")["status"]
    assert status["trainingJobStatus"] == "Stopped"
    assert status["secondaryStatus"] == "Stopped"
