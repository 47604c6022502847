"""Endpoints reconciled on the local control plane, by the operator under the chart's
ServiceAccount. KWOK plays the model-server pods (a Deployment's pods run and are
Ready at once), so these tests see the children, the status and the steps of an
update; what the containers do is the data-plane and end-to-end tests' part."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

pytest.register_assert_rewrite("operator_harness")
from operator_harness import GROUP, VERSION, Kube, OperatorProcess, condition, wait_for  # noqa: E402

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
