"""The SageMaker container contract: paths, config files, ``SM_*`` variables, failure file.

Everything a SageMaker training or serving image expects to find, in one place, as
SageMaker documents it and as its own toolkits (sagemaker-training-toolkit,
sagemaker-inference-toolkit) set it up. The agent writes what this module builds; the
operator and local mode use the same builders to fill a container's environment.

Nothing happens at import (no directory is created, no file read, no environment
variable consulted): a :class:`Paths` is built from an explicit base directory, and
the ``build_*`` functions are pure. Only the standard library and pydantic (through
:mod:`kubemaker_runtime.protocol`) are imported, because the operator imports this.

Why one module of this size: the contract is one document (SageMaker's), and reading
it in one place is the point; it holds constants and pure builders, no logic to split.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubemaker_runtime.protocol import FAILURE_REASON_LIMIT, ChannelConfig

# --- base directory -----------------------------------------------------------------

DEFAULT_BASE_DIR = "/opt/ml"
# The name SageMaker's toolkits read to relocate /opt/ml outside a container.
BASE_DIR_ENV = "SAGEMAKER_BASE_DIR"

HYPERPARAMETERS_FILE = "hyperparameters.json"
INPUT_DATA_CONFIG_FILE = "inputdataconfig.json"
RESOURCE_CONFIG_FILE = "resourceconfig.json"
FAILURE_FILE = "failure"
# kubemaker's own addition: {"metric-name": value} an algorithm may leave for the report.
METRICS_FILE = "metrics.json"

# SageMaker's name for the single instance group of an ordinary (homogeneous) job.
DEFAULT_INSTANCE_GROUP = "homogeneousCluster"
DEFAULT_NETWORK_INTERFACE = "eth0"
# What sagemaker-training-toolkit assumes when resourceconfig.json names no type.
DEFAULT_INSTANCE_TYPE = "local"


@dataclass(frozen=True)
class Paths:
    """The directory layout under one base directory (``/opt/ml`` in a container)."""

    base: Path = Path(DEFAULT_BASE_DIR)

    def __init__(self, base: str | os.PathLike[str] = DEFAULT_BASE_DIR) -> None:
        object.__setattr__(self, "base", Path(base))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Paths:
        """The layout under ``$SAGEMAKER_BASE_DIR`` when set, else ``/opt/ml``."""
        env = os.environ if environ is None else environ
        return cls(env.get(BASE_DIR_ENV) or DEFAULT_BASE_DIR)

    # input
    @property
    def input_dir(self) -> Path:
        return self.base / "input"

    @property
    def input_config_dir(self) -> Path:
        return self.input_dir / "config"

    @property
    def hyperparameters_file(self) -> Path:
        return self.input_config_dir / HYPERPARAMETERS_FILE

    @property
    def inputdataconfig_file(self) -> Path:
        return self.input_config_dir / INPUT_DATA_CONFIG_FILE

    @property
    def resourceconfig_file(self) -> Path:
        return self.input_config_dir / RESOURCE_CONFIG_FILE

    @property
    def data_dir(self) -> Path:
        return self.input_dir / "data"

    def channel_dir(self, channel: str) -> Path:
        """Where a File-mode channel's objects are staged."""
        return self.data_dir / channel

    def pipe_fifo(self, channel: str, epoch: int) -> Path:
        """The named pipe a Pipe-mode channel is read from in one epoch (from 0)."""
        return self.data_dir / f"{channel}_{epoch}"

    # model, output, checkpoints, code
    @property
    def model_dir(self) -> Path:
        return self.base / "model"

    @property
    def output_dir(self) -> Path:
        return self.base / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.output_dir / "data"

    @property
    def output_intermediate_dir(self) -> Path:
        return self.output_dir / "intermediate"

    @property
    def failure_file(self) -> Path:
        return self.output_dir / FAILURE_FILE

    @property
    def metrics_file(self) -> Path:
        return self.output_dir / METRICS_FILE

    @property
    def checkpoints_dir(self) -> Path:
        return self.base / "checkpoints"

    @property
    def code_dir(self) -> Path:
        return self.base / "code"

    def training_dirs(self) -> tuple[Path, ...]:
        """The directories SageMaker creates before a training container starts."""
        return (
            self.input_config_dir,
            self.data_dir,
            self.model_dir,
            self.output_data_dir,
            self.checkpoints_dir,
        )

    def create_training_dirs(self) -> None:
        for directory in self.training_dirs():
            directory.mkdir(parents=True, exist_ok=True)


# --- the three config files ------------------------------------------------------------


def stringify_hyperparameters(values: Mapping[str, Any]) -> dict[str, str]:
    """hyperparameters.json holds strings only (SageMaker's API type is string -> string).

    Strings pass through unchanged; anything else is JSON-encoded, which is what
    SageMaker's Python SDK does and what the training toolkit decodes again.
    """
    return {
        str(name): value if isinstance(value, str) else json.dumps(value)
        for name, value in values.items()
    }


def build_input_data_config(channels: Iterable[ChannelConfig]) -> dict[str, dict[str, str]]:
    """inputdataconfig.json: one entry per channel, keyed by channel name.

    ``ContentType`` appears only when the channel names one, as in SageMaker's files.
    """
    config: dict[str, dict[str, str]] = {}
    for channel in channels:
        entry: dict[str, str] = {}
        if channel.content_type:
            entry["ContentType"] = channel.content_type
        entry["TrainingInputMode"] = channel.input_mode
        entry["S3DistributionType"] = channel.distribution
        entry["RecordWrapperType"] = channel.record_wrapper_type
        entry["CompressionType"] = channel.compression
        config[channel.name] = entry
    return config


def build_resource_config(
    *,
    hosts: list[str],
    current_host: str,
    instance_type: str | None = None,
    network_interface_name: str = DEFAULT_NETWORK_INTERFACE,
    group_name: str = DEFAULT_INSTANCE_GROUP,
) -> dict[str, Any]:
    """resourceconfig.json for one host of a homogeneous cluster."""
    if current_host not in hosts:
        raise ValueError(f"current host {current_host!r} is not one of the hosts {hosts}")
    instance_type = instance_type or DEFAULT_INSTANCE_TYPE
    return {
        "current_host": current_host,
        "current_instance_type": instance_type,
        "current_group_name": group_name,
        "hosts": list(hosts),
        "instance_groups": [
            {
                "instance_group_name": group_name,
                "instance_type": instance_type,
                "hosts": list(hosts),
            }
        ],
        "network_interface_name": network_interface_name,
    }


def _write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a reader never sees half a file.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def _read_json_object(path: Path) -> dict[str, Any]:
    value = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object, not {type(value).__name__}")
    return value


def write_hyperparameters(paths: Paths, hyperparameters: Mapping[str, Any]) -> None:
    _write_json(paths.hyperparameters_file, stringify_hyperparameters(hyperparameters))


def read_hyperparameters(paths: Paths) -> dict[str, str]:
    """The raw hyperparameters (strings), as the file holds them."""
    if not paths.hyperparameters_file.exists():
        return {}
    return {str(k): str(v) for k, v in _read_json_object(paths.hyperparameters_file).items()}


def decode_hyperparameters(raw: Mapping[str, str]) -> dict[str, Any]:
    """Each value JSON-decoded when it parses, else kept as a string (the toolkit's rule)."""
    decoded: dict[str, Any] = {}
    for name, value in raw.items():
        try:
            decoded[name] = json.loads(value)
        except (ValueError, TypeError):
            decoded[name] = value
    return decoded


def write_input_data_config(paths: Paths, config: Mapping[str, Mapping[str, str]]) -> None:
    _write_json(paths.inputdataconfig_file, dict(config))


def read_input_data_config(paths: Paths) -> dict[str, dict[str, str]]:
    if not paths.inputdataconfig_file.exists():
        return {}
    return _read_json_object(paths.inputdataconfig_file)


def write_resource_config(paths: Paths, config: Mapping[str, Any]) -> None:
    _write_json(paths.resourceconfig_file, dict(config))


def read_resource_config(paths: Paths) -> dict[str, Any]:
    return _read_json_object(paths.resourceconfig_file)


# --- SM_* environment variables ----------------------------------------------------------

# Hyperparameters the training toolkit consumes itself and keeps out of SM_HPS.
SAGEMAKER_PREFIX = "sagemaker_"
SAGEMAKER_HYPERPARAMETERS = (
    "sagemaker_program",
    "sagemaker_submit_directory",
    "sagemaker_enable_cloudwatch_metrics",
    "sagemaker_region",
    "sagemaker_container_log_level",
    "sagemaker_job_name",
    "default_user_module_name",
    "_tuning_objective_metric",
    "sagemaker_s3_output",
)
# A framework parameter set to true puts the current group into distribution.
_DISTRIBUTION_FLAGS = (
    "sagemaker_mpi_enabled",
    "sagemaker_parameter_server_enabled",
    "sagemaker_distributed_dataparallel_enabled",
    "sagemaker_pytorch_ddp_enabled",
    "sagemaker_pytorch_xla_multi_worker_enabled",
    "sagemaker_multi_worker_mirrored_strategy_enabled",
    "sagemaker_torch_distributed_enabled",
)
DEFAULT_LOG_LEVEL = 20  # logging.INFO, without importing logging's configuration here

# Environment names SageMaker's platform sets for a training container.
TRAINING_JOB_NAME_ENV = "TRAINING_JOB_NAME"
TRAINING_JOB_ARN_ENV = "TRAINING_JOB_ARN"


def build_training_env(
    paths: Paths,
    *,
    hyperparameters: Mapping[str, str],
    input_data_config: Mapping[str, Mapping[str, str]],
    resource_config: Mapping[str, Any],
    num_cpus: int,
    num_gpus: int = 0,
    num_neurons: int = 0,
    job_name: str | None = None,
    framework_module: str | None = None,
) -> dict[str, str]:
    """The ``SM_*`` variables sagemaker-training-toolkit exports to a user's script.

    A pure function of the three config files' contents (``hyperparameters`` raw, as in
    hyperparameters.json) and of the host's processor counts. Names and value formats
    follow the toolkit's ``Environment.to_env_vars``: strings as they are, everything
    else compact JSON with sorted keys; ``SM_TRAINING_ENV`` is the whole environment.
    """
    decoded = decode_hyperparameters(hyperparameters)
    sagemaker_hps = {
        k: v
        for k, v in decoded.items()
        if k in SAGEMAKER_HYPERPARAMETERS or k.startswith(SAGEMAKER_PREFIX)
    }
    user_hps = {k: v for k, v in decoded.items() if k not in sagemaker_hps}
    framework_params = {
        k: v for k, v in sagemaker_hps.items() if k not in SAGEMAKER_HYPERPARAMETERS
    }

    hosts = list(resource_config["hosts"])
    current_host = str(resource_config["current_host"])
    instance_type = resource_config.get("current_instance_type", DEFAULT_INSTANCE_TYPE)
    current_group = resource_config.get("current_group_name", DEFAULT_INSTANCE_GROUP)
    group_configs: list[dict[str, Any]] = list(resource_config.get("instance_groups", []))
    instance_groups = [g["instance_group_name"] for g in group_configs]
    instance_groups_dict = {g["instance_group_name"]: g for g in group_configs}
    current_group_hosts: list[str] = next(
        (g["hosts"] for g in group_configs if g["instance_group_name"] == current_group), []
    )
    if "sagemaker_distribution_instance_groups" in framework_params:
        distribution_groups = framework_params["sagemaker_distribution_instance_groups"]
    elif any(framework_params.get(flag, False) for flag in _DISTRIBUTION_FLAGS):
        distribution_groups = [current_group]
    else:
        distribution_groups = []
    if group_configs:
        distribution_hosts = [
            h
            for g in group_configs
            if g["instance_group_name"] in distribution_groups
            for h in g["hosts"]
        ]
    else:
        distribution_hosts = list(hosts)
    master_hostname = distribution_hosts[0] if distribution_hosts else hosts[0]

    program = sagemaker_hps.get("sagemaker_program")
    module_name = str(program)
    if module_name.endswith(".py"):
        module_name = module_name[:-3]
    channel_dirs = {name: str(paths.channel_dir(name)) for name in input_data_config}
    mp_parameters = user_hps.get("mp_parameters")

    training_env: dict[str, Any] = {
        "additional_framework_parameters": framework_params,
        "channel_input_dirs": channel_dirs,
        "current_host": current_host,
        "current_instance_group": current_group,
        "current_instance_group_hosts": current_group_hosts,
        "current_instance_type": instance_type,
        "distribution_hosts": distribution_hosts,
        "distribution_instance_groups": distribution_groups,
        "framework_module": framework_module,
        "hosts": hosts,
        "hyperparameters": user_hps,
        "input_config_dir": str(paths.input_config_dir),
        "input_data_config": dict(input_data_config),
        "input_dir": str(paths.input_dir),
        "instance_groups": instance_groups,
        "instance_groups_dict": instance_groups_dict,
        "is_hetero": len(instance_groups) > 1,
        "is_master": current_host == master_hostname,
        "is_modelparallel_enabled": bool(mp_parameters) and mp_parameters != {},
        "is_smddpmprun_installed": False,
        "is_smddprun_installed": False,
        "job_name": job_name,
        "log_level": sagemaker_hps.get("sagemaker_container_log_level", DEFAULT_LOG_LEVEL),
        "master_hostname": master_hostname,
        "model_dir": str(paths.model_dir),
        "module_dir": str(sagemaker_hps.get("sagemaker_submit_directory", paths.code_dir)),
        "module_name": module_name,
        "network_interface_name": resource_config.get(
            "network_interface_name", DEFAULT_NETWORK_INTERFACE
        ),
        "num_cpus": num_cpus,
        "num_gpus": num_gpus,
        "num_neurons": num_neurons,
        "output_data_dir": str(paths.output_data_dir),
        "output_dir": str(paths.output_dir),
        "output_intermediate_dir": str(paths.output_intermediate_dir),
        "resource_config": dict(resource_config),
        "topology": list(resource_config.get("topology", [])),
        "user_entry_point": program,
    }

    env: dict[str, Any] = {
        "hosts": hosts,
        "network_interface_name": training_env["network_interface_name"],
        "hps": user_hps,
        "user_entry_point": program,
        "framework_params": framework_params,
        "resource_config": training_env["resource_config"],
        "input_data_config": training_env["input_data_config"],
        "output_data_dir": training_env["output_data_dir"],
        "channels": sorted(channel_dirs),
        "current_host": current_host,
        "current_instance_type": instance_type,
        "current_instance_group": current_group,
        "current_instance_group_hosts": current_group_hosts,
        "instance_groups": instance_groups,
        "instance_groups_dict": instance_groups_dict,
        "distribution_instance_groups": distribution_groups,
        "is_hetero": training_env["is_hetero"],
        "module_name": module_name,
        "log_level": training_env["log_level"],
        "framework_module": framework_module,
        "input_dir": training_env["input_dir"],
        "input_config_dir": training_env["input_config_dir"],
        "output_dir": training_env["output_dir"],
        "num_cpus": num_cpus,
        "num_gpus": num_gpus,
        "num_neurons": num_neurons,
        "model_dir": training_env["model_dir"],
        "module_dir": training_env["module_dir"],
        "training_env": training_env,
        "user_args": to_cmd_args(user_hps),
        "output_intermediate_dir": training_env["output_intermediate_dir"],
    }
    if training_env["topology"]:
        env["topology"] = training_env["topology"]
    for name, path in channel_dirs.items():
        env[f"channel_{name}"] = path
    for name, value in user_hps.items():
        env[f"hp_{name}"] = value
    variables = {f"SM_{key.upper()}": _env_value(value) for key, value in env.items()}
    if job_name:
        variables[TRAINING_JOB_NAME_ENV] = job_name
    return variables


def _env_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def to_cmd_args(hyperparameters: Mapping[str, Any]) -> list[str]:
    """Hyperparameters as script arguments, the toolkit's way (``SM_USER_ARGS``).

    Sorted by name; ``--name`` (``-n`` for one letter); a mapping becomes ``k=v,k2=v2``;
    other values are Python's ``str`` of the decoded value (so ``true`` becomes ``True``).
    """
    args: list[str] = []
    for name in sorted(hyperparameters):
        value = hyperparameters[name]
        args.append(f"--{name}" if len(name) > 1 else f"-{name}")
        if isinstance(value, Mapping):
            args.append(",".join(f"{k}={v}" for k, v in sorted(value.items())))
        else:
            args.append("" if value is None else str(value))
    return args


# --- failure file ------------------------------------------------------------------------


def write_failure(paths: Paths, message: str) -> None:
    """Leave the reason for a failed run where SageMaker (and the agent) looks for it."""
    paths.failure_file.parent.mkdir(parents=True, exist_ok=True)
    paths.failure_file.write_text(message, encoding="utf-8")


def read_failure(paths: Paths, limit: int = FAILURE_REASON_LIMIT) -> str | None:
    """The failure file's text, stripped and cut to SageMaker's 1024-character limit."""
    try:
        text = paths.failure_file.read_text(encoding="utf-8", errors="replace").strip()
    except FileNotFoundError:
        return None
    if not text:
        return None
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- serving -----------------------------------------------------------------------------

DEFAULT_SERVING_PORT = 8080
# SageMaker hosting and batch transform configure a serving container through these.
SERVING_BIND_TO_PORT_ENV = "SAGEMAKER_BIND_TO_PORT"
SERVING_SAFE_PORT_RANGE_ENV = "SAGEMAKER_SAFE_PORT_RANGE"
SERVING_MODEL_SERVER_WORKERS_ENV = "SAGEMAKER_MODEL_SERVER_WORKERS"
SERVING_MODEL_SERVER_TIMEOUT_ENV = "SAGEMAKER_MODEL_SERVER_TIMEOUT"
SERVING_STARTUP_TIMEOUT_ENV = "SAGEMAKER_STARTUP_TIMEOUT"
SERVING_DEFAULT_INVOCATIONS_ACCEPT_ENV = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"
SERVING_PROGRAM_ENV = "SAGEMAKER_PROGRAM"
SERVING_SUBMIT_DIRECTORY_ENV = "SAGEMAKER_SUBMIT_DIRECTORY"
SERVING_REGION_ENV = "SAGEMAKER_REGION"
SERVING_LOG_LEVEL_ENV = "SAGEMAKER_CONTAINER_LOG_LEVEL"
SERVING_MULTI_MODEL_ENV = "SAGEMAKER_MULTI_MODEL"
# Batch transform: the largest request body (MB) and how records are batched.
SERVING_MAX_PAYLOAD_IN_MB_ENV = "SAGEMAKER_MAX_PAYLOAD_IN_MB"
SERVING_BATCH_STRATEGY_ENV = "SAGEMAKER_BATCH_STRATEGY"
SERVING_MAX_CONCURRENT_TRANSFORMS_ENV = "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"
SERVING_DEFAULTS = {
    SERVING_BIND_TO_PORT_ENV: str(DEFAULT_SERVING_PORT),
    SERVING_MODEL_SERVER_TIMEOUT_ENV: "60",
    SERVING_STARTUP_TIMEOUT_ENV: "600",
    SERVING_DEFAULT_INVOCATIONS_ACCEPT_ENV: "application/json",
}


def serving_port(environ: Mapping[str, str] | None = None) -> int:
    """The port a serving container listens on: ``SAGEMAKER_BIND_TO_PORT``, else 8080."""
    env = os.environ if environ is None else environ
    return int(env.get(SERVING_BIND_TO_PORT_ENV) or DEFAULT_SERVING_PORT)
