"""Kubernetes conditions (metav1.Condition) as plain dicts, computed purely.

A condition's ``lastTransitionTime`` changes only when its ``status`` changes; every
condition carries the ``observedGeneration`` it was computed from, so ``kubectl wait``,
kstatus (Flux) and Argo CD can tell a fresh verdict from a stale one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Cond:
    """The desired state of one condition; times are filled in by :func:`merge_conditions`."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""


def merge_conditions(
    existing: Iterable[Mapping[str, Any]] | None,
    desired: Sequence[Cond],
    *,
    generation: int | None,
    now: str,
) -> list[dict[str, Any]]:
    """The new conditions list: ``desired`` in order, then any other existing conditions.

    ``now`` is an RFC 3339 timestamp; ``lastTransitionTime`` keeps its old value when
    the status did not change.
    """
    old = {c.get("type"): c for c in existing or () if isinstance(c, Mapping)}
    result: list[dict[str, Any]] = []
    for cond in desired:
        previous = old.pop(cond.type, None)
        since = now
        if previous is not None and previous.get("status") == cond.status:
            since = str(previous.get("lastTransitionTime") or now)
        entry: dict[str, Any] = {
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message,
            "lastTransitionTime": since,
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        result.append(entry)
    result.extend(dict(c) for c in old.values())
    return result


def find_condition(
    conditions: Iterable[Mapping[str, Any]] | None, type_: str
) -> Mapping[str, Any] | None:
    for cond in conditions or ():
        if cond.get("type") == type_:
            return cond
    return None
