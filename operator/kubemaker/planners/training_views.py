"""What the TrainingJob planner reads of a job's children: small, immutable views.

The controller keeps one view per labelled Job and pod in kopf indexes (a few hundred
bytes each instead of whole objects), so 1000 jobs fit in the operator's memory budget.
Each view is built once, when the watch delivers the object; the agent's termination
message is parsed there too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubemaker.builders import naming
from kubemaker.builders.training import AGENT_CONTAINER, ALGORITHM_CONTAINER
from kubemaker_runtime.protocol import AgentReport

# Why a pod counts as disrupted by the platform, when kubelet sets no DisruptionTarget.
_DISRUPTED_REASONS = frozenset(
    {"Evicted", "Preempting", "NodeLost", "Shutdown", "Terminated", "UnexpectedAdmissionError"}
)
EXIT_CODE_IN_MESSAGE = re.compile(r"Container (\S+) for pod \S+ failed with exit code (\d+)")


def _int_label(value: object, default: int | None) -> int | None:
    return int(str(value)) if value is not None and str(value).isdigit() else default


@dataclass(frozen=True, slots=True)
class ContainerView:
    """The parts of a container status the planner reads."""

    name: str
    state: str  # waiting | running | terminated | unknown
    reason: str | None = None
    message: str | None = None
    exit_code: int | None = None
    started: bool = False
    started_at: str | None = None
    finished_at: str | None = None
    last_message: str | None = None  # lastState.terminated.message (a restarted sidecar)

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> ContainerView:
        state = status.get("state") or {}
        kind = next((k for k in ("terminated", "running", "waiting") if state.get(k)), None)
        detail = state.get(kind) or {} if kind else {}
        last = (status.get("lastState") or {}).get("terminated") or {}
        exit_code = detail.get("exitCode")
        return cls(
            name=str(status.get("name", "")),
            state=kind or ("running" if state.get("running") == {} else "unknown"),
            reason=detail.get("reason"),
            message=detail.get("message"),
            exit_code=int(exit_code) if exit_code is not None else None,
            started=bool(status.get("started")),
            started_at=detail.get("startedAt"),
            finished_at=detail.get("finishedAt"),
            last_message=last.get("message"),
        )

    def report(self) -> tuple[AgentReport | None, str | None]:
        """The AgentReport in this (agent) container's termination message, or why the
        message there could not be read (an agent of an incompatible version)."""
        error: str | None = None
        for text in (self.message if self.state == "terminated" else None, self.last_message):
            if text:
                try:
                    return AgentReport.from_message(text), None
                except ValueError as exc:
                    error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, error


@dataclass(frozen=True, slots=True)
class PodView:
    """One training pod, reduced to what the planner reads."""

    name: str
    attempt: int
    index: int | None
    phase: str
    deleting: bool = False
    reason: str | None = None
    message: str | None = None
    disruption: str | None = None  # why it was disrupted (eviction, preemption, node loss)
    unschedulable: str | None = None
    start_time: str | None = None
    # The operator set the pod's activeDeadlineSeconds to stop it (the pod stays).
    expiring: bool = False
    agent: ContainerView | None = None
    algorithm: ContainerView | None = None
    # Parsed once, when the pod is observed: the agent's termination message, or why
    # it could not be read.
    agent_report: AgentReport | None = None
    report_error: str | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> PodView:
        meta = body.get("metadata") or {}
        labels = meta.get("labels") or {}
        annotations = meta.get("annotations") or {}
        status = body.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or ()}
        disruption = None
        target = conditions.get("DisruptionTarget")
        if target is not None and target.get("status") == "True":
            disruption = (
                " ".join(x for x in (target.get("reason"), target.get("message")) if x)
                or "DisruptionTarget"
            )
        elif status.get("reason") in _DISRUPTED_REASONS:
            disruption = " ".join(x for x in (status.get("reason"), status.get("message")) if x)
        unschedulable = None
        scheduled = conditions.get("PodScheduled")
        if scheduled is not None and scheduled.get("status") == "False":
            unschedulable = scheduled.get("message") or scheduled.get("reason") or "Unschedulable"
        containers = {
            c.get("name"): ContainerView.from_status(c)
            for c in (status.get("initContainerStatuses") or [])
            + (status.get("containerStatuses") or [])
        }
        agent = containers.get(AGENT_CONTAINER)
        report, error = agent.report() if agent is not None else (None, None)
        return cls(
            name=str(meta.get("name", "")),
            attempt=_int_label(labels.get(naming.LABEL_ATTEMPT), 0) or 0,
            index=_int_label(
                labels.get(naming.COMPLETION_INDEX, annotations.get(naming.COMPLETION_INDEX)), None
            ),
            phase=str(status.get("phase") or "Pending"),
            deleting=bool(meta.get("deletionTimestamp")),
            reason=status.get("reason"),
            message=status.get("message"),
            disruption=disruption,
            unschedulable=unschedulable,
            start_time=status.get("startTime"),
            expiring=(body.get("spec") or {}).get("activeDeadlineSeconds") is not None,
            agent=agent,
            algorithm=containers.get(ALGORITHM_CONTAINER),
            agent_report=report,
            report_error=error,
        )

    @property
    def terminal(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    def report(self) -> AgentReport | None:
        return self.agent_report


@dataclass(frozen=True, slots=True)
class JobView:
    """One attempt's batch/v1 Job, reduced to what the planner reads."""

    name: str
    uid: str
    attempt: int
    suspended: bool = False
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    complete: bool = False
    failed_reason: str | None = None
    failed_message: str | None = None
    start_time: str | None = None
    completion_time: str | None = None
    deleting: bool = False
    created: str | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> JobView:
        meta = body.get("metadata") or {}
        labels = meta.get("labels") or {}
        spec = body.get("spec") or {}
        status = body.get("status") or {}
        conditions = {
            c.get("type"): c for c in status.get("conditions") or () if c.get("status") == "True"
        }
        failed = conditions.get("Failed")
        return cls(
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            attempt=_int_label(labels.get(naming.LABEL_ATTEMPT), 0) or 0,
            suspended=bool(spec.get("suspend")),
            active=int(status.get("active") or 0),
            succeeded=int(status.get("succeeded") or 0),
            failed=int(status.get("failed") or 0),
            complete="Complete" in conditions,
            failed_reason=failed.get("reason") if failed else None,
            failed_message=failed.get("message") if failed else None,
            start_time=status.get("startTime"),
            completion_time=status.get("completionTime"),
            deleting=bool(meta.get("deletionTimestamp")),
            created=meta.get("creationTimestamp"),
        )
