"""Running the XGBoost algorithm as SageMaker runs it, for the XGBoost tests: generated
data written in each input format, a job's container contract, the ``train`` process,
and what to read back (the model, its AUC).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xgboost as xgb

from kubemaker_runtime import contract

TRAIN_TIMEOUT = 180
# The start of a round's log line; group 1 is the round.
ROUND = re.compile(r"^\[(\d+)\]\t")


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
