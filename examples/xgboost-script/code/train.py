"""Bank marketing with XGBoost in script mode: SageMaker's XGBoost framework, on kubemaker.

The same script runs with ``sagemaker.xgboost.XGBoost(entry_point="train.py", ...)`` on
SageMaker and with ``framework: xgboost`` on kubemaker. The container gives it:

- the hyperparameters as ``--name value`` arguments (``--max_depth 5 --eta 0.2 ...``);
- the channels as directories, ``SM_CHANNEL_TRAIN`` and ``SM_CHANNEL_VALIDATION`` (CSV
  files, the label in the first column, no header);
- ``SM_MODEL_DIR``: what the script saves there becomes model.tar.gz;
- ``SM_NUM_CPUS``, ``SM_HOSTS``, ``SM_CURRENT_HOST``, ``SM_OUTPUT_DATA_DIR``.

It prints XGBoost's evaluation log (``[3]<TAB>train-auc:0.93<TAB>validation-auc:0.91``),
which the job's metricDefinitions read, and saves the Booster as ``xgboost-model``, the
name SageMaker's XGBoost model server loads by default. It defines no handler functions:
serving uses the defaults (CSV or JSON in, predictions out).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import xgboost as xgb


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    # Hyperparameters: the job's hyperParameters, as the container passes them.
    parser.add_argument("--num_round", type=int, default=100)
    parser.add_argument("--max_depth", type=int, default=5)
    parser.add_argument("--eta", type=float, default=0.2)
    parser.add_argument("--gamma", type=float, default=4.0)
    parser.add_argument("--min_child_weight", type=float, default=6.0)
    parser.add_argument("--subsample", type=float, default=0.8)
    parser.add_argument("--objective", default="binary:logistic")
    parser.add_argument("--eval_metric", default="auc")
    parser.add_argument("--early_stopping_rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    # Where things are: SageMaker's environment variables.
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "model"))
    parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN"))
    parser.add_argument("--validation", default=os.environ.get("SM_CHANNEL_VALIDATION"))
    parser.add_argument("--output-data-dir", default=os.environ.get("SM_OUTPUT_DATA_DIR"))
    parser.add_argument("--nthread", type=int, default=int(os.environ.get("SM_NUM_CPUS", "1")))
    return parser.parse_args()


def read_csv_channel(directory: str | None, name: str) -> xgb.DMatrix:
    """Every CSV file of a channel: label first, features after, no header."""
    if not directory:
        raise ValueError(f"no {name} channel: the job needs one named {name!r}")
    files = sorted(p for p in Path(directory).rglob("*") if p.is_file())
    if not files:
        raise ValueError(f"the {name} channel ({directory}) holds no files")
    rows = np.concatenate([np.loadtxt(f, delimiter=",", ndmin=2) for f in files])
    print(f"{name}: {rows.shape[0]} rows, {rows.shape[1] - 1} features from {len(files)} file(s)")
    return xgb.DMatrix(rows[:, 1:], label=rows[:, 0])


def main() -> None:
    args = parse_args()
    train = read_csv_channel(args.train, "train")
    evals = [(train, "train")]
    if args.validation:
        evals.append((read_csv_channel(args.validation, "validation"), "validation"))
    params = {
        "max_depth": args.max_depth,
        "eta": args.eta,
        "gamma": args.gamma,
        "min_child_weight": args.min_child_weight,
        "subsample": args.subsample,
        "objective": args.objective,
        "eval_metric": args.eval_metric,
        "seed": args.seed,
        "nthread": args.nthread,
    }
    booster = xgb.train(
        params,
        train,
        num_boost_round=args.num_round,
        evals=evals,
        # Early stopping watches the last of evals: validation when there is one.
        early_stopping_rounds=args.early_stopping_rounds if len(evals) > 1 else None,
        verbose_eval=True,
    )
    best = booster.attr("best_iteration")
    if best is not None:
        # Keep the rounds up to the best one, as SageMaker's built-in algorithm does.
        print(f"best round {best}, validation {args.eval_metric} {booster.attr('best_score')}")
        booster = booster[: int(best) + 1]

    os.makedirs(args.model_dir, exist_ok=True)
    # SageMaker's file name, which has no extension: say the format (UBJSON) instead.
    with open(os.path.join(args.model_dir, "xgboost-model"), "wb") as f:
        f.write(booster.save_raw(raw_format="ubj"))
    if args.output_data_dir:
        os.makedirs(args.output_data_dir, exist_ok=True)
        summary = {"rounds": booster.num_boosted_rounds(), "params": params}
        with open(os.path.join(args.output_data_dir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
