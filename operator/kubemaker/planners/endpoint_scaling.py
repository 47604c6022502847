"""Autoscaling of an Endpoint's variant: target tracking on invocations per instance.

SageMaker scales a variant with an Application Auto Scaling target-tracking policy on
``SageMakerVariantInvocationsPerInstance`` (invocations per instance per minute).
:func:`decide` is that policy as a pure function of the policy, the state it left last
time (:class:`ScalingState`, kept in the Endpoint's status so that a restarted operator
resumes where it was), the measured traffic and the clock:

- desired instances = ceil(invocations per minute / target), within
  [minCapacity, maxCapacity] (and at least 1 while there is traffic);
- scale-out at once, also during ``scale_out_cooldown``: Application Auto Scaling lets
  a larger scale-out through during the cooldown ("continuously, but not
  excessively"), and the count computed here from the invocation rate already includes
  the instances the last scale-out added, so it never adds them twice. (A scale-out
  held for the cooldown would stay at a count measured over an interval that only
  partly saw a load step, for a whole cooldown: benchmarks/endpoint_scaling.py saw it.);
- scale-in straight to the computed count (as AAS does), never when
  ``disable_scale_in``, and not within ``scale_in_cooldown`` of the last scale-in or
  of the last scale-out (nor within the scale-out cooldown: AAS does not scale in
  while a scale-out cooldown runs);
- to zero (``min_capacity`` 0) only after ``scale_in_cooldown`` seconds without any
  traffic; from zero at once, cooldowns ignored, on any held request or invocation
  (the router holds requests for a variant at 0 instances while it scales up);
- a changed minCapacity / maxCapacity applies at once (as a changed scalable target
  does in AAS);
- no metric (the router could not be read): no change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from kubemaker.api.endpoint import AutoScaling
from kubemaker.planners.training_status import parse_time

Direction = Literal["out", "in", "none"]


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    """A variant's target-tracking policy (from its ``autoScaling``)."""

    min_capacity: int
    max_capacity: int
    target: float  # invocations per instance per minute
    scale_in_cooldown: float = 300.0
    scale_out_cooldown: float = 60.0
    disable_scale_in: bool = False

    @classmethod
    def from_api(cls, auto_scaling: AutoScaling) -> ScalingPolicy | None:
        """The policy of ``autoScaling``; None when it targets CPU utilization (a
        HorizontalPodAutoscaler scales that variant, not this policy)."""
        target = auto_scaling.target_invocations_per_instance
        if target is None:
            return None
        return cls(
            min_capacity=auto_scaling.min_capacity,
            max_capacity=auto_scaling.max_capacity,
            target=target,
            scale_in_cooldown=float(auto_scaling.scale_in_cooldown),
            scale_out_cooldown=float(auto_scaling.scale_out_cooldown),
            disable_scale_in=auto_scaling.disable_scale_in,
        )


# Keys of ScalingState in the Endpoint's status (camelCase, times as RFC 3339).
_STATUS_KEYS = {
    "desired": "desiredInstanceCount",
    "last_scale_out_at": "lastScaleOutTime",
    "last_scale_in_at": "lastScaleInTime",
    "last_traffic_at": "lastTrafficTime",
}


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _epoch(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    moment = parse_time(value)
    return moment.timestamp() if moment is not None else None


@dataclass(frozen=True, slots=True)
class ScalingState:
    """What the scaler set last and when (epoch seconds; None: never).

    ``last_traffic_at``: the last time traffic was seen, or, before any, the first time
    the scaler looked (the quiet time before scaling to zero counts from there).
    """

    desired: int
    last_scale_out_at: float | None = None
    last_scale_in_at: float | None = None
    last_traffic_at: float | None = None

    def to_status(self) -> dict[str, Any]:
        """The state as stored in the status: ``desiredInstanceCount``, and
        ``lastScaleOutTime`` / ``lastScaleInTime`` / ``lastTrafficTime`` (RFC 3339,
        only those that are set)."""
        out: dict[str, Any] = {_STATUS_KEYS["desired"]: self.desired}
        for name in ("last_scale_out_at", "last_scale_in_at", "last_traffic_at"):
            value = getattr(self, name)
            if value is not None:
                out[_STATUS_KEYS[name]] = _rfc3339(value)
        return out

    @classmethod
    def from_status(cls, data: Mapping[str, Any] | None, *, desired: int) -> ScalingState:
        """The state :meth:`to_status` stored; ``desired`` when none was (a new variant:
        its initial instance count). Times may be RFC 3339 strings, datetimes or
        epoch seconds; unreadable ones count as never."""
        data = data or {}
        stored = data.get(_STATUS_KEYS["desired"])
        return cls(
            desired=stored if isinstance(stored, int) and stored >= 0 else desired,
            last_scale_out_at=_epoch(data.get(_STATUS_KEYS["last_scale_out_at"])),
            last_scale_in_at=_epoch(data.get(_STATUS_KEYS["last_scale_in_at"])),
            last_traffic_at=_epoch(data.get(_STATUS_KEYS["last_traffic_at"])),
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """The instance count to run, which way it moved, why (one sentence, for an event
    and the status) and the state to store for the next decision."""

    desired: int
    direction: Direction
    reason: str
    state: ScalingState


def _instances(count: int) -> str:
    return f"{count} instance" if count == 1 else f"{count} instances"


def _target(target: float) -> str:
    return f"{target:g}"


def _seconds(value: float) -> str:
    return f"{math.ceil(value - 1e-9)} s"


def _remaining(since: float | None, cooldown: float, now: float) -> float:
    """Seconds left of a cooldown that started at ``since`` (0 when over or never)."""
    return 0.0 if since is None else max(0.0, since + cooldown - now)


def _scale_in_wait(policy: ScalingPolicy, state: ScalingState, now: float) -> float:
    return max(
        _remaining(state.last_scale_in_at, policy.scale_in_cooldown, now),
        _remaining(
            state.last_scale_out_at, max(policy.scale_in_cooldown, policy.scale_out_cooldown), now
        ),
    )


def _move(state: ScalingState, desired: int, reason: str, now: float) -> Decision:
    if desired > state.desired:
        new = replace(state, desired=desired, last_scale_out_at=now)
        return Decision(desired, "out", reason, new)
    if desired < state.desired:
        new = replace(state, desired=desired, last_scale_in_at=now)
        return Decision(desired, "in", reason, new)
    return Decision(desired, "none", reason, state)


def decide(
    policy: ScalingPolicy,
    state: ScalingState,
    *,
    invocations_per_minute: float | None,
    held_requests: int,
    now: float,
) -> Decision:
    """The variant's instance count now (see the module's doc for the rules).

    ``invocations_per_minute``: the variant's invocations per minute over the last
    interval (all its fleets), None when it could not be measured; ``held_requests``:
    requests the router holds for the variant now (it has no ready instance).
    """
    current = state.desired
    traffic = (invocations_per_minute or 0.0) > 0 or held_requests > 0
    if traffic or state.last_traffic_at is None:
        state = replace(state, last_traffic_at=now)

    # Bounds first: a changed minCapacity / maxCapacity applies at once.
    if current > policy.max_capacity:
        reason = f"maxCapacity is {policy.max_capacity} -> {_instances(policy.max_capacity)}"
        return _move(state, policy.max_capacity, reason, now)
    if current < policy.min_capacity:
        reason = f"minCapacity is {policy.min_capacity} -> {_instances(policy.min_capacity)}"
        return _move(state, policy.min_capacity, reason, now)

    if current == 0 and traffic:
        wanted = 1
        if invocations_per_minute:
            wanted = max(1, math.ceil(round(invocations_per_minute / policy.target, 9)))
        wanted = min(wanted, policy.max_capacity)
        cause = (
            f"{held_requests} request{'' if held_requests == 1 else 's'} held"
            if held_requests > 0
            else f"{invocations_per_minute:.1f} invocations/min"
        )
        reason = f"{cause} for a variant at 0 instances -> {_instances(wanted)}"
        return _move(state, wanted, reason, now)

    if invocations_per_minute is None:
        reason = f"invocation metrics are missing; staying at {_instances(current)}"
        return Decision(current, "none", reason, state)

    computed = math.ceil(round(invocations_per_minute / policy.target, 9))
    lower = policy.min_capacity if policy.min_capacity > 0 or traffic else 0
    wanted = min(max(computed, lower), policy.max_capacity)
    quiet_wait = 0.0
    if wanted == 0 and current > 0:
        quiet_wait = _remaining(state.last_traffic_at, policy.scale_in_cooldown, now)
        if quiet_wait > 0:
            wanted = 1
    load = (
        f"{invocations_per_minute:.1f} invocations/min over {_instances(current)}, "
        f"target {_target(policy.target)}/instance -> {_instances(wanted)}"
    )
    if wanted == 0 and current > 0:
        quiet = now - (now if state.last_traffic_at is None else state.last_traffic_at)
        load = f"no invocations for {_seconds(quiet)} -> 0 instances"
    elif quiet_wait > 0:
        load += f" (0 after {_seconds(quiet_wait)} more without traffic)"

    if wanted > current:
        return _move(state, wanted, load, now)
    if wanted < current:
        if policy.disable_scale_in:
            reason = f"{load}; scale-in is disabled, staying at {current}"
            return Decision(current, "none", reason, state)
        wait = _scale_in_wait(policy, state, now)
        if wait > 0:
            reason = f"{load}; scale-in cooldown ends in {_seconds(wait)}, staying at {current}"
            return Decision(current, "none", reason, state)
        return _move(state, wanted, load, now)
    return Decision(current, "none", load, state)


def next_check_seconds(policy: ScalingPolicy, state: ScalingState, now: float) -> float | None:
    """Seconds until a decision may change with the traffic unchanged: the end of the
    scale-in cooldown, or of the quiet time before scaling to zero. None: nothing pends
    (the next metrics will tell)."""
    pending = [_scale_in_wait(policy, state, now)]
    if policy.min_capacity == 0 and state.desired > 0 and not policy.disable_scale_in:
        pending.append(_remaining(state.last_traffic_at, policy.scale_in_cooldown, now))
    waits = [w for w in pending if w > 0]
    return min(waits) if waits else None


__all__ = [
    "Decision",
    "ScalingPolicy",
    "ScalingState",
    "decide",
    "next_check_seconds",
]
