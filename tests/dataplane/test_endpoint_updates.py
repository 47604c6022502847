"""Every kind of Endpoint update, and a rollback, under load: zero failed requests.

The real planner (``plan_endpoint``) decides each step; real model-server processes are
the fleets, and the real router applies the routing tables the planner writes. This
test plays Kubernetes in between, as thinly as it can: a fleet the plan creates is a
model-server process started on a free port (one per fleet, whatever its replicas), a
fleet the plan deletes is stopped, and the table is written to the router's file with
each fleet's Service URL replaced by its process's URL (what DNS and kube-proxy do).
What the router reports applying (``GET /router/config``) is what the planner sees.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from process_support import wait_for
from router_support import load, run_router
from serving_support import run_server, serving_command

from kubemaker.api.endpoint import Endpoint, EndpointStatus
from kubemaker.builders import endpoint as eb
from kubemaker.config import OperatorConfig
from kubemaker.planners.endpoint import ModelState, Observation, Plan, plan_endpoint
from kubemaker.planners.endpoint_views import FleetView
from kubemaker_runtime.routing import RoutingTable

CONFIG = OperatorConfig()
STEP_SECONDS = 1


def variant(name: str, url: str) -> dict[str, Any]:
    return {
        "variantName": name,
        "model": {"modelDataUrl": url, "algorithmName": "xgboost"},
        "instanceType": "ml.m5.large",
        "initialInstanceCount": 2,
    }


class Fleets:
    """Model-server processes standing in for the plan's Deployments."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.views: dict[str, FleetView] = {}
        self.urls: dict[str, str] = {}
        self.stacks: dict[str, contextlib.ExitStack] = {}

    def create(self, manifest: dict[str, Any]) -> None:
        name = manifest["metadata"]["name"]
        if name in self.views:
            return
        stack = contextlib.ExitStack()
        model_dir = self.tmp_path / name
        model_dir.mkdir()
        server = stack.enter_context(
            run_server(serving_command("serving_support:SumModel", model_dir), self.tmp_path)
        )
        self.stacks[name] = stack
        self.urls[name] = server.url
        view = FleetView.from_body(manifest)
        self.views[name] = dataclasses.replace(view, uid=name, ready=view.replicas, observed=True)

    def scale(self, name: str, replicas: int, count: int | None) -> None:
        view = self.views[name]
        self.views[name] = dataclasses.replace(
            view,
            replicas=replicas,
            ready=replicas,
            spec_count=count if count is not None else view.spec_count,
        )

    def delete(self, name: str) -> None:
        self.views.pop(name, None)
        stack = self.stacks.pop(name, None)
        if stack is not None:
            stack.close()

    def close(self) -> None:
        for name in list(self.stacks):
            self.delete(name)


class Loop:
    """The controller's part: observe, plan, apply; until the update has ended."""

    def __init__(self, spec: dict[str, Any], fleets: Fleets, routes: Path) -> None:
        self.spec = spec
        self.fleets = fleets
        self.routes = routes
        self.status = EndpointStatus()
        self.written: RoutingTable | None = None
        self.local_versions: dict[str, str] = {}  # the router file's version -> the plan's
        self.router_url = ""
        self.alarms: dict[str, str] = {}
        self.phases: list[tuple[str, float]] = []

    def applied(self) -> frozenset[str] | None:
        try:
            version = requests.get(self.router_url + "/router/config", timeout=5).json()["version"]
        except (requests.RequestException, ValueError, KeyError):
            return None
        plan_version = self.local_versions.get(version)
        return frozenset({plan_version}) if plan_version else None

    def reconcile(self) -> Plan:
        endpoint = Endpoint.model_validate(
            {"apiVersion": "kubemaker.io/v1alpha1", "metadata": {"name": "ep"}, "spec": self.spec}
        )
        models = {
            v.variant_name: ModelState(model=eb.resolve_model(v.model, CONFIG, field="x"))
            for v in endpoint.spec.production_variants
        }
        router = FleetView.from_body(
            {"metadata": {"name": "ep-router", "labels": {"app.kubernetes.io/component": "router"}},
             "spec": {"replicas": 1}, "status": {"readyReplicas": 1}}
        )  # fmt: skip
        plan = plan_endpoint(
            Observation(
                name="ep",
                namespace="ns",
                generation=1,
                spec=endpoint.spec,
                status=self.status,
                models=models,
                fleets=[*self.fleets.views.values(), router],
                problems=[],
                written_table=self.written,
                router_versions=self.applied(),
                traffic={},
                alarms=self.alarms,
                config=CONFIG,
                now=datetime.now(UTC),
            )
        )
        self.status = plan.status
        for manifest in plan.create:
            self.fleets.create(manifest)
        for name, (replicas, count) in plan.scale.items():
            self.fleets.scale(name, replicas, count)
        if plan.table is not None:
            self.write(plan.table)
        for kind, name in plan.delete:
            if kind == "fleet":
                self.fleets.delete(name)
        progress = self.status.deployment
        if progress is not None and (not self.phases or self.phases[-1][0] != progress.phase):
            self.phases.append((progress.phase, progress.new_fleet_traffic_percent))
        return plan

    def write(self, table: RoutingTable) -> None:
        """The ConfigMap as the router's pods see it: Service URLs resolved."""
        self.written = table
        local = table.model_copy(
            update={
                "variants": [
                    v.model_copy(
                        update={
                            "fleets": [
                                f.model_copy(update={"url": self.fleets.urls.get(f.name, f.url)})
                                for f in v.fleets
                            ]
                        }
                    )
                    for v in table.variants
                ]
            }
        ).with_version()
        self.local_versions[local.version] = table.version
        tmp = self.routes.with_name("routes.tmp")
        tmp.write_text(local.to_json())
        tmp.replace(self.routes)

    def settle(self, done: str, timeout: float = 90.0) -> None:
        """Reconcile until the update's phase is ``done`` and the endpoint InService."""

        def finished() -> bool:
            self.reconcile()
            progress = self.status.deployment
            return (
                progress is not None
                and progress.phase == done
                and self.status.endpoint_status == "InService"
            )

        wait_for(finished, timeout, f"the update to end {done}")


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loop]:
    fleets = Fleets(tmp_path)
    routes = tmp_path / "routes.json"
    spec = {
        "productionVariants": [
            variant("A", "s3://models/a-0/model.tar.gz"),
            variant("B", "s3://models/b-0/model.tar.gz"),
        ]
    }
    loop = Loop(spec, fleets, routes)
    try:
        loop.reconcile()
        with run_router(routes, tmp_path) as router:
            loop.router_url = router.url
            wait_for(
                lambda: loop.reconcile() and loop.status.endpoint_status == "InService",
                60,
                "the endpoint to be InService",
            )
            yield loop
    finally:
        fleets.close()


@contextlib.contextmanager
def traffic(url: str) -> Iterator[list[Any]]:
    """Requests without pause from 4 connections until the block ends; their results."""
    stop = threading.Event()
    results: list[Any] = []
    thread = threading.Thread(
        target=lambda: results.extend(load(url + "/invocations", 10**6, 4, until=stop))
    )
    thread.start()
    try:
        yield results
    finally:
        stop.set()
        thread.join(timeout=60)


UPDATES = {
    "AllAtOnce": {"blueGreenUpdatePolicy": {}},
    "Canary": {
        "blueGreenUpdatePolicy": {
            "trafficRoutingConfiguration": {
                "type": "Canary",
                "canarySize": {"type": "CapacityPercent", "value": 20},
                "waitIntervalInSeconds": STEP_SECONDS,
            },
            "terminationWaitInSeconds": STEP_SECONDS,
        }
    },
    "Linear": {
        "blueGreenUpdatePolicy": {
            "trafficRoutingConfiguration": {
                "type": "Linear",
                "linearStepSize": {"type": "InstanceCount", "value": 1},
                "waitIntervalInSeconds": STEP_SECONDS,
            }
        }
    },
    "Rolling": {
        "rollingUpdatePolicy": {
            "maximumBatchSize": {"type": "InstanceCount", "value": 1},
            "waitIntervalInSeconds": STEP_SECONDS,
        }
    },
}


def test_every_update_type_and_a_rollback_fail_no_request(loop: Loop) -> None:
    with traffic(loop.router_url) as results:
        for round_, (name, config) in enumerate(UPDATES.items(), start=1):
            loop.spec["deploymentConfig"] = config
            old = loop.status.production_variants[0].fleet  # type: ignore[index]
            loop.spec["productionVariants"][0]["model"]["modelDataUrl"] = (
                f"s3://models/a-{round_}/model.tar.gz"
            )
            loop.settle("Completed")
            new = loop.status.production_variants[0].fleet  # type: ignore[index]
            assert new != old and old not in loop.fleets.views, name
        shifted = [p for p, _ in loop.phases]
        assert "ShiftingTraffic" in shifted and "Baking" in shifted

        # A rollback: the canary's alarm fires while it has its share of the traffic.
        loop.spec["deploymentConfig"] = UPDATES["Canary"]
        serving = loop.status.production_variants[0].fleet  # type: ignore[index]
        loop.spec["productionVariants"][0]["model"]["modelDataUrl"] = "s3://models/bad/model.tar.gz"
        wait_for(
            lambda: (
                loop.reconcile()
                and loop.status.deployment is not None
                and loop.status.deployment.phase == "ShiftingTraffic"
            ),
            60,
            "the canary",
        )
        canary = loop.status.deployment.new_fleet  # type: ignore[union-attr]
        loop.alarms = {canary: "alarm errors: Invocation5XXErrors 9 > 5"}
        loop.settle("RolledBack")
        assert loop.status.production_variants[0].fleet == serving  # type: ignore[index]
        assert canary not in loop.fleets.views
    # No request ever waited for a fleet: none was sent to a fleet already gone (the
    # router would hold it and try again, hiding the mistake from the caller).
    metrics = requests.get(loop.router_url + "/metrics", timeout=5).text
    held = [line for line in metrics.splitlines() if line.startswith("kubemaker_router_held_total")]
    assert held == [], held
    failed = [r for r in results if r is not None and r.status != 200]
    answered = [r for r in results if r is not None]
    assert len(answered) > 500
    assert failed == [], f"{len(failed)} of {len(answered)} failed: {failed[:3]}"
