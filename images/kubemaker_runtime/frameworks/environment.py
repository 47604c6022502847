"""What a script-mode training run knows about itself, read from the contract.

The agent (or local mode) wrote the three config files before this container started;
this module reads them into one frozen :class:`TrainingEnvironment`, adds its GPUs and
CPUs (``SM_NUM_GPUS`` / ``SM_NUM_CPUS`` when given, else what the container sees: see
:mod:`kubemaker_runtime.processors`), and derives the ``SM_*`` variables the user's script
is given. A framework subclasses it to name its module (``SM_FRAMEWORK_MODULE``) and to
add what only it reads (MXNet's parameter-server flag, its ``train()`` arguments).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from kubemaker_runtime import contract, processors


@dataclass(frozen=True)
class TrainingEnvironment:
    #: The framework's training module, as ``SM_FRAMEWORK_MODULE`` names it.
    framework_module: ClassVar[str | None] = None

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
    def load(cls, paths: contract.Paths, environ: Mapping[str, str] | None = None) -> Self:
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
            framework_module=self.framework_module,
        )
