"""What a local run leaves in its job directory, and finding it again.

``<workdir>/<job>/trainingjob.json`` is the TrainingJob as the cluster would show it
(``kubectl get trainingjob -o json``): the spec that ran (relative ``file://`` URIs
resolved) and its status, in the API's own models. ``kubemaker local serve`` reads it
to find the model and the algorithm that serves it.

``<workdir>/<tuning job>/tuning.json`` is what ``kubemaker local tune`` leaves: a
``List`` of the TuningJob and its trials' TrainingJobs, as the cluster would show them.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kubemaker.api import TrainingJob
from kubemaker.local.errors import LocalError, ManifestError

RECORD_FILE = "trainingjob.json"
TUNING_RECORD = "tuning.json"
DEFAULT_WORKDIR = Path(".work") / "local"
WORKDIR_ENV = "KUBEMAKER_LOCAL_WORKDIR"
ANNOTATION_MANIFEST = "kubemaker.io/local-manifest"


def default_workdir() -> Path:
    return Path(os.environ.get(WORKDIR_ENV) or DEFAULT_WORKDIR)


def host_dir(job_dir: Path, index: int) -> Path:
    """The contract's base directory of one host (what /opt/ml is in a container)."""
    return job_dir / f"host-{index}"


def write_record(job_dir: Path, job: TrainingJob) -> Path:
    path = job_dir / RECORD_FILE
    body = job.model_dump(by_alias=True, exclude_none=True, mode="json")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_record(job_dir: Path) -> TrainingJob:
    path = job_dir / RECORD_FILE
    try:
        return TrainingJob.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LocalError(f"{job_dir} holds no local training job ({RECORD_FILE})") from None
    except (OSError, ValidationError) as exc:
        raise LocalError(f"{path} cannot be read: {exc}") from None


def read_tuning_record(
    workdir: Path, name: str, *, field: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The TuningJob a local tune of ``name`` left in ``workdir``, and every item of its
    record (the TuningJob and its trials); a ManifestError naming ``field`` else."""
    path = workdir / name / TUNING_RECORD
    try:
        items = json.loads(path.read_text(encoding="utf-8"))["items"]
        tuning = next(i for i in items if i.get("kind") == "TuningJob")
    except FileNotFoundError:
        raise ManifestError(
            f"{field}: no local tune of {name!r} in {workdir} (run `kubemaker local tune` "
            "of it first, with the same --workdir)"
        ) from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, StopIteration):
        raise ManifestError(f"{field}: {path} cannot be read") from None
    return tuning, items


def _end_time(job: TrainingJob) -> datetime:
    status = job.status
    when = status.training_end_time if status is not None else None
    return when or datetime.min.replace(tzinfo=UTC)


def latest_completed(workdir: Path) -> TrainingJob:
    """The job of the workdir that completed last."""
    jobs = []
    for record in sorted(workdir.glob(f"*/{RECORD_FILE}")):
        try:
            job = read_record(record.parent)
        except LocalError:
            continue
        if job.status is not None and job.status.training_job_status == "Completed":
            jobs.append(job)
    if not jobs:
        raise LocalError(
            f"no completed training job in {workdir}: run `kubemaker local train -f ...` "
            "first, or name a model with --model"
        )
    return max(jobs, key=_end_time)
