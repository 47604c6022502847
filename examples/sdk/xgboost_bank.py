"""The workshop's direct-marketing lab (built-in XGBoost) on kubemaker, through the SDK.

Fit -> tune -> deploy the best -> batch-transform the test split, as the lab's notebook
does with SageMaker; only the imports differ. Local mode by default (no cluster):

    python examples/xgboost-bank/prepare.py     # once: the data
    python examples/sdk/xgboost_bank.py

On a cluster with the operator and object storage reachable from here:

    python examples/sdk/xgboost_bank.py --instance-type ml.m5.xlarge
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

import kubemaker.sdk as sagemaker
from kubemaker.sdk.inputs import TrainingInput
from kubemaker.sdk.serializers import CSVSerializer
from kubemaker.sdk.tuner import ContinuousParameter, HyperparameterTuner, IntegerParameter

REPO = Path(__file__).resolve().parents[2]
DATA = Path("/tmp/kubemaker-examples/xgboost-bank")


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties averaged)."""
    order = scores.argsort()
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    positives = labels == 1
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instance-type", default="local")
    parser.add_argument("--max-jobs", type=int, default=10)
    args = parser.parse_args()
    if not (DATA / "train").is_dir():
        subprocess.run([sys.executable, str(REPO / "examples/xgboost-bank/prepare.py")], check=True)

    # --- the notebook from here on ------------------------------------------------------
    sess = sagemaker.Session()
    role = sagemaker.get_execution_role()
    prefix = "sagemaker/DEMO-xgboost-dm"
    train = sess.upload_data(str(DATA / "train"), key_prefix=f"{prefix}/train")
    validation = sess.upload_data(str(DATA / "validation"), key_prefix=f"{prefix}/validation")
    test = sess.upload_data(str(DATA / "test"), key_prefix=f"{prefix}/test")
    s3_input_train = TrainingInput(s3_data=train, content_type="csv")
    s3_input_validation = TrainingInput(s3_data=validation, content_type="csv")

    container = sagemaker.image_uris.retrieve("xgboost", "us-east-1", "1.7-1")
    xgb = sagemaker.estimator.Estimator(
        container,
        role,
        instance_count=1,
        instance_type=args.instance_type,
        sagemaker_session=sess,
    )
    xgb.set_hyperparameters(
        max_depth=5,
        eta=0.2,
        gamma=4,
        min_child_weight=6,
        subsample=0.8,
        objective="binary:logistic",
        num_round=100,
        eval_metric="auc",
        early_stopping_rounds=10,
    )
    xgb.fit({"train": s3_input_train, "validation": s3_input_validation})

    tuner = HyperparameterTuner(
        xgb,
        objective_metric_name="validation:auc",
        hyperparameter_ranges={
            "eta": ContinuousParameter(0.05, 0.5),
            "min_child_weight": ContinuousParameter(1, 10),
            "alpha": ContinuousParameter(0, 2),
            "max_depth": IntegerParameter(3, 10),
        },
        max_jobs=args.max_jobs,
        max_parallel_jobs=2,
        random_seed=42,
    )
    tuner.fit({"train": s3_input_train, "validation": s3_input_validation})
    print("best training job:", tuner.best_training_job())

    predictor = tuner.deploy(
        initial_instance_count=1, instance_type=args.instance_type, serializer=CSVSerializer()
    )
    try:
        row = (DATA / "test" / "test.csv").read_text().splitlines()[0].split(",", 1)
        print(f"one client (label {row[0]}): {predictor.predict(row[1]).decode()}")
    finally:
        predictor.delete_endpoint()

    transformer = tuner.best_estimator().transformer(
        instance_count=1,
        instance_type=args.instance_type,
        strategy="MultiRecord",
        assemble_with="Line",
        accept="text/csv",
    )
    transformer.transform(
        test,
        content_type="text/csv",
        split_type="Line",
        input_filter="$[1:]",
        join_source="Input",
        output_filter="$[0,-1]",
    )

    # --- beyond the notebook: how good the best model is on the test split -------------
    output = transformer.output.rstrip("/") + "/test.csv.out"
    rows = np.array(
        [line.split(",") for line in sess.read_uri(output).decode().splitlines()], dtype=float
    )
    best = tuner.describe()["status"]["bestTrainingJob"]
    objective = best["finalHyperParameterTuningJobObjectiveMetric"]["value"]
    print(f"best validation:auc {objective:.4f} ({best['tunedHyperParameters']})")
    print(f"test AUC of the best model over {len(rows)} clients: {auc(rows[:, 0], rows[:, 1]):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
