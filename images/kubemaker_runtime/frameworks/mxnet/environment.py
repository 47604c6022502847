"""What a training run of the MXNet image knows about itself, read from the contract.

The agent (or local mode) wrote the three config files before this container started;
this module reads them into one frozen :class:`TrainingEnvironment`, adds its GPUs and
CPUs (``SM_NUM_GPUS`` / ``SM_NUM_CPUS`` when given, else what the container sees: see
:mod:`kubemaker_runtime.processors`), and derives what the user's code is given: the
``SM_*`` variables for script mode, the keyword arguments for the ``train()`` interface.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubemaker_runtime import contract, processors

# SageMaker's switch for MXNet's parameter-server kvstore in script mode
# (``distribution={"parameter_server": {"enabled": True}}`` in the Python SDK).
PARAMETER_SERVER_FLAG = "sagemaker_parameter_server_enabled"
FRAMEWORK_MODULE = "kubemaker_runtime.frameworks.mxnet"


@dataclass(frozen=True)
class TrainingEnvironment:
    paths: contract.Paths
    raw_hyperparameters: dict[str, str]
    input_data_config: dict[str, dict[str, str]]
    resource_config: dict[str, Any]
    num_gpus: int
    num_cpus: int
    job_name: str | None = None
    hyperparameters: dict[str, Any] = field(init=False)
    framework_parameters: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        decoded = contract.decode_hyperparameters(self.raw_hyperparameters)
        framework = {
            k: v
            for k, v in decoded.items()
            if k in contract.SAGEMAKER_HYPERPARAMETERS or k.startswith(contract.SAGEMAKER_PREFIX)
        }
        object.__setattr__(self, "framework_parameters", framework)
        object.__setattr__(
            self, "hyperparameters", {k: v for k, v in decoded.items() if k not in framework}
        )

    @classmethod
    def load(
        cls, paths: contract.Paths, environ: Mapping[str, str] | None = None
    ) -> TrainingEnvironment:
        env = os.environ if environ is None else environ
        return cls(
            paths=paths,
            raw_hyperparameters=contract.read_hyperparameters(paths),
            input_data_config=contract.read_input_data_config(paths),
            resource_config=contract.read_resource_config(paths),
            num_gpus=processors.algorithm_gpus(env),
            num_cpus=processors.algorithm_cpus(env),
            job_name=env.get(contract.TRAINING_JOB_NAME_ENV) or None,
        )

    @property
    def hosts(self) -> list[str]:
        return [str(h) for h in self.resource_config["hosts"]]

    @property
    def current_host(self) -> str:
        return str(self.resource_config["current_host"])

    @property
    def network_interface_name(self) -> str:
        return str(
            self.resource_config.get("network_interface_name", contract.DEFAULT_NETWORK_INTERFACE)
        )

    @property
    def program(self) -> str | None:
        value = self.framework_parameters.get("sagemaker_program")
        return str(value) if value else None

    @property
    def submit_directory(self) -> str | None:
        value = self.framework_parameters.get("sagemaker_submit_directory")
        return str(value) if value else None

    @property
    def parameter_server_enabled(self) -> bool:
        value = self.framework_parameters.get(PARAMETER_SERVER_FLAG, False)
        return value is True or str(value).lower() == "true"

    def channel_input_dirs(self) -> dict[str, str]:
        return {name: str(self.paths.channel_dir(name)) for name in self.input_data_config}

    def sm_env(self, code_dir: Path) -> dict[str, str]:
        """The ``SM_*`` variables of sagemaker-training-toolkit for the user's script."""
        raw = dict(self.raw_hyperparameters)
        # SM_MODULE_DIR names where the code is now, not where it was fetched from.
        raw["sagemaker_submit_directory"] = str(code_dir)
        return contract.build_training_env(
            self.paths,
            hyperparameters=raw,
            input_data_config=self.input_data_config,
            resource_config=self.resource_config,
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
            job_name=self.job_name,
            framework_module=FRAMEWORK_MODULE,
        )

    def train_function_kwargs(self) -> dict[str, Any]:
        """Every argument SageMaker's original MXNet container offered ``train()``."""
        return {
            "hyperparameters": dict(self.hyperparameters),
            "input_data_config": dict(self.input_data_config),
            "channel_input_dirs": self.channel_input_dirs(),
            "output_data_dir": str(self.paths.output_data_dir),
            "model_dir": str(self.paths.model_dir),
            "num_gpus": self.num_gpus,
            "num_cpus": self.num_cpus,
            "hosts": self.hosts,
            "current_host": self.current_host,
        }
