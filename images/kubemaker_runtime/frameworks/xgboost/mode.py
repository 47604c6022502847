"""Which of its two modes the XGBoost image runs: the built-in algorithm or script mode.

SageMaker's XGBoost container decides by what the job gives it, and so does kubemaker's:

- ``train``: script mode when ``hyperparameters.json`` names an entry point
  (``sagemaker_program``, which the operator and local mode set from ``entryPoint``, as
  the SageMaker Python SDK sets it); otherwise the built-in algorithm;
- ``serve``: script mode when ``SAGEMAKER_PROGRAM`` is set (the operator sets it from the
  job's or the model's ``entryPoint``) or the model carries its code (``code/`` in
  model.tar.gz, where kubemaker's script-mode training puts it); otherwise the built-in
  algorithm's model server.

Pure functions of files and variables; nothing here imports xgboost.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from kubemaker_runtime import contract
from kubemaker_runtime.frameworks.usercode import MODEL_CODE_DIR

PROGRAM_HYPERPARAMETER = "sagemaker_program"
ALGORITHM_MODEL = "kubemaker_runtime.algorithms.xgboost.serve:XGBoostModel"
SCRIPT_MODEL = "kubemaker_runtime.frameworks.xgboost.serving:XGBoostScriptModel"


def trains_script(paths: contract.Paths) -> bool:
    """Whether the job's hyperparameters name an entry point (a missing or unreadable
    file is the built-in algorithm's to report)."""
    try:
        values = json.loads(paths.hyperparameters_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(values, dict) and bool(values.get(PROGRAM_HYPERPARAMETER))


def serves_script(model_dir: Path, environ: Mapping[str, str]) -> bool:
    """Whether a model is served with the script's handler functions."""
    return bool(environ.get(contract.SERVING_PROGRAM_ENV)) or (model_dir / MODEL_CODE_DIR).is_dir()


def model_factory(model_dir: Path, environ: Mapping[str, str]) -> str:
    """The model server's model class for ``model_dir``, as an import path."""
    return SCRIPT_MODEL if serves_script(model_dir, environ) else ALGORITHM_MODEL
