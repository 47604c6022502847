"""Run the router: granian worker processes (one by default), each with its own app.

The parent passes the settings to its workers through the environment (granian spawns
fresh processes that import :func:`worker_app`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import multiprocessing
import os
import shutil
import tempfile

from kubemaker_runtime.router.app import Router
from kubemaker_runtime.router.settings import RouterSettings
from kubemaker_runtime.serving.metrics import MULTIPROC_DIR_ENV

logger = logging.getLogger(__name__)

SETTINGS_ENV = "KUBEMAKER_ROUTER_SETTINGS"
LOG_LEVEL_ENV = "KUBEMAKER_ROUTER_LOG_LEVEL"


def worker_app() -> Router:
    """The app of one worker process (granian calls this in each worker)."""
    logging.basicConfig(
        level=os.environ.get(LOG_LEVEL_ENV, "INFO"),
        format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s",
    )
    return Router(RouterSettings(**json.loads(os.environ[SETTINGS_ENV])))


def event_loop(name: str) -> str:
    """granian's loop for a setting. "auto" is uvloop when installed, else asyncio; not
    granian's own "auto", which prefers rloop: with rloop 0.5 a request through aiohttp
    hung in the keep-alive race test (tests/dataplane/test_router.py)."""
    if name != "auto":
        return name
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def serve(settings: RouterSettings) -> None:
    """Serve until SIGTERM / SIGINT. Blocks."""
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.log import LogLevels

    os.environ[SETTINGS_ENV] = json.dumps(dataclasses.asdict(settings))
    os.environ.setdefault(LOG_LEVEL_ENV, logging.getLevelName(logging.getLogger().level))
    own_metrics_dir = None
    if settings.workers > 1 and not os.environ.get(MULTIPROC_DIR_ENV):
        own_metrics_dir = tempfile.mkdtemp(prefix="kubemaker-router-metrics-")
        os.environ[MULTIPROC_DIR_ENV] = own_metrics_dir
    multiprocessing.set_start_method("spawn", force=True)
    logger.info(
        "routing with %s on %s:%d with %d worker(s), event loop %s",
        settings.routes_path, settings.address, settings.port, settings.workers,
        event_loop(settings.loop),
    )  # fmt: skip
    try:
        Granian(
            "kubemaker_runtime.router.server:worker_app",
            address=settings.address,
            port=settings.port,
            interface=Interfaces.RSGI,
            workers=settings.workers,
            loop=Loops(event_loop(settings.loop)),
            http=HTTPModes.http1,  # as the model server: SageMaker's clients speak HTTP/1.1
            websockets=False,
            factory=True,
            log_level=LogLevels.warning,
            log_access=False,
            respawn_failed_workers=True,
        ).serve()
    finally:
        if own_metrics_dir:
            shutil.rmtree(own_metrics_dir, ignore_errors=True)
