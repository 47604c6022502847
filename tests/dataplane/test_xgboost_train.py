"""The XGBoost algorithm's ``train``, run as SageMaker runs it: a process reading the contract.

Data is a small generated classification problem (10 features, a non-linear decision
boundary, label noise), written in each input format SageMaker's XGBoost reads.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xgboost as xgb

from kubemaker_runtime import contract
from kubemaker_runtime.algorithms.xgboost.metrics import cloudwatch_rendering

TRAIN_TIMEOUT = 180
# SageMaker's own metric definition for validation:auc, as users copy it.
SAGEMAKER_VALIDATION_AUC = re.compile(r".*\[[0-9]+\].*#011validation-auc:(\S+)")
ROUND = re.compile(r"^\[(\d+)\]\t")
TAB_LINE = re.compile(r"^\[(\d+)\]\ttrain-auc:(\S+)\tvalidation-auc:(\S+)$")


# --- helpers, also used by the distributed and serving tests ---------------------------------


def make_classification(rows: int, seed: int, features: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    logit = 1.5 * x[:, 0] - x[:, 1] + x[:, 2] * x[:, 3] + np.sin(2 * x[:, 4])
    y = (logit + rng.logistic(scale=0.5, size=rows) > 0).astype(np.float32)
    return x, y


def write_channel(directory: Path, x: np.ndarray, y: np.ndarray, content_type: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if content_type == "text/csv":
        np.savetxt(directory / "part-0.csv", np.column_stack([y, x]), delimiter=",", fmt="%.7g")
    elif content_type == "text/libsvm":
        lines = (
            f"{int(label)} " + " ".join(f"{j + 1}:{v:.7g}" for j, v in enumerate(row))
            for label, row in zip(y, x, strict=True)
        )
        (directory / "part-0.libsvm").write_text("\n".join(lines) + "\n")
    else:
        columns = {"label": y, **{f"f{j}": x[:, j] for j in range(x.shape[1])}}
        pq.write_table(pa.table(columns), directory / "part-0.parquet")


def write_job(
    base: Path,
    hyperparameters: dict[str, Any],
    channels: dict[str, tuple[np.ndarray, np.ndarray]],
    content_type: str = "text/csv",
    *,
    hosts: list[str] | None = None,
    current_host: str | None = None,
) -> contract.Paths:
    paths = contract.Paths(base)
    paths.create_training_dirs()
    contract.write_hyperparameters(paths, {k: str(v) for k, v in hyperparameters.items()})
    contract.write_input_data_config(
        paths,
        {name: {"ContentType": content_type, "TrainingInputMode": "File"} for name in channels},
    )
    hosts = hosts or ["algo-1"]
    contract.write_resource_config(
        paths, contract.build_resource_config(hosts=hosts, current_host=current_host or hosts[0])
    )
    for name, (x, y) in channels.items():
        write_channel(paths.channel_dir(name), x, y, content_type)
    return paths


def train_command(base: Path) -> list[str]:
    module = "kubemaker_runtime.algorithms.xgboost"
    return [sys.executable, "-m", module, "train", "--base-dir", str(base)]


def run_train(base: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        train_command(base),
        capture_output=True,
        text=True,
        timeout=TRAIN_TIMEOUT,
        env={**os.environ, **(env or {})},
        check=False,
    )


def auc(y: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney), no ties in continuous scores."""
    order = np.argsort(scores)
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    positives = y == 1
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def load_model(paths: contract.Paths) -> xgb.Booster:
    booster = xgb.Booster()
    booster.load_model(bytearray((paths.model_dir / "xgboost-model").read_bytes()))
    return booster


def assert_succeeded(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


# --- tests -------------------------------------------------------------------------------------


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
