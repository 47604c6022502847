"""``kubemaker local transform``: a BatchTransform on this machine.

The same two parts as in a transform pod: the model's own server (``serve`` of its
algorithm, with the environment SageMaker gives a server in a batch transform:
:func:`kubemaker.builders.transform.server_environment`) and the transformer of
:mod:`kubemaker_runtime.transform`, fed the
:class:`~kubemaker_runtime.protocol.TransformConfig` the operator would build. The
model is a local training job (``trainingJobRef``), or ``modelDataUrl`` with the
algorithm, framework or image that serves it. One transformer takes every input object
(``instanceCount`` divides them among pods on a cluster); an interrupted run started
again skips the objects whose ``.out`` is already written.

A progress line (objects and records done, records/s) is redrawn on a terminal (at
most 4 times a second), else printed every 10 s and at the end; the summary and
``<workdir>/<name>/batchtransform.json`` (the status) are written at the end. Exit
codes: 0 Completed, 1 Failed (the reason is printed), 2 nothing ran, 130 stopped
(Ctrl-C).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from kubemaker.api import BatchTransform
from kubemaker.builders.storage import storage_settings
from kubemaker.builders.transform import server_environment, transform_config
from kubemaker.config import OperatorConfig
from kubemaker.local import launch, serving
from kubemaker.local.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UnsupportedError
from kubemaker.local.progress import format_duration
from kubemaker_runtime.protocol import TransformReport
from kubemaker_runtime.transform.runner import Progress, Transformer, TransformError

logger = logging.getLogger(__name__)

RECORD = "batchtransform.json"
PROGRESS_SECONDS = 10.0
REDRAW_SECONDS = 0.25
_UNSUPPORTED_SCHEMES = ("pvc://",)


class ProgressLine:
    """Objects and records done, redrawn in place on a terminal, else every 10 s."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.last = 0.0
        self._lock = threading.Lock()

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        with self._lock:
            # Called after every request: a terminal is redrawn 4 times a second at most.
            every = REDRAW_SECONDS if self.live else PROGRESS_SECONDS
            done = progress.objects_done == progress.objects_total
            if now - self.last < every and not done:
                return
            self.last = now
            elapsed = max(now - progress.started, 1e-9)
            text = (
                f"kubemaker: {progress.objects_done}/{progress.objects_total} objects, "
                f"{progress.records} records ({progress.records / elapsed:,.0f}/s), "
                f"{format_duration(elapsed)}"
            )
            end = "" if self.live else "\n"
            self.stream.write(("\r\x1b[2K" if self.live else "") + text + end)
            self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")


def check_local(job: BatchTransform) -> None:
    spec = job.spec
    for field_name, uri in (
        ("spec.transformInput", spec.transform_input.source_uri),
        ("spec.transformOutput.s3OutputPath", spec.transform_output.s3_output_path),
        ("spec.model.modelDataUrl", spec.model.model_data_url or ""),
    ):
        if uri.startswith(_UNSUPPORTED_SCHEMES):
            raise UnsupportedError(
                f"{field_name}: {uri}: a PersistentVolumeClaim exists on a cluster only; "
                "use file:// or s3:// locally"
            )


def run_transform(
    job: BatchTransform,
    *,
    workdir: Path,
    config: OperatorConfig,
    startup_timeout: float = 120.0,
) -> int:
    """Serve the model, transform every input object, write the record; the exit code."""
    check_local(job)
    spec, name = job.spec, job.metadata.name
    storage = storage_settings(spec.storage, config)
    served = serving.from_model_source(spec.model, "spec", storage, workdir, config)
    served = replace(served, environment={**served.environment, **server_environment(spec)})
    started_at = datetime.now(UTC)
    progress = ProgressLine()
    with contextlib.ExitStack() as cleanup:
        base = Path(tempfile.mkdtemp(prefix="kubemaker-transform-"))
        cleanup.callback(shutil.rmtree, base, True)
        runtime = serving.prepare_model(served, base, config)
        port = launch.free_port(launch.LOOPBACK)
        with serving.stop_signals() as stop:
            server = serving.start_server(
                served,
                runtime,
                base,
                address=launch.LOOPBACK,
                port=port,
                workers=spec.max_concurrent_transforms or 1,
                cleanup=cleanup,
            )
            if not serving.wait_for_ping(server.url, server.process, startup_timeout, stop):
                return EXIT_INTERRUPTED
            settings = transform_config(spec, job_name=name, storage=storage, server_url=server.url)
            # One transformer takes every object here: on a cluster, each pod its share.
            settings = settings.model_copy(update={"instance_count": 1})
            logger.info("transforming %s with %s", settings.input_uri, runtime.describe())
            try:
                report = Transformer(settings, stop=stop, on_progress=progress).run()
            except TransformError as exc:  # a setting refused before any object
                report = TransformReport(
                    outcome="Failed", failure_reason=exc.message, error_kind=exc.kind
                )
            progress.close()
    _write_record(workdir / name, job, report, started_at)
    print(summary(name, report, spec.transform_output.s3_output_path), flush=True)
    if report.outcome == "Failed":
        print(f"kubemaker local transform: {report.failure_reason}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_INTERRUPTED if report.outcome == "Stopped" else EXIT_OK


def summary(name: str, report: TransformReport, output: str) -> str:
    skipped = f" ({report.objects_skipped} already done)" if report.objects_skipped else ""
    return (
        f"BatchTransform {name}: {report.outcome}: {report.objects_done} of "
        f"{report.objects_total} objects{skipped}, {report.records} records -> {output}"
    )


def _write_record(
    job_dir: Path, job: BatchTransform, report: TransformReport, started: datetime
) -> None:
    """The status a cluster would show, beside the local training jobs' records."""
    job_dir.mkdir(parents=True, exist_ok=True)
    status = {
        "transformJobStatus": report.outcome,
        "transformStartTime": started.isoformat(),
        "transformEndTime": datetime.now(UTC).isoformat(),
        "objectCounters": {
            "total": report.objects_total,
            "completed": report.objects_done,
            "failed": int(report.outcome == "Failed"),
        },
        "failureReason": report.failure_reason,
    }
    body = job.model_dump(mode="json", by_alias=True, exclude_none=True)
    body["status"] = {k: v for k, v in status.items() if v is not None}
    path = job_dir / RECORD
    path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
