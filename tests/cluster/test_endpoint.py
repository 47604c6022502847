"""Endpoints reconciled on the local control plane, by the operator under the chart's
ServiceAccount. KWOK plays the model-server pods (a Deployment's pods run and are
Ready at once), so these tests see the children, the status and the steps of an
update; what the containers do is the data-plane and end-to-end tests' part."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubemaker.reconcile.scrape import prometheus_queries

pytest.register_assert_rewrite("operator_harness")
from operator_harness import (  # noqa: E402
    GROUP,
    VERSION,
    ChartInstall,
    Kube,
    OperatorProcess,
    condition,
    wait_for,
)

pytestmark = pytest.mark.cluster
pytest_plugins = ("operator_harness",)

PLURAL = "endpoints"
FLEET = "kubemaker.io/fleet"


def endpoint(name: str, **variant: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Endpoint",
        "metadata": {"name": name},
        "spec": {
            "productionVariants": [
                {
                    "variantName": "AllTraffic",
                    "model": {
                        "modelDataUrl": "s3://models/bank/model.tar.gz",
                        "algorithmName": "xgboost",
                    },
                    "instanceType": "ml.m5.large",
                    "initialInstanceCount": 2,
                    **variant,
                }
            ]
        },
    }


class Endpoints:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.apps = client.AppsV1Api(kube.custom.api_client)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.kube.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.kube.namespace, PLURAL, body
        )
        return result

    def status(self, name: str) -> dict[str, Any]:
        body = self.kube.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.kube.namespace, PLURAL, name
        )
        return dict(body.get("status") or {})

    def patch_variant(self, name: str, **fields: Any) -> None:
        body = self.kube.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.kube.namespace, PLURAL, name
        )
        variant = body["spec"]["productionVariants"][0]
        for key, value in fields.items():
            if isinstance(value, dict):
                variant[key] = {**variant.get(key, {}), **value}
            else:
                variant[key] = value
        self.kube.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.kube.namespace, PLURAL, name, {"spec": body["spec"]}
        )

    def wait(self, name: str, state: str, timeout: float = 90.0) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = self.status(name)
            return status if status.get("endpointStatus") == state else None

        try:
            return wait_for(f"{name} to be {state}", reached, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; status now: {json.dumps(self.status(name))}") from exc

    def fleets(self, name: str) -> list[Any]:
        items = self.apps.list_namespaced_deployment(
            self.kube.namespace, label_selector=f"kubemaker.io/endpoint={name}"
        ).items
        return [d for d in items if d.metadata.labels.get(FLEET)]


def reasons_of(endpoints: Endpoints, name: str) -> set[str]:
    events = endpoints.kube.core.list_namespaced_event(endpoints.kube.namespace).items
    return {e.reason for e in events if e.involved_object.name == name}


@pytest.fixture
def endpoints(kube: Kube) -> Endpoints:
    return Endpoints(kube)


def test_an_endpoint_gets_a_fleet_services_a_pdb_and_goes_in_service(
    operator: OperatorProcess, kube: Kube, endpoints: Endpoints
) -> None:
    created = endpoints.create(endpoint("bank"))
    status = endpoints.wait("bank", "InService")
    fleets = endpoints.fleets("bank")
    assert len(fleets) == 1
    fleet = fleets[0]
    assert fleet.spec.replicas == 2
    owner = fleet.metadata.owner_references[0]
    assert (owner.kind, owner.uid, owner.controller) == (
        "Endpoint",
        created["metadata"]["uid"],
        True,
    )
    pod = fleet.spec.template.spec
    assert [c.name for c in pod.init_containers] == ["model"]
    assert pod.containers[0].args == ["serve"]
    services = {s.metadata.name: s for s in kube.core.list_namespaced_service(kube.namespace).items}
    assert services["bank"].spec.selector[FLEET] == fleet.metadata.name
    assert fleet.metadata.name in services
    pdbs = kube.policy.list_namespaced_pod_disruption_budget(kube.namespace).items
    assert [p.metadata.name for p in pdbs] == [fleet.metadata.name]

    variant = status["productionVariants"][0]
    assert (variant["currentInstanceCount"], variant["desiredInstanceCount"]) == (2, 2)
    assert variant["deployedImages"][0]["specifiedImage"] == "ghcr.io/kubemaker/xgboost:0.1.0"
    assert status["endpointUrl"] == f"http://bank.{kube.namespace}.svc:8080"
    assert condition(status, "Ready")[0] == "True"


def test_a_missing_training_job_fails_the_endpoint_naming_it(
    operator: OperatorProcess, endpoints: Endpoints
) -> None:
    endpoints.create(endpoint("ref", model={"trainingJobRef": {"name": "nowhere"}}))
    status = endpoints.wait("ref", "Failed")
    assert "TrainingJob nowhere does not exist" in status["failureReason"]
    assert "spec.productionVariants[0].model" in status["failureReason"]


def test_an_update_survives_an_operator_restart_and_replaces_the_fleet(
    operator: OperatorProcess, endpoints: Endpoints
) -> None:
    endpoints.create(endpoint("blue"))
    endpoints.wait("blue", "InService")
    (old,) = [d.metadata.name for d in endpoints.fleets("blue")]
    # Stop the operator, change the model, start it: the update runs from the spec and
    # the children alone, once.
    operator.stop()
    endpoints.patch_variant("blue", model={"modelDataUrl": "s3://models/bank-v2/model.tar.gz"})
    operator.start()
    wait_for(
        "the update to start",
        lambda: endpoints.status("blue").get("deployment", {}).get("phase"),
    )
    operator.stop()
    operator.start()

    def completed() -> dict[str, Any] | None:
        status = endpoints.status("blue")
        done = status.get("deployment", {}).get("phase") == "Completed"
        return status if done and status.get("endpointStatus") == "InService" else None

    status = wait_for("the update to complete", completed, timeout=90)
    fleets = wait_for(
        "the old fleet to go", lambda: (f := endpoints.fleets("blue")) and len(f) == 1 and f
    )
    new = fleets[0].metadata.name
    assert new != old
    assert status["productionVariants"][0]["fleet"] == new
    assert status["productionVariants"][0]["modelDataUrl"] == "s3://models/bank-v2/model.tar.gz"
    assert status["deployment"]["oldFleet"] == old and status["deployment"]["newFleet"] == new


# --- with the data plane's metrics ----------------------------------------------------------
#
# KWOK runs no containers, so no router or model server exports metrics here. The
# operator reads them from Prometheus when the chart names one; the FakePrometheus below
# stands in for that Prometheus (none can run here): it answers the operator's instant
# queries from counters the test sets, and, playing the kubelet and the routers, reports
# as applied the routing-table version found in the router's ConfigMap.


class FakePrometheus:
    """Prometheus' /api/v1/query for one endpoint's router metrics, on loopback."""

    def __init__(self, kube: Kube, endpoint: str) -> None:
        self.kube = kube
        self.endpoint = endpoint
        self.lock = threading.Lock()
        # (variant, fleet, field) -> per-second rate since `since`; counters grow with time.
        self.rates: dict[tuple[str, str, str], float] = {}
        self.since = time.time()
        self.totals: dict[tuple[str, str, str], float] = {}
        self.report_versions = True
        queries = prometheus_queries(kube.namespace, endpoint)
        self.by_query = {query: what for what, query in queries.items()}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlparse(self.path).query).get("query", [""])[0]
                body = json.dumps(fake.answer(query)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def set_rate(self, variant: str, fleet: str, field: str, per_second: float) -> None:
        with self.lock:
            self._advance()
            self.rates[(variant, fleet, field)] = per_second

    def _advance(self) -> None:
        now = time.time()
        for key, rate in self.rates.items():
            self.totals[key] = self.totals.get(key, 0.0) + rate * (now - self.since)
        self.since = now

    def answer(self, query: str) -> dict[str, Any]:
        what = self.by_query.get(query)
        result: list[dict[str, Any]] = []
        if what == "versions":
            version = self.routes_version() if self.report_versions else None
            if version:
                result.append({"metric": {"version": version}, "value": [time.time(), "2"]})
        elif what is not None and what != "held":
            with self.lock:
                self._advance()
                for (variant, fleet, field), total in self.totals.items():
                    if field == what:
                        labels = {"variant": variant, "fleet": fleet, "instance": "router-0"}
                        result.append({"metric": labels, "value": [time.time(), str(total)]})
        return {"status": "success", "data": {"resultType": "vector", "result": result}}

    def routes_version(self) -> str | None:
        try:
            found = self.kube.core.read_namespaced_config_map(
                f"{self.endpoint}-router", self.kube.namespace
            )
        except ApiException:
            return None
        text = (found.data or {}).get("routes.json")
        return str(json.loads(text)["version"]) if text else None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def prometheus(kube: Kube) -> Iterator[FakePrometheus]:
    fake = FakePrometheus(kube, "metered")
    yield fake
    fake.close()


@pytest.fixture
def metered_operator(
    chart: ChartInstall, namespace: str, prometheus: FakePrometheus, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """The operator reading metrics from the stand-in Prometheus, every second."""
    config = yaml.safe_load(chart.config_file.read_text()) or {}
    config["endpoints"] = {"prometheusUrl": prometheus.url, "metricsIntervalSeconds": 1}
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    process = OperatorProcess(
        chart.operator_kubeconfig, config_file=config_file, namespaces=[namespace]
    ).start()
    try:
        yield process
    finally:
        process.close()


def test_two_variants_get_a_router_and_its_routing_table(
    operator: OperatorProcess, kube: Kube, endpoints: Endpoints
) -> None:
    body = endpoint("ab", initialVariantWeight=3)
    second = dict(body["spec"]["productionVariants"][0], variantName="B", initialVariantWeight=1)
    body["spec"]["productionVariants"].append(second)
    endpoints.create(body)
    endpoints.wait("ab", "InService")
    router = endpoints.apps.read_namespaced_deployment("ab-router", kube.namespace)
    assert router.spec.replicas == 2
    assert router.spec.template.spec.containers[0].command[-1] == "kubemaker_runtime.router"
    routes = kube.core.read_namespaced_config_map("ab-router", kube.namespace)
    table = json.loads(routes.data["routes.json"])
    assert {v["name"]: v["weight"] for v in table["variants"]} == {"AllTraffic": 3, "B": 1}
    fleets = {d.metadata.name for d in endpoints.fleets("ab")}
    assert {f["name"] for v in table["variants"] for f in v["fleets"]} == fleets
    service = kube.core.read_namespaced_service("ab", kube.namespace)
    assert service.spec.selector["app.kubernetes.io/component"] == "router"


def test_a_canary_update_shows_its_steps_and_rolls_back_on_an_alarm(
    metered_operator: OperatorProcess, endpoints: Endpoints, prometheus: FakePrometheus
) -> None:
    body = endpoint("metered")
    body["spec"]["deploymentConfig"] = {
        "blueGreenUpdatePolicy": {
            "trafficRoutingConfiguration": {
                "type": "Canary",
                "canarySize": {"type": "CapacityPercent", "value": 50},
                "waitIntervalInSeconds": 600,
            }
        },
        "autoRollbackConfiguration": {
            "alarms": [
                {
                    "alarmName": "canary-errors",
                    "metricName": "Invocation5XXErrors",
                    "threshold": 5,
                    "periodInSeconds": 10,
                }
            ]
        },
    }
    endpoints.create(body)
    endpoints.wait("metered", "InService")
    (old,) = [d.metadata.name for d in endpoints.fleets("metered")]
    endpoints.patch_variant("metered", model={"modelDataUrl": "s3://models/bank-v2/model.tar.gz"})

    def at_canary() -> dict[str, Any] | None:
        progress = endpoints.status("metered").get("deployment") or {}
        shifted = progress.get("phase") == "ShiftingTraffic"
        return progress if shifted and progress.get("newFleetTrafficPercent") == 50 else None

    progress = wait_for("the canary step", at_canary)
    new = progress["newFleet"]
    assert endpoints.status("metered")["endpointStatus"] == "Updating"
    table = json.loads(
        endpoints.kube.core.read_namespaced_config_map(
            "metered-router", endpoints.kube.namespace
        ).data["routes.json"]
    )
    assert {f["name"]: f["weight"] for f in table["variants"][0]["fleets"]} == {old: 50, new: 50}

    # An operator restarted mid-update resumes the same step: nothing is created twice.
    metered_operator.stop()
    metered_operator.start()
    wait_for(
        "a reconcile by the restarted operator",
        lambda: endpoints.status("metered").get("observedGeneration") and at_canary(),
    )
    resumed = at_canary()
    assert resumed is not None
    same = ("newFleet", "startTime", "stepTime", "step")
    assert {k: resumed.get(k) for k in same} == {k: progress.get(k) for k in same}
    assert len(endpoints.fleets("metered")) == 2

    # The canary answers 5xx: about 30 a second, over the alarm's 5 per 10 s period.
    prometheus.set_rate("AllTraffic", new, "errors_5xx", 3.0)
    prometheus.set_rate("AllTraffic", new, "invocations", 3.0)

    def rolled_back() -> dict[str, Any] | None:
        status = endpoints.status("metered")
        phase = (status.get("deployment") or {}).get("phase")
        return status if phase == "RolledBack" else None

    status = wait_for("the rollback", rolled_back, timeout=60)
    assert "canary-errors" in status["deployment"]["rollbackReason"]
    assert "Invocation5XXErrors" in status["deployment"]["rollbackReason"]
    assert status["endpointStatus"] == "InService"
    assert status["productionVariants"][0]["fleet"] == old
    wait_for(
        "the canary fleet to go",
        lambda: [d.metadata.name for d in endpoints.fleets("metered")] == [old],
    )
    wanted = {"UpdateStarted", "TrafficShifted", "RollingBack", "RolledBack"}
    # Events are posted in the background: wait for them.
    wait_for("the update's events", lambda: wanted <= reasons_of(endpoints, "metered"))


def test_autoscaling_scales_out_on_the_invocation_rate(
    metered_operator: OperatorProcess, endpoints: Endpoints, prometheus: FakePrometheus
) -> None:
    body = endpoint(
        "metered",
        initialInstanceCount=1,
        autoScaling={
            "minCapacity": 1,
            "maxCapacity": 4,
            "targetInvocationsPerInstance": 60,
            "scaleOutCooldown": 0,
        },
    )
    endpoints.create(body)
    endpoints.wait("metered", "InService")
    (fleet,) = [d.metadata.name for d in endpoints.fleets("metered")]
    # 2.5 invocations a second = 150 a minute over a target of 60 per instance: 3
    # instances (any measured rate from 121 to 180 a minute gives 3: timing noise of
    # the samples stays inside that).
    prometheus.set_rate("AllTraffic", fleet, "invocations", 2.5)
    scaled = wait_for(
        "the scale-out",
        lambda: (
            (
                d := endpoints.apps.read_namespaced_deployment(fleet, endpoints.kube.namespace)
            ).spec.replicas
            == 3
            and d
        ),
        timeout=60,
    )
    assert scaled.metadata.annotations["kubemaker.io/spec-instance-count"] == "1"
    status = endpoints.wait("metered", "InService")
    summary = status["productionVariants"][0]
    assert "3 instances" in summary["lastScalingDecision"]
    assert summary["lastScaleOutTime"]
