"""How local mode runs an algorithm: processes, their peers on loopback, Docker commands."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from kubemaker.config import OperatorConfig
from kubemaker.local import launch
from kubemaker.local.errors import UnsupportedError

CONFIG = OperatorConfig()
FIELD = "spec.algorithmSpecification"


def test_a_built_in_algorithm_runs_with_this_interpreter() -> None:
    runtime = launch.resolve_runtime(
        algorithm_name="xgboost", framework=None, image=None, config=CONFIG, field=FIELD
    )
    assert runtime.kind == "builtin"
    assert runtime.image == "ghcr.io/kubemaker/xgboost:0.1.0"
    assert runtime.process_command("train") == [
        sys.executable, "-m", "kubemaker_runtime.algorithms.xgboost", "train",
    ]  # fmt: skip
    assert runtime.supports_hosts


def test_a_catalog_algorithm_without_local_code_runs_its_image() -> None:
    config = OperatorConfig.model_validate(
        {"images": {"algorithms": {"linear-learner": "example.com/ll:1"}}}
    )
    runtime = launch.resolve_runtime(
        algorithm_name="linear-learner", framework=None, image=None, config=config, field=FIELD
    )
    assert (runtime.kind, runtime.image) == ("docker", "example.com/ll:1")
    with pytest.raises(UnsupportedError, match="unknown built-in algorithm 'nope'"):
        launch.resolve_runtime(
            algorithm_name="nope", framework=None, image=None, config=config, field=FIELD
        )


def test_a_framework_runs_in_its_own_environment(tmp_path: Path) -> None:
    python = tmp_path / "venv-mxnet" / "bin" / "python"
    env = {"KUBEMAKER_CACHE": str(tmp_path)}
    with pytest.raises(UnsupportedError, match=r"build it with `scripts/mxnet-env\.sh`"):
        launch.resolve_runtime(
            algorithm_name=None, framework="mxnet", image=None, config=CONFIG, field=FIELD,
            environ=env,
        )  # fmt: skip
    python.parent.mkdir(parents=True)
    python.touch()
    runtime = launch.resolve_runtime(
        algorithm_name=None, framework="mxnet", image=None, config=CONFIG, field=FIELD, environ=env
    )
    assert runtime.kind == "framework"
    assert runtime.process_command("serve") == [
        str(python), "-m", "kubemaker_runtime.frameworks.mxnet", "serve",
    ]  # fmt: skip
    # This checkout's runtime goes first on the framework environment's path.
    source = Path(launch.__file__).resolve().parents[3] / "images"
    path = runtime.process_env({"PYTHONPATH": "/elsewhere"})["PYTHONPATH"]
    assert path == f"{source}{os.pathsep}/elsewhere"
    # An explicit image replaces the framework's environment, as on a cluster.
    runtime = launch.resolve_runtime(
        algorithm_name=None, framework="mxnet", image="me/mx:2", config=CONFIG, field=FIELD,
        environ=env,
    )  # fmt: skip
    assert (runtime.kind, runtime.image) == ("docker", "me/mx:2")


def test_peers_meet_on_loopback() -> None:
    hosts = ["job-0", "job-1"]
    xgboost = launch.Runtime("builtin", "xgboost", "img", python="p", module="m")
    env = launch.build_peer_env(xgboost, hosts, 4242)
    assert json.loads(env["KUBEMAKER_HOST_ADDRESSES"]) == {
        "job-0": "127.0.0.1",
        "job-1": "127.0.0.1",
    }
    assert env["KUBEMAKER_XGBOOST_TRACKER_ADDRESS"] == "127.0.0.1"
    assert env["KUBEMAKER_XGBOOST_TRACKER_PORT"] == "4242"
    mxnet = launch.Runtime("framework", "mxnet", "img", python="p", module="m")
    assert launch.build_peer_env(mxnet, hosts, 4242)["DMLC_PS_ROOT_PORT"] == "4242"
    assert launch.build_peer_env(xgboost, hosts[:1], 4242) == {}
    other = launch.Runtime("builtin", "other", "img", python="p", module="m")
    assert not other.supports_hosts


def test_docker_commands_mount_the_contract_and_hide_values(tmp_path: Path) -> None:
    cmd = launch.build_docker_train_command(
        "me/algo:1",
        container="kubemaker-job-0",
        base_dir=tmp_path,
        env_names=["SM_HPS", "SECRET"],
        host="job-0",
        network="kubemaker-job",
    )
    assert cmd[-2:] == ["me/algo:1", "train"]
    # As the user running local mode: the mounts are that user's.
    assert cmd[5:7] == ["--user", f"{os.getuid()}:{os.getgid()}"]
    assert cmd[7:11] == ["--network", "kubemaker-job", "--network-alias", "job-0"]
    for sub in ("input", "model", "output", "checkpoints"):
        assert f"{tmp_path / sub}:/opt/ml/{sub}" in cmd
    assert f"{tmp_path}:/opt/ml" not in cmd
    # Values come from docker's own environment: `-e NAME`, never `-e NAME=value`.
    assert cmd[cmd.index("SECRET") - 1] == "-e"
    serve = launch.build_docker_serve_command(
        "me/algo:1", container="c", model_dir=tmp_path, address="127.0.0.1", port=9000,
        env_names=[],
    )  # fmt: skip
    assert serve[serve.index("-p") : serve.index("-p") + 2] == ["-p", "127.0.0.1:9000:8080"]
    assert serve[serve.index("--user") + 1] == f"{os.getuid()}:{os.getgid()}"
    assert serve[-1] == "serve"
