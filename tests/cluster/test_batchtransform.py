"""BatchTransforms on the local control plane, by the operator under the chart's
ServiceAccount.

KWOK plays the pods: the spec's pod annotations make the transformer run a while and
end with a given exit code and TransformReport (its termination message), as
tests/cluster/kwok/stages/pod.yaml describes. What the transformer does with the data
is the data plane's part (tests/dataplane/test_local_transform.py); here: the Job and
its pods, progress summed over the instances, stop, a lost pod retried, a refused
record, a restarted operator, a model from a TrainingJob, deletion.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

pytest.register_assert_rewrite("operator_harness")
from operator_harness import (  # noqa: E402
    BUCKET,
    GROUP,
    KWOK,
    VERSION,
    Kube,
    OperatorProcess,
    condition,
    model_uri,
    wait_for,
)

pytestmark = pytest.mark.cluster
pytest_plugins = ("operator_harness",)

PLURAL = "batchtransforms"
LABEL = "kubemaker.io/batch-transform"
MODEL = f"{BUCKET}/models/bank/output/model.tar.gz"


def report(outcome: str = "Completed", **fields: Any) -> str:
    return json.dumps({"outcome": outcome, **fields})


def batch_transform(
    name: str,
    *,
    count: int = 1,
    duration: str = "2s",
    message: str | None = None,
    exit_code: int = 0,
    **spec: Any,
) -> dict[str, Any]:
    annotations = {KWOK + "duration": duration, KWOK + "exit-code": str(exit_code)}
    if message is not None:
        annotations[KWOK + "message"] = message
    body_spec: dict[str, Any] = {
        "model": {"modelDataUrl": MODEL, "algorithmName": "xgboost"},
        "transformInput": {"uri": f"{BUCKET}/data/test", "contentType": "text/csv",
                           "splitType": "Line"},
        "transformOutput": {"s3OutputPath": f"{BUCKET}/predictions", "assembleWith": "Line"},
        "transformResources": {"instanceType": "ml.m5.large", "instanceCount": count},
        "podOverrides": {"annotations": annotations},
        **spec,
    }  # fmt: skip
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "BatchTransform",
        "metadata": {"name": name},
        "spec": body_spec,
    }


class Transforms:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

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

    def stop(self, name: str) -> None:
        self.kube.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.kube.namespace, PLURAL, name, {"spec": {"stop": True}}
        )

    def wait(self, name: str, state: str, timeout: float = 90.0) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = self.status(name)
            return status if status.get("transformJobStatus") == state else None

        try:
            return wait_for(f"{name} to be {state}", reached, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; status now: {json.dumps(self.status(name))}") from exc

    def jobs(self, name: str) -> list[Any]:
        selector = f"{LABEL}={name}"
        return list(
            self.kube.batch.list_namespaced_job(self.kube.namespace, label_selector=selector).items
        )

    def pods(self, name: str) -> list[Any]:
        selector = f"{LABEL}={name}"
        return list(
            self.kube.core.list_namespaced_pod(self.kube.namespace, label_selector=selector).items
        )

    def events(self, name: str) -> list[str]:
        return [
            e.reason
            for e in self.kube.core.list_namespaced_event(self.kube.namespace).items
            if e.involved_object.kind == "BatchTransform" and e.involved_object.name == name
        ]


@pytest.fixture
def transforms(kube: Kube) -> Transforms:
    return Transforms(kube)


def running_pods(transforms: Transforms, name: str) -> list[Any]:
    return [
        p
        for p in transforms.pods(name)
        if p.status.phase == "Running" and not p.metadata.deletion_timestamp
    ]


def test_each_instance_is_a_pod_of_an_indexed_job_and_their_reports_add_up(
    operator: OperatorProcess, transforms: Transforms, kube: Kube
) -> None:
    done = report(objectsFound=6, objectsTotal=2, objectsDone=2, records=10)
    created = transforms.create(batch_transform("bank", count=3, duration="3s", message=done))
    jobs = wait_for("the Job", lambda: transforms.jobs("bank"))
    job = jobs[0]
    assert job.metadata.name == "bank"
    owner = job.metadata.owner_references[0]
    assert (owner.kind, owner.uid, owner.controller) == (
        "BatchTransform", created["metadata"]["uid"], True,
    )  # fmt: skip
    assert job.spec.completion_mode == "Indexed"
    assert job.spec.completions == 3 and job.spec.parallelism == 3
    assert job.spec.backoff_limit_per_index == 2 and job.spec.max_failed_indexes == 0
    template = job.spec.template.spec
    fetch, server = template.init_containers
    assert fetch.args == ["fetch-model", "--uri", MODEL, "--dest", "/opt/ml/model"]
    assert server.args == ["serve"] and server.restart_policy == "Always"
    assert server.startup_probe.http_get.path == "/ping"
    assert server.image == "ghcr.io/kubemaker/xgboost:0.1.0"
    env = {e.name: e.value for e in server.env}
    assert env["SAGEMAKER_BATCH"] == "true"
    (transformer,) = template.containers
    assert transformer.args == ["transform"]
    config = json.loads(
        next(e.value for e in transformer.env if e.name == "KUBEMAKER_TRANSFORM_CONFIG")
    )
    assert config["instanceCount"] == 3
    assert config["inputUri"] == f"{BUCKET}/data/test"
    # Each instance its own completion index: the transformer takes that share.
    indexes = wait_for(
        "three indexed pods",
        lambda: (
            sorted(
                p.metadata.labels.get("batch.kubernetes.io/job-completion-index")
                for p in transforms.pods("bank")
            )
            or None
        ),
    )
    assert indexes == ["0", "1", "2"]
    running = transforms.status("bank")
    assert running.get("transformJobStatus") in ("InProgress", "Completed")

    status = transforms.wait("bank", "Completed")
    assert status["objectCounters"] == {"total": 6, "completed": 6, "failed": 0}
    assert status["recordsTransformed"] == 30
    assert status["modelDataUrl"] == MODEL
    assert status["jobName"] == "bank"
    assert status["transformStartTime"] <= status["transformEndTime"]
    assert condition(status, "Ready") == ("True", "Completed")
    assert condition(status, "Succeeded") == ("True", "Completed")
    events = wait_for(
        "the events", lambda: set(transforms.events("bank")) >= {"Created", "Completed"} or None
    )
    assert events
    completed = operator.metric(
        "kubemaker_batchtransform_objects", namespace=kube.namespace, batchtransform="bank",
        state="completed",
    )  # fmt: skip
    assert completed == 6

    # Deleting the BatchTransform deletes its Job and pods.
    kube.custom.delete_namespaced_custom_object(GROUP, VERSION, kube.namespace, PLURAL, "bank")
    wait_for("the Job to go", lambda: transforms.jobs("bank") == [], timeout=60)
    wait_for("the pods to go", lambda: transforms.pods("bank") == [], timeout=60)


def test_stop_suspends_the_job_and_ends_stopped(
    operator: OperatorProcess, transforms: Transforms
) -> None:
    transforms.create(batch_transform("halted", count=2, duration="3600s"))
    wait_for("two running pods", lambda: len(running_pods(transforms, "halted")) == 2)
    assert transforms.status("halted")["transformJobStatus"] == "InProgress"
    transforms.stop("halted")
    status = transforms.wait("halted", "Stopped")
    assert transforms.jobs("halted")[0].spec.suspend is True
    assert running_pods(transforms, "halted") == []
    assert condition(status, "Ready") == ("False", "Stopped")
    # Events are posted in the background: they follow the status.
    wait_for("the events", lambda: {"Stopping", "Stopped"} <= set(transforms.events("halted")))


def test_a_lost_pod_is_replaced_and_the_transform_completes(
    operator: OperatorProcess, transforms: Transforms, kube: Kube
) -> None:
    done = report(objectsFound=2, objectsTotal=1, objectsDone=1, records=4)
    transforms.create(batch_transform("lossy", count=2, duration="6s", message=done))
    pods = wait_for(
        "two running pods", lambda: (p := running_pods(transforms, "lossy")) and len(p) == 2 and p
    )
    lost = next(
        p for p in pods if p.metadata.labels["batch.kubernetes.io/job-completion-index"] == "1"
    )
    kube.core.delete_namespaced_pod(lost.metadata.name, kube.namespace)

    def replacement() -> Any:
        return next(
            (
                p
                for p in transforms.pods("lossy")
                if p.metadata.labels["batch.kubernetes.io/job-completion-index"] == "1"
                and p.metadata.name != lost.metadata.name
            ),
            None,
        )

    wait_for("a new pod for instance 1", replacement, timeout=60)
    status = transforms.wait("lossy", "Completed")
    assert status["objectCounters"]["completed"] == 2
    assert len(transforms.jobs("lossy")) == 1


def test_a_record_the_model_refuses_fails_the_job_at_once_naming_it(
    operator: OperatorProcess, transforms: Transforms
) -> None:
    reason = (
        "s3://kubemaker-test/data/test/part-1.csv, record 7: the model server answered "
        "415: could not convert string to float: 'yes'"
    )
    refused = report(
        "Failed", objectsFound=1, objectsTotal=1, failureReason=reason, errorKind="user"
    )
    transforms.create(batch_transform("refused", duration="1s", message=refused, exit_code=3))
    status = transforms.wait("refused", "Failed")
    assert status["failureReason"] == f"ClientError: {reason}"
    assert status["objectCounters"]["failed"] == 1
    assert condition(status, "Failed") == ("True", "Failed")
    # FailJob: no retry of the instance.
    assert len(transforms.pods("refused")) == 1
    job = transforms.jobs("refused")[0]
    failed = [c for c in job.status.conditions or () if c.type == "Failed" and c.status == "True"]
    assert failed and failed[0].reason == "PodFailurePolicy"


def test_a_killed_operator_adopts_the_job_it_created(
    operator: OperatorProcess, transforms: Transforms
) -> None:
    done = report(objectsFound=1, objectsTotal=1, objectsDone=1, records=3)
    transforms.create(batch_transform("restarted", duration="5s", message=done))
    wait_for("the Job", lambda: transforms.jobs("restarted"))
    operator.kill()
    operator.start()
    status = transforms.wait("restarted", "Completed")
    assert status["recordsTransformed"] == 3
    assert [j.metadata.name for j in transforms.jobs("restarted")] == ["restarted"]


def test_a_model_from_a_trainingjob_waits_for_it(
    operator: OperatorProcess, transforms: Transforms, kube: Kube
) -> None:
    kube.create("trained", kwok={"duration": "4s"})
    body = batch_transform("scored", message=report(objectsFound=1, objectsDone=1, records=2))
    body["spec"]["model"] = {"trainingJobRef": {"name": "trained"}}
    transforms.create(body)
    waiting = wait_for(
        "the transform to wait for its model",
        lambda: (s := transforms.status("scored")).get("conditions") and s,
    )
    assert condition(waiting, "Ready") == ("False", "WaitingForModel")
    assert transforms.jobs("scored") == []
    status = transforms.wait("scored", "Completed", timeout=120)
    assert status["modelDataUrl"] == model_uri("trained")
    assert status["image"] == "ghcr.io/kubemaker/xgboost:0.1.0"


def test_what_cannot_work_is_refused_at_apply_or_fails_naming_the_field(
    operator: OperatorProcess, transforms: Transforms
) -> None:
    body = batch_transform("whole", batchStrategy="MultiRecord")
    body["spec"]["transformInput"]["splitType"] = "None"
    with pytest.raises(ApiException) as refused:
        transforms.create(body)
    assert refused.value.status == 422
    assert "batchStrategy MultiRecord needs records" in str(refused.value.body)
    with pytest.raises(ApiException) as too_much:
        transforms.create(batch_transform("big", maxConcurrentTransforms=20, maxPayloadInMB=6))
    assert "at most 100 MB" in str(too_much.value.body)

    # JSONPath the apiserver cannot parse: Failed before any pod, naming the field.
    transforms.create(batch_transform("filtered", dataProcessing={"inputFilter": "$[1:"}))
    status = transforms.wait("filtered", "Failed")
    assert status["failureReason"].startswith("ValidationError: ")
    assert "dataProcessing.inputFilter" in status["failureReason"]
    # An instance type the operator's catalog does not have.
    body = batch_transform("unknown")
    body["spec"]["transformResources"]["instanceType"] = "ml.nope.large"
    transforms.create(body)
    status = transforms.wait("unknown", "Failed")
    assert "spec.transformResources.instanceType" in status["failureReason"]
    assert transforms.jobs("filtered") == [] and transforms.jobs("unknown") == []
