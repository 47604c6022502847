"""Kubernetes conditions (metav1.Condition) of every kind's status, computed purely.

A condition's ``lastTransitionTime`` changes only when its ``status`` changes; every
condition carries the ``observedGeneration`` it was computed from, so ``kubectl wait``,
kstatus (Flux) and Argo CD can tell a fresh verdict from a stale one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from kubemaker.api.common import Condition, ConditionStatus


@dataclass(frozen=True)
class Cond:
    """The desired state of one condition; times are filled in by :func:`merge_conditions`."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""


def merge_conditions(
    existing: Iterable[Condition] | None,
    desired: Sequence[Cond],
    *,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """The new conditions: ``desired`` in order, then any other existing conditions.

    ``lastTransitionTime`` keeps its old value when the status did not change.
    """
    old = {c.type: c for c in existing or ()}
    result: list[Condition] = []
    for cond in desired:
        previous = old.pop(cond.type, None)
        since = now
        if previous is not None and previous.status == cond.status:
            since = previous.last_transition_time or now
        result.append(
            Condition(
                type=cond.type,
                status=cond.status,
                reason=cond.reason,
                message=cond.message,
                last_transition_time=since,
                observed_generation=generation,
            )
        )
    result.extend(old.values())
    return result
