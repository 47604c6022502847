"""What the BatchTransform planner reads of its pods: small, immutable views.

The Job itself is read as the TrainingJob's :class:`~.training_views.JobView`. A pod's
view carries its completion index, whether and why it cannot run (unschedulable, an
image that cannot be pulled, a model that cannot be fetched), where its transformer's
metrics can be read while it runs, and the transformer's
:class:`~kubemaker_runtime.protocol.TransformReport` once it has ended, parsed once
when the watch delivers the pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubemaker.builders.endpoint import MODEL_CONTAINER
from kubemaker.builders.transform import (
    LABEL_BATCH_TRANSFORM,
    SERVER_CONTAINER,
    TRANSFORMER_CONTAINER,
)
from kubemaker.planners.training_views import PodView
from kubemaker_runtime.protocol import TransformReport

# Waiting reasons that do not go away by themselves: the pod is stuck, say why.
STUCK_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "CrashLoopBackOff",
    }
)
_WHAT = {
    MODEL_CONTAINER: "fetching the model",
    SERVER_CONTAINER: "the model server",
    TRANSFORMER_CONTAINER: "the transformer",
}


@dataclass(frozen=True, slots=True)
class TransformPodView:
    """One transform pod, reduced to what the planner reads."""

    name: str
    index: int | None
    phase: str
    deleting: bool = False
    ip: str | None = None
    running: bool = False  # the transformer runs: its metrics can be read
    problem: str | None = None  # why it cannot go on by itself
    exit_code: int | None = None  # the transformer's, once it ended
    report: TransformReport | None = None
    report_error: str | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> TransformPodView:
        pod = PodView.from_body(body)  # index, phase, disruption, unschedulable
        status = body.get("status") or {}
        problem = pod.unschedulable and f"unschedulable: {pod.unschedulable}"
        transformer = None
        for entry in [
            *(status.get("initContainerStatuses") or ()),
            *(status.get("containerStatuses") or ()),
        ]:
            name = entry.get("name")
            state = entry.get("state") or {}
            waiting = state.get("waiting") or {}
            terminated = state.get("terminated") or {}
            if name == TRANSFORMER_CONTAINER:
                transformer = state
            if waiting.get("reason") in STUCK_REASONS and problem is None:
                what = _WHAT.get(str(name), f"container {name}")
                detail = waiting.get("message") or ""
                problem = f"{what}: {waiting['reason']}{': ' if detail else ''}{detail}"
            elif name == MODEL_CONTAINER and terminated.get("exitCode") not in (None, 0):
                problem = f"fetching the model failed: {terminated.get('message') or 'no message'}"
        ended = (transformer or {}).get("terminated") or {}
        report, error = None, None
        if ended.get("message"):
            try:
                report = TransformReport.model_validate_json(str(ended["message"]))
            except ValueError as exc:
                error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        exit_code = ended.get("exitCode")
        return cls(
            name=pod.name,
            index=pod.index,
            phase=pod.phase,
            deleting=pod.deleting,
            ip=status.get("podIP"),
            running=bool((transformer or {}).get("running")) and not pod.deleting,
            problem=problem,
            exit_code=int(exit_code) if exit_code is not None else None,
            report=report,
            report_error=error,
        )

    @property
    def terminal(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


def owner_key(body: Mapping[str, Any]) -> str | None:
    """The BatchTransform (child base name) a labelled Job or pod belongs to."""
    labels = (body.get("metadata") or {}).get("labels") or {}
    owner = labels.get(LABEL_BATCH_TRANSFORM)
    return str(owner) if owner else None
