"""Distributed XGBoost: two hosts as two real processes on loopback, XGBoost's collective.

Each host gets half of the data (what ``ShardedByS3Key`` gives it); the model the two
hosts train together must be as good as the one a single host trains on all of it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from process_support import free_port
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

HOSTS = ["algo-1", "algo-2"]
HYPERPARAMETERS = {
    "num_round": 40,
    "objective": "binary:logistic",
    "eval_metric": "auc",
    "max_depth": 4,
    "eta": 0.2,
    # Two hosts share this machine's cores: one thread each keeps OpenMP from spinning
    # against the other host.
    "nthread": 1,
}


def test_two_hosts_train_a_model_as_good_as_one_host(tmp_path: Path) -> None:
    x_train, y_train = make_classification(4000, 11)
    x_val, y_val = make_classification(1000, 12)
    x_test, y_test = make_classification(2000, 13)

    single = write_job(
        tmp_path / "single",
        HYPERPARAMETERS,
        {"train": (x_train, y_train), "validation": (x_val, y_val)},
    )
    hosts = []
    for index, host in enumerate(HOSTS):
        shard = slice(index, None, len(HOSTS))
        hosts.append(
            write_job(
                tmp_path / host,
                HYPERPARAMETERS,
                {
                    "train": (x_train[shard], y_train[shard]),
                    "validation": (x_val[shard], y_val[shard]),
                },
                hosts=HOSTS,
                current_host=host,
            )
        )

    # Host names do not resolve here: the tracker address says where algo-1 listens.
    env = {
        **os.environ,
        "KUBEMAKER_XGBOOST_TRACKER_ADDRESS": "127.0.0.1",
        "KUBEMAKER_XGBOOST_TRACKER_PORT": str(free_port()),
    }
    processes = [
        subprocess.Popen(
            train_command(paths.base),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for paths in hosts
    ]
    outputs = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=TRAIN_TIMEOUT)
            outputs.append((process.returncode, stdout, stderr))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for returncode, stdout, stderr in outputs:
        assert returncode == 0, stdout + stderr
    assert_succeeded(run_train(single.base))

    # The first host prints the log and writes the model; the second only trains.
    first_log = [line for line in outputs[0][1].splitlines() if ROUND.match(line)]
    assert len(first_log) == HYPERPARAMETERS["num_round"]
    assert not [line for line in outputs[1][1].splitlines() if ROUND.match(line)]
    assert "rank 1 of 2" in outputs[1][2]
    assert not (hosts[1].model_dir / "xgboost-model").exists()

    distributed_model = load_model(hosts[0])
    single_model = load_model(single)
    assert distributed_model.num_boosted_rounds() == HYPERPARAMETERS["num_round"]
    distributed_auc = auc(y_test, distributed_model.inplace_predict(x_test))
    single_auc = auc(y_test, single_model.inplace_predict(x_test))
    print(f"test AUC: two hosts {distributed_auc:.4f}, one host {single_auc:.4f}")
    assert distributed_auc > 0.85
    # As good as one host's: hosts sketch feature quantiles on their own shards, so the
    # trees differ a little, either way.
    assert distributed_auc > single_auc - 0.01

    # Validation metrics were reduced over both hosts' shards (XGBoost's distributed AUC
    # combines per-host AUCs, so it is close to, not equal to, the whole set's).
    distributed_metrics = json.loads(hosts[0].metrics_file.read_text())
    single_metrics = json.loads(single.metrics_file.read_text())
    assert abs(distributed_metrics["validation:auc"] - single_metrics["validation:auc"]) < 0.01
    assert (
        abs(
            distributed_metrics["validation:auc"]
            - auc(y_val, distributed_model.inplace_predict(x_val))
        )
        < 0.01
    )
