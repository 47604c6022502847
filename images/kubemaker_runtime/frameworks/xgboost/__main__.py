"""``python -m kubemaker_runtime.frameworks.xgboost train|serve``: XGBoost script mode.

Local mode starts ``framework: xgboost`` jobs this way (with the current interpreter:
XGBoost is the runtime's own dependency). The XGBoost image keeps its entrypoint, the
built-in algorithm's, which comes here when the job names an entry point (see
:mod:`.mode`). ``/opt/ml`` may be moved with ``SAGEMAKER_BASE_DIR``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kubemaker_runtime.frameworks.xgboost",
        description="kubemaker's XGBoost framework container (SageMaker script mode).",
    )
    parser.add_argument("command", choices=["train", "serve"])
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s kubemaker-xgboost: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "train":
        from kubemaker_runtime.frameworks.xgboost import training

        return training.main()
    from kubemaker_runtime.frameworks.xgboost import serving

    return serving.main()


if __name__ == "__main__":
    sys.exit(main())
