"""Run the model server: granian worker processes, each loading the model once.

:func:`serve` is what a serving image's ``serve`` entry point calls::

    serve("my_package.model:MyModel", model_dir="/opt/ml/model")

The first argument names a callable (usually the Model subclass itself) that takes the
model directory and returns a :class:`~kubemaker_runtime.serving.model.Model`. Each
worker imports it, builds the app (:func:`worker_app`) and loads the model in the
background; ``SAGEMAKER_BIND_TO_PORT`` and ``SAGEMAKER_MODEL_SERVER_WORKERS`` decide
the port and the number of workers.

Why granian: measured on this project's 2-core reference machine against
uvicorn+httptools+uvloop with the same minimal app, its RSGI interface served 1-row
CSV predictions faster and with a much lower p99 (see docs/model-server.md).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path

from kubemaker_runtime.serving.app import App, create_app
from kubemaker_runtime.serving.metrics import MULTIPROC_DIR_ENV
from kubemaker_runtime.serving.model import Model
from kubemaker_runtime.serving.settings import ServerSettings

logger = logging.getLogger(__name__)

# How the parent tells its workers what to load (workers import this module afresh).
MODEL_FACTORY_ENV = "KUBEMAKER_SERVING_MODEL"
MODEL_DIR_ENV = "KUBEMAKER_SERVING_MODEL_DIR"
LOG_LEVEL_ENV = "KUBEMAKER_SERVING_LOG_LEVEL"
SETTINGS_ENV = "KUBEMAKER_SERVING_SETTINGS"


def load_factory(spec: str) -> object:
    """Import ``module:attribute``."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"model factory {spec!r} must look like 'package.module:name'")
    target: object = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


def build_model(spec: str, model_dir: str | os.PathLike[str]) -> Model:
    factory = load_factory(spec)
    if not callable(factory):
        raise TypeError(f"model factory {spec!r} is not callable")
    model = factory(Path(model_dir))
    if not isinstance(model, Model):
        raise TypeError(f"model factory {spec!r} returned {type(model).__name__}, not a Model")
    return model


def worker_app() -> App:
    """The app of one worker process (granian calls this in each worker)."""
    _configure_worker_logging()
    model = build_model(os.environ[MODEL_FACTORY_ENV], os.environ[MODEL_DIR_ENV])
    settings = ServerSettings(**json.loads(os.environ[SETTINGS_ENV]))
    return create_app(model, settings)


def serve(
    model_factory: str,
    model_dir: str | os.PathLike[str],
    settings: ServerSettings | None = None,
) -> None:
    """Serve until SIGTERM / SIGINT. Blocks."""
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces
    from granian.log import LogLevels

    settings = settings or ServerSettings.from_env()
    # Fail here, in the parent, on a factory that does not import: clearer than N workers
    # dying one after another.
    load_factory(model_factory)
    os.environ[MODEL_FACTORY_ENV] = model_factory
    os.environ[MODEL_DIR_ENV] = str(model_dir)
    os.environ[SETTINGS_ENV] = json.dumps(dataclasses.asdict(settings))
    os.environ.setdefault(LOG_LEVEL_ENV, logging.getLevelName(logging.getLogger().level))
    own_metrics_dir = None
    if settings.workers > 1 and not os.environ.get(MULTIPROC_DIR_ENV):
        own_metrics_dir = tempfile.mkdtemp(prefix="kubemaker-metrics-")
        os.environ[MULTIPROC_DIR_ENV] = own_metrics_dir
    # Fresh worker processes, not forks: this process has imported numpy (its BLAS
    # thread pool) and the model's libraries, and a forked copy of their thread state
    # can deadlock the worker when it exits (SIGTERM hung with fork).
    multiprocessing.set_start_method("spawn", force=True)
    logger.info(
        "serving %s from %s on %s:%d with %d worker(s)",
        model_factory,
        model_dir,
        settings.address,
        settings.port,
        settings.workers,
    )
    try:
        Granian(
            "kubemaker_runtime.serving.server:worker_app",
            address=settings.address,
            port=settings.port,
            interface=Interfaces.RSGI,
            workers=settings.workers,
            # SageMaker's and the v2 REST clients speak HTTP/1.1; skipping per-connection
            # protocol detection bought ~10% more 1-row requests/s in the benchmark.
            http=HTTPModes.http1,
            websockets=False,
            factory=True,
            log_level=LogLevels.warning,
            log_access=False,
            # A worker that dies (out of memory, a crash in native code) is replaced
            # instead of taking the whole server down.
            respawn_failed_workers=True,
        ).serve()
    finally:
        if own_metrics_dir:
            shutil.rmtree(own_metrics_dir, ignore_errors=True)


def _configure_worker_logging() -> None:
    level = os.environ.get(LOG_LEVEL_ENV, "INFO")
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"
    )
