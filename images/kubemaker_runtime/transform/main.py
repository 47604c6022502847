"""``kubemaker-agent transform``: a transform pod's main container.

Reads the :class:`~kubemaker_runtime.protocol.TransformConfig` (env
``KUBEMAKER_TRANSFORM_CONFIG`` or a file), takes its share of the objects (its index:
``JOB_COMPLETION_INDEX``, set by the Indexed Job), and runs the transformer against the
model server beside it. Progress is served as Prometheus metrics (the operator reads
them for the BatchTransform's status); the :class:`~kubemaker_runtime.protocol.TransformReport`
goes to the termination message. SIGTERM stops it between requests: the object being
written is left unwritten, to be redone.

Exit codes: 0 completed (or stopped); 3 (``TRANSFORM_USER_ERROR_EXIT``) failed because
the data or the model refused it, which the Job fails at once; 1 any other failure,
which the Job retries (the report says why).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType

from kubemaker_runtime.protocol import (
    TRANSFORM_CONFIG_ENV,
    TRANSFORM_USER_ERROR_EXIT,
    TransformConfig,
    TransformReport,
)
from kubemaker_runtime.transform.runner import Progress, Transformer, TransformError

logger = logging.getLogger(__name__)

INDEX_ENV = "JOB_COMPLETION_INDEX"


class Metrics:
    """The transformer's progress as gauges and counters (prometheus_client)."""

    def __init__(self, port: int) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

        self.registry = CollectorRegistry()
        self.objects = Gauge(
            "kubemaker_transform_objects",
            "Input objects: found (under the prefix, for every instance), total (this "
            "instance's share), done (written or found complete).",
            ["state"],
            registry=self.registry,
        )
        self.records = Counter(
            "kubemaker_transform_records",
            "Records transformed by this instance.",
            registry=self.registry,
        )
        self._seen = 0
        start_http_server(port, registry=self.registry)

    def __call__(self, progress: Progress) -> None:
        self.objects.labels("found").set(progress.objects_found)
        self.objects.labels("total").set(progress.objects_total)
        self.objects.labels("done").set(progress.objects_done)
        self.records.inc(progress.records - self._seen)
        self._seen = progress.records


def load_config(config_file: Path | None) -> TransformConfig:
    text = config_file.read_text() if config_file else os.environ.get(TRANSFORM_CONFIG_ENV)
    if not text:
        raise ValueError(f"no transform config: set {TRANSFORM_CONFIG_ENV} or pass --config-file")
    return TransformConfig.model_validate_json(text)


def run_transform(
    *, config_file: Path | None, index: int | None, metrics_port: int, termination_log: Path
) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s: stopping after the requests in flight", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        config = load_config(config_file)
        own = index if index is not None else int(os.environ.get(INDEX_ENV, "0") or 0)
        metrics = Metrics(metrics_port) if metrics_port else None
        report = Transformer(config, index=own, stop=stop, on_progress=metrics).run()
    except (ValueError, OSError) as exc:
        report = TransformReport(
            outcome="Failed", failure_reason=f"bad transform configuration: {exc}",
            error_kind="platform",
        )  # fmt: skip
    except TransformError as exc:
        report = TransformReport(outcome="Failed", failure_reason=exc.message, error_kind=exc.kind)
    message = report.to_message()
    logger.info("report: %s", message)
    try:
        termination_log.write_text(message, encoding="utf-8")
    except OSError as exc:  # outside a pod: the log line above is the report
        logger.debug("no termination log: %s", exc)
    if report.outcome != "Failed":
        return 0
    return TRANSFORM_USER_ERROR_EXIT if report.error_kind == "user" else 1
