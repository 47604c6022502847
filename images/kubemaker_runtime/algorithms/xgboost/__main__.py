"""``python -m kubemaker_runtime.algorithms.xgboost train|serve`` (the image's entrypoint).

Like SageMaker's containers, the image runs with the single argument ``train`` or
``serve``. Both read the container contract under ``$SAGEMAKER_BASE_DIR`` (default
``/opt/ml``), so local mode and tests run them against any directory.

Like SageMaker's XGBoost container, the image is also the XGBoost framework's: a job
that names an entry point (the ``sagemaker_program`` hyperparameter) trains in script
mode, and a model served with ``SAGEMAKER_PROGRAM`` or with its code (``code/``) is
served with the script's handler functions (:mod:`kubemaker_runtime.frameworks.xgboost`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from kubemaker_runtime import contract
from kubemaker_runtime.frameworks.xgboost import mode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xgboost")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train on the channels under <base>/input")
    train.add_argument("--base-dir", help="default: $SAGEMAKER_BASE_DIR or /opt/ml")
    serve = commands.add_parser("serve", help="serve <base>/model on $SAGEMAKER_BIND_TO_PORT")
    serve.add_argument("--base-dir", help="default: $SAGEMAKER_BASE_DIR or /opt/ml")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    paths = contract.Paths(args.base_dir) if args.base_dir else contract.Paths.from_env()
    if args.command == "train":
        if mode.trains_script(paths):
            from kubemaker_runtime.frameworks.xgboost import training

            logging.getLogger(__name__).info("the job names an entry point: script mode")
            return training.train(paths, os.environ)

        from kubemaker_runtime.algorithms.xgboost.train import run

        return run(args.base_dir)

    from kubemaker_runtime.serving import serve as run_server

    explicit = os.environ.get("SM_MODEL_DIR") if not args.base_dir else None
    model_dir = Path(explicit) if explicit else paths.model_dir
    run_server(mode.model_factory(model_dir, os.environ), model_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
