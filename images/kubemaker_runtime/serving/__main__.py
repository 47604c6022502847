"""``python -m kubemaker_runtime.serving --model package.module:ModelClass``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import replace

from kubemaker_runtime import contract
from kubemaker_runtime.serving.server import serve
from kubemaker_runtime.serving.settings import ServerSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubemaker_runtime.serving")
    parser.add_argument("--model", required=True, help="package.module:ModelFactory")
    parser.add_argument(
        "--model-dir",
        help="default: $SM_MODEL_DIR, else <$SAGEMAKER_BASE_DIR or /opt/ml>/model",
    )
    parser.add_argument("--port", type=int, help="default: $SAGEMAKER_BIND_TO_PORT or 8080")
    parser.add_argument("--address", help="default: $KUBEMAKER_BIND_ADDRESS or 0.0.0.0")
    parser.add_argument("--workers", type=int, help="default: $SAGEMAKER_MODEL_SERVER_WORKERS")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    serve(args.model, resolve_model_dir(args.model_dir), settings_with(args))
    return 0


def resolve_model_dir(explicit: str | None) -> str:
    return explicit or os.environ.get("SM_MODEL_DIR") or str(contract.Paths.from_env().model_dir)


def settings_with(args: argparse.Namespace) -> ServerSettings:
    settings = ServerSettings.from_env()
    overrides = {
        key: value
        for key, value in (
            ("port", args.port),
            ("address", args.address),
            ("workers", args.workers),
        )
        if value is not None
    }
    return replace(settings, **overrides)


if __name__ == "__main__":
    sys.exit(main())
