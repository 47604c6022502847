"""TrainingJobs reconciled end to end on the local control plane.

The operator runs as a subprocess under the chart's ServiceAccount (operator_harness),
watching only the test's namespace. KWOK plays the pods; the pod-override annotations
of each TrainingJob steer how its containers end (tests/cluster/kwok/stages/pod.yaml).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

pytest.register_assert_rewrite("operator_harness")
from operator_harness import (  # noqa: E402
    BUCKET,
    GROUP,
    PLURAL,
    REPO_ROOT,
    VERSION,
    Kube,
    condition,
    model_uri,
    transitions,
    wait_for,
)

if TYPE_CHECKING:
    from conftest import LocalCluster

pytestmark = pytest.mark.cluster
# Fixtures chart (session), operator and kube.
pytest_plugins = ("operator_harness",)


# --- tests --------------------------------------------------------------------------------


@pytest.mark.usefixtures("operator")
def test_a_trainingjob_gets_an_indexed_job_a_service_and_its_pods(kube: Kube) -> None:
    created = kube.create("bank", count=2, kwok={"duration": "3600s", "download-duration": "2s"})
    jobs = wait_for("the Job", lambda: kube.jobs("bank"))
    assert [j.metadata.name for j in jobs] == ["bank"]
    job = jobs[0]
    assert job.spec.completion_mode == "Indexed"
    assert job.spec.completions == 2 and job.spec.parallelism == 2
    assert job.spec.backoff_limit == 0
    owner = job.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid, owner.controller) == (
        "TrainingJob",
        "bank",
        created["metadata"]["uid"],
        True,
    )
    services = kube.services("bank")
    assert [s.metadata.name for s in services] == ["bank"]
    assert services[0].spec.cluster_ip == "None"
    assert services[0].metadata.owner_references[0].uid == created["metadata"]["uid"]

    pods = wait_for("two pods", lambda: (p := kube.pods("bank")) and len(p) == 2 and p)
    assert sorted(p.spec.hostname for p in pods) == ["bank-0", "bank-1"]
    assert {p.spec.subdomain for p in pods} == {"bank"}
    for pod in pods:
        assert [c.name for c in pod.spec.init_containers] == ["agent"]
        assert pod.spec.init_containers[0].restart_policy == "Always"
        assert [c.name for c in pod.spec.containers] == ["algorithm"]
        assert pod.spec.containers[0].args == ["train"]
        assert pod.metadata.annotations["kubemaker.io/model-artifacts"] == model_uri("bank")
    nodes = wait_for(
        "the pods to be scheduled",
        lambda: all(p.spec.node_name for p in kube.pods("bank")) and kube.pods("bank"),
    )
    assert {p.spec.node_name for p in nodes} <= {"kwok-cpu-0", "kwok-cpu-1"}

    status = kube.wait_status("bank", "InProgress", "Training")
    assert transitions(status)[:3] == ["Starting", "Downloading", "Training"]
    assert status["jobName"] == "bank" and status["retryCount"] == 0
    assert status["trainingImage"].endswith("xgboost:0.1.0")
    assert status["trainingStartTime"]
    assert condition(status, "Ready") == ("False", "Training")
    assert condition(status, "Reconciling") == ("True", "Training")
    assert all(
        c["observedGeneration"] == created["metadata"]["generation"] for c in status["conditions"]
    )


@pytest.mark.usefixtures("operator")
def test_gpu_instance_types_land_on_the_gpu_node(kube: Kube) -> None:
    kube.create("gpu", instance_type="ml.p3.2xlarge", kwok={"duration": "1s"})
    pod = wait_for(
        "the GPU pod to be scheduled",
        lambda: next((p for p in kube.pods("gpu") if p.spec.node_name), None),
    )
    assert pod.spec.node_name == "kwok-gpu-0"
    algorithm = pod.spec.containers[0]
    assert algorithm.resources.limits["nvidia.com/gpu"] == "1"
    assert pod.spec.node_selector == {"nvidia.com/gpu.present": "true"}
    status = kube.wait_status("gpu", "Completed")
    assert status["modelArtifacts"] == {"s3ModelArtifacts": model_uri("gpu")}


@pytest.mark.usefixtures("operator")
def test_success(kube: Kube, cluster: LocalCluster, namespace: str) -> None:
    kube.create("ok", kwok={"duration": "2s", "download-duration": "2s", "upload-duration": "2s"})
    result = cluster.kubectl(
        "wait",
        "--for=condition=Succeeded",
        "trainingjob/ok",
        "-n",
        namespace,
        "--timeout=90s",
        timeout=100,
    )
    assert "condition met" in result.stdout
    status = kube.status("ok")
    assert status["trainingJobStatus"] == "Completed"
    assert status["secondaryStatus"] == "Completed"
    assert status["modelArtifacts"] == {"s3ModelArtifacts": model_uri("ok")}
    assert transitions(status) == ["Starting", "Downloading", "Training", "Uploading", "Completed"]
    assert condition(status, "Ready") == ("True", "Completed")
    assert condition(status, "Failed") == ("False", "Completed")
    assert condition(status, "Stalled") == ("False", "Completed")
    assert status["trainingEndTime"] and status["trainingTimeInSeconds"] >= 0
    table = cluster.kubectl("get", "trainingjobs", "-n", namespace).stdout
    assert "Completed" in table and "ml.m5.xlarge" in table
    events = wait_for(
        "the Completed event",
        lambda: (e := kube.events("ok")) and any(x.reason == "Completed" for x in e) and e,
    )
    reasons = [e.reason for e in events]
    assert reasons.count("JobCreated") == 1
    assert "Training" in reasons


@pytest.mark.usefixtures("operator")
def test_algorithm_failure_reports_the_failure_file(
    kube: Kube, cluster: LocalCluster, namespace: str
) -> None:
    # KWOK's agent report carries the message as the failure file's text.
    kube.create(
        "bad",
        kwok={"duration": "1s", "exit-code": "3", "message": "num_round must be positive"},
        retryStrategy={"maximumRetryAttempts": 2},
    )
    result = cluster.kubectl(
        "wait",
        "--for=condition=Failed",
        "trainingjob/bad",
        "-n",
        namespace,
        "--timeout=90s",
        timeout=100,
    )
    assert "condition met" in result.stdout
    status = kube.status("bad")
    assert status["trainingJobStatus"] == "Failed"
    assert status["failureReason"] == "AlgorithmError: num_round must be positive"
    assert condition(status, "Failed") == ("True", "AlgorithmError")
    assert condition(status, "Succeeded") == ("False", "AlgorithmError")
    # The algorithm's own error is never retried, whatever the retry strategy.
    assert [j.metadata.name for j in kube.jobs("bad")] == ["bad"]
    assert status["retryCount"] == 0
    # Events are posted in the background, after the status: wait for this one, not
    # for the first event of the job.
    wait_for(
        "the Failed event",
        lambda: any(e.reason == "Failed" and e.type == "Warning" for e in kube.events("bad")),
    )


@pytest.mark.usefixtures("operator")
def test_algorithm_failure_without_a_failure_file_uses_the_termination_message(
    kube: Kube,
) -> None:
    report = json.dumps({"version": 1, "outcome": "Completed"})
    kube.create(
        "crash",
        kwok={
            "duration": "1s",
            "exit-code": "137",
            "message": "Traceback: MemoryError",
            "agent-report": report,
        },
    )
    status = kube.wait_status("crash", "Failed")
    assert status["failureReason"] == "AlgorithmError: Traceback: MemoryError"


@pytest.mark.usefixtures("operator")
def test_a_client_error_from_the_algorithm_keeps_its_prefix(kube: Kube) -> None:
    reason = "ClientError: Hyperparameter eta: 7 is out of range [0, 1]"
    kube.create("eta", kwok={"duration": "1s", "exit-code": "1", "message": reason})
    status = kube.wait_status("eta", "Failed")
    assert status["failureReason"] == reason
    assert condition(status, "Failed") == ("True", "ClientError")
    assert condition(status, "Stalled") == ("True", "ClientError")


@pytest.mark.usefixtures("operator")
def test_max_runtime_stops_the_job(kube: Kube) -> None:
    kube.create("slow", kwok={"duration": "3600s"}, stoppingCondition={"maxRuntimeInSeconds": 3})
    status = kube.wait_status("slow", "Stopped", "MaxRuntimeExceeded")
    assert "MaxRuntimeExceeded" in transitions(status)
    assert condition(status, "Succeeded") == ("False", "MaxRuntimeExceeded")
    assert condition(status, "Failed") == ("False", "MaxRuntimeExceeded")
    # Stopped in place: the Job and its pod stay (for `kubectl logs`) until a TTL.
    (pod,) = kube.pods("slow")
    assert (pod.status.phase, pod.status.reason) == ("Failed", "DeadlineExceeded")
    assert [j.metadata.name for j in kube.jobs("slow")] == ["slow"]


@pytest.mark.usefixtures("operator")
def test_stop(kube: Kube) -> None:
    kube.create("halt", kwok={"duration": "3600s"})
    kube.wait_status("halt", "InProgress", "Training")
    kube.patch_spec("halt", {"stop": True})
    status = kube.wait_status("halt", "Stopped", "Stopped")
    assert transitions(status)[-3:] == ["Training", "Stopping", "Stopped"]
    assert condition(status, "Succeeded") == ("False", "Stopped")
    assert status["trainingEndTime"]
    # The pod was stopped in place (its activeDeadlineSeconds) and stays, with its logs,
    # as does the Job: a TTL (ttlSecondsAfterFinished) deletes them.
    (pod,) = kube.pods("halt")
    assert (pod.status.phase, pod.status.reason) == ("Failed", "DeadlineExceeded")
    assert pod.spec.active_deadline_seconds >= 1
    statuses = {c.name: c.state.terminated for c in pod.status.container_statuses}
    assert statuses["algorithm"].exit_code == 143  # SIGTERM, as at a deletion
    assert [j.metadata.name for j in kube.jobs("halt")] == ["halt"]
    assert any(e.reason == "Stopping" for e in kube.events("halt"))


@pytest.mark.usefixtures("operator")
def test_platform_failures_are_retried_until_the_budget_is_spent(kube: Kube) -> None:
    # Every attempt's pods are evicted (the annotation is on all of them).
    kube.create(
        "evicted",
        kwok={"duration": "1s", "evict": "true"},
        retryStrategy={"maximumRetryAttempts": 2},
    )
    status = kube.wait_status("evicted", "Failed")
    assert status["retryCount"] == 2
    assert status["failureReason"].startswith("PlatformError: pod evicted-r2-0")
    assert "after 2 of 2 retries" in status["failureReason"]
    assert condition(status, "Failed") == ("True", "PlatformError")
    assert sorted(j.metadata.name for j in kube.jobs("evicted")) == [
        "evicted",
        "evicted-r1",
        "evicted-r2",
    ]
    history = transitions(status)
    assert history.count("Interrupted") == 2 and history.count("Restarting") == 2
    assert sum(e.reason == "Restarting" for e in kube.events("evicted")) >= 1


@pytest.mark.usefixtures("operator")
def test_a_retry_resumes_after_an_eviction(kube: Kube) -> None:
    kube.create(
        "resume",
        kwok={"duration": "3600s"},
        retryStrategy={"maximumRetryAttempts": 1},
        checkpointConfig={"s3Uri": f"{BUCKET}/checkpoints/resume"},
    )
    kube.wait_status("resume", "InProgress", "Training")
    pod = kube.pods("resume")[0]
    # The Eviction API: what a node drain does. The pod gets the DisruptionTarget condition.
    kube.core.create_namespaced_pod_eviction(
        pod.metadata.name,
        kube.namespace,
        client.V1Eviction(
            metadata=client.V1ObjectMeta(name=pod.metadata.name, namespace=kube.namespace)
        ),
    )
    status = wait_for(
        "the second attempt",
        lambda: (s := kube.status("resume")).get("retryCount") == 1 and s,
        timeout=90,
    )
    assert status["jobName"] == "resume-r1"
    jobs = wait_for(
        "the second attempt's Job", lambda: (j := kube.jobs("resume")) and len(j) == 2 and j
    )
    retry = next(j for j in jobs if j.metadata.name == "resume-r1")
    assert retry.spec.template.metadata.labels["kubemaker.io/attempt"] == "1"
    status = kube.wait_status("resume", "InProgress", "Training")
    assert "Interrupted" in transitions(status) and "Restarting" in transitions(status)


@pytest.mark.usefixtures("operator")
def test_an_unknown_instance_type_fails_naming_the_field(kube: Kube) -> None:
    kube.create("typo", instance_type="ml.m5.huge")
    status = kube.wait_status("typo", "Failed")
    assert status["failureReason"].startswith(
        "ClientError: spec.resourceConfig.instanceType: unknown instance type 'ml.m5.huge'"
    )
    assert condition(status, "Failed") == ("True", "ClientError")
    assert kube.jobs("typo") == []


@pytest.mark.usefixtures("operator")
def test_kueue_queue_name_creates_a_suspended_job(kube: Kube) -> None:
    kube.create("queued", queueName="team-a", kwok={"duration": "1s"})
    job = wait_for("the Job", lambda: next(iter(kube.jobs("queued")), None))
    assert job.spec.suspend is True
    assert job.metadata.labels["kueue.x-k8s.io/queue-name"] == "team-a"
    status = kube.wait_status("queued", "InProgress", "Pending")
    assert "team-a" in status["secondaryStatusTransitions"][-1]["statusMessage"]
    # Kueue admits a Job by unsuspending it.
    kube.batch.patch_namespaced_job("queued", kube.namespace, {"spec": {"suspend": False}})
    kube.wait_status("queued", "Completed")


@pytest.mark.usefixtures("operator")
def test_ttl_after_finished_deletes_the_children(kube: Kube) -> None:
    kube.create("brief", kwok={"duration": "1s"}, ttlSecondsAfterFinished=2)
    kube.wait_status("brief", "Completed")
    wait_for(
        "the Job and Service to be deleted",
        lambda: not kube.jobs("brief") and not kube.services("brief"),
        timeout=60,
    )
    wait_for("the pods to be gone", lambda: not kube.pods("brief"), timeout=60)
    assert kube.status("brief")["trainingJobStatus"] == "Completed"


@pytest.mark.usefixtures("operator")
def test_deleting_a_trainingjob_deletes_its_children(kube: Kube) -> None:
    kube.create("gone", count=2, kwok={"duration": "3600s"})
    kube.wait_status("gone", "InProgress", "Training")
    kube.delete("gone")

    def no_trainingjob() -> bool:
        try:
            kube.get("gone")
        except ApiException as exc:
            return exc.status == 404
        return False

    # No finalizer: the deletion never waits for the operator.
    wait_for("the TrainingJob to be gone", no_trainingjob, timeout=30)
    wait_for(
        "its Job, Service and pods to be gone",
        lambda: not kube.jobs("gone") and not kube.services("gone") and not kube.pods("gone"),
        timeout=90,
    )


@pytest.mark.usefixtures("operator")
def test_the_gpu_example_runs_on_the_gpu_node(
    kube: Kube, cluster: LocalCluster, namespace: str
) -> None:
    example = REPO_ROOT / "examples" / "gpu-training" / "trainingjob.yaml"
    cluster.kubectl("apply", "-n", namespace, "-f", str(example))
    name = "xgboost-gpu"
    pod = wait_for(
        "the example's pod to be scheduled",
        lambda: next((p for p in kube.pods(name) if p.spec.node_name), None),
    )
    assert pod.spec.node_name in cluster.gpu_nodes
    assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"
    status = kube.wait_status(name, "Completed")
    assert status["modelArtifacts"]["s3ModelArtifacts"].endswith(f"/{name}/output/model.tar.gz")


@pytest.mark.usefixtures("operator")
def test_every_example_trainingjob_runs_to_completion(kube: Kube) -> None:
    """What a user does with examples/: apply them, with the operator under the chart's RBAC.

    The pods are KWOK's, so the algorithm is simulated; the operator's side (children,
    placement, statuses, the model's location) is real.
    """
    expected: dict[str, str] = {}
    # Examples that ask for a root user: "restricted" (this namespace) refuses them.
    refused: list[str] = []
    for path in sorted((REPO_ROOT / "examples").glob("*/*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document.get("kind") != "TrainingJob":
                continue
            # trainingjob.yaml and trainingjob-s3.yaml name the same job: one namespace
            # holds both under names of their own.
            name = f"{path.parent.name}-{path.stem}".removesuffix("-trainingjob")[:52]
            document["metadata"]["name"] = name
            kube.custom.create_namespaced_custom_object(
                GROUP, VERSION, kube.namespace, PLURAL, document
            )
            overrides = document["spec"].get("podOverrides") or {}
            if (overrides.get("securityContext") or {}).get("runAsNonRoot") is False:
                refused.append(name)
                continue
            expected[name] = document["spec"]["outputDataConfig"]["s3OutputPath"]
    assert len(expected) >= 10, f"fewer examples than expected: {sorted(expected)}"
    assert refused == ["root-image"]
    for name in refused:
        status = kube.wait_status(name, "Failed", timeout=60)
        assert "violates PodSecurity" in status["failureReason"]
    for name, output_path in expected.items():
        status = kube.wait_status(name, "Completed", timeout=180)
        assert status["modelArtifacts"]["s3ModelArtifacts"] == (
            f"{output_path.rstrip('/')}/{name}/output/model.tar.gz"
        )


@pytest.mark.pod_security("baseline")
@pytest.mark.usefixtures("operator")
def test_the_root_image_example_runs_where_baseline_is_enforced(
    kube: Kube, cluster: LocalCluster, namespace: str
) -> None:
    example = REPO_ROOT / "examples" / "root-image" / "trainingjob.yaml"
    cluster.kubectl("apply", "-n", namespace, "-f", str(example))
    kube.wait_status("root-image", "Completed")
    [pod] = kube.pods("root-image")
    assert pod.spec.security_context.run_as_user == 0


@pytest.mark.usefixtures("operator")
def test_pods_pass_pod_security_restricted(kube: Kube) -> None:
    """Every test namespace enforces "restricted" (conftest): the operator's pods run."""
    kube.create("restricted", kwok={"duration": "1s"})
    kube.wait_status("restricted", "Completed")
    [pod] = kube.core.list_namespaced_pod(kube.namespace).items
    assert pod.spec.security_context.run_as_non_root is True


@pytest.mark.usefixtures("operator")
def test_pods_the_cluster_refuses_fail_the_job_with_the_reason(kube: Kube) -> None:
    # A root image asked for in a namespace that enforces "restricted": never admitted.
    kube.create(
        "as-root",
        podOverrides={"securityContext": {"runAsUser": 0, "runAsNonRoot": False}},
    )
    status = kube.wait_status("as-root", "Failed", timeout=60)
    reason = status["failureReason"]
    assert reason.startswith("ClientError: the cluster refuses to create the pods of Job as-root")
    assert "violates PodSecurity" in reason and "runAsNonRoot" in reason
    assert condition(status, "Failed") == ("True", "ClientError")
    # Events are posted in the background: the status may come first.
    wait_for(
        "a Failed event naming Pod Security",
        lambda: any(
            e.reason == "Failed" and "PodSecurity" in e.message for e in kube.events("as-root")
        ),
        timeout=30,
    )
    wait_for("the refused Job to be deleted", lambda: not kube.jobs("as-root"), timeout=30)
