"""The Endpoint planner, step by step: creation, in-place changes, each update type,
rollbacks, scaling. A small in-memory world applies each plan the way the controller
does (create, scale, delete fleets; the router applies the written table when the test
says so), so a whole update can be walked through reconcile by reconcile."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubemaker.api.endpoint import Endpoint, EndpointStatus
from kubemaker.builders import endpoint as eb
from kubemaker.config import OperatorConfig
from kubemaker.planners.endpoint import ModelState, Observation, Plan, Traffic, plan_endpoint
from kubemaker.planners.endpoint_views import FleetView, PodProblem
from kubemaker_runtime.routing import RoutingTable

CONFIG = OperatorConfig()
T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def variant(name: str = "AllTraffic", **extra: Any) -> dict[str, Any]:
    return {
        "variantName": name,
        "model": {"modelDataUrl": "s3://models/a/model.tar.gz", "algorithmName": "xgboost"},
        "instanceType": "ml.m5.large",
        **extra,
    }


def endpoint(spec: dict[str, Any]) -> Endpoint:
    return Endpoint.model_validate(
        {"apiVersion": "kubemaker.io/v1alpha1", "metadata": {"name": "ep"}, "spec": spec}
    )


@dataclasses.dataclass
class World:
    spec: dict[str, Any]
    status: EndpointStatus = dataclasses.field(default_factory=EndpointStatus)
    fleets: dict[str, FleetView] = dataclasses.field(default_factory=dict)
    table: RoutingTable | None = None
    applied: frozenset[str] | None = None
    now: datetime = T0
    models: dict[str, ModelState] | None = None
    alarms: dict[str, str] = dataclasses.field(default_factory=dict)
    traffic: dict[str, Traffic] = dataclasses.field(default_factory=dict)
    problems: list[PodProblem] = dataclasses.field(default_factory=list)
    last: Plan | None = None

    def reconcile(self, seconds: float = 1.0) -> Plan:
        self.now += timedelta(seconds=seconds)
        ep = endpoint(self.spec)
        variants = [*ep.spec.production_variants, *(ep.spec.shadow_production_variants or [])]
        models = self.models or {
            v.variant_name: ModelState(model=eb.resolve_model(v.model, CONFIG, field="x"))
            for v in variants
        }
        obs = Observation(
            name="ep",
            namespace="ns",
            generation=1,
            spec=ep.spec,
            status=self.status,
            models=models,
            fleets=list(self.fleets.values()),
            problems=self.problems,
            written_table=self.table,
            router_versions=self.applied,
            traffic=self.traffic,
            alarms=self.alarms,
            config=CONFIG,
            now=self.now,
        )
        plan = plan_endpoint(obs)
        self.status = plan.status
        for manifest in plan.apply:
            if manifest["kind"] == "Deployment":  # the router: ready at once here
                router = fleet_view(manifest)
                self.fleets.setdefault(router.name, dataclasses.replace(router, ready=2))
        for manifest in plan.create:
            name = manifest["metadata"]["name"]
            self.fleets.setdefault(name, fleet_view(manifest))
        for name, (replicas, count) in plan.scale.items():
            old = self.fleets[name]
            self.fleets[name] = dataclasses.replace(
                old, replicas=replicas, spec_count=count if count is not None else old.spec_count
            )
        for kind, name in plan.delete:
            if kind in ("fleet", "Deployment"):
                self.fleets.pop(name, None)
        if plan.table is not None:
            self.table = plan.table
        self.last = plan
        return plan

    def ready(self, *names: str) -> None:
        for name in names or list(self.fleets):
            fleet = self.fleets[name]
            self.fleets[name] = dataclasses.replace(fleet, ready=fleet.replicas, observed=True)

    def route(self) -> None:
        """Every router replica applies the table written last."""
        assert self.table is not None
        self.applied = frozenset({self.table.version})

    def serving(self, index: int = 0) -> str:
        assert self.status.production_variants is not None
        fleet = self.status.production_variants[index].fleet
        assert fleet is not None
        return fleet


def fleet_view(manifest: dict[str, Any]) -> FleetView:
    return dataclasses.replace(FleetView.from_body(manifest), ready=0, observed=True, uid="u")


def services(plan: Plan) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in plan.apply if m["kind"] == "Service"}


# --- creation ---------------------------------------------------------------------------


def test_one_variant_is_a_fleet_and_services_without_router() -> None:
    world = World({"productionVariants": [variant(initialInstanceCount=2)]})
    plan = world.reconcile()
    assert [m["kind"] for m in plan.create] == ["Deployment"]
    fleet = plan.create[0]
    assert fleet["spec"]["replicas"] == 2
    pod = fleet["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["args"][:3] == [
        "fetch-model",
        "--uri",
        "s3://models/a/model.tar.gz",
    ]
    assert pod["containers"][0]["args"] == ["serve"]
    assert pod["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/ping"
    assert world.status.endpoint_status == "Creating"
    assert not any(m["kind"] == "ConfigMap" for m in plan.apply)
    assert services(plan)["ep"]["spec"]["selector"][eb.LABEL_FLEET] == fleet["metadata"]["name"]
    # Two instances: a PodDisruptionBudget.
    assert any(m["kind"] == "PodDisruptionBudget" for m in plan.apply)

    world.ready()
    world.reconcile()
    assert world.status.endpoint_status == "InService"
    summary = world.status.production_variants[0]  # type: ignore[index]
    assert (summary.current_instance_count, summary.desired_instance_count) == (2, 2)
    ready = next(c for c in world.status.conditions or [] if c.type == "Ready")
    assert ready.status == "True" and ready.observed_generation == 1


def test_health_check_timeout_sets_the_startup_probe() -> None:
    world = World(
        {"productionVariants": [variant(containerStartupHealthCheckTimeoutInSeconds=120)]}
    )
    plan = world.reconcile()
    probe = plan.create[0]["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    assert probe["failureThreshold"] * probe["periodSeconds"] == 120


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (
            {"productionVariants": [variant(instanceType="ml.nope")]},
            ["spec.productionVariants[0].instanceType", "ml.nope"],
        ),
        (
            {
                "productionVariants": [
                    variant("A", initialVariantWeight=0),
                    variant("B", initialVariantWeight=0),
                ]
            },
            ["initialVariantWeight is 0"],
        ),
        (
            {
                "productionVariants": [variant("A"), variant("B")],
                "shadowProductionVariants": [variant("S")],
            },
            ["spec.shadowProductionVariants", "exactly one production variant"],
        ),
    ],
)
def test_bad_input_fails_naming_the_field(spec: dict[str, Any], words: list[str]) -> None:
    world = World(spec)
    plan = world.reconcile()
    assert world.status.endpoint_status == "Failed"
    for word in words:
        assert word in (world.status.failure_reason or "")
    assert not plan.create


def test_training_job_reference_waits_then_fails_with_the_jobs_reason() -> None:
    world = World({"productionVariants": [variant()]})
    world.models = {"AllTraffic": ModelState(waiting="TrainingJob bank is InProgress")}
    plan = world.reconcile()
    assert world.status.endpoint_status == "Creating" and not plan.create
    assert plan.requeue_after is not None
    world.models = {
        "AllTraffic": ModelState(error="trainingJobRef: TrainingJob bank is Failed: AlgorithmError")
    }
    world.reconcile()
    assert world.status.endpoint_status == "Failed"
    assert "TrainingJob bank is Failed" in (world.status.failure_reason or "")


def test_a_fleet_that_cannot_start_fails_the_new_endpoint() -> None:
    world = World({"productionVariants": [variant()]})
    world.reconcile()
    name = next(iter(world.fleets))
    world.problems = [
        PodProblem("p", name, "init container model: exited with code 1: not a tar.gz archive")
    ]
    world.reconcile()
    assert world.status.endpoint_status == "Failed"
    assert "not a tar.gz archive" in (world.status.failure_reason or "")


# --- in place ---------------------------------------------------------------------------


def test_instance_count_change_scales_in_place_and_kubectl_scale_stands() -> None:
    world = World({"productionVariants": [variant(initialInstanceCount=1)]})
    world.reconcile()
    world.ready()
    world.reconcile()
    fleet = world.serving()
    # Someone runs `kubectl scale --replicas=3`: the operator leaves it.
    world.fleets[fleet] = dataclasses.replace(world.fleets[fleet], replicas=3)
    assert fleet not in world.reconcile().scale
    # The spec's count changes: applied to the same fleet, no new fleet.
    world.spec["productionVariants"][0]["initialInstanceCount"] = 4
    plan = world.reconcile()
    assert plan.scale == {fleet: (4, 4)} and not plan.create
    assert world.serving() == fleet


def test_two_variants_get_a_router_with_the_weights() -> None:
    world = World(
        {
            "productionVariants": [
                variant("A", initialVariantWeight=3),
                variant("B", initialVariantWeight=1, instanceType="ml.c5.xlarge"),
            ]
        }
    )
    plan = world.reconcile()
    kinds = {(m["kind"], m["metadata"]["name"]) for m in plan.apply}
    assert ("ConfigMap", "ep-router") in kinds and ("Deployment", "ep-router") in kinds
    assert plan.table is not None
    assert {v.name: v.weight for v in plan.table.variants} == {"A": 3, "B": 1}
    assert services(plan)["ep"]["spec"]["selector"] == eb.router_selector(
        eb.endpoint_owner("ep", "ns", "")
    )
    world.ready()
    world.reconcile()
    assert world.status.endpoint_status == "InService"


def test_the_router_is_sized_by_the_operator_config() -> None:
    router = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
    config = OperatorConfig.from_mapping(
        {"endpoints": {"routerReplicas": 1, "routerResources": router}}
    )
    owner = eb.endpoint_owner("ep", "ns", "")
    built = eb.build_router(owner, config)
    assert built["spec"]["replicas"] == 1
    assert built["spec"]["template"]["spec"]["containers"][0]["resources"] == router
    default = eb.build_router(owner, CONFIG)
    assert default["spec"]["replicas"] == 2
    assert default["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] == {
        "cpu": "500m",
        "memory": "256Mi",
    }
    with pytest.raises(ValueError, match="routerReplicas"):
        OperatorConfig.from_mapping({"endpoints": {"routerReplicas": 0}})


# --- updates ----------------------------------------------------------------------------


def test_all_at_once_without_router_switches_the_service_then_deletes_the_old_fleet() -> None:
    world = World({"productionVariants": [variant(initialInstanceCount=2)]})
    world.reconcile()
    world.ready()
    world.reconcile()
    old = world.serving()
    world.spec["productionVariants"][0]["model"]["modelDataUrl"] = "s3://models/b/model.tar.gz"
    plan = world.reconcile()
    new = plan.create[0]["metadata"]["name"]
    assert new != old and plan.create[0]["spec"]["replicas"] == 2
    assert world.status.endpoint_status == "Updating"
    assert world.status.deployment is not None and world.status.deployment.phase == "Provisioning"
    assert services(plan)["ep"]["spec"]["selector"][eb.LABEL_FLEET] == old
    world.ready(new)
    plan = world.reconcile()
    assert services(plan)["ep"]["spec"]["selector"][eb.LABEL_FLEET] == new
    world.reconcile()
    world.reconcile()
    assert old not in world.fleets
    assert world.status.deployment.phase == "Completed"
    assert world.status.endpoint_status == "InService" and world.serving() == new


def test_canary_moves_traffic_in_steps_once_the_router_applies_each() -> None:
    world = World(
        {
            "productionVariants": [variant(initialInstanceCount=4)],
            "deploymentConfig": {
                "blueGreenUpdatePolicy": {
                    "trafficRoutingConfiguration": {
                        "type": "Canary",
                        "canarySize": {"type": "CapacityPercent", "value": 25},
                        "waitIntervalInSeconds": 60,
                    },
                    "terminationWaitInSeconds": 30,
                }
            },
        }
    )
    world.reconcile()
    world.ready()
    world.route()
    world.reconcile()
    world.route()
    old = world.serving()
    world.spec["productionVariants"][0]["model"]["image"] = "example/serve:2"
    del world.spec["productionVariants"][0]["model"]["algorithmName"]
    new = world.reconcile().create[0]["metadata"]["name"]
    world.ready(new)
    world.reconcile()
    assert world.status.deployment.new_fleet_traffic_percent == 25  # type: ignore[union-attr]
    shares = {f.name: f.weight for f in world.table.variants[0].fleets}  # type: ignore[union-attr]
    assert shares == {old: 75, new: 25}
    # The wait counts only once every router replica applies the canary's table.
    world.reconcile(seconds=120)
    assert world.status.deployment.new_fleet_traffic_percent == 25  # type: ignore[union-attr]
    world.route()
    world.reconcile(seconds=61)
    assert world.status.deployment.new_fleet_traffic_percent == 100  # type: ignore[union-attr]
    world.route()
    world.reconcile()
    assert world.status.deployment.phase == "Baking" and old in world.fleets  # type: ignore[union-attr]
    world.reconcile(seconds=31)
    assert old not in world.fleets and world.serving() == new
    events = [e.reason for e in world.last.events]  # type: ignore[union-attr]
    assert "UpdateCompleted" in events


def test_an_alarm_rolls_back_and_the_same_spec_is_not_tried_again() -> None:
    world = World(
        {
            "productionVariants": [variant(initialInstanceCount=2)],
            "deploymentConfig": {
                "blueGreenUpdatePolicy": {
                    "trafficRoutingConfiguration": {
                        "type": "Linear",
                        "linearStepSize": {"type": "InstanceCount", "value": 1},
                        "waitIntervalInSeconds": 30,
                    }
                },
                "autoRollbackConfiguration": {
                    "alarms": [
                        {"alarmName": "errors", "metricName": "Invocation5XXErrors", "threshold": 5}
                    ]
                },
            },
        }
    )
    world.reconcile()
    world.ready()
    world.route()
    world.reconcile()
    old = world.serving()
    world.spec["productionVariants"][0]["instanceType"] = "ml.c5.xlarge"
    new = world.reconcile().create[0]["metadata"]["name"]
    world.ready(new)
    world.reconcile()
    world.route()
    assert world.status.deployment.new_fleet_traffic_percent == 50  # type: ignore[union-attr]
    world.alarms = {new: "alarm errors: Invocation5XXErrors 12 > 5"}
    world.reconcile()
    assert world.status.endpoint_status == "RollingBack"
    assert {f.name: f.weight for f in world.table.variants[0].fleets} == {old: 1.0}  # type: ignore[union-attr]
    assert new in world.fleets  # not before the routers stop sending it traffic
    world.route()
    world.reconcile()
    assert new not in world.fleets
    assert world.status.deployment.phase == "RolledBack"  # type: ignore[union-attr]
    assert "Invocation5XXErrors" in (world.status.deployment.rollback_reason or "")  # type: ignore[union-attr]
    assert world.status.endpoint_status == "InService"
    world.alarms = {}
    assert not world.reconcile().create


def test_rolling_update_keeps_capacity_batch_by_batch() -> None:
    world = World(
        {
            "productionVariants": [variant(initialInstanceCount=4)],
            "deploymentConfig": {
                "rollingUpdatePolicy": {"maximumBatchSize": {"type": "InstanceCount", "value": 2}}
            },
        }
    )
    world.reconcile()
    world.ready()
    world.reconcile()
    old = world.serving()
    world.spec["productionVariants"][0]["model"]["modelDataUrl"] = "s3://models/c/model.tar.gz"
    plan = world.reconcile()
    new = plan.create[0]["metadata"]["name"]
    assert plan.create[0]["spec"]["replicas"] == 2
    seen = []
    for _ in range(12):
        world.ready()
        world.reconcile()
        live = sum(f.ready for f in world.fleets.values())
        seen.append((world.fleets.get(old, None) and world.fleets[old].replicas, live))
        if world.status.deployment.phase == "Completed":  # type: ignore[union-attr]
            break
    assert world.status.deployment.phase == "Completed"  # type: ignore[union-attr]
    assert old not in world.fleets and world.fleets[new].replicas == 4
    # Never fewer ready instances than the variant had.
    assert all(live >= 4 for _, live in seen)


# --- scaling ----------------------------------------------------------------------------


def test_autoscaling_scales_out_on_traffic_and_records_why() -> None:
    world = World(
        {
            "productionVariants": [
                variant(
                    initialInstanceCount=1,
                    autoScaling={
                        "minCapacity": 1,
                        "maxCapacity": 5,
                        "targetInvocationsPerInstance": 100,
                    },
                )
            ]
        }
    )
    world.reconcile()
    world.ready()
    world.reconcile()
    fleet = world.serving()
    world.traffic = {"AllTraffic": Traffic(invocations_per_minute=350.0)}
    plan = world.reconcile()
    assert plan.scale[fleet][0] == 4
    assert [e.reason for e in plan.events] == ["ScaledOut"]
    summary = world.status.production_variants[0]  # type: ignore[index]
    assert summary.last_scaling_decision and "350" in summary.last_scaling_decision
    assert summary.last_scale_out_time is not None
    # Re-applying the same manifest does not reset the autoscaled count.
    world.traffic = {}
    assert fleet not in world.reconcile().scale


def test_the_router_goes_when_no_longer_needed() -> None:
    world = World({"productionVariants": [variant("A"), variant("B")]})
    world.reconcile()
    world.ready()
    world.reconcile()
    assert "ep-router" in world.fleets
    world.spec["productionVariants"].pop()
    world.route()
    plan = world.reconcile()
    assert ("Deployment", "ep-router") in plan.delete and ("ConfigMap", "ep-router") in plan.delete
    fleet = world.serving()
    assert services(plan)["ep"]["spec"]["selector"][eb.LABEL_FLEET] == fleet


def test_a_fleet_past_its_progress_deadline_fails_the_new_endpoint_with_the_reason() -> None:
    world = World({"productionVariants": [variant()]})
    world.reconcile()
    name = next(iter(world.fleets))
    world.fleets[name] = dataclasses.replace(
        world.fleets[name],
        progress_failed='ReplicaSet "x" has timed out progressing.',
    )
    world.reconcile()
    assert world.status.endpoint_status == "Failed"
    assert "timed out progressing" in (world.status.failure_reason or "")
    assert "spec.productionVariants[0] (AllTraffic)" in (world.status.failure_reason or "")


def test_cpu_target_gets_a_horizontal_pod_autoscaler_and_no_operator_scaling() -> None:
    world = World(
        {
            "productionVariants": [
                variant(
                    autoScaling={"minCapacity": 1, "maxCapacity": 3, "targetCpuUtilization": 70}
                )
            ]
        }
    )
    plan = world.reconcile()
    (hpa,) = [m for m in plan.apply if m["kind"] == "HorizontalPodAutoscaler"]
    fleet = plan.create[0]["metadata"]["name"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == fleet
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    metric = hpa["spec"]["metrics"][0]["resource"]
    assert metric["target"]["averageUtilization"] == 70
    world.ready()
    # The HPA scales the Deployment: the operator leaves its replicas alone.
    world.fleets[fleet] = dataclasses.replace(world.fleets[fleet], replicas=3, ready=3)
    assert fleet not in world.reconcile().scale
    assert not any(m["kind"] == "ConfigMap" for m in world.last.apply)  # type: ignore[union-attr]
