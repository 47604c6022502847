"""``python -m kubemaker_runtime.algorithms.xgboost train|serve`` (the image's entrypoint).

Like SageMaker's containers, the image runs with the single argument ``train`` or
``serve``. Both read the container contract under ``$SAGEMAKER_BASE_DIR`` (default
``/opt/ml``), so local mode and tests run them against any directory.
"""

from __future__ import annotations

import argparse
import logging
import sys

MODEL_FACTORY = "kubemaker_runtime.algorithms.xgboost.serve:XGBoostModel"


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
    if args.command == "train":
        from kubemaker_runtime.algorithms.xgboost.train import run

        return run(args.base_dir)

    import os

    from kubemaker_runtime import contract
    from kubemaker_runtime.serving import serve as run_server

    paths = contract.Paths(args.base_dir) if args.base_dir else contract.Paths.from_env()
    model_dir = os.environ.get("SM_MODEL_DIR") if not args.base_dir else None
    run_server(MODEL_FACTORY, model_dir or paths.model_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
