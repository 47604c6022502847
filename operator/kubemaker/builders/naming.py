"""Deterministic names and labels of a TrainingJob's children.

Names are derived from the TrainingJob's name and the attempt number only, so a
restarted operator finds (and never duplicates) what it created before. The API keeps
TrainingJob names to 52 characters (a DNS-1035 label), which leaves room for the
attempt suffix and the pod index within a 63-character host name.
"""

from __future__ import annotations

import hashlib

DOMAIN = "kubemaker.io"
LABEL_TRAINING_JOB = f"{DOMAIN}/training-job"
LABEL_ATTEMPT = f"{DOMAIN}/attempt"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_COMPONENT = "app.kubernetes.io/component"
MANAGED_BY = "kubemaker"
# Every pod the operator creates, whatever its kind (the pods' watch selector).
MANAGED_PODS = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
ANNOTATION_MODEL_ARTIFACTS = f"{DOMAIN}/model-artifacts"
LABEL_KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"
# Set by the Job controller on every pod of an Indexed Job.
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"

MAX_LABEL = 63
# Longest suffix a Job name gets ("-r30") plus a pod index ("-999").
_ROOM = len("-r30") + len("-999")


def _fit(name: str, limit: int) -> str:
    """``name`` if it fits in ``limit`` characters, else a shortened name with a hash."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-')}-{digest}"


def child_base(training_job: str) -> str:
    """The stem of every child's name (the TrainingJob's name when it is short enough)."""
    return _fit(training_job, MAX_LABEL - _ROOM)


def service_name(training_job: str) -> str:
    """The headless Service giving the job's pods their host names."""
    return child_base(training_job)


def job_name(training_job: str, attempt: int) -> str:
    """The batch/v1 Job of one attempt: ``{name}`` first, then ``{name}-r1``, ``-r2``..."""
    base = child_base(training_job)
    return base if attempt == 0 else f"{base}-r{attempt}"


def host_names(job: str, count: int) -> list[str]:
    """Host names of an Indexed Job's pods, as the Job controller sets them."""
    return [f"{job}-{index}" for index in range(count)]


def selector_labels(training_job: str) -> dict[str, str]:
    return {LABEL_TRAINING_JOB: child_base(training_job)}


def child_labels(training_job: str, attempt: int | None = None) -> dict[str, str]:
    labels = {
        **selector_labels(training_job),
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_COMPONENT: "training",
    }
    if attempt is not None:
        labels[LABEL_ATTEMPT] = str(attempt)
    return labels


def volume_name(prefix: str, name: str) -> str:
    """A pod volume name (a DNS-1123 label) for an object name that may be longer."""
    cleaned = "".join(c if c.isalnum() or c == "-" else "-" for c in name.lower()).strip("-")
    return _fit(f"{prefix}-{cleaned}", MAX_LABEL)
