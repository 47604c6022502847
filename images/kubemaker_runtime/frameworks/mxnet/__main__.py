"""The MXNet image's entry point: ``python -m kubemaker_runtime.frameworks.mxnet train|serve``.

SageMaker starts a training container with the argument ``train`` and a serving one
with ``serve``; the operator and local mode do the same. ``/opt/ml`` may be moved with
``SAGEMAKER_BASE_DIR`` (local mode and tests do).
"""

import sys

from kubemaker_runtime.frameworks import run_entrypoint

if __name__ == "__main__":
    sys.exit(run_entrypoint("mxnet"))
