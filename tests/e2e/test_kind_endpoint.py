"""Endpoints end to end on kind: a TrainingJob's model served by the XGBoost image's
model server, the operator's router and autoscaler as real containers, requests sent
through the API server's service proxy as the SDK's Predictor sends them (docs/e2e.md).

- a load step scales a variant out, and its end scales it back;
- a blue/green update (all at once; a canary through the router) under steady load,
  with not one failed request;
- a variant at zero instances answers its next request (the router holds it while the
  variant scales up).
"""

from __future__ import annotations

import csv
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import kindharness
import pytest

from kubemaker.sdk.predictor import Predictor
from kubemaker.sdk.serializers import CSVSerializer
from kubemaker.sdk.session import Session

pytestmark = pytest.mark.e2e

# values-e2e.yaml sizes it at 100m CPU, the router too: a blue/green update's two fleets
# of two and the router fit on the 2-CPU kind node.
INSTANCE_TYPE = "ml.t3.medium"
SERVER_SELECTOR = "app.kubernetes.io/component=model-server"


@dataclass(frozen=True)
class Model:
    uri: str  # s3://.../model.tar.gz, trained on kind
    row: list[float]  # one test client's features


@pytest.fixture(scope="module")
def bank_model(kind_env: kindharness.Environment) -> Iterator[Model]:
    """The bank example trained once on kind, for every Endpoint of this module."""
    namespace = f"e2e-endpoint-model-{uuid.uuid4().hex[:6]}"
    kind_env.create_namespace(namespace)
    try:
        kind_env.apply_bank_job(namespace, "bank")
        obj = kindharness.wait_for_training_end(
            kind_env.cluster, "bank", namespace, kind_env.settings.job_timeout
        )
        assert kindharness.condition_status(obj, "Succeeded") == "True", (
            kindharness.describe_status(obj)
        )
        with (kind_env.data_dir / "test" / "test.csv").open() as handle:
            first = next(csv.reader(handle))
        yield Model(
            uri=obj["status"]["modelArtifacts"]["s3ModelArtifacts"],
            row=[float(x) for x in first[1:]],
        )
    finally:
        kind_env.delete_namespace(namespace)


def _endpoint(
    name: str, namespace: str, model_uri: str, count: int = 1, **spec: Any
) -> dict[str, Any]:
    variant = spec.pop("variant", {})
    return {
        "apiVersion": "kubemaker.io/v1alpha1",
        "kind": "Endpoint",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "productionVariants": [
                {
                    "variantName": "AllTraffic",
                    "model": {"modelDataUrl": model_uri, "algorithmName": "xgboost"},
                    "instanceType": INSTANCE_TYPE,
                    "initialInstanceCount": count,
                    **variant,
                }
            ],
            **spec,
        },
    }


class Cluster:
    """What the tests read of one namespace's Endpoints and fleets."""

    def __init__(self, env: kindharness.Environment, namespace: str) -> None:
        self.env = env
        self.namespace = namespace

    def endpoint(self, name: str) -> dict[str, Any]:
        result = self.env.cluster.kubectl(
            "get", "endpoints.kubemaker.io", name, "-n", self.namespace, "-o", "json",
            check=False,
        )  # fmt: skip
        return json.loads(result.stdout) if result.returncode == 0 else {}

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.endpoint(name).get("status") or {})

    def fleets(self, name: str) -> list[dict[str, Any]]:
        """The model-server Deployments of an Endpoint, oldest first."""
        items = self.env.cluster.kubectl_json(
            "get", "deployments", "-n", self.namespace, "-o", "json",
            "-l", f"kubemaker.io/endpoint={name},{SERVER_SELECTOR}",
        )["items"]  # fmt: skip
        return sorted(items, key=lambda d: str(d["metadata"]["creationTimestamp"]))

    def server_pods(self, name: str) -> list[dict[str, Any]]:
        return list(
            self.env.cluster.kubectl_json(
                "get", "pods", "-n", self.namespace, "-o", "json",
                "-l", f"kubemaker.io/endpoint={name},{SERVER_SELECTOR}",
            )["items"]
        )  # fmt: skip

    def wait_in_service(self, name: str) -> dict[str, Any]:
        def in_service() -> dict[str, Any] | None:
            status = self.status(name)
            if status.get("endpointStatus") == "Failed":
                raise AssertionError(f"Endpoint {name} failed: {status.get('failureReason')}")
            return status if status.get("endpointStatus") == "InService" else None

        return kindharness.wait_for(
            f"Endpoint {self.namespace}/{name} to be InService",
            in_service,
            self.env.settings.job_timeout,
            describe=lambda: json.dumps(self.status(name))[:2000],
        )

    def wait_replicas(self, name: str, replicas: int, timeout: float) -> dict[str, Any]:
        """The one fleet once it has ``replicas`` replicas, all of them ready."""

        def reached() -> dict[str, Any] | None:
            fleets = self.fleets(name)
            if len(fleets) != 1:
                return None
            fleet = fleets[0]
            ready = fleet.get("status", {}).get("readyReplicas") or 0
            return fleet if fleet["spec"]["replicas"] == replicas == ready else None

        return kindharness.wait_for(
            f"Endpoint {self.namespace}/{name}: {replicas} ready instance(s)",
            reached,
            timeout,
            describe=lambda: json.dumps(
                [(d["metadata"]["name"], d["spec"]["replicas"], d.get("status", {}))
                 for d in self.fleets(name)]
            )[:2000],
        )  # fmt: skip

    def predictor(self, name: str) -> Predictor:
        session = Session(namespace=self.namespace, kubeconfig=self.env.settings.kubeconfig)
        return Predictor(name, sagemaker_session=session, serializer=CSVSerializer())


@pytest.fixture
def cluster(kind_env: kindharness.Environment, e2e_namespace: str) -> Cluster:
    return Cluster(kind_env, e2e_namespace)


def _score(answer: Any) -> float:
    text = answer.decode() if isinstance(answer, bytes) else str(answer)
    score = float(text.strip().strip("[]").split(",")[0])
    assert 0.0 <= score <= 1.0, text
    return score


@dataclass
class Load:
    """Requests at a steady rate from a few threads, every outcome recorded."""

    send: Callable[[], Any]
    rate: float  # requests per second, all threads together
    threads: int = 4
    outcomes: list[tuple[float, str | None]] = field(default_factory=list)  # (when, error)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _work(self, first: float) -> None:
        due = first
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            try:
                _score(self.send())
                error = None
            except Exception as exc:  # every failure is a finding
                error = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self.outcomes.append((time.time(), error))
            due += self.threads / self.rate

    def __enter__(self) -> Load:
        start = time.monotonic()
        for i in range(self.threads):
            worker = threading.Thread(target=self._work, args=(start + i / self.rate,))
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=120)

    def count(self, since: float = 0.0) -> int:
        with self._lock:
            return sum(1 for when, _ in self.outcomes if when >= since)

    def failures(self) -> list[tuple[float, str]]:
        with self._lock:
            return [(when, error) for when, error in self.outcomes if error is not None]

    def wait_for_more(self, n: int, timeout: float = 120.0) -> None:
        since = time.time()
        kindharness.wait_for(f"{n} more requests", lambda: self.count(since) >= n, timeout)


def test_a_load_step_scales_the_variant_out_and_back(
    cluster: Cluster, e2e_namespace: str, bank_model: Model
) -> None:
    name = "bank-scaling"
    scaling = {
        "minCapacity": 1,
        "maxCapacity": 3,
        "targetInvocationsPerInstance": 60,
        "scaleOutCooldown": 0,
        "scaleInCooldown": 20,
    }
    body = _endpoint(name, e2e_namespace, bank_model.uri, variant={"autoScaling": scaling})
    cluster.env.cluster.apply([body])
    cluster.wait_in_service(name)
    cluster.wait_replicas(name, 1, timeout=60)

    # 4 requests a second = 240 a minute over a target of 60 per instance: 4 instances,
    # held to maxCapacity 3.
    with Load(lambda: cluster.predictor(name).predict(bank_model.row), rate=4.0) as load:
        fleet = cluster.wait_replicas(name, 3, timeout=300)
        load.wait_for_more(20)
    assert not load.failures(), load.failures()[:5]
    assert load.count() >= 20
    assert fleet["metadata"]["annotations"]["kubemaker.io/spec-instance-count"] == "1"
    scaled_out = cluster.status(name)["productionVariants"][0]
    assert scaled_out["lastScaleOutTime"], scaled_out

    # No traffic: back to minCapacity once scaleInCooldown has passed.
    cluster.wait_replicas(name, 1, timeout=300)
    summary = cluster.wait_in_service(name)["productionVariants"][0]
    assert summary["lastScaleInTime"] > summary["lastScaleOutTime"], summary
    assert summary["currentInstanceCount"] == 1, summary


@pytest.mark.parametrize(
    "routing",
    [
        {"type": "AllAtOnce"},
        {"type": "Canary", "canarySize": {"type": "InstanceCount", "value": 1},
         "waitIntervalInSeconds": 10},
    ],
    ids=["all-at-once", "canary"],
)  # fmt: skip
def test_a_blue_green_update_under_load_fails_no_request(
    cluster: Cluster,
    kind_env: kindharness.Environment,
    e2e_namespace: str,
    bank_model: Model,
    routing: dict[str, Any],
) -> None:
    name = "bank-bg"
    # A second model (the same trained bytes under another key): a new fleet, as a
    # retrained model would make.
    bucket, key = kindharness.split_s3_uri(bank_model.uri)
    new_key = f"{e2e_namespace}/model-b/model.tar.gz"
    kind_env.storage.client().copy_object(
        Bucket=bucket, Key=new_key, CopySource={"Bucket": bucket, "Key": key}
    )
    new_uri = f"s3://{bucket}/{new_key}"
    policy = {
        "trafficRoutingConfiguration": routing,
        "terminationWaitInSeconds": 5,
        "maximumExecutionTimeoutInSeconds": 600,
    }
    body = _endpoint(
        name, e2e_namespace, bank_model.uri, count=2,
        deploymentConfig={"blueGreenUpdatePolicy": policy},
    )  # fmt: skip
    cluster.env.cluster.apply([body])
    cluster.wait_in_service(name)
    (old,) = [d["metadata"]["name"] for d in cluster.fleets(name)]

    with Load(lambda: cluster.predictor(name).predict(bank_model.row), rate=5.0) as load:
        load.wait_for_more(10)
        updated_at = time.time()
        cluster.env.cluster.kubectl(
            "patch", "endpoints.kubemaker.io", name, "-n", e2e_namespace, "--type=json",
            "-p", json.dumps([{
                "op": "replace",
                "path": "/spec/productionVariants/0/model/modelDataUrl",
                "value": new_uri,
            }]),
        )  # fmt: skip

        def done() -> dict[str, Any] | None:
            status = cluster.status(name)
            fleets = [d["metadata"]["name"] for d in cluster.fleets(name)]
            variant = (status.get("productionVariants") or [{}])[0]
            finished = (
                status.get("endpointStatus") == "InService"
                and variant.get("modelDataUrl") == new_uri
                and len(fleets) == 1
                and fleets[0] != old
            )
            return status if finished else None

        status = kindharness.wait_for(
            f"the {routing['type']} update to replace fleet {old}",
            done,
            kind_env.settings.job_timeout,
            describe=lambda: json.dumps(cluster.status(name).get("deployment")),
        )
        finished_at = time.time()
        load.wait_for_more(10)

    assert not load.failures(), load.failures()[:5]
    during = load.count(updated_at) - load.count(finished_at)
    assert during >= 10, f"only {during} requests during the update"
    progress = status.get("deployment")
    if progress is not None:
        assert progress["phase"] == "Completed", progress
        assert progress["oldFleet"] == old and progress["policy"] == routing["type"], progress
    cluster.wait_replicas(name, 2, timeout=60)


def test_a_variant_at_zero_instances_answers_its_next_request(
    cluster: Cluster, e2e_namespace: str, bank_model: Model
) -> None:
    name = "bank-zero"
    scaling = {
        "minCapacity": 0,
        "maxCapacity": 2,
        "targetInvocationsPerInstance": 60,
        "scaleInCooldown": 10,
    }
    body = _endpoint(name, e2e_namespace, bank_model.uri, variant={"autoScaling": scaling})
    cluster.env.cluster.apply([body])
    cluster.wait_in_service(name)

    # No traffic for scaleInCooldown: the variant goes to zero, its pods with it.
    cluster.wait_replicas(name, 0, timeout=300)
    kindharness.wait_for(
        "the model servers to be gone", lambda: not cluster.server_pods(name), timeout=120
    )
    assert cluster.status(name)["endpointStatus"] == "InService"

    started = time.monotonic()
    score = _score(cluster.predictor(name).predict(bank_model.row))
    waited = time.monotonic() - started
    # The router held the request while an instance started (it holds up to 60 s).
    assert waited < 60, f"the request waited {waited:.1f}s"
    cluster.wait_replicas(name, 1, timeout=60)
    print(f"scale from zero: score {score:.3f} after {waited:.1f}s")
