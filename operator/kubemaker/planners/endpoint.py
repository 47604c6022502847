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

One variant updates at a time (``status.deployment``); the others wait their turn. The
update steps are in :mod:`.endpoint_updates`, the shared types in :mod:`.endpoint_plan`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubemaker.api.common import (
    CONDITION_FAILED,
    CONDITION_READY,
    CONDITION_RECONCILING,
    CONDITION_STALLED,
)
from kubemaker.api.endpoint import (
    EndpointSpec,
    ProductionVariantSummary,
    VariantStatus,
)
from kubemaker.builders import endpoint as eb
from kubemaker.builders.errors import SpecError
from kubemaker.builders.owner import Owner
from kubemaker.builders.routes import routing_table_for
from kubemaker.failures import FailureKind, failure
from kubemaker.planners import endpoint_scaling as scaling
from kubemaker.planners.endpoint_plan import (
    POLL_SECONDS,
    WAITING_FOR_JOB_SECONDS,
    Event,
    Observation,
    Plan,
    Traffic,
    VariantState,
    describe,
    epoch,
    from_epoch,
    in_progress,
    placeholder,
    problem_of,
    unrouted,
)
from kubemaker.planners.endpoint_updates import abandon, plan_update
from kubemaker.planners.endpoint_views import FleetView
from kubemaker.reconcile.conditions import Cond, merge_conditions
from kubemaker.reconcile.models import ModelState
from kubemaker_runtime.routing import Fleet, RoutingTable

__all__ = ["ModelState", "Observation", "Plan", "Traffic", "plan_endpoint"]


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
    owner = eb.endpoint_owner(obs.name, obs.namespace, obs.uid)
    fleets = {f.name: f for f in obs.fleets if f.component == eb.COMPONENT_SERVER}
    updating = status.deployment if in_progress(status.deployment) else None
    for variant in variants:
        if variant.serving is None or variant.serving.name == variant.desired:
            if updating is not None and updating.variant_name == variant.spec.variant_name:
                updating = None  # the spec went back to the serving fleet: abandon
                abandon(obs, plan, fleets, variant)
            _steady(obs, plan, owner, variant, fleets)
        elif updating is None or updating.variant_name == variant.spec.variant_name:
            plan_update(obs, plan, owner, variant, fleets)
            updating = status.deployment if in_progress(status.deployment) else None
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
    if status.deployment is not None and in_progress(status.deployment):
        wanted |= {status.deployment.new_fleet, status.deployment.old_fleet or ""}
    for name in fleets:
        if name not in wanted and unrouted(obs, name):
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


def _variants(obs: Observation, plan: Plan) -> list[VariantState] | None:
    """Each variant with its model and fleets; None while a model is not known yet."""
    spec = obs.spec
    old = {s.variant_name: s for s in (obs.status.production_variants or [])}
    old |= {s.variant_name: s for s in (obs.status.shadow_production_variants or [])}
    fleets = {f.name: f for f in obs.fleets if f.component == eb.COMPONENT_SERVER}
    result: list[VariantState] = []
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
                owner=eb.endpoint_owner(obs.name, obs.namespace, obs.uid),
                name=desired, replicas=1, field=where,
            )  # fmt: skip
        result.append(VariantState(variant, index, shadow, model, desired, serving, [], summary))
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
    owner: Owner,
    variant: VariantState,
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
        variant.fleets = [(placeholder(variant.desired, summary.desired_instance_count), 1.0)]
        plan.again_in(POLL_SECONDS)
        describe(variant)
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
    problem = problem_of(obs, fleet)
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
    describe(variant)


def _autoscale(obs: Observation, plan: Plan, variant: VariantState, fleet: FleetView) -> int:
    assert variant.spec.auto_scaling is not None
    policy = scaling.ScalingPolicy.from_api(variant.spec.auto_scaling)
    if policy is None:
        return fleet.replicas
    summary = variant.summary
    state = scaling.ScalingState(
        desired=fleet.replicas,
        last_scale_out_at=epoch(summary.last_scale_out_time),
        last_scale_in_at=epoch(summary.last_scale_in_time),
        last_traffic_at=epoch(summary.last_traffic_time),
    )
    traffic = obs.traffic.get(variant.spec.variant_name) or Traffic(None)
    decision = scaling.decide(
        policy,
        state,
        invocations_per_minute=traffic.invocations_per_minute,
        held_requests=traffic.held,
        now=obs.now.timestamp(),
    )
    summary.last_scale_out_time = from_epoch(decision.state.last_scale_out_at)
    summary.last_scale_in_time = from_epoch(decision.state.last_scale_in_at)
    summary.last_traffic_time = from_epoch(decision.state.last_traffic_at)
    if decision.direction != "none" and decision.desired != fleet.replicas:
        summary.last_scaling_decision = decision.reason
        plan.scale[fleet.name] = (decision.desired, fleet.spec_count)
        plan.events.append(
            Event(
                "Normal",
                "ScaledOut" if decision.direction == "out" else "ScaledIn",
                decision.reason,
                variant=variant.spec.variant_name,
            )
        )
        return decision.desired
    return fleet.replicas


# --- children shared by the variants ------------------------------------------------------------


def _children(obs: Observation, plan: Plan, owner: Owner, variants: list[VariantState]) -> None:
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
        if any(f.component == eb.COMPONENT_ROUTER for f in obs.fleets):
            # No longer needed (a variant, the shadow or capture was removed): the
            # Service selects the fleet in this same reconcile, before the router goes.
            router = eb.router_name(obs.name)
            plan.delete += [("Deployment", router), ("PodDisruptionBudget", router)]
            plan.delete.append(("ConfigMap", router))
    plan.apply.append(eb.build_service(owner, name, selector, eb.COMPONENT_ROUTER))


def _table(obs: Observation, variants: list[VariantState]) -> RoutingTable:
    """The routing table: each variant's fleets by their Services, weighted by step."""
    fleets = {
        v.spec.variant_name: [
            Fleet(
                name=f.name,
                url=eb.service_url(f.name, obs.namespace),
                weight=max(0.0, w),
                instances=f.ready,
            )
            for f, w in v.fleets
        ]
        for v in variants
    }
    return routing_table_for(obs.spec, obs.name, fleets)


# --- status ---------------------------------------------------------------------------------


def _endpoint_status(obs: Observation, plan: Plan, variants: list[VariantState]) -> None:
    status = plan.status
    progress = status.deployment
    router = next((f for f in obs.fleets if f.component == eb.COMPONENT_ROUTER), None)
    router_ready = not eb.needs_router(obs.spec) or (router is not None and router.ready >= 1)
    failed = [
        f"{v.field} ({v.spec.variant_name}): {msg}"
        for v in variants
        if v.serving is not None
        and obs.status.endpoint_status in (None, "Creating")
        and (msg := (v.serving.progress_failed or problem_of(obs, v.serving)))
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
    elif progress is not None and in_progress(progress):
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
    text = failure(kind, message).reason
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
