"""What a training run of the MXNet image knows about itself, read from the contract.

The shared :class:`~kubemaker_runtime.frameworks.environment.TrainingEnvironment` (the
config files, GPUs and CPUs, the ``SM_*`` variables), plus what only MXNet reads: the
parameter-server flag of script mode and the keyword arguments of the ``train()``
interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from kubemaker_runtime.frameworks import environment

# SageMaker's switch for MXNet's parameter-server kvstore in script mode
# (``distribution={"parameter_server": {"enabled": True}}`` in the Python SDK).
PARAMETER_SERVER_FLAG = "sagemaker_parameter_server_enabled"
FRAMEWORK_MODULE = "kubemaker_runtime.frameworks.mxnet"


@dataclass(frozen=True)
class TrainingEnvironment(environment.TrainingEnvironment):
    framework_module: ClassVar[str | None] = FRAMEWORK_MODULE

    @property
    def parameter_server_enabled(self) -> bool:
        value = self.framework_parameters.get(PARAMETER_SERVER_FLAG, False)
        return value is True or str(value).lower() == "true"

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
