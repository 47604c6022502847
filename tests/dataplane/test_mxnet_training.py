"""The MXNet image's train and serve entry points, run for real.

Each job is a TrainingJob manifest run by ``kubemaker local train``: the agent prepares
each host, the MXNet image's ``train`` entry point runs as a process in the MXNet
environment, the agent finishes (model.tar.gz). The scripts are small ones written
here: script mode, the original ``train()`` interface, failing scripts, sourceDir as a
tarball on S3, a 2-host ``dist_sync`` job on loopback, and a trained model served over
HTTP by the image's ``serve`` entry point.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubemaker_runtime import frameworks

pytestmark = pytest.mark.mxnet

REPO = Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT = 60.0
JOB_TIMEOUT = 600


@pytest.fixture(scope="session")
def mxnet_python() -> str:
    """The MXNet environment's interpreter, checked to import this checkout's runtime."""
    try:
        python = frameworks.get("mxnet").interpreter()
    except frameworks.FrameworkUnavailable as exc:
        pytest.fail(str(exc))
    check = subprocess.run(
        [python, "-c", "import mxnet, numpy, kubemaker_runtime.frameworks.mxnet.training"],
        env=_with_checkout(dict(os.environ), python),
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0:
        pytest.fail(
            "the MXNet environment is broken; rebuild it with scripts/mxnet-env.sh --force\n"
            + check.stderr[-1500:]
        )
    return python


def _with_checkout(env: dict[str, str], python: str) -> dict[str, str]:
    env["KUBEMAKER_MXNET_PYTHON"] = python
    # This checkout's runtime, whatever checkout the environment was built from.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "images"), env.get("PYTHONPATH")]))
    return env


@pytest.fixture
def mxnet_env(mxnet_python: str) -> dict[str, str]:
    """The environment of processes in the MXNet environment (read per test: S3 settings)."""
    return _with_checkout(dict(os.environ), mxnet_python)


def write_script(directory: Path, name: str, source: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(source))
    return path


@dataclass(frozen=True)
class LocalRun:
    exit_code: int
    status: dict[str, Any]
    output: str
    job_dir: Path

    @property
    def failure_reason(self) -> str:
        return str(self.status.get("failureReason", ""))

    @property
    def model_artifacts(self) -> str:
        return str(self.status["modelArtifacts"]["s3ModelArtifacts"])

    def host_dir(self, index: int = 0) -> Path:
        """What /opt/ml is for that host."""
        return self.job_dir / f"host-{index}"

    def metric(self, name: str) -> float:
        values = {m["metricName"]: m["value"] for m in self.status["finalMetricDataList"]}
        return float(values[name])


def local_train(manifest: dict[str, Any], workdir: Path, env: dict[str, str]) -> LocalRun:
    """``kubemaker local train -f <manifest>``, as a user runs it."""
    workdir.mkdir(parents=True, exist_ok=True)
    name = manifest["metadata"]["name"]
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    command = [sys.executable, "-m", "kubemaker", "local", "train", "-f", str(path)]
    command += ["--workdir", str(workdir / "jobs"), "--no-progress"]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT, check=False
    )
    job_dir = workdir / "jobs" / name
    record = job_dir / "trainingjob.json"
    if not record.exists():
        pytest.fail(f"kubemaker local train left no record:\n{done.stdout}\n{done.stderr}")
    status = json.loads(record.read_text())["status"]
    return LocalRun(done.returncode, status, done.stdout + done.stderr, job_dir)


def job_manifest(
    tmp_path: Path,
    *,
    entry_point: str,
    source_dir: str,
    hyper_parameters: dict[str, str] | None = None,
    channels: dict[str, Path] | None = None,
    instance_count: int = 1,
    name: str = "mxnet-test",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "algorithmSpecification": {
            "framework": "mxnet",
            "entryPoint": entry_point,
            "sourceDir": source_dir,
        },
        "hyperParameters": hyper_parameters or {},
        "outputDataConfig": {"s3OutputPath": f"file://{tmp_path}/output"},
        "resourceConfig": {"instanceType": "ml.m5.large", "instanceCount": instance_count},
        "stoppingCondition": {"maxRuntimeInSeconds": 600},
    }
    if channels:
        spec["inputDataConfig"] = [
            {"channelName": n, "uri": f"file://{p}"} for n, p in channels.items()
        ]
    return {
        "apiVersion": "kubemaker.io/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": spec,
    }


@pytest.fixture
def train_channel(tmp_path: Path) -> Path:
    channel = tmp_path / "data" / "train"
    channel.mkdir(parents=True)
    (channel / "rows.csv").write_text("1,2,3,4\n5,6,7,8\n")
    return channel


def unpack_model(uri: str, dest: Path) -> Path:
    assert uri.startswith("file://"), uri
    with tarfile.open(uri.removeprefix("file://")) as tf:
        tf.extractall(dest, filter="data")
    return dest


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
    write_script(tmp_path / "src", "train.py", SCRIPT_MODE)
    manifest = job_manifest(
        tmp_path,
        entry_point="train.py",
        source_dir=f"file://{tmp_path / 'src'}",
        hyper_parameters={"batch-size": "64", "learning-rate": "0.05", "optimizer": "sgd"},
        channels={"train": train_channel},
    )
    run = local_train(manifest, tmp_path / "job", mxnet_env)
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
    run = local_train(manifest, tmp_path / "job", mxnet_env)
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
    write_script(tmp_path / "src", "legacy_train.py", LEGACY)
    manifest = job_manifest(
        tmp_path,
        entry_point="legacy_train.py",
        source_dir=f"file://{tmp_path / 'src'}",
        hyper_parameters={"weight": "0.5", "epochs": "3", "name": "lab"},
        channels={"train": train_channel},
    )
    run = local_train(manifest, tmp_path / "job", mxnet_env)
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

    with model_server(model, mxnet_env, tmp_path / "serve.log") as url:
        # Default handlers: JSON and CSV rows in, the network's outputs back.
        body = json.dumps([[1, 2, 3, 4], [5, 6, 7, 8]]).encode()
        assert json.loads(invoke(url, body, "application/json")) == [[5.0, 5.0], [13.0, 13.0]]
        csv_out = invoke(url, b"1,2,3,4\n5,6,7,8\n", "text/csv", accept="text/csv")
        assert csv_out.decode().splitlines() == ["5.0,5.0", "13.0,13.0"]
        status, message = invoke_error(url, b"1,2,3\n", "text/csv")
        assert status == 400 and "shape (1, 3)" in message
        status, message = invoke_error(url, b"not,numbers\n", "text/csv")
        assert status == 400 and "as numbers" in message
        status, _ = invoke_error(url, b"\x00", "image/gif")
        assert status == 415


# --- failures ---------------------------------------------------------------------------


def test_a_failing_script_reason_reaches_the_report(
    tmp_path: Path, mxnet_env: dict[str, str]
) -> None:
    write_script(
        tmp_path / "src",
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
        source_dir=f"file://{tmp_path / 'src'}",
        hyper_parameters={"learning-rate": "-1"},
    )
    run = local_train(manifest, tmp_path / "job", mxnet_env)
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
        tmp_path / "src",
        "broken.py",
        """
        def train(hyperparameters):
            raise KeyError("channel 'train' was not given")
        """,
    )
    manifest = job_manifest(
        tmp_path, entry_point="broken.py", source_dir=f"file://{tmp_path / 'src'}"
    )
    run = local_train(manifest, tmp_path / "a", mxnet_env)
    assert run.exit_code == 1
    assert "KeyError: \"channel 'train' was not given\"" in run.failure_reason
    assert 'Command "train() of broken.py"' in run.failure_reason

    manifest = job_manifest(
        tmp_path, entry_point="nope.py", source_dir=f"file://{tmp_path / 'src'}"
    )
    run = local_train(manifest, tmp_path / "b", mxnet_env)
    assert run.exit_code != 0
    reason = run.failure_reason
    assert reason.startswith("ClientError: entry point 'nope.py' not found"), reason


# --- distributed: dist_sync across two hosts on loopback --------------------------------

DIST = """
    import json, os
    import mxnet as mx
    import numpy as np
    from mxnet import autograd, gluon

    def train(hyperparameters, hosts, current_host, model_dir, **kwargs):
        kv = mx.kv.create("dist_sync")
        rank = hosts.index(current_host)
        mx.random.seed(rank)  # different initial weights: dist_sync must align them
        net = gluon.nn.HybridSequential()
        net.add(gluon.nn.Dense(1, in_units=3))
        net.initialize(mx.init.Normal(1.0))
        trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1}, kvstore=kv)
        rng = np.random.RandomState(rank)  # and each host its own data
        x = mx.nd.array(rng.rand(32, 3))
        y = mx.nd.array(x.asnumpy() @ np.array([1.0, -2.0, 3.0]))
        for _ in range(20):
            with autograd.record():
                loss = gluon.loss.L2Loss()(net(x), y)
            loss.backward()
            trainer.step(32)
        report = {"rank": kv.rank, "num_workers": kv.num_workers, "type": kv.type,
                  "weight": net[0].weight.data().asnumpy().tolist()}
        out = os.path.join(kwargs["output_data_dir"], "dist.json")
        with open(out, "w") as f:
            json.dump(report, f)
        return None
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_two_hosts_train_with_dist_sync_on_loopback(
    tmp_path: Path, mxnet_env: dict[str, str]
) -> None:
    write_script(tmp_path / "src", "dist.py", DIST)
    manifest = job_manifest(
        tmp_path,
        entry_point="dist.py",
        source_dir=f"file://{tmp_path / 'src'}",
        instance_count=2,
    )
    # Local mode gives each host's process the other hosts' addresses (loopback) and
    # the scheduler's port; the image starts the scheduler, the servers and the workers.
    run = local_train(manifest, tmp_path / "job", mxnet_env)
    assert run.exit_code == 0, run.output
    seen = [
        json.loads((run.host_dir(i) / "output" / "data" / "dist.json").read_text())
        for i in range(2)
    ]
    assert sorted(s["rank"] for s in seen) == [0, 1]
    assert all(s["num_workers"] == 2 and s["type"] == "dist_sync" for s in seen)
    # Different seeds, different data, yet one model: the servers kept them in step.
    assert seen[0]["weight"] == seen[1]["weight"]


# --- helpers: a model server in the MXNet environment -----------------------------------


class model_server:  # a context manager, named like open()
    def __init__(self, model_dir: Path, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.env = {
            **env,
            "SM_MODEL_DIR": str(model_dir),
            "SAGEMAKER_BIND_TO_PORT": str(self.port),
            "KUBEMAKER_BIND_ADDRESS": "127.0.0.1",
            "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
        }
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        log = open(self.log_path, "wb")  # the server writes to it until __exit__
        command = [self.env["KUBEMAKER_MXNET_PYTHON"], "-m", "kubemaker_runtime.frameworks.mxnet"]
        self.process = subprocess.Popen(
            [*command, "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the model server exited:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                    if response.status == 200:
                        return url
            except OSError:
                pass
            time.sleep(0.2)
        pytest.fail(f"the model server was not ready in time:\n{self.log_path.read_text()}")

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def invoke(url: str, body: bytes, content_type: str, accept: str = "application/json") -> bytes:
    request = urllib.request.Request(
        f"{url}/invocations", data=body, headers={"Content-Type": content_type, "Accept": accept}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        return response.read()


def invoke_error(url: str, body: bytes, content_type: str) -> tuple[int, str]:
    try:
        invoke(url, body, content_type)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    pytest.fail("the request succeeded")
