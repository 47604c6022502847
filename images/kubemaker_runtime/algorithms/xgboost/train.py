"""``train``: SageMaker's XGBoost training, reading and writing the container contract.

Reads hyperparameters.json, inputdataconfig.json and resourceconfig.json under the base
directory, the ``train`` (required) and ``validation`` (optional) channels, trains (on
a GPU when one is visible, across hosts when there are several), prints the evaluation
log, checkpoints, and writes ``model/xgboost-model`` and ``output/metrics.json``. Any
failure ends with ``output/failure`` (``ClientError: ...`` for the user's errors,
``AlgorithmError: ...`` otherwise) and a non-zero exit code.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
import xgboost as xgb

from kubemaker_runtime import contract, processors
from kubemaker_runtime.algorithms.errors import AlgorithmError, UserError, failure_reason
from kubemaker_runtime.algorithms.xgboost import checkpoints, data, distributed
from kubemaker_runtime.algorithms.xgboost import hyperparameters as hp
from kubemaker_runtime.algorithms.xgboost.metrics import EvaluationLog, parse_eval_line
from kubemaker_runtime.algorithms.xgboost.serve import MODEL_FILE

logger = logging.getLogger(__name__)

TERMINATED_EXIT_CODE = 128 + signal.SIGTERM


@dataclass
class TrainingResult:
    booster: xgb.Booster
    metrics: dict[str, float]
    rounds: int
    best_iteration: int | None
    terminated: bool


class _Termination(xgb.callback.TrainingCallback):
    """Stop after the current round on SIGTERM (a stopped job, a preempted node)."""

    def __init__(self) -> None:
        super().__init__()
        self.requested = False

    def handle(self, signum: int, frame: Any) -> None:
        logger.warning("SIGTERM: stopping after the current round")
        self.requested = True

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: Any) -> bool:
        # Every host gets SIGTERM at about the same time, but a distributed round must end
        # the same way on all of them: agree on the flag first.
        return bool(distributed.allreduce_max([int(self.requested)])[0])


def use_gpu(environ: Mapping[str, str] | None = None) -> bool:
    """A GPU given to this algorithm (SM_NUM_GPUS, never more than are visible), and an
    XGBoost built with CUDA."""
    return bool(xgb.build_info().get("USE_CUDA")) and processors.algorithm_gpus(environ) > 0


def build_params(
    values: dict[str, Any], *, gpu: bool, cpus: int | None = None
) -> tuple[dict[str, Any], list[str]]:
    """XGBoost params from validated hyperparameters; pure (GPU and CPUs are inputs).

    ``cpus``: the threads to train with unless the ``nthread`` hyperparameter says
    otherwise; XGBoost alone would start one per core of the node.
    """
    params, notes = hp.xgboost_params(values)
    if "nthread" not in params and cpus is not None:
        params["nthread"] = cpus
    if gpu and "device" not in params and params.get("tree_method") != "exact":
        params["device"] = "cuda"
        notes.append("a GPU is visible: training with device cuda")
    if "eval_metric" in params:
        # XGBoost stops early on the last metric: put the tuning objective's there.
        metrics = list(params["eval_metric"])
        objective_metric = values.get("_tuning_objective_metric")
        if objective_metric:
            name = str(objective_metric).split(":", 1)[-1]
            metrics = [m for m in metrics if m != name] + [name]
        params["eval_metric"] = metrics
    elif values.get("_tuning_objective_metric"):
        params["eval_metric"] = [str(values["_tuning_objective_metric"]).split(":", 1)[-1]]
    return params, notes


def run(base_dir: str | None = None) -> int:
    """Train under ``base_dir`` (default ``$SAGEMAKER_BASE_DIR`` or /opt/ml); exit code."""
    paths = contract.Paths(base_dir) if base_dir else contract.Paths.from_env()
    termination = _Termination()
    # Only the main thread may set signal handlers (local mode may call this elsewhere).
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, termination.handle) if in_main_thread else None
    try:
        result = train(paths, termination)
    except (UserError, AlgorithmError) as error:
        return _fail(paths, error)
    except Exception as error:
        logger.exception("training failed")
        return _fail(paths, error)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    if result.terminated:
        return TERMINATED_EXIT_CODE
    return 0


def _fail(paths: contract.Paths, error: BaseException) -> int:
    reason = failure_reason(error)
    logger.error("%s", reason)
    try:
        contract.write_failure(paths, reason)
    except OSError:
        logger.exception("could not write the failure file")
    return error.exit_code if isinstance(error, UserError | AlgorithmError) else 2


def train(paths: contract.Paths, termination: _Termination | None = None) -> TrainingResult:
    termination = termination or _Termination()
    try:
        values = hp.validate(contract.read_hyperparameters(paths))
        input_config = contract.read_input_data_config(paths)
        resource_config = (
            contract.read_resource_config(paths) if paths.resourceconfig_file.exists() else {}
        )
        cluster = distributed.build_cluster(resource_config)
        # As many threads as SM_NUM_CPUS tells the job's code (the pod's CPUs, as the
        # operator counts them), else as this container may use.
        cpus = processors.algorithm_cpus()
        gpu = use_gpu()
    except (hp.HyperparameterError, ValueError) as error:
        raise UserError(str(error)) from None
    params, notes = build_params(values, gpu=gpu, cpus=cpus)
    for note in notes:
        logger.info("%s", note)
    if values.get("early_stopping_rounds") and data.VALIDATION_CHANNEL not in input_config:
        raise UserError("Hyperparameter early_stopping_rounds: needs a validation channel to watch")

    csv_weights = bool(values.get("csv_weights"))
    try:
        train_set = data.read_channel(
            paths,
            data.TRAIN_CHANNEL,
            input_config.get(data.TRAIN_CHANNEL, {}),
            csv_weights=csv_weights,
        )
        validation_set = (
            data.read_channel(
                paths,
                data.VALIDATION_CHANNEL,
                input_config[data.VALIDATION_CHANNEL],
                csv_weights=csv_weights,
            )
            if data.VALIDATION_CHANNEL in input_config
            else None
        )
    except data.DataError as error:
        raise UserError(str(error)) from None
    if train_set is None and not cluster.distributed:
        raise UserError(
            f"the train channel is empty: no data in {paths.channel_dir(data.TRAIN_CHANNEL)}"
        )
    logger.info(
        "host %s: train %d rows%s",
        cluster.current_host,
        train_set.num_rows if train_set else 0,
        f", validation {validation_set.num_rows} rows" if validation_set else "",
    )

    with distributed.communicator(cluster):
        return _train_in_cluster(
            paths, values, params, train_set, validation_set, cluster, termination
        )


def _train_in_cluster(
    paths: contract.Paths,
    values: dict[str, Any],
    params: dict[str, Any],
    train_set: data.Dataset | None,
    validation_set: data.Dataset | None,
    cluster: distributed.Cluster,
    termination: _Termination,
) -> TrainingResult:
    # Hosts may hold different shards (or none): agree on the shape of the problem.
    num_features, has_train, has_validation = distributed.allreduce_max(
        [
            max((s.features.shape[1] for s in (train_set, validation_set) if s), default=0),
            int(train_set is not None and train_set.num_rows > 0),
            int(validation_set is not None),
        ]
    )
    if not has_train:
        raise UserError("the train channel is empty on every host")
    dtrain = _dmatrix(train_set, num_features)
    evals = [(dtrain, data.TRAIN_CHANNEL)]
    dvalidation = None
    if has_validation:
        dvalidation = _dmatrix(validation_set, num_features)
        evals.append((dvalidation, data.VALIDATION_CHANNEL))

    num_round = int(values["num_round"])
    resumed = checkpoints.load_latest(paths.checkpoints_dir) if cluster.is_master else None
    # Every host must start from the same model: the first host's checkpoint wins.
    resumed_raw = distributed.broadcast(
        bytes(resumed.save_raw("ubj")) if resumed is not None else b""
    )
    start_model = None
    if resumed_raw:
        start_model = xgb.Booster()
        start_model.load_model(bytearray(resumed_raw))
    done = start_model.num_boosted_rounds() if start_model is not None else 0
    remaining = max(0, num_round - done)

    # XGBoost counts a resumed run's rounds from 0: the log goes on from the checkpoint.
    evaluation_log = EvaluationLog(printing=cluster.is_master, first_round=done)
    callbacks: list[xgb.callback.TrainingCallback] = [
        evaluation_log,
        checkpoints.CheckpointCallback(
            paths.checkpoints_dir,
            every=int(values.get("checkpoint_frequency", 1)),
            enabled=cluster.is_master,
        ),
        termination,
    ]
    early_stopping_rounds = values.get("early_stopping_rounds")
    if early_stopping_rounds:
        callbacks.insert(
            0,
            xgb.callback.EarlyStopping(
                rounds=int(early_stopping_rounds),
                data_name=data.VALIDATION_CHANNEL,
                save_best=False,
            ),
        )
    logger.info(
        "training %d rounds%s with %s",
        remaining,
        f" (resuming after {done})" if done else "",
        json.dumps(params, sort_keys=True, default=str),
    )
    try:
        booster = xgb.train(
            params,
            dtrain,
            num_boost_round=remaining,
            evals=evals,
            callbacks=callbacks,
            xgb_model=start_model,
            verbose_eval=False,
        )
    except xgb.core.XGBoostError as error:
        message = str(error).strip().splitlines()
        # XGBoost checks parameters when it builds the learner, before the first round.
        if evaluation_log.last or done:
            raise AlgorithmError(f"XGBoost failed: {message[0] if message else error}") from None
        raise UserError(
            f"XGBoost rejected the configuration: {message[0] if message else error}"
        ) from None

    best_iteration = None
    if early_stopping_rounds and booster.attr("best_iteration") is not None:
        best_iteration = done + int(booster.attr("best_iteration") or 0)
        # SageMaker's XGBoost serves the best round: keep the model up to it.
        if best_iteration + 1 < booster.num_boosted_rounds():
            logger.info(
                "early stopping: keeping rounds 0..%d of %d",
                best_iteration,
                booster.num_boosted_rounds() - 1,
            )
            booster = booster[: best_iteration + 1]
    final_metrics = parse_eval_line(booster.eval_set(evals)) if evals else {}
    if train_set is not None and train_set.libsvm_index_base is not None:
        booster.set_attr(**{data.LIBSVM_INDEX_BASE_ATTR: str(train_set.libsvm_index_base)})
    terminated = termination.requested
    if cluster.is_master and (not terminated or values.get("save_model_on_termination") == "true"):
        save_model(paths, booster)
        write_metrics(paths, final_metrics)
    return TrainingResult(
        booster=booster,
        metrics=final_metrics,
        rounds=booster.num_boosted_rounds(),
        best_iteration=best_iteration,
        terminated=terminated,
    )


def _dmatrix(dataset: data.Dataset | None, num_features: int) -> xgb.DMatrix:
    if dataset is None or dataset.num_rows == 0:
        # This host has no shard of the channel: it still takes part in every round.
        return xgb.DMatrix(np.empty((0, num_features), dtype=np.float32))
    features: Any = dataset.features
    if features.shape[1] < num_features:
        if scipy.sparse.issparse(features):
            features = scipy.sparse.csr_matrix(
                (features.data, features.indices, features.indptr),
                shape=(features.shape[0], num_features),
            )
        else:
            raise UserError(
                f"the data has {features.shape[1]} features here and {num_features} elsewhere"
            )
    return xgb.DMatrix(features, label=dataset.labels, weight=dataset.weights)


def save_model(paths: contract.Paths, booster: xgb.Booster) -> Path:
    paths.model_dir.mkdir(parents=True, exist_ok=True)
    path = paths.model_dir / MODEL_FILE
    # UBJSON, what XGBoost writes for a file without extension; named so explicitly.
    tmp = paths.model_dir / f".{MODEL_FILE}.tmp"
    tmp.write_bytes(bytes(booster.save_raw("ubj")))
    os.replace(tmp, path)
    logger.info("saved the model (%d rounds) to %s", booster.num_boosted_rounds(), path)
    return path


def write_metrics(paths: contract.Paths, metrics: dict[str, float]) -> None:
    paths.metrics_file.parent.mkdir(parents=True, exist_ok=True)
    paths.metrics_file.write_text(json.dumps(metrics, sort_keys=True) + "\n", encoding="utf-8")
    for name, value in sorted(metrics.items()):
        logger.info("final %s: %s", name, value)


if __name__ == "__main__":  # pragma: no cover - the package's __main__ is the entry point
    sys.exit(run())
