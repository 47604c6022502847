"""The Endpoint planner: an :class:`Observation` of the children -> a :class:`Plan`.

Pure: no API calls, no clock. The state of an update lives in two places only, both
rebuilt from scratch at every reconcile: the fleets (Deployments) that exist, and
``status.deployment`` (phase, step, when the step began). The routing table is
*derived* from those, so an operator restarted at any step writes the same table and
goes on from the same step, creating nothing twice.

Each variant is in one of three situations:

- **steady**: its serving fleet (``status.productionVariants[].fleet``) is the fleet
  its spec asks for; replicas follow the spec's count when it changes, or the
  autoscaler (:mod:`.endpoint_scaling`), and nothing else (``kubectl scale`` stands).
- **updating**: the spec asks for a different fleet. Blue/green: the new fleet is
  provisioned at full size, then traffic moves by steps (AllAtOnce, Canary, Linear),
  then the old fleet is kept ``terminationWaitInSeconds`` and deleted. Rolling: the
  new fleet grows and the old one shrinks batch by batch. A step that removes traffic
  from a fleet waits until every router replica applies the table that says so.
- **rolling back**: the new fleet never became ready, an alarm fired, or the update
  ran past its timeout: all traffic returns to the old fleet, the new one is deleted,
  and the status says why. The same spec is not tried again; a new spec is.

One variant updates at a time (``status.deployment``); the others wait their turn.

Why one module of this size (~900 lines): the steady, update and rollback paths share
the per-variant state (:class:`_Variant`) and the routing-table checks, and are
read together when reasoning about a step; splitting the update steps into their own
module is the next refactor once TuningJob and BatchTransform show what is shared.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubemaker.api.common import (
    CONDITION_FAILED,
    CONDITION_READY,
    CONDITION_RECONCILING,
    CONDITION_STALLED,
)
from kubemaker.api.endpoint import (
    CapacitySize,
    DeployedImage,
    DeploymentProgress,
    EndpointSpec,
    EndpointStatus,
    ProductionVariant,
    ProductionVariantSummary,
    VariantStatus,
)
from kubemaker.builders import endpoint as eb
from kubemaker.builders.errors import SpecError
from kubemaker.config import OperatorConfig
from kubemaker.failures import FailureKind, failure
from kubemaker.planners import endpoint_scaling as scaling
from kubemaker.planners.endpoint_views import FleetView, PodProblem
from kubemaker.reconcile.conditions import Cond, merge_conditions
from kubemaker_runtime.routing import Capture, Fleet, RoutingTable, Shadow, Variant

JSON = dict[str, Any]

# How often to look again while something moves (fleets starting, steps waiting).
POLL_SECONDS = 5.0
WAITING_FOR_JOB_SECONDS = 30.0


@dataclass(frozen=True)
class ModelState:
    """A variant's model source, resolved by the controller (job references read)."""

    model: eb.ServedModel | None = None
    waiting: str | None = None  # e.g. "TrainingJob bank is InProgress"
    error: str | None = None  # the reference cannot work: names the job and why


@dataclass(frozen=True)
class Traffic:
    """A variant's demand, from the router's or model servers' metrics."""

    invocations_per_minute: float | None
    held: int = 0


@dataclass(frozen=True)
class Observation:
    name: str
    namespace: str
    generation: int | None
    spec: EndpointSpec
    status: EndpointStatus
    models: Mapping[str, ModelState]
    fleets: Sequence[FleetView]
    problems: Sequence[PodProblem]
    written_table: RoutingTable | None  # the routing table in the router's ConfigMap
    router_versions: frozenset[str] | None  # versions the router replicas report applying
    traffic: Mapping[str, Traffic]
    alarms: Mapping[str, str]  # fleet -> the message of an alarm that fired on it
    config: OperatorConfig
    now: datetime
    uid: str = ""


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


@dataclass
class Plan:
    status: EndpointStatus
    create: list[JSON] = field(default_factory=list)  # get-or-create (fleets)
    apply: list[JSON] = field(default_factory=list)  # create, or replace when different
    scale: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # replicas, count
    delete: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    table: RoutingTable | None = None

    def again_in(self, seconds: float) -> None:
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after = max(0.0, seconds)


@dataclass
class _Variant:
    """One variant's situation during a reconcile."""

    spec: ProductionVariant
    index: int
    shadow: bool
    model: eb.ServedModel
    desired: str  # the fleet its spec asks for
    serving: FleetView | None  # the fleet with its traffic
    fleets: list[tuple[FleetView, float]]  # (fleet, weight) the router sends to
    summary: ProductionVariantSummary

    @property
    def field(self) -> str:
        kind = "shadowProductionVariants" if self.shadow else "productionVariants"
        return f"spec.{kind}[{self.index}]"


def plan_endpoint(obs: Observation) -> Plan:
    status = obs.status.model_copy(deep=True)
    plan = Plan(status=status)
    spec = obs.spec
    try:
        _check_spec(spec)
        variants = _variants(obs, plan)
    except SpecError as exc:
        return _fail(obs, plan, str(exc))
    if variants is None:
        return _finish(obs, plan)
    owner = eb.Owner(obs.name, obs.namespace, obs.uid)
    fleets = {f.name: f for f in obs.fleets if f.component == eb.COMPONENT_SERVER}
    updating = status.deployment if _in_progress(status.deployment) else None
    for variant in variants:
        if variant.serving is None or variant.serving.name == variant.desired:
            if updating is not None and updating.variant_name == variant.spec.variant_name:
                updating = None  # the spec went back to the serving fleet: abandon
                _abandon(obs, plan, fleets, variant)
            _steady(obs, plan, owner, variant, fleets)
        elif updating is None or updating.variant_name == variant.spec.variant_name:
            _update(obs, plan, owner, variant, fleets)
            updating = status.deployment if _in_progress(status.deployment) else None
        else:
            variant.summary.variant_status = [
                VariantStatus(
                    status="Updating",
                    status_message=f"waits for the update of {updating.variant_name}",
                )
            ]
    # Fleets of no variant (a variant removed from the spec) go once nothing routes to them.
    wanted = {f.name for v in variants for f, _ in v.fleets} | {v.desired for v in variants}
    wanted |= {v.serving.name for v in variants if v.serving is not None}
    if status.deployment is not None and _in_progress(status.deployment):
        wanted |= {status.deployment.new_fleet, status.deployment.old_fleet or ""}
    for name in fleets:
        if name not in wanted and _unrouted(obs, name):
            plan.delete.append(("fleet", name))
    _children(obs, plan, owner, variants)
    status.production_variants = [v.summary for v in variants if not v.shadow] or None
    status.shadow_production_variants = [v.summary for v in variants if v.shadow] or None
    status.endpoint_url = eb.service_url(eb.base_name(obs.name), obs.namespace)
    _endpoint_status(obs, plan, variants)
    return _finish(obs, plan)


# --- the spec and the models ------------------------------------------------------------------


def _check_spec(spec: EndpointSpec) -> None:
    shadows = spec.shadow_production_variants or []
    if shadows and len(spec.production_variants) > 1:
        raise SpecError(
            "spec.shadowProductionVariants",
            "a shadow variant needs exactly one production variant to copy traffic from; "
            f"this endpoint has {len(spec.production_variants)}",
        )
    if all(v.initial_variant_weight == 0 for v in spec.production_variants):
        raise SpecError(
            "spec.productionVariants",
            "every initialVariantWeight is 0: at least one variant must take traffic",
        )


def _variants(obs: Observation, plan: Plan) -> list[_Variant] | None:
    """Each variant with its model and fleets; None while a model is not known yet."""
    spec = obs.spec
    old = {s.variant_name: s for s in (obs.status.production_variants or [])}
    old |= {s.variant_name: s for s in (obs.status.shadow_production_variants or [])}
    fleets = {f.name: f for f in obs.fleets if f.component == eb.COMPONENT_SERVER}
    result: list[_Variant] = []
    waiting: list[str] = []
    entries = [(v, i, False) for i, v in enumerate(spec.production_variants)]
    entries += [(v, i, True) for i, v in enumerate(spec.shadow_production_variants or [])]
    for variant, index, shadow in entries:
        kind = "shadowProductionVariants" if shadow else "productionVariants"
        where = f"spec.{kind}[{index}]"
        state = obs.models.get(variant.variant_name) or ModelState(waiting="model not resolved")
        if state.error:
            raise SpecError(f"{where}.model", state.error)
        summary = old.get(variant.variant_name) or ProductionVariantSummary(
            variant_name=variant.variant_name
        )
        summary = summary.model_copy(deep=True)
        serving = fleets.get(summary.fleet or "")
        if state.model is None:
            if serving is None:
                waiting.append(f"{variant.variant_name}: {state.waiting}")
                continue
            # A referenced job runs again: keep serving what is deployed meanwhile.
            model = eb.ServedModel(serving.model_data_url or "", serving.image or "", {})
            desired = serving.name
        else:
            model = state.model
            desired = eb.fleet_name(
                obs.name, variant.variant_name, eb.fleet_hash(variant, model, spec)
            )
            # Surface a bad instance type (or catalog name) before anything is created.
            eb.build_fleet(
                spec, variant, model, obs.config,
                owner=eb.Owner(obs.name, obs.namespace, obs.uid),
                name=desired, replicas=1, field=where,
            )  # fmt: skip
        result.append(_Variant(variant, index, shadow, model, desired, serving, [], summary))
    if waiting:
        plan.status.endpoint_status = plan.status.endpoint_status or "Creating"
        plan.status.failure_reason = None
        plan.status.production_variants = plan.status.production_variants
        plan.events.append(Event("Normal", "WaitingForModel", "; ".join(waiting)))
        plan.again_in(WAITING_FOR_JOB_SECONDS)
        plan.status.conditions = _conditions(obs, "Creating", "; ".join(waiting))
        return None
    return result


# --- a variant whose fleet is the one its spec asks for ----------------------------------------


def _steady(
    obs: Observation,
    plan: Plan,
    owner: eb.Owner,
    variant: _Variant,
    fleets: Mapping[str, FleetView],
) -> None:
    spec = variant.spec
    summary = variant.summary
    fleet = fleets.get(variant.desired)
    scaling_spec = spec.auto_scaling
    count = spec.initial_instance_count
    if fleet is None:
        replicas = summary.desired_instance_count if summary.fleet == variant.desired else None
        plan.create.append(
            eb.build_fleet(
                obs.spec, spec, variant.model, obs.config,
                owner=owner, name=variant.desired,
                replicas=count if replicas is None else replicas, field=variant.field,
            )
        )  # fmt: skip
        summary.fleet = variant.desired
        summary.desired_instance_count = count if replicas is None else replicas
        summary.current_instance_count = 0
        summary.variant_status = [VariantStatus(status="Creating", start_time=obs.now)]
        variant.fleets = [(_placeholder(variant.desired, summary.desired_instance_count), 1.0)]
        plan.again_in(POLL_SECONDS)
        _describe(variant)
        return
    variant.serving = fleet
    summary.fleet = fleet.name
    variant.fleets = [(fleet, 1.0)]
    replicas = fleet.replicas
    if scaling_spec is not None and scaling_spec.target_invocations_per_instance is not None:
        replicas = _autoscale(obs, plan, variant, fleet)
    elif scaling_spec is None and fleet.spec_count != count:
        # The spec's count changed (or was never recorded): apply it. Otherwise the
        # Deployment's replicas are left alone, so `kubectl scale` stands.
        replicas = count
        plan.scale[fleet.name] = (count, count)
    summary.desired_instance_count = replicas
    summary.current_instance_count = fleet.ready
    problem = _problem(obs, fleet)
    if fleet.ready < replicas:
        summary.variant_status = [
            VariantStatus(
                status="Creating"
                if obs.status.endpoint_status in (None, "Creating")
                else "Updating",
                status_message=problem or f"{fleet.ready} of {replicas} instances ready",
                start_time=obs.now,
            )
        ]
        plan.again_in(POLL_SECONDS)
    else:
        summary.variant_status = None
    _describe(variant)


def _autoscale(obs: Observation, plan: Plan, variant: _Variant, fleet: FleetView) -> int:
    assert variant.spec.auto_scaling is not None
    policy = scaling.ScalingPolicy.from_api(variant.spec.auto_scaling)
    if policy is None:
        return fleet.replicas
    summary = variant.summary
    state = scaling.ScalingState(
        desired=fleet.replicas,
        last_scale_out_at=_epoch(summary.last_scale_out_time),
        last_scale_in_at=_epoch(summary.last_scale_in_time),
        last_traffic_at=_epoch(summary.last_traffic_time),
    )
    traffic = obs.traffic.get(variant.spec.variant_name) or Traffic(None)
    decision = scaling.decide(
        policy,
        state,
        invocations_per_minute=traffic.invocations_per_minute,
        held_requests=traffic.held,
        now=obs.now.timestamp(),
    )
    summary.last_scale_out_time = _from_epoch(decision.state.last_scale_out_at)
    summary.last_scale_in_time = _from_epoch(decision.state.last_scale_in_at)
    summary.last_traffic_time = _from_epoch(decision.state.last_traffic_at)
    if decision.direction != "none" and decision.desired != fleet.replicas:
        summary.last_scaling_decision = decision.reason
        plan.scale[fleet.name] = (decision.desired, fleet.spec_count)
        plan.events.append(
            Event(
                "Normal",
                "ScaledOut" if decision.direction == "out" else "ScaledIn",
                decision.reason,
            )
        )
        return decision.desired
    return fleet.replicas


# --- a variant whose spec asks for a new fleet -------------------------------------------------


def _update(
    obs: Observation,
    plan: Plan,
    owner: eb.Owner,
    variant: _Variant,
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
        _describe(variant)
        return
    if progress is None or progress.new_fleet != variant.desired or not _in_progress(progress):
        if progress is not None and _in_progress(progress) and progress.new_fleet in fleets:
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
        new = _placeholder(variant.desired, replicas=first)
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
        if _unrouted(obs, variant.desired) and old.settled:
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
    _describe(variant)


def _blue_green_step(
    obs: Observation,
    plan: Plan,
    variant: _Variant,
    progress: DeploymentProgress,
    old: FleetView,
    new: FleetView,
    steps: list[float],
    wait: int,
    policy: Any,
) -> None:
    percent = progress.new_fleet_traffic_percent
    _split(variant, old, new, percent)
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
        _split(variant, old, new, percent)
    elapsed = (obs.now - (progress.step_time or obs.now)).total_seconds()
    if progress.phase == "ShiftingTraffic":
        if not _in_effect(obs, new.name, percent):
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
            _split(variant, old, new, progress.new_fleet_traffic_percent)
            _shift_event(plan, variant, progress)
            plan.again_in(1.0)
            return
        progress.phase = "Baking"
        progress.step_time = obs.now
        elapsed = 0.0
    if progress.phase == "Baking":
        bake = policy.termination_wait_in_seconds if policy is not None else 0
        if elapsed < bake or not _unrouted(obs, old.name):
            progress.message = f"all traffic on the new fleet; the old fleet is kept {bake} s"
            plan.again_in(max(1.0, bake - elapsed))
            return
        _complete(plan, variant, progress, old)


def _split(variant: _Variant, old: FleetView, new: FleetView, percent: float) -> None:
    variant.fleets = [(old, 100 - percent), (new, percent)] if percent < 100 else [(new, 1.0)]


def _rolling_step(
    obs: Observation,
    plan: Plan,
    variant: _Variant,
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
    if _unrouted(obs, old.name):
        _complete(plan, variant, progress, old)


def _complete(plan: Plan, variant: _Variant, progress: DeploymentProgress, old: FleetView) -> None:
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


def _shift_event(plan: Plan, variant: _Variant, progress: DeploymentProgress) -> None:
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
    problem = _problem(obs, new)
    if problem:
        return f"new fleet {new.name} cannot start: {problem}"
    alarm = obs.alarms.get(new.name)
    if alarm:
        return alarm
    started = progress.start_time or obs.now
    if timeout is not None and (obs.now - started).total_seconds() > timeout:
        return f"the update ran past maximumExecutionTimeoutInSeconds ({timeout} s)"
    return None


def _abandon(
    obs: Observation, plan: Plan, fleets: Mapping[str, FleetView], variant: _Variant
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


# --- children shared by the variants ------------------------------------------------------------


def _children(obs: Observation, plan: Plan, owner: eb.Owner, variants: list[_Variant]) -> None:
    spec = obs.spec
    name = eb.base_name(obs.name)
    for variant in variants:
        for fleet, _ in variant.fleets:
            plan.apply.append(
                eb.build_service(
                    owner,
                    fleet.name,
                    eb.fleet_selector(owner, variant.spec.variant_name, fleet.name),
                    eb.COMPONENT_SERVER,
                )
            )
            if fleet.replicas >= 2:
                selector = eb.fleet_selector(owner, variant.spec.variant_name, fleet.name)
                plan.apply.append(eb.build_pdb(owner, fleet.name, selector, eb.COMPONENT_SERVER))
        scaling_spec = variant.spec.auto_scaling
        if scaling_spec is not None and scaling_spec.target_cpu_utilization is not None:
            serving = variant.summary.fleet or variant.desired
            plan.apply.append(
                eb.build_hpa(
                    owner,
                    serving,
                    scaling_spec.min_capacity,
                    scaling_spec.max_capacity,
                    scaling_spec.target_cpu_utilization,
                )
            )
    if eb.needs_router(spec):
        plan.table = _table(obs, variants)
        plan.apply.append(eb.build_routes(owner, plan.table))
        plan.apply.append(eb.build_router(owner, obs.config))
        plan.apply.append(
            eb.build_pdb(
                owner, eb.router_name(obs.name), eb.router_selector(owner), eb.COMPONENT_ROUTER
            )
        )
        selector = eb.router_selector(owner)
    else:
        # One variant: the endpoint's Service selects the fleet that has its traffic
        # (switching it is the AllAtOnce step); during a rolling update, both fleets.
        variant = variants[0]
        live = [f for f, w in variant.fleets if w > 0]
        if len(live) == 1:
            selector = eb.fleet_selector(owner, variant.spec.variant_name, live[0].name)
        else:
            selector = eb.variant_selector(owner, variant.spec.variant_name)
    plan.apply.append(eb.build_service(owner, name, selector, eb.COMPONENT_ROUTER))


def _table(obs: Observation, variants: list[_Variant]) -> RoutingTable:
    def variant_of(v: _Variant) -> Variant:
        fleets = [
            Fleet(
                name=f.name,
                url=eb.service_url(f.name, obs.namespace),
                weight=max(0.0, w),
                instances=f.ready,
            )
            for f, w in v.fleets
        ]
        return Variant(
            name=v.spec.variant_name, weight=v.spec.initial_variant_weight, fleets=fleets
        )

    production = [variant_of(v) for v in variants if not v.shadow]
    shadow = None
    shadows = [v for v in variants if v.shadow]
    if shadows:
        weight = max(obs.spec.production_variants[0].initial_variant_weight, 1e-9)
        mirror = min(100.0, 100.0 * shadows[0].spec.initial_variant_weight / weight)
        shadow = Shadow(variant=variant_of(shadows[0]), mirror_percentage=mirror)
    capture = None
    config = obs.spec.data_capture_config
    if config is not None and config.enable_capture:
        modes = {o.capture_mode for o in config.capture_options}
        headers = config.capture_content_type_header
        capture = Capture(
            destination=config.destination_s3_uri,
            sampling_percentage=config.initial_sampling_percentage,
            capture_input="Input" in modes,
            capture_output="Output" in modes,
            **(
                {"csv_content_types": headers.csv_content_types}
                if headers and headers.csv_content_types
                else {}
            ),
            **(
                {"json_content_types": headers.json_content_types}
                if headers and headers.json_content_types
                else {}
            ),
        )
    return RoutingTable(
        endpoint=obs.name, variants=production, shadow=shadow, capture=capture
    ).with_version()


def _applied(obs: Observation) -> RoutingTable | None:
    """The written routing table, once every router replica applies it."""
    table = obs.written_table
    if table is None or obs.router_versions != frozenset({table.version}):
        return None
    return table


def _share(table: RoutingTable, fleet: str) -> float | None:
    """The share (percent) of its variant's traffic a table gives ``fleet``, if it has one."""
    variants = list(table.variants) + ([table.shadow.variant] if table.shadow else [])
    for variant in variants:
        total = sum(f.weight for f in variant.fleets)
        for candidate in variant.fleets:
            if candidate.name == fleet:
                return 100.0 * candidate.weight / total if total else 0.0
    return None


def _in_effect(obs: Observation, fleet: str, percent: float) -> bool:
    """The routers send ``percent`` of the variant's traffic to ``fleet``."""
    if not eb.needs_router(obs.spec):
        return True
    table = _applied(obs)
    share = _share(table, fleet) if table is not None else None
    return share is not None and abs(share - percent) < 0.05


def _unrouted(obs: Observation, fleet: str) -> bool:
    """No router sends ``fleet`` anything: it may be deleted."""
    if not eb.needs_router(obs.spec):
        return True
    table = _applied(obs)
    share = _share(table, fleet) if table is not None else None
    return table is not None and (share is None or share == 0.0)


# --- status ---------------------------------------------------------------------------------


def _endpoint_status(obs: Observation, plan: Plan, variants: list[_Variant]) -> None:
    status = plan.status
    progress = status.deployment
    router = next((f for f in obs.fleets if f.component == eb.COMPONENT_ROUTER), None)
    router_ready = not eb.needs_router(obs.spec) or (router is not None and router.ready >= 1)
    failed = [
        f"{v.field} ({v.spec.variant_name}): {msg}"
        for v in variants
        if v.serving is not None
        and obs.status.endpoint_status in (None, "Creating")
        and (msg := (v.serving.progress_failed or _problem(obs, v.serving)))
    ]
    # Once InService, a variant scaling out (or up from zero) leaves the endpoint so.
    creating = obs.status.endpoint_status in (None, "Creating", "Failed")
    settled = all(
        v.summary.variant_status is None
        or v.summary.variant_status[0].status == "Baking"
        or (not creating and v.summary.variant_status[0].status == "Updating")
        for v in variants
    )
    if failed:
        _fail(obs, plan, "; ".join(failed), kind=FailureKind.CLIENT)
        return
    if progress is not None and progress.phase == "RollingBack":
        state, message = "RollingBack", progress.rollback_reason or ""
    elif progress is not None and _in_progress(progress):
        state, message = "Updating", progress.message or ""
    elif settled and router_ready:
        state, message = "InService", ""
    else:
        state = (
            "Creating" if obs.status.endpoint_status in (None, "Creating", "Failed") else "Updating"
        )
        waiting = [
            f"{v.spec.variant_name}: {v.summary.variant_status[0].status_message}"
            for v in variants
            if v.summary.variant_status
        ]
        if not router_ready:
            waiting.append("router: not ready")
        message = "; ".join(waiting)
        plan.again_in(POLL_SECONDS)
    if state != obs.status.endpoint_status:
        plan.events.append(Event("Normal", state, message or f"Endpoint is {state}"))
    status.endpoint_status = state  # type: ignore[assignment]
    status.failure_reason = None
    if progress is not None and progress.phase == "RolledBack":
        message = f"the last update was rolled back: {progress.rollback_reason}"
    status.conditions = _conditions(obs, state, message)


def _conditions(obs: Observation, state: str, message: str) -> list[Any]:
    ready = "True" if state == "InService" else "False"
    moving = "True" if state in ("Creating", "Updating", "RollingBack") else "False"
    failed = "True" if state == "Failed" else "False"
    desired = [
        Cond(CONDITION_READY, ready, state, message),  # type: ignore[arg-type]
        Cond(CONDITION_FAILED, failed, state, message if failed == "True" else ""),  # type: ignore[arg-type]
        Cond(CONDITION_RECONCILING, moving, state, message if moving == "True" else ""),  # type: ignore[arg-type]
        Cond(CONDITION_STALLED, failed, state, message if failed == "True" else ""),  # type: ignore[arg-type]
    ]
    return merge_conditions(obs.status.conditions, desired, generation=obs.generation, now=obs.now)


def _fail(
    obs: Observation, plan: Plan, message: str, kind: FailureKind = FailureKind.VALIDATION
) -> Plan:
    text = failure(kind, message).message
    status = plan.status
    if status.endpoint_status != "Failed" or status.failure_reason != text:
        plan.events.append(Event("Warning", "Failed", text))
    status.endpoint_status = "Failed"
    status.failure_reason = text
    status.conditions = _conditions(obs, "Failed", text)
    return _finish(obs, plan)


def _finish(obs: Observation, plan: Plan) -> Plan:
    plan.status.observed_generation = obs.generation
    return plan


# --- small helpers --------------------------------------------------------------------------------


def _describe(variant: _Variant) -> None:
    summary = variant.summary
    weight = variant.spec.initial_variant_weight
    summary.desired_weight = weight
    summary.current_weight = weight
    summary.model_data_url = variant.model.model_data_url
    images = {f.image or variant.model.image for f, w in variant.fleets if w > 0}
    summary.deployed_images = [DeployedImage(specified_image=i) for i in sorted(images)] or None


def _problem(obs: Observation, fleet: FleetView) -> str | None:
    return next((p.message for p in obs.problems if p.fleet == fleet.name), None)


def _in_progress(progress: DeploymentProgress | None) -> bool:
    return progress is not None and progress.phase not in ("Completed", "RolledBack")


def _placeholder(name: str, replicas: int = 1) -> FleetView:
    """A fleet created in this reconcile (its watch event has not come yet)."""
    return FleetView(
        name=name, uid="", variant=None, component=eb.COMPONENT_SERVER, replicas=replicas,
        ready=0, updated=0, spec_count=None, image=None, model_data_url=None,
        progress_failed=None, observed=False, deleting=False,
    )  # fmt: skip


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _from_epoch(value: float | None) -> datetime | None:
    from datetime import UTC

    return datetime.fromtimestamp(value, UTC) if value is not None else None
