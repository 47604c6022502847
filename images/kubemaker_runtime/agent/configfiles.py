"""The three files under /opt/ml/input/config, built from the agent's config."""

from __future__ import annotations

from typing import Any

from kubemaker_runtime import contract
from kubemaker_runtime.contract import Paths
from kubemaker_runtime.protocol import AgentConfig


def build_config_files(config: AgentConfig, host_index: int) -> dict[str, dict[str, Any]]:
    """hyperparameters.json, inputdataconfig.json and resourceconfig.json for one host."""
    return {
        contract.HYPERPARAMETERS_FILE: contract.stringify_hyperparameters(config.hyper_parameters),
        contract.INPUT_DATA_CONFIG_FILE: contract.build_input_data_config(config.channels),
        contract.RESOURCE_CONFIG_FILE: contract.build_resource_config(
            hosts=config.hosts,
            current_host=config.hosts[host_index],
            instance_type=config.instance_type,
            network_interface_name=config.network_interface_name,
        ),
    }


def write_config_files(config: AgentConfig, host_index: int, paths: Paths) -> None:
    files = build_config_files(config, host_index)
    contract.write_hyperparameters(paths, files[contract.HYPERPARAMETERS_FILE])
    contract.write_input_data_config(paths, files[contract.INPUT_DATA_CONFIG_FILE])
    contract.write_resource_config(paths, files[contract.RESOURCE_CONFIG_FILE])
