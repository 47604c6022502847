"""What the Endpoint planner reads of its children: small views built once per watch event.

The controller keeps these in kopf indexes (no full bodies in memory): a
:class:`FleetView` per Deployment (fleets and the router) and a :class:`PodProblem`
per model-server pod that cannot start (the reason a fleet never becomes ready).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubemaker.builders import endpoint as eb
from kubemaker.builders import naming
from kubemaker.failures import clip

# Waiting reasons that do not resolve by themselves: the fleet will not become ready.
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


@dataclass(frozen=True)
class FleetView:
    name: str
    uid: str
    variant: str | None  # None for the router
    component: str
    replicas: int
    ready: int
    updated: int
    spec_count: int | None  # the spec's instance count when replicas were last set
    image: str | None
    model_data_url: str | None
    progress_failed: str | None  # the Deployment's ProgressDeadlineExceeded message
    observed: bool  # the Deployment controller has seen the current spec
    deleting: bool

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> FleetView:
        meta = body.get("metadata") or {}
        labels = meta.get("labels") or {}
        annotations = meta.get("annotations") or {}
        spec = body.get("spec") or {}
        status = body.get("status") or {}
        failed = None
        for condition in status.get("conditions") or ():
            if (
                condition.get("type") == "Progressing"
                and condition.get("status") == "False"
                and condition.get("reason") == "ProgressDeadlineExceeded"
            ):
                failed = str(condition.get("message") or "ProgressDeadlineExceeded")
        count = annotations.get(eb.ANNOTATION_SPEC_COUNT)
        return cls(
            name=str(meta.get("name")),
            uid=str(meta.get("uid") or ""),
            variant=labels.get(eb.LABEL_VARIANT),
            component=str(labels.get(naming.LABEL_COMPONENT) or ""),
            replicas=int(spec.get("replicas", 1)),
            ready=int(status.get("readyReplicas") or 0),
            updated=int(status.get("updatedReplicas") or 0),
            spec_count=int(count) if count and count.isdigit() else None,
            image=annotations.get(eb.ANNOTATION_IMAGE),
            model_data_url=annotations.get(eb.ANNOTATION_MODEL),
            progress_failed=failed,
            observed=int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0),
            deleting=bool(meta.get("deletionTimestamp")),
        )

    @property
    def settled(self) -> bool:
        """Every replica asked for is ready (0 of 0 counts)."""
        return self.observed and self.ready >= self.replicas


@dataclass(frozen=True)
class PodProblem:
    """Why a model-server pod is not starting, in words for the Endpoint's status."""

    pod: str
    fleet: str
    message: str

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> PodProblem | None:
        meta = body.get("metadata") or {}
        fleet = (meta.get("labels") or {}).get(eb.LABEL_FLEET)
        if not fleet:
            return None
        status = body.get("status") or {}
        for kind, containers in (
            ("init container", status.get("initContainerStatuses") or ()),
            ("container", status.get("containerStatuses") or ()),
        ):
            for container in containers:
                message = _container_problem(container)
                if message:
                    text = f"{kind} {container.get('name')}: {message}"
                    return cls(str(meta.get("name")), fleet, clip(text, 600))
        return None


def _container_problem(container: Mapping[str, Any]) -> str | None:
    state = container.get("state") or {}
    last = (container.get("lastState") or {}).get("terminated") or {}
    waiting = state.get("waiting") or {}
    reason = waiting.get("reason")
    if reason in STUCK_REASONS:
        detail = (last.get("message") or waiting.get("message") or "").strip()
        return f"{reason}: {detail}" if detail else str(reason)
    terminated = state.get("terminated") or {}
    if terminated and terminated.get("exitCode") not in (0, None):
        detail = (terminated.get("message") or terminated.get("reason") or "").strip()
        return f"exited with code {terminated.get('exitCode')}: {detail}"
    return None
