"""``train``: run the user's XGBoost script as SageMaker's XGBoost container does.

Script mode only (SageMaker's XGBoost framework has no other interface): the entry
point runs as ``python <entryPoint> --name value ...`` with the ``SM_*`` variables, in
the code directory; its output passes through untouched, a failure leaves SageMaker's
``ExecuteUserScriptError`` text in ``/opt/ml/output/failure``, and on success the code
goes into the model directory. All of that is :mod:`kubemaker_runtime.frameworks.script`.

Several hosts: as on SageMaker, every host runs the script and the script coordinates
them (``SM_HOSTS``, ``SM_CURRENT_HOST``). XGBoost's collective with its tracker on the
first host, as the built-in algorithm uses it, is ``build_cluster`` + ``communicator``
of :mod:`kubemaker_runtime.algorithms.xgboost.distributed`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from kubemaker_runtime import contract
from kubemaker_runtime.frameworks import environment, script

logger = logging.getLogger(__name__)

FRAMEWORK_MODULE = "kubemaker_runtime.frameworks.xgboost"


@dataclass(frozen=True)
class TrainingEnvironment(environment.TrainingEnvironment):
    framework_module: ClassVar[str | None] = FRAMEWORK_MODULE


def launch(
    env: TrainingEnvironment, code_dir: Path, entry: Path, base_env: Mapping[str, str]
) -> script.Launch:
    if len(env.hosts) > 1:
        logger.info(
            "%d hosts: %s runs on each, as on SageMaker; joining them is the script's "
            "(SM_HOSTS, SM_CURRENT_HOST)",
            len(env.hosts),
            entry.name,
        )
    return script.script_launch(env, code_dir, entry, base_env)


def train(paths: contract.Paths, environ: Mapping[str, str]) -> int:
    """Run one host's part of a training job; the exit code of the container."""
    return script.train(paths, environ, environment=TrainingEnvironment, launch=launch)


def main(environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    return train(contract.Paths.from_env(env), env)
