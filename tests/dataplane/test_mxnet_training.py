"""The MXNet image's train and serve entry points, run for real.

Each job is a TrainingJob manifest run by ``kubemaker local train``: the agent prepares
each host, the MXNet image's ``train`` entry point runs as a process in the MXNet
environment, the agent finishes (model.tar.gz). The scripts are small ones written
here: script mode, the original ``train()`` interface, failing scripts, sourceDir as a
tarball on S3, and a trained model served over HTTP by the image's ``serve`` entry
point. Two hosts with ``dist_sync`` are test_local_mxnet.py's.
"""

from __future__ import annotations

import io
import json
import tarfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
from mxnet_support import invoke, model_server, run_job, unpack_model

pytestmark = pytest.mark.mxnet


def write_script(tmp_path: Path, name: str, source: str) -> None:
    """A script in the directory that is a job's sourceDir by default (``tmp_path/src``)."""
    directory = tmp_path / "src"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(textwrap.dedent(source))


def job_manifest(
    tmp_path: Path,
    *,
    entry_point: str,
    source_dir: str | None = None,
    hyper_parameters: dict[str, str] | None = None,
    channels: dict[str, Path] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "algorithmSpecification": {
            "framework": "mxnet",
            "entryPoint": entry_point,
            "sourceDir": source_dir or f"file://{tmp_path / 'src'}",
        },
        "hyperParameters": hyper_parameters or {},
        "outputDataConfig": {"s3OutputPath": f"file://{tmp_path}/output"},
        "resourceConfig": {"instanceType": "ml.m5.large", "instanceCount": 1},
        "stoppingCondition": {"maxRuntimeInSeconds": 600},
    }
    if channels:
        spec["inputDataConfig"] = [
            {"channelName": n, "uri": f"file://{p}"} for n, p in channels.items()
        ]
    return {
        "apiVersion": "kubemaker.io/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "mxnet-test"},
        "spec": spec,
    }


@pytest.fixture
def train_channel(tmp_path: Path) -> Path:
    channel = tmp_path / "data" / "train"
    channel.mkdir(parents=True)
    (channel / "rows.csv").write_text("1,2,3,4\n5,6,7,8\n")
    return channel


# --- script mode ------------------------------------------------------------------------

SCRIPT_MODE = """
    import json, os, sys
    seen = {
        "argv": sys.argv[1:],
        "env": {k: v for k, v in os.environ.items() if k.startswith(("SM_", "DMLC_"))},
        "cwd": os.getcwd(),
    }
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "seen.json"), "w") as f:
        json.dump(seen, f)
"""


def test_script_mode_gets_hyperparameters_as_arguments_and_sm_variables(
    tmp_path: Path, train_channel: Path, mxnet_env: dict[str, str]
) -> None:
    write_script(tmp_path, "train.py", SCRIPT_MODE)
    manifest = job_manifest(
        tmp_path,
        entry_point="train.py",
        hyper_parameters={"batch-size": "64", "learning-rate": "0.05", "optimizer": "sgd"},
        channels={"train": train_channel},
    )
    run = run_job(manifest, tmp_path / "job", mxnet_env)
    assert run.exit_code == 0, run.output
    model = unpack_model(run.model_artifacts, tmp_path / "model")
    seen = json.loads((model / "seen.json").read_text())
    # SageMaker's order and spelling: sorted, --name value, values as given.
    assert seen["argv"] == ["--batch-size", "64", "--learning-rate", "0.05", "--optimizer", "sgd"]
    env = seen["env"]
    assert json.loads(env["SM_HPS"]) == {
        "batch-size": 64,
        "learning-rate": 0.05,
        "optimizer": "sgd",
    }
    assert env["SM_HP_LEARNING-RATE"] == "0.05"
    channel = Path(env["SM_CHANNEL_TRAIN"])
    assert (channel / "rows.csv").read_text() == "1,2,3,4\n5,6,7,8\n"
    assert (
        json.loads(env["SM_HOSTS"]) == ["mxnet-test-0"] and env["SM_CURRENT_HOST"] == "mxnet-test-0"
    )
    assert env["SM_NUM_GPUS"] == "0" and int(env["SM_NUM_CPUS"]) >= 1
    assert env["SM_USER_ENTRY_POINT"] == "train.py"
    assert env["SM_MODULE_DIR"] == seen["cwd"] == str(run.host_dir() / "code")
    assert env["SM_FRAMEWORK_MODULE"] == "kubemaker_runtime.frameworks.mxnet"
    assert not any(k.startswith("DMLC_") for k in env)  # one host: no parameter server
    # The code travels with the model so the model server finds it.
    assert (model / "code" / "train.py").is_file()


def test_source_dir_as_a_tarball_on_s3(
    tmp_path: Path, train_channel: Path, mxnet_env: dict[str, str], s3_client, s3_bucket: str
) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, text in {"train.py": SCRIPT_MODE, "helper/__init__.py": ""}.items():
            data = textwrap.dedent(text).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    s3_client.put_object(Bucket=s3_bucket, Key="code/sourcedir.tar.gz", Body=buffer.getvalue())
    manifest = job_manifest(
        tmp_path,
        entry_point="train.py",
        source_dir=f"s3://{s3_bucket}/code/sourcedir.tar.gz",
        hyper_parameters={"epochs": "2"},
        channels={"train": train_channel},
    )
    run = run_job(manifest, tmp_path / "job", mxnet_env)
    assert run.exit_code == 0, run.output
    assert (run.host_dir() / "code" / "helper" / "__init__.py").is_file()
    model = unpack_model(run.model_artifacts, tmp_path / "model")
    assert json.loads((model / "seen.json").read_text())["argv"] == ["--epochs", "2"]


# --- the original train() interface, default save, serving -----------------------------

LEGACY = """
    import json, os
    import mxnet as mx
    from mxnet import gluon

    def train(channel_input_dirs, hyperparameters, hosts, num_gpus, **kwargs):
        with open(os.path.join(kwargs["output_data_dir"], "kwargs.json"), "w") as f:
            json.dump({"channel_input_dirs": channel_input_dirs,
                       "hyperparameters": hyperparameters, "hosts": hosts,
                       "num_gpus": num_gpus, "others": sorted(kwargs)}, f)
        net = gluon.nn.HybridSequential()
        net.add(gluon.nn.Dense(2, in_units=4))
        net.initialize(mx.init.Constant(hyperparameters["weight"]))
        net.hybridize()
        net(mx.nd.ones((1, 4)))
        return net  # no save(): the image's default exports it
"""


def test_train_function_interface_default_save_and_serving(
    tmp_path: Path, train_channel: Path, mxnet_env: dict[str, str]
) -> None:
    write_script(tmp_path, "legacy_train.py", LEGACY)
    manifest = job_manifest(
        tmp_path,
        entry_point="legacy_train.py",
        hyper_parameters={"weight": "0.5", "epochs": "3", "name": "lab"},
        channels={"train": train_channel},
    )
    run = run_job(manifest, tmp_path / "job", mxnet_env)
    assert run.exit_code == 0, run.output
    seen = json.loads((run.host_dir() / "output" / "data" / "kwargs.json").read_text())
    # Values JSON-decoded, sagemaker_* kept out, as SageMaker's container did.
    assert seen["hyperparameters"] == {"weight": 0.5, "epochs": 3, "name": "lab"}
    assert seen["channel_input_dirs"] == {"train": str(run.host_dir() / "input" / "data" / "train")}
    assert seen["hosts"] == ["mxnet-test-0"] and seen["num_gpus"] == 0
    assert seen["others"] == [
        "current_host",
        "input_data_config",
        "model_dir",
        "num_cpus",
        "output_data_dir",
    ]
    model = unpack_model(run.model_artifacts, tmp_path / "model")
    assert {"model-symbol.json", "model-0000.params", "code"} <= {p.name for p in model.iterdir()}

    with model_server(model, mxnet_env, tmp_path) as server:
        # Default handlers: JSON and CSV rows in, the network's outputs back.
        body = json.dumps([[1, 2, 3, 4], [5, 6, 7, 8]]).encode()
        assert json.loads(invoke(server, body, "application/json")) == [[5.0, 5.0], [13.0, 13.0]]
        csv_out = invoke(server, b"1,2,3,4\n5,6,7,8\n", "text/csv", accept="text/csv")
        assert csv_out.decode().splitlines() == ["5.0,5.0", "13.0,13.0"]
        csv = {"Content-Type": "text/csv"}
        response = server.post("/invocations", b"1,2,3\n", **csv)
        assert response.status_code == 400 and "shape (1, 3)" in response.text
        response = server.post("/invocations", b"not,numbers\n", **csv)
        assert response.status_code == 400 and "as numbers" in response.text
        response = server.post("/invocations", b"\x00", **{"Content-Type": "image/gif"})
        assert response.status_code == 415


# --- failures ---------------------------------------------------------------------------


def test_a_failing_script_reason_reaches_the_report(
    tmp_path: Path, mxnet_env: dict[str, str]
) -> None:
    write_script(
        tmp_path,
        "train.py",
        """
        import sys
        print("starting")
        lr = float(sys.argv[sys.argv.index("--learning-rate") + 1])
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        """,
    )
    manifest = job_manifest(
        tmp_path,
        entry_point="train.py",
        hyper_parameters={"learning-rate": "-1"},
    )
    run = run_job(manifest, tmp_path / "job", mxnet_env)
    assert run.exit_code == 1
    reason = run.failure_reason
    assert reason.startswith("AlgorithmError: ExecuteUserScriptError:"), reason
    assert "ExitCode 1" in reason
    assert 'ErrorMessage "ValueError: learning rate must be positive, got -1.0"' in reason
    assert 'Command "python train.py --learning-rate -1"' in reason
    assert "starting" in run.output  # the script's own output is kept


def test_a_failing_train_function_and_a_missing_entry_point(
    tmp_path: Path, mxnet_env: dict[str, str]
) -> None:
    write_script(
        tmp_path,
        "broken.py",
        """
        def train(hyperparameters):
            raise KeyError("channel 'train' was not given")
        """,
    )
    manifest = job_manifest(tmp_path, entry_point="broken.py")
    run = run_job(manifest, tmp_path / "a", mxnet_env)
    assert run.exit_code == 1
    assert "KeyError: \"channel 'train' was not given\"" in run.failure_reason
    assert 'Command "train() of broken.py"' in run.failure_reason

    manifest = job_manifest(tmp_path, entry_point="nope.py")
    run = run_job(manifest, tmp_path / "b", mxnet_env)
    assert run.exit_code != 0
    reason = run.failure_reason
    assert reason.startswith("ClientError: entry point 'nope.py' not found"), reason
