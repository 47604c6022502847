"""``python -m kubemaker_runtime.router --routes /etc/kubemaker/router/routes.json``."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace

from kubemaker_runtime.router.server import serve
from kubemaker_runtime.router.settings import RouterSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubemaker_runtime.router")
    parser.add_argument(
        "--routes",
        help="routing table file (default: $KUBEMAKER_ROUTER_ROUTES, "
        "else /etc/kubemaker/router/routes.json)",
    )
    parser.add_argument("--port", type=int, help="default: $SAGEMAKER_BIND_TO_PORT or 8080")
    parser.add_argument("--address", help="default: $KUBEMAKER_BIND_ADDRESS or 0.0.0.0")
    parser.add_argument("--workers", type=int, help="default: $KUBEMAKER_ROUTER_WORKERS or 1")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = RouterSettings.from_env()
    overrides = {
        key: value
        for key, value in (
            ("routes_path", args.routes),
            ("port", args.port),
            ("address", args.address),
            ("workers", args.workers),
        )
        if value is not None
    }
    serve(replace(settings, **overrides))
    return 0


if __name__ == "__main__":
    sys.exit(main())
