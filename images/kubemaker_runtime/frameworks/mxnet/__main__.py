"""The MXNet image's entry point: ``python -m kubemaker_runtime.frameworks.mxnet train|serve``.

SageMaker starts a training container with the argument ``train`` and a serving one
with ``serve``; the operator and local mode do the same. ``/opt/ml`` may be moved with
``SAGEMAKER_BASE_DIR`` (local mode and tests do).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kubemaker_runtime.frameworks.mxnet",
        description="kubemaker's MXNet framework container (SageMaker-compatible).",
    )
    parser.add_argument("command", choices=["train", "serve"])
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s kubemaker-mxnet: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "train":
        from kubemaker_runtime.frameworks.mxnet import training

        return training.main()
    from kubemaker_runtime.frameworks.mxnet import serving

    return serving.main()


if __name__ == "__main__":
    sys.exit(main())
