"""The user's MXNet code: which of SageMaker's two MXNet interfaces it speaks.

Staging the code (``sagemaker_submit_directory``), finding the entry point, installing
requirements.txt and shipping the code with the model are every framework's:
:mod:`kubemaker_runtime.frameworks.usercode`, re-exported here.
"""

from __future__ import annotations

import ast
from typing import Literal

from kubemaker_runtime.frameworks.usercode import (
    MODEL_CODE_DIR,
    TARBALL_SUFFIXES,
    UserCodeError,
    copy_code_into_model,
    entry_point_path,
    install_requirements,
    stage_code,
)

Interface = Literal["script", "train-function"]


def detect_interface(source: str) -> Interface:
    """Which of SageMaker's two MXNet interfaces a script is written for.

    A module that defines ``train`` at top level and has no ``if __name__ ==
    "__main__"`` block is written for the original interface (the container calls
    ``train()``); anything else is run as a script (script mode), which is also what
    a script with both gets, as in SageMaker's MXNet containers since 1.3.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        # Run it: Python's own error message is the best explanation.
        return "script"
    has_train = any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "train"
        for node in tree.body
    )
    return "train-function" if has_train and not _has_main_guard(tree) else "script"


def _has_main_guard(tree: ast.Module) -> bool:
    for node in tree.body:
        if not isinstance(node, ast.If):
            continue
        test = node.test
        if (
            isinstance(test, ast.Compare)
            and isinstance(test.left, ast.Name)
            and test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
        ):
            return True
    return False


__all__ = [
    "MODEL_CODE_DIR",
    "TARBALL_SUFFIXES",
    "Interface",
    "UserCodeError",
    "copy_code_into_model",
    "detect_interface",
    "entry_point_path",
    "install_requirements",
    "stage_code",
]
