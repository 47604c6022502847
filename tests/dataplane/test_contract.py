"""The container contract checked against SageMaker's documentation.

Expected values are typed in from SageMaker's docs ("How Amazon SageMaker Provides
Training Information", the training toolkit's ENVIRONMENT_VARIABLES.md), not derived
from our code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubemaker_runtime import contract
from kubemaker_runtime.agent.configfiles import build_config_files, write_config_files
from kubemaker_runtime.contract import Paths
from kubemaker_runtime.protocol import AgentConfig, ChannelConfig

OPT_ML = Paths()

# The docs' two-channel example: training and testing, File mode, no content type on
# one of them; and the hyperparameters of ENVIRONMENT_VARIABLES.md.
DOC_HYPERPARAMETERS = {"batch-size": "256", "learning-rate": "0.0001", "communicator": "pure_nccl"}
DOC_RESOURCE_CONFIG = {
    "current_host": "algo-1",
    "current_instance_type": "ml.p3.2xlarge",
    "current_group_name": "homogeneousCluster",
    "hosts": ["algo-1", "algo-2"],
    "instance_groups": [
        {
            "instance_group_name": "homogeneousCluster",
            "instance_type": "ml.p3.2xlarge",
            "hosts": ["algo-1", "algo-2"],
        }
    ],
    "network_interface_name": "ethwe",
}


def doc_config(**overrides: object) -> AgentConfig:
    values: dict[str, object] = {
        "job_name": "preprod-chainer-2018-05-31-06-27-15-511",
        "hosts": ["algo-1", "algo-2"],
        "network_interface_name": "ethwe",
        "instance_type": "ml.p3.2xlarge",
        "hyper_parameters": DOC_HYPERPARAMETERS,
        "channels": [
            ChannelConfig(name="training", uri="s3://b/train", content_type="text/csv"),
            ChannelConfig(name="testing", uri="s3://b/test"),
        ],
        "output_path": "s3://b/out",
    }
    values.update(overrides)
    return AgentConfig.model_validate(values)


def test_directory_layout_is_sagemakers() -> None:
    assert str(OPT_ML.input_config_dir) == "/opt/ml/input/config"
    assert str(OPT_ML.hyperparameters_file) == "/opt/ml/input/config/hyperparameters.json"
    assert str(OPT_ML.inputdataconfig_file) == "/opt/ml/input/config/inputdataconfig.json"
    assert str(OPT_ML.resourceconfig_file) == "/opt/ml/input/config/resourceconfig.json"
    assert str(OPT_ML.channel_dir("training")) == "/opt/ml/input/data/training"
    assert str(OPT_ML.pipe_fifo("training", 0)) == "/opt/ml/input/data/training_0"
    assert str(OPT_ML.pipe_fifo("training", 1)) == "/opt/ml/input/data/training_1"
    assert str(OPT_ML.model_dir) == "/opt/ml/model"
    assert str(OPT_ML.output_dir) == "/opt/ml/output"
    assert str(OPT_ML.output_data_dir) == "/opt/ml/output/data"
    assert str(OPT_ML.failure_file) == "/opt/ml/output/failure"
    assert str(OPT_ML.checkpoints_dir) == "/opt/ml/checkpoints"
    assert str(OPT_ML.code_dir) == "/opt/ml/code"


def test_paths_follow_a_base_dir_and_are_frozen(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    assert paths.model_dir == tmp_path / "model"
    assert Paths.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path)}) == paths
    assert Paths.from_env({}) == OPT_ML
    with pytest.raises(AttributeError):
        paths.base = Path("/elsewhere")  # type: ignore[misc]
    paths.create_training_dirs()
    for sub in ("input/config", "input/data", "model", "output/data", "checkpoints"):
        assert (tmp_path / sub).is_dir()


def test_import_has_no_side_effects_and_no_heavy_imports(tmp_path: Path) -> None:
    base = tmp_path / "never-created"
    code = (
        "import sys, kubemaker_runtime.contract, kubemaker_runtime.protocol;"
        "heavy = [m for m in ('boto3', 'botocore', 'numpy', 'xgboost') if m in sys.modules];"
        "print(heavy)"
    )
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
    assert not base.exists()


def test_hyperparameters_json_holds_strings(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    contract.write_hyperparameters(
        paths, {"max_depth": 5, "eta": 0.2, "objective": "binary:logistic", "flag": True}
    )
    raw = json.loads(paths.hyperparameters_file.read_text())
    assert raw == {"max_depth": "5", "eta": "0.2", "objective": "binary:logistic", "flag": "true"}
    assert contract.read_hyperparameters(paths) == raw
    assert contract.decode_hyperparameters(raw) == {
        "max_depth": 5,
        "eta": 0.2,
        "objective": "binary:logistic",
        "flag": True,
    }


def test_config_files_match_the_documented_format(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    write_config_files(doc_config(), 0, paths)

    assert json.loads(paths.hyperparameters_file.read_text()) == DOC_HYPERPARAMETERS
    assert json.loads(paths.inputdataconfig_file.read_text()) == {
        "training": {
            "ContentType": "text/csv",
            "TrainingInputMode": "File",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
            "CompressionType": "None",
        },
        "testing": {
            "TrainingInputMode": "File",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
            "CompressionType": "None",
        },
    }
    assert json.loads(paths.resourceconfig_file.read_text()) == DOC_RESOURCE_CONFIG

    second = build_config_files(doc_config(), 1)[contract.RESOURCE_CONFIG_FILE]
    assert second["current_host"] == "algo-2"
    assert second["hosts"] == ["algo-1", "algo-2"]


def test_pipe_and_sharded_channels_are_described_as_sagemaker_does() -> None:
    config = doc_config(
        channels=[
            ChannelConfig(
                name="train",
                uri="s3://b/t",
                input_mode="Pipe",
                distribution="ShardedByS3Key",
                compression="Gzip",
                record_wrapper_type="RecordIO",
                content_type="application/x-recordio",
            )
        ]
    )
    assert build_config_files(config, 0)[contract.INPUT_DATA_CONFIG_FILE] == {
        "train": {
            "ContentType": "application/x-recordio",
            "TrainingInputMode": "Pipe",
            "S3DistributionType": "ShardedByS3Key",
            "RecordWrapperType": "RecordIO",
            "CompressionType": "Gzip",
        }
    }


def doc_env(**kwargs: object) -> dict[str, str]:
    files = build_config_files(doc_config(), 0)
    arguments: dict[str, object] = {
        "hyperparameters": files[contract.HYPERPARAMETERS_FILE],
        "input_data_config": files[contract.INPUT_DATA_CONFIG_FILE],
        "resource_config": files[contract.RESOURCE_CONFIG_FILE],
        "num_cpus": 32,
        "num_gpus": 1,
        "job_name": "preprod-chainer-2018-05-31-06-27-15-511",
    }
    arguments.update(kwargs)
    return contract.build_training_env(OPT_ML, **arguments)  # type: ignore[arg-type]


def test_sm_variables_have_the_documented_values() -> None:
    env = doc_env()
    # ENVIRONMENT_VARIABLES.md, one by one.
    assert env["SM_MODEL_DIR"] == "/opt/ml/model"
    assert json.loads(env["SM_CHANNELS"]) == ["testing", "training"]
    assert env["SM_CHANNELS"] == '["testing","training"]'
    assert env["SM_CHANNEL_TRAINING"] == "/opt/ml/input/data/training"
    assert env["SM_CHANNEL_TESTING"] == "/opt/ml/input/data/testing"
    assert json.loads(env["SM_HPS"]) == {
        "batch-size": 256,
        "learning-rate": 0.0001,
        "communicator": "pure_nccl",
    }
    assert env["SM_HP_LEARNING-RATE"] == "0.0001"
    assert env["SM_HP_BATCH-SIZE"] == "256"
    assert env["SM_HP_COMMUNICATOR"] == "pure_nccl"
    assert env["SM_CURRENT_HOST"] == "algo-1"
    assert env["SM_HOSTS"] == '["algo-1","algo-2"]'
    assert env["SM_NUM_GPUS"] == "1"
    assert env["SM_NUM_CPUS"] == "32"
    assert env["SM_NUM_NEURONS"] == "0"
    assert env["SM_LOG_LEVEL"] == "20"
    assert env["SM_NETWORK_INTERFACE_NAME"] == "ethwe"
    # The toolkit sorts the arguments by name.
    assert json.loads(env["SM_USER_ARGS"]) == [
        "--batch-size",
        "256",
        "--communicator",
        "pure_nccl",
        "--learning-rate",
        "0.0001",
    ]
    assert env["SM_INPUT_DIR"] == "/opt/ml/input"
    assert env["SM_INPUT_CONFIG_DIR"] == "/opt/ml/input/config"
    assert env["SM_OUTPUT_DIR"] == "/opt/ml/output"
    assert env["SM_OUTPUT_DATA_DIR"] == "/opt/ml/output/data"
    assert json.loads(env["SM_RESOURCE_CONFIG"]) == DOC_RESOURCE_CONFIG
    assert json.loads(env["SM_INPUT_DATA_CONFIG"])["testing"] == {
        "RecordWrapperType": "None",
        "S3DistributionType": "FullyReplicated",
        "TrainingInputMode": "File",
        "CompressionType": "None",
    }
    assert env["TRAINING_JOB_NAME"] == "preprod-chainer-2018-05-31-06-27-15-511"

    training_env = json.loads(env["SM_TRAINING_ENV"])
    assert training_env["channel_input_dirs"] == {
        "testing": "/opt/ml/input/data/testing",
        "training": "/opt/ml/input/data/training",
    }
    assert training_env["current_host"] == "algo-1"
    assert training_env["hosts"] == ["algo-1", "algo-2"]
    assert training_env["hyperparameters"] == {
        "batch-size": 256,
        "learning-rate": 0.0001,
        "communicator": "pure_nccl",
    }
    assert training_env["input_config_dir"] == "/opt/ml/input/config"
    assert training_env["input_dir"] == "/opt/ml/input"
    assert training_env["job_name"] == "preprod-chainer-2018-05-31-06-27-15-511"
    assert training_env["log_level"] == 20
    assert training_env["model_dir"] == "/opt/ml/model"
    assert training_env["module_dir"] == "/opt/ml/code"
    assert training_env["network_interface_name"] == "ethwe"
    assert training_env["num_cpus"] == 32
    assert training_env["num_gpus"] == 1
    assert training_env["output_dir"] == "/opt/ml/output"
    assert training_env["resource_config"] == DOC_RESOURCE_CONFIG
    assert training_env["is_master"] is True
    assert training_env["master_hostname"] == "algo-1"


def test_sm_variable_names_are_the_toolkits_set() -> None:
    env = doc_env()
    # Every name sagemaker-training-toolkit's Environment.to_env_vars() exports.
    expected = {
        "SM_HOSTS",
        "SM_NETWORK_INTERFACE_NAME",
        "SM_HPS",
        "SM_USER_ENTRY_POINT",
        "SM_FRAMEWORK_PARAMS",
        "SM_RESOURCE_CONFIG",
        "SM_INPUT_DATA_CONFIG",
        "SM_OUTPUT_DATA_DIR",
        "SM_CHANNELS",
        "SM_CURRENT_HOST",
        "SM_CURRENT_INSTANCE_TYPE",
        "SM_CURRENT_INSTANCE_GROUP",
        "SM_CURRENT_INSTANCE_GROUP_HOSTS",
        "SM_INSTANCE_GROUPS",
        "SM_INSTANCE_GROUPS_DICT",
        "SM_DISTRIBUTION_INSTANCE_GROUPS",
        "SM_IS_HETERO",
        "SM_MODULE_NAME",
        "SM_LOG_LEVEL",
        "SM_FRAMEWORK_MODULE",
        "SM_INPUT_DIR",
        "SM_INPUT_CONFIG_DIR",
        "SM_OUTPUT_DIR",
        "SM_NUM_CPUS",
        "SM_NUM_GPUS",
        "SM_NUM_NEURONS",
        "SM_MODEL_DIR",
        "SM_MODULE_DIR",
        "SM_TRAINING_ENV",
        "SM_USER_ARGS",
        "SM_OUTPUT_INTERMEDIATE_DIR",
        "SM_CHANNEL_TRAINING",
        "SM_CHANNEL_TESTING",
        "SM_HP_BATCH-SIZE",
        "SM_HP_LEARNING-RATE",
        "SM_HP_COMMUNICATOR",
    }
    assert set(env) - {"TRAINING_JOB_NAME"} == expected
    assert env["SM_CURRENT_INSTANCE_TYPE"] == "ml.p3.2xlarge"
    assert env["SM_CURRENT_INSTANCE_GROUP"] == "homogeneousCluster"
    assert env["SM_INSTANCE_GROUPS"] == '["homogeneousCluster"]'
    assert env["SM_IS_HETERO"] == "false"
    assert env["SM_DISTRIBUTION_INSTANCE_GROUPS"] == "[]"
    assert env["SM_FRAMEWORK_MODULE"] == ""
    assert env["SM_USER_ENTRY_POINT"] == ""


def test_sagemaker_hyperparameters_are_framework_parameters() -> None:
    files = build_config_files(doc_config(), 1)
    hps = {
        **files[contract.HYPERPARAMETERS_FILE],
        "sagemaker_program": '"train.py"',
        "sagemaker_submit_directory": '"s3://b/source/sourcedir.tar.gz"',
        "sagemaker_container_log_level": "10",
        "sagemaker_mpi_enabled": "true",
    }
    env = contract.build_training_env(
        OPT_ML,
        hyperparameters=hps,
        input_data_config=files[contract.INPUT_DATA_CONFIG_FILE],
        resource_config=files[contract.RESOURCE_CONFIG_FILE],
        num_cpus=4,
        framework_module="sagemaker_mxnet_container.training:main",
    )
    assert "sagemaker_program" not in json.loads(env["SM_HPS"])
    assert "SM_HP_SAGEMAKER_PROGRAM" not in env
    assert env["SM_MODULE_NAME"] == "train"
    assert env["SM_USER_ENTRY_POINT"] == "train.py"
    assert env["SM_MODULE_DIR"] == "s3://b/source/sourcedir.tar.gz"
    assert env["SM_LOG_LEVEL"] == "10"
    assert json.loads(env["SM_FRAMEWORK_PARAMS"]) == {"sagemaker_mpi_enabled": True}
    assert env["SM_DISTRIBUTION_INSTANCE_GROUPS"] == '["homogeneousCluster"]'
    assert env["SM_FRAMEWORK_MODULE"] == "sagemaker_mxnet_container.training:main"
    training_env = json.loads(env["SM_TRAINING_ENV"])
    assert training_env["current_host"] == "algo-2"
    assert training_env["is_master"] is False
    assert training_env["master_hostname"] == "algo-1"


def test_training_env_is_a_pure_function(monkeypatch: pytest.MonkeyPatch) -> None:
    before = doc_env()
    monkeypatch.setenv("SM_CURRENT_HOST", "somewhere-else")
    monkeypatch.setenv("SAGEMAKER_PROGRAM", "other.py")
    assert doc_env() == before


def test_failure_file_round_trip_is_clipped_to_sagemakers_limit(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    assert contract.read_failure(paths) is None
    contract.write_failure(paths, "  bad hyperparameter eta\n")
    assert paths.failure_file.read_text() == "  bad hyperparameter eta\n"
    assert contract.read_failure(paths) == "bad hyperparameter eta"
    contract.write_failure(paths, "x" * 5000)
    reason = contract.read_failure(paths)
    assert reason is not None and len(reason) == 1024 and reason.endswith("...")


def test_serving_names_and_port() -> None:
    assert contract.SERVING_BIND_TO_PORT_ENV == "SAGEMAKER_BIND_TO_PORT"
    assert contract.SERVING_MODEL_SERVER_WORKERS_ENV == "SAGEMAKER_MODEL_SERVER_WORKERS"
    assert contract.SERVING_MODEL_SERVER_TIMEOUT_ENV == "SAGEMAKER_MODEL_SERVER_TIMEOUT"
    assert contract.serving_port({}) == 8080
    assert contract.serving_port({"SAGEMAKER_BIND_TO_PORT": "9090"}) == 9090
