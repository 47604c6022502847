"""The XGBoost algorithm's ``train``, run as SageMaker runs it: a process reading the contract.

Data is a small generated classification problem (10 features, a non-linear decision
boundary, label noise), written in each input format SageMaker's XGBoost reads
(xgboost_support.py).
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from xgboost_support import (
    ROUND,
    TRAIN_TIMEOUT,
    assert_succeeded,
    auc,
    load_model,
    make_classification,
    run_train,
    train_command,
    write_job,
)

from kubemaker_runtime import contract, processors
from kubemaker_runtime.algorithms.xgboost.metrics import cloudwatch_rendering

# SageMaker's own metric definition for validation:auc, as users copy it.
SAGEMAKER_VALIDATION_AUC = re.compile(r".*\[[0-9]+\].*#011validation-auc:(\S+)")
TAB_LINE = re.compile(r"^\[(\d+)\]\ttrain-auc:(\S+)\tvalidation-auc:(\S+)$")


def test_csv_training_with_early_stopping_logs_metrics_sagemaker_regexes_match(
    tmp_path: Path,
) -> None:
    hyperparameters = {
        "num_round": 200,
        "objective": "binary:logistic",
        "eval_metric": "auc",
        "early_stopping_rounds": 5,
        "max_depth": 4,
        "eta": 0.3,
    }
    data = {"train": make_classification(2000, 1), "validation": make_classification(1000, 2)}
    paths = write_job(tmp_path, hyperparameters, data)

    result = run_train(tmp_path)
    assert_succeeded(result)

    lines = [line for line in result.stdout.splitlines() if ROUND.match(line)]
    assert lines, result.stdout
    # What the container prints: tabs, as SageMaker's does ...
    rounds = [TAB_LINE.match(line) for line in lines]
    assert all(rounds), lines
    assert [int(m.group(1)) for m in rounds if m] == list(range(len(lines)))
    # ... and what SageMaker's (CloudWatch-rendered) metric regex finds in them.
    logged = [
        float(SAGEMAKER_VALIDATION_AUC.match(cloudwatch_rendering(line)).group(1)) for line in lines
    ]  # type: ignore[union-attr]
    assert len(lines) < 200, "early stopping never stopped"

    metrics = json.loads(paths.metrics_file.read_text())
    assert set(metrics) == {"train:auc", "validation:auc"}
    # The model keeps the best round, and the reported metric is that round's.
    assert metrics["validation:auc"] == pytest.approx(max(logged), abs=1e-5)
    assert metrics["validation:auc"] > 0.85
    booster = load_model(paths)
    assert booster.num_boosted_rounds() == int(np.argmax(logged)) + 1
    x_test, y_test = make_classification(1000, 3)
    assert auc(y_test, booster.inplace_predict(x_test)) > 0.85
    assert not paths.failure_file.exists()


def test_libsvm_and_parquet_train_the_same_model_as_csv(tmp_path: Path) -> None:
    hyperparameters = {"num_round": 10, "objective": "binary:logistic", "eval_metric": "logloss"}
    data = {"train": make_classification(1000, 4), "validation": make_classification(500, 5)}
    x_test, _ = make_classification(200, 6)
    results = {}
    for content_type in ("text/csv", "text/libsvm", "application/x-parquet"):
        paths = write_job(
            tmp_path / content_type.replace("/", "-"), hyperparameters, data, content_type
        )
        assert_succeeded(run_train(paths.base))
        metrics = json.loads(paths.metrics_file.read_text())
        results[content_type] = (metrics, load_model(paths).inplace_predict(x_test))

    csv_metrics, csv_predictions = results["text/csv"]
    for content_type in ("text/libsvm", "application/x-parquet"):
        metrics, predictions = results[content_type]
        assert metrics == pytest.approx(csv_metrics, abs=1e-6), content_type
        np.testing.assert_allclose(predictions, csv_predictions, atol=1e-6)


@pytest.mark.parametrize(
    ("hyperparameters", "reason"),
    # Every message is checked in tests/unit; here, that it reaches the failure file.
    [
        ({"objective": "binary:logistic"}, "ClientError: Hyperparameter num_round: required"),
        (
            {"num_round": 5, "max_dept": 3},
            "ClientError: Hyperparameter max_dept: unknown; did you mean max_depth",
        ),
    ],
    ids=["missing-num_round", "typo"],
)
def test_a_bad_hyperparameter_is_a_client_error_naming_it(
    tmp_path: Path, hyperparameters: dict[str, Any], reason: str
) -> None:
    paths = write_job(tmp_path, hyperparameters, {"train": make_classification(50, 1)})
    result = run_train(tmp_path)
    assert result.returncode == 1
    assert (contract.read_failure(paths) or "").startswith(reason)
    assert not (paths.model_dir / "xgboost-model").exists()


def test_unreadable_data_is_a_client_error_naming_the_channel(tmp_path: Path) -> None:
    paths = write_job(tmp_path, {"num_round": 3}, {"train": make_classification(20, 1)})
    (paths.channel_dir("train") / "part-0.csv").write_text("1,0.5,0.25\n0,abc,0.5\n")
    result = run_train(tmp_path)
    assert result.returncode == 1
    reason = contract.read_failure(paths) or ""
    assert reason.startswith("ClientError: channel 'train' (text/csv)")


def test_early_stopping_without_validation_channel_is_a_client_error(tmp_path: Path) -> None:
    hyperparameters = {"num_round": 5, "early_stopping_rounds": 2}
    paths = write_job(tmp_path, hyperparameters, {"train": make_classification(50, 1)})
    assert run_train(tmp_path).returncode == 1
    assert "early_stopping_rounds" in (contract.read_failure(paths) or "")


def test_checkpoints_every_n_rounds_and_a_restarted_job_resumes(tmp_path: Path) -> None:
    hyperparameters = {
        "num_round": 6,
        "objective": "binary:logistic",
        "eval_metric": "auc",
        "checkpoint_frequency": 2,
    }
    data = {"train": make_classification(500, 7), "validation": make_classification(200, 8)}
    paths = write_job(tmp_path, hyperparameters, data)
    assert_succeeded(run_train(tmp_path))
    assert sorted(p.name for p in paths.checkpoints_dir.iterdir()) == [
        "xgboost-checkpoint.2",
        "xgboost-checkpoint.4",
        "xgboost-checkpoint.6",
    ]

    # The job restarts (a spot interruption) with its checkpoints restored: it goes on
    # from round 6 instead of starting over.
    contract.write_hyperparameters(
        paths, {**{k: str(v) for k, v in hyperparameters.items()}, "num_round": "10"}
    )
    result = run_train(tmp_path)
    assert_succeeded(result)
    rounds = [int(m.group(1)) for m in map(ROUND.match, result.stdout.splitlines()) if m]
    assert rounds == [6, 7, 8, 9]
    assert load_model(paths).num_boosted_rounds() == 10
    assert "resuming" in result.stderr


def test_multiclass_softprob_trains_with_num_class(tmp_path: Path) -> None:
    x, y = make_classification(600, 9)
    y3 = np.where(x[:, 5] > 0.8, 2.0, y)
    hyperparameters = {"num_round": 5, "objective": "multi:softprob", "num_class": 3}
    paths = write_job(tmp_path, hyperparameters, {"train": (x, y3), "validation": (x, y3)})
    assert_succeeded(run_train(tmp_path))
    assert load_model(paths).inplace_predict(x[:4]).shape == (4, 3)
    assert set(json.loads(paths.metrics_file.read_text())) == {
        "train:mlogloss",
        "validation:mlogloss",
    }


def test_sigterm_stops_training_and_saves_the_model_when_asked(tmp_path: Path) -> None:
    hyperparameters = {
        "num_round": 100000,
        "objective": "binary:logistic",
        "eval_metric": "auc",
        "save_model_on_termination": "true",
        "checkpoint_frequency": 1000,
    }
    data = {"train": make_classification(300, 14), "validation": make_classification(100, 15)}
    paths = write_job(tmp_path, hyperparameters, data)
    process = subprocess.Popen(
        train_command(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        # Training is under way once a round is logged; then the job is stopped.
        for line in process.stdout:
            if ROUND.match(line):
                break
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=TRAIN_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signal.SIGTERM
    rounds = load_model(paths).num_boosted_rounds()
    assert 1 <= rounds < 100000
    assert json.loads(paths.metrics_file.read_text())["validation:auc"] > 0.5


def test_pipe_mode_reads_the_channel_from_its_fifo(tmp_path: Path) -> None:
    x, y = make_classification(500, 16)
    paths = write_job(tmp_path / "job", {"num_round": 5, "eval_metric": "rmse"}, {})
    contract.write_input_data_config(
        paths, {"train": {"ContentType": "text/csv", "TrainingInputMode": "Pipe"}}
    )
    # What the agent does in Pipe mode: a FIFO per channel and epoch, fed while read.
    fifo = paths.pipe_fifo("train", 0)
    os.mkfifo(fifo)
    payload = "\n".join(
        ",".join(f"{v:.7g}" for v in (label, *row)) for label, row in zip(y, x, strict=True)
    )
    process = subprocess.Popen(
        train_command(paths.base), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + TRAIN_TIMEOUT
        while True:
            try:  # succeeds once the algorithm has opened the FIFO for reading
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as error:
                if error.errno != errno.ENXIO or process.poll() is not None:
                    raise
                assert time.monotonic() < deadline, "the algorithm never opened its FIFO"
                time.sleep(0.05)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "w") as writer:
            writer.write(payload + "\n")
        stdout, stderr = process.communicate(timeout=TRAIN_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stdout + stderr
    assert "train 500 rows" in stderr
    assert set(json.loads(paths.metrics_file.read_text())) == {"train:rmse"}


def _logged_params(stderr: str) -> dict[str, Any]:
    line = next(line for line in stderr.splitlines() if " rounds with {" in line)
    return dict(json.loads(line[line.index(" with {") + len(" with ") :]))


def test_threads_follow_sm_num_cpus(tmp_path: Path) -> None:
    # A pod without a CPU limit may run on every core of its node, and SM_NUM_CPUS (the
    # pod's CPU request) tells the job's code fewer: XGBoost trains with SM_NUM_CPUS.
    # Any count other than this container's shows which of the two XGBoost followed.
    declared = 1 if processors.available_cpus() > 1 else 2
    write_job(tmp_path / "given", {"num_round": 2}, {"train": make_classification(50, 1)})
    result = run_train(tmp_path / "given", {"SM_NUM_CPUS": str(declared)})
    assert_succeeded(result)
    assert _logged_params(result.stderr)["nthread"] == declared
    # The nthread hyperparameter still wins.
    hyperparameters = {"num_round": 2, "nthread": declared + 1}
    write_job(tmp_path / "chosen", hyperparameters, {"train": make_classification(50, 1)})
    result = run_train(tmp_path / "chosen", {"SM_NUM_CPUS": str(declared)})
    assert_succeeded(result)
    assert _logged_params(result.stderr)["nthread"] == declared + 1


def test_a_malformed_sm_num_cpus_is_a_client_error_naming_it(tmp_path: Path) -> None:
    paths = write_job(tmp_path, {"num_round": 2}, {"train": make_classification(50, 1)})
    result = run_train(tmp_path, {"SM_NUM_CPUS": "two"})
    assert result.returncode == 1
    assert contract.read_failure(paths) == "ClientError: SM_NUM_CPUS='two' is not a whole number"
