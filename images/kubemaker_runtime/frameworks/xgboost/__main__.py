"""``python -m kubemaker_runtime.frameworks.xgboost train|serve``: XGBoost script mode.

Local mode starts ``framework: xgboost`` jobs this way (with the current interpreter:
XGBoost is the runtime's own dependency). The XGBoost image keeps its entrypoint, the
built-in algorithm's, which comes here when the job names an entry point (see
:mod:`.mode`). ``/opt/ml`` may be moved with ``SAGEMAKER_BASE_DIR``.
"""

import sys

from kubemaker_runtime.frameworks import run_entrypoint

if __name__ == "__main__":
    sys.exit(run_entrypoint("xgboost"))
