"""Smoke tests of the local control plane: the API machinery the operator relies on
(CRDs, CEL, status subresource, watches, garbage collection, RBAC, scheduling, the Job
controller) and the kwok pod stages of tests/cluster/kwok/stages/pod.yaml."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import yaml
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

if TYPE_CHECKING:
    from conftest import LocalCluster

# These pods exercise the simulated cluster, not the operator: Pod Security "baseline".
pytestmark = [pytest.mark.cluster, pytest.mark.pod_security("baseline")]

T = TypeVar("T")

IMAGE = "registry.k8s.io/pause:3.10"  # never pulled: kwok only simulates containers
GROUP = "smoke.kubemaker.io"
ANNOTATION = "kwok.kubemaker.io/"


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def api(cluster: LocalCluster) -> client.ApiClient:
    return cluster.api_client()


def apply(cluster: LocalCluster, manifest: dict[str, Any] | str, namespace: str | None = None):
    text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
    args = ["apply", "--server-side", "--field-manager=smoke-test", "-f", "-"]
    if namespace:
        args += ["-n", namespace]
    return cluster.kubectl(*args, input=text)


def job_manifest(name: str, annotations: dict[str, str] | None = None, **spec: Any) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "algorithm", "image": IMAGE}],
                },
            },
            **spec,
        },
    }


def training_pod_spec(annotations: dict[str, str]) -> dict:
    """The operator's training pod shape: native sidecar `agent` + main `algorithm`."""
    return {
        "metadata": {"annotations": annotations},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [
                {
                    "name": "agent",
                    "image": "ghcr.io/kubemaker/runtime:0.1.0",
                    "args": ["sidecar"],
                    "restartPolicy": "Always",
                    "startupProbe": {"exec": {"command": ["kubemaker-agent", "probe"]}},
                }
            ],
            "containers": [
                {
                    "name": "algorithm",
                    "image": IMAGE,
                    "args": ["train"],
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                }
            ],
        },
    }


def job_pods(api: client.ApiClient, namespace: str, job: str) -> list[client.V1Pod]:
    pods = client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=f"batch.kubernetes.io/job-name={job}"
    )
    return pods.items


def job_condition(api: client.ApiClient, namespace: str, job: str) -> str | None:
    """The Job's final condition ("Complete" or "Failed"), None while it runs."""
    status = client.BatchV1Api(api).read_namespaced_job_status(job, namespace).status
    for condition in status.conditions or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return condition.type
    return None


def container(statuses: list[client.V1ContainerStatus] | None, name: str):
    return next(status for status in statuses or [] if status.name == name)


# --- the cluster itself -------------------------------------------------------------


def test_nodes_are_ready_with_cpu_and_gpu_capacity(
    cluster: LocalCluster, api: client.ApiClient
) -> None:
    nodes = {node.metadata.name: node for node in client.CoreV1Api(api).list_node().items}
    assert {*cluster.cpu_nodes, *cluster.gpu_nodes} <= set(nodes)
    for node in nodes.values():
        ready = [c for c in node.status.conditions if c.type == "Ready"]
        assert ready and ready[0].status == "True", node.metadata.name
    gpu = nodes["kwok-gpu-0"]
    assert gpu.status.allocatable["nvidia.com/gpu"] == "8"
    assert gpu.metadata.labels["nvidia.com/gpu.present"] == "true"
    assert [(t.key, t.value, t.effect) for t in gpu.spec.taints] == [
        ("nvidia.com/gpu", "present", "NoSchedule")
    ]
    assert "nvidia.com/gpu" not in nodes["kwok-cpu-0"].status.allocatable


def test_server_runs_the_pinned_kubernetes_version(
    cluster: LocalCluster, api: client.ApiClient
) -> None:
    version = client.VersionApi(api).get_code()
    assert version.git_version == cluster.kubernetes_version


def test_rbac_is_enforced(cluster: LocalCluster, namespace: str) -> None:
    cluster.kubectl("create", "serviceaccount", "robot", "-n", namespace)
    robot = f"--as=system:serviceaccount:{namespace}:robot"

    def can_list_pods() -> str:
        result = cluster.kubectl(
            "auth", "can-i", "list", "pods", "-n", namespace, robot, check=False
        )
        return result.stdout.strip()

    assert can_list_pods() == "no"
    cluster.kubectl(
        "create", "role", "pod-reader", "--verb=list", "--resource=pods", "-n", namespace
    )
    cluster.kubectl(
        "create", "rolebinding", "robot-reads", "--role=pod-reader",
        f"--serviceaccount={namespace}:robot", "-n", namespace,
    )  # fmt: skip
    wait_until("the RoleBinding to take effect", lambda: can_list_pods() == "yes")
    denied = cluster.kubectl("get", "secrets", "-n", namespace, robot, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr


# --- custom resources ------------------------------------------------------------------

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"}
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1},
                                    "color": {"type": "string", "default": "blue"},
                                },
                                "x-kubernetes-validations": [
                                    {"rule": "self.size <= 10", "message": "size must be <= 10"}
                                ],
                            },
                            "status": {
                                "type": "object",
                                "properties": {"phase": {"type": "string"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture
def widgets(cluster: LocalCluster) -> client.CustomObjectsApi:
    # A CRD is cluster-wide and several test sessions may share the cluster: apply it
    # idempotently and leave it in place.
    apply(cluster, WIDGET_CRD)
    cluster.kubectl("wait", "--for=condition=Established", f"crd/widgets.{GROUP}", "--timeout=30s")
    return client.CustomObjectsApi(cluster.api_client())


def widget(name: str, size: int) -> dict:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": size},
    }


def test_crd_schema_defaults_and_cel_validation(
    widgets: client.CustomObjectsApi, namespace: str
) -> None:
    created = widgets.create_namespaced_custom_object(
        GROUP, "v1", namespace, "widgets", widget("w", 3)
    )
    assert created["spec"]["color"] == "blue"  # structural schema default
    with pytest.raises(ApiException) as rejected:
        widgets.create_namespaced_custom_object(
            GROUP, "v1", namespace, "widgets", widget("big", 11)
        )
    assert rejected.value.status == 422
    assert "size must be <= 10" in json.loads(rejected.value.body)["message"]
    with pytest.raises(ApiException) as rejected:
        widgets.create_namespaced_custom_object(
            GROUP, "v1", namespace, "widgets", widget("zero", 0)
        )
    assert rejected.value.status == 422


def test_custom_resource_watch_status_and_garbage_collection(
    widgets: client.CustomObjectsApi, api: client.ApiClient, namespace: str
) -> None:
    listed = widgets.list_namespaced_custom_object(GROUP, "v1", namespace, "widgets")
    since = listed["metadata"]["resourceVersion"]
    owner = widgets.create_namespaced_custom_object(
        GROUP, "v1", namespace, "widgets", widget("owner", 2)
    )

    # The status subresource: status changes go through /status and leave the generation.
    patched = widgets.patch_namespaced_custom_object_status(
        GROUP, "v1", namespace, "widgets", "owner", {"status": {"phase": "Ready"}}
    )
    assert patched["status"]["phase"] == "Ready"
    assert patched["metadata"]["generation"] == owner["metadata"]["generation"]
    # ...and a status in a main-resource update is ignored.
    ignored = widgets.patch_namespaced_custom_object(
        GROUP, "v1", namespace, "widgets", "owner", {"status": {"phase": "Hacked"}}
    )
    assert ignored["status"]["phase"] == "Ready"

    # A watch from before the creation replays ADDED then the status change.
    seen: list[tuple[str, str | None]] = []
    stream = watch.Watch()
    for event in stream.stream(
        widgets.list_namespaced_custom_object, GROUP, "v1", namespace, "widgets",
        resource_version=since, timeout_seconds=20,
    ):  # fmt: skip
        obj = event["object"]
        seen.append((event["type"], obj.get("status", {}).get("phase")))
        if event["type"] == "MODIFIED" and obj.get("status", {}).get("phase") == "Ready":
            stream.stop()
    assert seen[0] == ("ADDED", None)
    assert ("MODIFIED", "Ready") in seen

    # Garbage collection: a child with an ownerReference goes when its owner goes.
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(
        namespace,
        {
            "metadata": {
                "name": "child",
                "ownerReferences": [
                    {
                        "apiVersion": f"{GROUP}/v1",
                        "kind": "Widget",
                        "name": "owner",
                        "uid": owner["metadata"]["uid"],
                    }
                ],
            },
            "data": {"k": "v"},
        },
    )
    widgets.delete_namespaced_custom_object(GROUP, "v1", namespace, "widgets", "owner")

    def child_gone() -> bool:
        names = [cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items]
        return "child" not in names

    wait_until("the garbage collector to delete the ConfigMap", child_gone, timeout=60)


# --- scheduling and controllers --------------------------------------------------------


def test_gpu_pod_is_scheduled_on_the_gpu_node(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)

    def gpu_pod(name: str, tolerate: bool) -> dict:
        spec: dict[str, Any] = {
            "containers": [
                {"name": "c", "image": IMAGE, "resources": {"limits": {"nvidia.com/gpu": "1"}}}
            ]
        }
        if tolerate:
            spec["tolerations"] = [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ]
        return {"metadata": {"name": name}, "spec": spec}

    core.create_namespaced_pod(namespace, gpu_pod("gpu", tolerate=True))
    core.create_namespaced_pod(namespace, gpu_pod("untolerated", tolerate=False))

    def running(name: str) -> client.V1Pod | None:
        pod = core.read_namespaced_pod(name, namespace)
        return pod if pod.status.phase == "Running" else None

    pod = wait_until("the GPU pod to run", lambda: running("gpu"))
    assert pod.spec.node_name == "kwok-gpu-0"

    def unschedulable() -> bool:
        pod = core.read_namespaced_pod("untolerated", namespace)
        return any(
            c.type == "PodScheduled" and c.reason == "Unschedulable"
            for c in pod.status.conditions or []
        )

    wait_until("the scheduler to refuse the pod without the GPU toleration", unschedulable)


def test_job_completes_and_deployment_stays_ready(
    cluster: LocalCluster, api: client.ApiClient, namespace: str
) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": IMAGE}]},
            },
        },
    }
    apply(cluster, deployment, namespace)
    apply(cluster, job_manifest("quick", {f"{ANNOTATION}duration": "2s"}), namespace)

    assert wait_until("the Job to finish", lambda: job_condition(api, namespace, "quick")) == (
        "Complete"
    )
    [pod] = job_pods(api, namespace, "quick")
    assert pod.status.phase == "Succeeded"
    state = container(pod.status.container_statuses, "algorithm").state.terminated
    assert state.exit_code == 0 and state.reason == "Completed"
    assert (state.finished_at - state.started_at).total_seconds() >= 1.5

    # Two seconds have passed: the Deployment's pods are still running and Ready.
    apps = client.AppsV1Api(api)
    wait_until(
        "the Deployment to be available",
        lambda: apps.read_namespaced_deployment_status("web", namespace).status.ready_replicas == 2,
    )
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app=web").items
    assert [p.status.phase for p in pods] == ["Running", "Running"]


def test_deleting_a_running_job_removes_its_pod(
    cluster: LocalCluster, api: client.ApiClient, namespace: str
) -> None:
    apply(cluster, job_manifest("long", {f"{ANNOTATION}duration": "1h"}), namespace)
    core = client.CoreV1Api(api)
    wait_until(
        "the pod to run",
        lambda: [p for p in job_pods(api, namespace, "long") if p.status.phase == "Running"],
    )
    cluster.kubectl(
        "delete", "job", "long", "-n", namespace, "--cascade=foreground", "--wait=false"
    )
    wait_until(
        "the pod and the Job to be gone",
        lambda: (
            not core.list_namespaced_pod(namespace).items
            and not client.BatchV1Api(api).list_namespaced_job(namespace).items
        ),
        timeout=60,
    )


# --- kwok stages: outcomes steered by annotations ------------------------------------


def test_exit_code_and_message_fail_the_pod(
    cluster: LocalCluster, api: client.ApiClient, namespace: str
) -> None:
    annotations = {f"{ANNOTATION}exit-code": "3", f"{ANNOTATION}message": "boom: bad input"}
    apply(cluster, job_manifest("fails", annotations), namespace)
    assert wait_until("the Job to fail", lambda: job_condition(api, namespace, "fails")) == "Failed"
    [pod] = job_pods(api, namespace, "fails")
    assert pod.status.phase == "Failed"
    terminated = container(pod.status.container_statuses, "algorithm").state.terminated
    assert (terminated.exit_code, terminated.reason, terminated.message) == (
        3,
        "Error",
        "boom: bad input",
    )


def test_agent_report_defaults_from_the_model_artifacts_annotation(
    cluster: LocalCluster, api: client.ApiClient, namespace: str
) -> None:
    from kubemaker_runtime.protocol import AgentReport

    uri = "s3://bucket/jobs/train-1/output/model.tar.gz"
    job = job_manifest("train-1")
    job["spec"]["template"] = training_pod_spec({"kubemaker.io/model-artifacts": uri})
    failing = job_manifest("train-2")
    failing["spec"]["template"] = training_pod_spec(
        {
            "kubemaker.io/model-artifacts": uri,
            f"{ANNOTATION}exit-code": "1",
            f"{ANNOTATION}message": "ValueError: eta must be > 0",
        }
    )
    explicit = job_manifest("train-3")
    explicit["spec"]["template"] = training_pod_spec(
        {
            "kubemaker.io/model-artifacts": uri,
            f"{ANNOTATION}agent-report": '{"version":1,"outcome":"Failed","agentError":"x"}',
        }
    )
    for manifest in (job, failing, explicit):
        apply(cluster, manifest, namespace)
    for name, outcome in (("train-1", "Complete"), ("train-2", "Failed"), ("train-3", "Complete")):
        assert wait_until(f"Job {name}", lambda n=name: job_condition(api, namespace, n)) == outcome

    def agent_report(job_name: str) -> AgentReport:
        [pod] = job_pods(api, namespace, job_name)
        agent = container(pod.status.init_container_statuses, "agent").state.terminated
        assert agent.exit_code == 0
        return AgentReport.from_message(agent.message)

    report = agent_report("train-1")
    # kwok's report is a current one, plus a "simulated" marker the reader ignores.
    assert (report.outcome, report.model_artifacts, report.version) == ("Completed", uri, 2)
    report = agent_report("train-2")
    assert report.model_artifacts is None
    assert report.failure_reason == "ValueError: eta must be > 0"
    report = agent_report("train-3")
    assert (report.outcome, report.agent_error) == ("Failed", "x")


def test_evicted_pod_fails_with_disruption_target(
    cluster: LocalCluster, api: client.ApiClient, namespace: str
) -> None:
    # A podFailurePolicy sees the DisruptionTarget condition the eviction sets.
    policy = {
        "rules": [
            {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]
    }
    job = job_manifest("evicted", {f"{ANNOTATION}evict": "true"}, podFailurePolicy=policy)
    job["spec"]["backoffLimit"] = 3
    apply(cluster, job, namespace)
    assert (
        wait_until("the Job to fail", lambda: job_condition(api, namespace, "evicted")) == "Failed"
    )
    conditions = client.BatchV1Api(api).read_namespaced_job_status("evicted", namespace).status
    failed = next(c for c in conditions.conditions if c.type == "Failed")
    assert failed.reason == "PodFailurePolicy"
    [pod] = job_pods(api, namespace, "evicted")
    assert (pod.status.phase, pod.status.reason) == ("Failed", "Evicted")
    disruption = [c for c in pod.status.conditions if c.type == "DisruptionTarget"]
    assert disruption and disruption[0].status == "True"


def test_native_sidecar_lifecycle(api: client.ApiClient, namespace: str) -> None:
    """download (sidecar not started) -> train (both run) -> upload (sidecar alone) -> done."""
    core = client.CoreV1Api(api)
    pod = training_pod_spec(
        {
            f"{ANNOTATION}download-duration": "1s",
            f"{ANNOTATION}duration": "1s",
            f"{ANNOTATION}upload-duration": "1s",
            "kubemaker.io/model-artifacts": "s3://bucket/model.tar.gz",
        }
    )
    pod["metadata"]["name"] = "trainer"  # a bare pod: completes because of `duration`
    since = core.list_namespaced_pod(namespace).metadata.resource_version
    core.create_namespaced_pod(namespace, pod)

    def phase_of(p: client.V1Pod) -> str:
        agent = p.status.init_container_statuses and container(
            p.status.init_container_statuses, "agent"
        )
        main = p.status.container_statuses and container(p.status.container_statuses, "algorithm")
        if not agent or not main:
            return "created"
        if agent.state.running and not agent.started:
            assert main.state.waiting and p.status.phase == "Pending"
            return "downloading"
        if agent.state.running and main.state.running:
            return "training"
        if agent.state.running and main.state.terminated:
            assert p.status.phase == "Running"
            return "uploading"
        if agent.state.terminated and main.state.terminated:
            return p.status.phase
        return "starting"

    observed: list[str] = []
    times: dict[str, float] = {}
    stream = watch.Watch()
    for event in stream.stream(
        core.list_namespaced_pod, namespace, resource_version=since, timeout_seconds=30
    ):
        state = phase_of(event["object"])
        if not observed or observed[-1] != state:
            observed.append(state)
            times[state] = time.monotonic()
        if state in ("Succeeded", "Failed"):
            stream.stop()
    main_states = [
        s for s in observed if s in ("downloading", "training", "uploading", "Succeeded")
    ]
    assert main_states == ["downloading", "training", "uploading", "Succeeded"], observed
    assert times["training"] - times["downloading"] >= 0.8
    assert times["uploading"] - times["training"] >= 0.8
    assert times["Succeeded"] - times["uploading"] >= 0.8

    done = core.read_namespaced_pod("trainer", namespace)
    agent = container(done.status.init_container_statuses, "agent").state.terminated
    assert agent.exit_code == 0
    assert json.loads(agent.message)["modelArtifacts"] == "s3://bucket/model.tar.gz"
    ready = [c for c in done.status.conditions if c.type == "Ready"]
    assert ready[0].status == "False"
