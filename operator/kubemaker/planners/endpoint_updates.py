"""An Endpoint variant's update to a new fleet, step by step (pure).

Blue/green: the new fleet is provisioned at full size, then the traffic moves by
steps (AllAtOnce, Canary, Linear) and the old fleet is kept ``terminationWaitInSeconds``
and deleted. Rolling: the new fleet grows and the old one shrinks batch by batch,
ready capacity never under the variant's count. A rollback (the new fleet cannot
start, an alarm fired, a timeout) returns all traffic to the old fleet, then deletes
the new one. Every step is decided from ``status.deployment`` and the fleets observed,
so a restarted operator resumes the same step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from kubemaker.api.endpoint import (
    CapacitySize,
    DeploymentProgress,
    VariantStatus,
)
from kubemaker.builders import endpoint as eb
from kubemaker.builders.owner import Owner
from kubemaker.planners.endpoint_plan import (
    POLL_SECONDS,
    Event,
    Observation,
    Plan,
    VariantState,
    describe,
    in_effect,
    in_progress,
    placeholder,
    problem_of,
    split,
    unrouted,
)
from kubemaker.planners.endpoint_views import FleetView


def plan_update(
    obs: Observation,
    plan: Plan,
    owner: Owner,
    variant: VariantState,
    fleets: Mapping[str, FleetView],
) -> None:
    status = plan.status
    old = variant.serving
    assert old is not None
    progress = status.deployment
    config = obs.spec.deployment_config
    rolling = config.rolling_update_policy if config else None
    blue_green = config.blue_green_update_policy if config else None
    routing = blue_green.traffic_routing_configuration.type if blue_green else "AllAtOnce"
    if (
        progress is not None
        and progress.new_fleet == variant.desired
        and progress.phase == "RolledBack"
    ):
        # Rolled back: the same spec is not tried again (a new spec is).
        variant.fleets = [(old, 1.0)]
        variant.summary.variant_status = None
        describe(variant)
        return
    if progress is None or progress.new_fleet != variant.desired or not in_progress(progress):
        if progress is not None and in_progress(progress) and progress.new_fleet in fleets:
            plan.delete.append(("fleet", progress.new_fleet))  # the spec changed mid-update
        progress = DeploymentProgress(
            variant_name=variant.spec.variant_name,
            policy="Rolling" if rolling else routing,
            old_fleet=old.name,
            new_fleet=variant.desired,
            phase="Provisioning",
            start_time=obs.now,
            step_time=obs.now,
        )
        status.deployment = progress
        plan.events.append(
            Event(
                "Normal",
                "UpdateStarted",
                f"variant {variant.spec.variant_name}: {progress.policy} update from fleet "
                f"{old.name} to {variant.desired}",
            )
        )
    # The capacity to keep: the variant's instance count when the update started.
    total = variant.summary.desired_instance_count or max(old.replicas, 1)
    new = fleets.get(variant.desired)
    if new is None:
        first = _batch(rolling.maximum_batch_size, total) if rolling else total
        if progress.phase != "RollingBack":
            plan.create.append(
                eb.build_fleet(
                    obs.spec, variant.spec, variant.model, obs.config,
                    owner=owner, name=variant.desired, replicas=first, field=variant.field,
                )
            )  # fmt: skip
        new = placeholder(variant.desired, replicas=first)
    policy = rolling or blue_green
    timeout = policy.maximum_execution_timeout_in_seconds if policy is not None else None
    reason = _rollback_reason(obs, progress, new, timeout)
    if reason and progress.phase not in ("RollingBack", "Completed"):
        progress.phase = "RollingBack"
        progress.rollback_reason = reason
        progress.step_time = obs.now
        plan.events.append(
            Event("Warning", "RollingBack", f"variant {variant.spec.variant_name}: {reason}")
        )
    if rolling is not None and progress.phase != "RollingBack":
        _rolling_step(obs, plan, variant, progress, old, new, total)
    elif progress.phase != "RollingBack":
        steps = _traffic_steps(blue_green, total)
        wait = (
            blue_green.traffic_routing_configuration.wait_interval_in_seconds if blue_green else 0
        )
        _blue_green_step(obs, plan, variant, progress, old, new, steps, wait, blue_green)
    if progress.phase == "RollingBack":
        if old.replicas < total or old.spec_count is None:
            plan.scale[old.name] = (max(total, 1), old.spec_count)
        progress.new_fleet_traffic_percent = 0
        variant.fleets = [(old, 1.0)]
        if unrouted(obs, variant.desired) and old.settled:
            plan.delete.append(("fleet", variant.desired))
            progress.phase = "RolledBack"
            progress.message = f"all traffic is back on fleet {old.name}"
            plan.events.append(
                Event(
                    "Warning",
                    "RolledBack",
                    f"variant {variant.spec.variant_name}: rolled back to fleet {old.name}: "
                    f"{progress.rollback_reason}",
                )
            )
        else:
            progress.message = f"moving traffic back to fleet {old.name}"
            plan.again_in(POLL_SECONDS)
    if progress.phase == "Completed":
        variant.serving = new
        variant.summary.fleet = new.name
        variant.fleets = [(new, 1.0)]
    variant.summary.desired_instance_count = total
    variant.summary.current_instance_count = sum(f.ready for f, w in variant.fleets if w > 0)
    step_names = {
        "Provisioning": "Creating",
        "ShiftingTraffic": "ActivatingTraffic",
        "Baking": "Baking",
        "RollingBack": "Updating",
    }
    if progress.phase in step_names:
        variant.summary.variant_status = [
            VariantStatus(
                status=step_names[progress.phase],  # type: ignore[arg-type]
                status_message=progress.message,
                start_time=progress.step_time,
            )
        ]
    else:
        variant.summary.variant_status = None
    describe(variant)


def _blue_green_step(
    obs: Observation,
    plan: Plan,
    variant: VariantState,
    progress: DeploymentProgress,
    old: FleetView,
    new: FleetView,
    steps: list[float],
    wait: int,
    policy: Any,
) -> None:
    percent = progress.new_fleet_traffic_percent
    split(variant, old, new, percent)
    if progress.phase == "Provisioning":
        if not new.settled:
            progress.message = (
                f"new fleet {new.name}: {new.ready} of {new.replicas} instances ready"
            )
            plan.again_in(POLL_SECONDS)
            return
        progress.phase = "ShiftingTraffic"
        progress.step = 1
        progress.new_fleet_traffic_percent = steps[0]
        progress.step_time = obs.now
        _shift_event(plan, variant, progress)
        percent = steps[0]
        split(variant, old, new, percent)
    elapsed = (obs.now - (progress.step_time or obs.now)).total_seconds()
    if progress.phase == "ShiftingTraffic":
        if not in_effect(obs, new.name, percent):
            progress.message = f"{percent:g}% of traffic on the new fleet: waiting for the router"
            plan.again_in(1.0)
            return
        if percent < 100 and elapsed < wait:
            progress.message = f"{percent:g}% of traffic on the new fleet for {wait} s"
            plan.again_in(wait - elapsed)
            return
        if percent < 100:
            progress.step += 1
            progress.new_fleet_traffic_percent = steps[min(progress.step, len(steps)) - 1]
            progress.step_time = obs.now
            split(variant, old, new, progress.new_fleet_traffic_percent)
            _shift_event(plan, variant, progress)
            plan.again_in(1.0)
            return
        progress.phase = "Baking"
        progress.step_time = obs.now
        elapsed = 0.0
    if progress.phase == "Baking":
        bake = policy.termination_wait_in_seconds if policy is not None else 0
        if elapsed < bake or not unrouted(obs, old.name):
            progress.message = f"all traffic on the new fleet; the old fleet is kept {bake} s"
            plan.again_in(max(1.0, bake - elapsed))
            return
        _complete(plan, variant, progress, old)


def _rolling_step(
    obs: Observation,
    plan: Plan,
    variant: VariantState,
    progress: DeploymentProgress,
    old: FleetView,
    new: FleetView,
    total: int,
) -> None:
    rolling = obs.spec.deployment_config.rolling_update_policy  # type: ignore[union-attr]
    assert rolling is not None
    batch = _batch(rolling.maximum_batch_size, total)
    progress.phase = "ShiftingTraffic"
    # Capacity stays at `total`: a batch of new instances first, then as many old go.
    target_new = min(total, max(new.replicas, batch))
    variant.fleets = [(old, float(old.ready)), (new, float(new.ready))]
    progress.new_fleet_traffic_percent = round(100 * new.ready / max(total, 1), 1)
    if not new.settled or new.replicas < target_new:
        if new.replicas < target_new:
            plan.scale[new.name] = (target_new, None)
        progress.message = f"new fleet {new.name}: {new.ready} of {target_new} instances ready"
        plan.again_in(POLL_SECONDS)
        return
    old_target = max(0, total - new.replicas)
    if old.replicas > old_target:
        plan.scale[old.name] = (old_target, old.spec_count)
        progress.message = f"old fleet {old.name} down to {old_target} instances"
        plan.again_in(POLL_SECONDS)
        return
    elapsed = (obs.now - (progress.step_time or obs.now)).total_seconds()
    if new.replicas < total:
        if elapsed < rolling.wait_interval_in_seconds:
            plan.again_in(rolling.wait_interval_in_seconds - elapsed)
            return
        progress.step += 1
        progress.step_time = obs.now
        plan.scale[new.name] = (min(total, new.replicas + batch), None)
        progress.message = f"next batch of {batch} on fleet {new.name}"
        plan.again_in(POLL_SECONDS)
        return
    variant.fleets = [(new, 1.0)]
    if unrouted(obs, old.name):
        _complete(plan, variant, progress, old)


def _complete(
    plan: Plan, variant: VariantState, progress: DeploymentProgress, old: FleetView
) -> None:
    progress.phase = "Completed"
    progress.new_fleet_traffic_percent = 100
    progress.message = f"fleet {progress.new_fleet} serves all traffic"
    plan.delete.append(("fleet", old.name))
    plan.events.append(
        Event(
            "Normal",
            "UpdateCompleted",
            f"variant {variant.spec.variant_name}: fleet {progress.new_fleet} serves all "
            f"traffic; fleet {old.name} deleted",
        )
    )


def _shift_event(plan: Plan, variant: VariantState, progress: DeploymentProgress) -> None:
    plan.events.append(
        Event(
            "Normal",
            "TrafficShifted",
            f"variant {variant.spec.variant_name}: step {progress.step}, "
            f"{progress.new_fleet_traffic_percent:g}% of traffic on fleet {progress.new_fleet}",
        )
    )


def _rollback_reason(
    obs: Observation, progress: DeploymentProgress, new: FleetView, timeout: int | None
) -> str | None:
    if new.progress_failed:
        return f"new fleet {new.name} did not become ready: {new.progress_failed}"
    problem = problem_of(obs, new)
    if problem:
        return f"new fleet {new.name} cannot start: {problem}"
    alarm = obs.alarms.get(new.name)
    if alarm:
        return alarm
    started = progress.start_time or obs.now
    if timeout is not None and (obs.now - started).total_seconds() > timeout:
        return f"the update ran past maximumExecutionTimeoutInSeconds ({timeout} s)"
    return None


def abandon(
    obs: Observation, plan: Plan, fleets: Mapping[str, FleetView], variant: VariantState
) -> None:
    progress = plan.status.deployment
    assert progress is not None
    if progress.new_fleet in fleets and progress.new_fleet != variant.desired:
        plan.delete.append(("fleet", progress.new_fleet))
    progress.phase = "RolledBack"
    progress.rollback_reason = "the spec went back to the serving fleet"
    progress.new_fleet_traffic_percent = 0


def _traffic_steps(policy: Any, total: int) -> list[float]:
    """The new fleet's share after each step, ending at 100."""
    routing = policy.traffic_routing_configuration if policy is not None else None
    if routing is None or routing.type == "AllAtOnce":
        return [100.0]
    if routing.type == "Canary":
        return [min(100.0, _percent(routing.canary_size, total)), 100.0]
    step = max(1.0, _percent(routing.linear_step_size, total))
    shares = [min(100.0, step * k) for k in range(1, math.ceil(100 / step) + 1)]
    return shares


def _percent(size: CapacitySize, total: int) -> float:
    if size.type == "CapacityPercent":
        return float(size.value)
    return round(100.0 * min(size.value, total) / max(total, 1), 1)


def _batch(size: CapacitySize, total: int) -> int:
    if size.type == "InstanceCount":
        return max(1, min(size.value, total))
    return max(1, math.floor(total * size.value / 100))
