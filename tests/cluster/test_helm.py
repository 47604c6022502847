"""The Helm chart: lint-clean, renders least-privilege RBAC and a hardened Deployment, and
installs into the local control plane with its CRDs established."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from kubemaker.config import OperatorConfig

pytest.register_assert_rewrite("operator_harness")
from operator_harness import can_i_resource  # noqa: E402

if TYPE_CHECKING:
    from conftest import LocalCluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kubemaker"
PLURALS = ("trainingjobs", "tuningjobs", "endpoints", "batchtransforms")


def helm(
    cluster: LocalCluster, tmp_path: Path, *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    # Helm's own state (repositories, cache, plugins) stays in the test's directory.
    env = {
        **os.environ,
        "HELM_CONFIG_HOME": str(tmp_path / "helm-config"),
        "HELM_CACHE_HOME": str(tmp_path / "helm-cache"),
        "HELM_DATA_HOME": str(tmp_path / "helm-data"),
        "KUBECONFIG": str(cluster.kubeconfig),
    }
    result = subprocess.run(
        [str(cluster.bin("helm")), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check:
        assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result


def render(cluster: LocalCluster, tmp_path: Path, *args: str) -> list[dict[str, Any]]:
    out = helm(cluster, tmp_path, "template", "km", str(CHART), "-n", "kubemaker", *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_values_config_is_the_operator_default() -> None:
    """values.yaml's config block parses and equals the operator's built-in defaults."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert OperatorConfig.from_mapping(values["config"]) == OperatorConfig()


def test_chart_crds_are_the_generated_ones() -> None:
    chart = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert chart == [f"kubemaker.io_{p}.yaml" for p in sorted(PLURALS)]
    for name in chart:
        assert (CHART / "crds" / name).read_text() == (REPO / "crds" / name).read_text()


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["--set", "config.watchNamespaces={team-a,team-b}"],
        [
            "--set", "metrics.serviceMonitor.enabled=true",
            "--set", "grafana.dashboard.enabled=true",
            "--set", "operator.logLevel=debug",
        ],
    ],
    ids=["defaults", "namespaced", "monitoring"],
)  # fmt: skip
def test_lint_is_clean(cluster: LocalCluster, tmp_path: Path, extra: list[str]) -> None:
    result = helm(cluster, tmp_path, "lint", "--strict", str(CHART), *extra)
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


def _rules(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [rule for doc in docs if doc["kind"] == kind for rule in doc["rules"]]


def test_rbac_is_least_privilege(cluster: LocalCluster, tmp_path: Path) -> None:
    docs = render(cluster, tmp_path)
    rules = _rules(docs, "ClusterRole")
    assert rules
    for rule in rules:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
    granted = {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert ("batch", "jobs", "create") in granted
    assert ("kubemaker.io", "trainingjobs/status", "patch") in granted
    assert ("", "pods/log", "get") in granted
    assert ("", "events", "create") in granted
    # Only what the operator uses: of the specs, only a TuningJob's trials are written
    # (created, and stopped through spec.stop).
    assert ("kubemaker.io", "trainingjobs", "create") in granted
    assert ("kubemaker.io", "trainingjobs", "patch") in granted
    assert ("kubemaker.io", "trainingjobs", "delete") not in granted
    assert ("kubemaker.io", "tuningjobs", "patch") not in granted
    assert {resource for group, resource, _ in granted if group == "kubemaker.io"} == {
        "trainingjobs",
        "trainingjobs/status",
        "endpoints",
        "endpoints/status",
        "tuningjobs",
        "tuningjobs/status",
        "batchtransforms",
        "batchtransforms/status",
    }
    assert ("batch", "jobs", "patch") in granted  # a stopped BatchTransform's Job: suspended
    # An Endpoint's children: the operator patches them in place (replicas, routing table).
    assert ("apps", "deployments", "patch") in granted
    assert ("", "configmaps", "patch") in granted
    assert ("policy", "poddisruptionbudgets", "create") in granted
    assert not any(resource == "secrets" for _, resource, _ in granted)
    assert ("", "pods", "delete") not in granted
    assert ("", "pods", "patch") in granted  # stopping pods in place keeps their logs
    assert not any(verb in ("escalate", "bind", "impersonate") for _, _, verb in granted)

    namespaced = render(cluster, tmp_path, "--set", "config.watchNamespaces={team-a,team-b}")
    assert not [d for d in namespaced if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    roles = [d for d in namespaced if d["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert _rules(namespaced, "Role")[: len(rules)] == rules


def test_deployment_is_hardened_and_configured(cluster: LocalCluster, tmp_path: Path) -> None:
    docs = render(cluster, tmp_path, "--set", "config.storage.s3EndpointUrl=http://minio:9000")
    by_kind = {doc["kind"]: doc for doc in docs}
    deployment = by_kind["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"]["memory"]
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert "--config=/etc/kubemaker/config.yaml" in container["args"]
    assert pod["serviceAccountName"] == by_kind["ServiceAccount"]["metadata"]["name"]

    config = yaml.safe_load(by_kind["ConfigMap"]["data"]["config.yaml"])
    parsed = OperatorConfig.from_mapping(config)
    assert parsed.storage.s3_endpoint_url == "http://minio:9000"
    assert parsed.instance_types["ml.p3.2xlarge"].gpus == 1


def test_install_into_the_cluster(cluster: LocalCluster, namespace: str, tmp_path: Path) -> None:
    release = "kubemaker"
    helm(
        cluster, tmp_path, "install", release, str(CHART), "-n", namespace,
        "--wait", "--timeout", "180s",
    )  # fmt: skip
    try:
        names = [f"crd/{plural}.kubemaker.io" for plural in PLURALS]
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)
        cluster.kubectl(
            "rollout", "status", "-n", namespace, f"deployment/{release}", "--timeout=120s"
        )
        status = json.loads(
            helm(cluster, tmp_path, "status", release, "-n", namespace, "-o", "json").stdout
        )
        assert status["info"]["status"] == "deployed"

        account = f"system:serviceaccount:{namespace}:{release}"

        def can(verb: str, resource: str, where: str = namespace) -> bool:
            result = cluster.kubectl(
                "auth", "can-i", verb, *can_i_resource(resource), "-n", where,
                "--as", account, check=False,
            )  # fmt: skip
            return result.stdout.strip() == "yes"

        assert can("watch", "trainingjobs.kubemaker.io", "default")
        assert can("patch", "trainingjobs.kubemaker.io/status", "default")
        assert can("create", "jobs.batch", "default")
        assert can("delete", "services", "default")
        assert can("get", "pods/log", "default")
        assert can("create", "events", "default")
        assert can("patch", "trainingjobs.kubemaker.io", "default")  # a trial's spec.stop
        assert not can("delete", "trainingjobs.kubemaker.io", "default")
        assert not can("get", "secrets", "default")
        assert not can("delete", "pods", "default")
        assert can("create", "deployments.apps", "default")  # an Endpoint's fleets
        assert not can("create", "statefulsets.apps", "default")
        assert not can("delete", "customresourcedefinitions.apiextensions.k8s.io", "default")
    finally:
        helm(cluster, tmp_path, "uninstall", release, "-n", namespace, "--wait", check=False)


def test_values_schema_rejects_typos(cluster: LocalCluster, tmp_path: Path) -> None:
    result = helm(
        cluster, tmp_path, "template", "km", str(CHART), "--set", "operator.wokers=3", check=False
    )
    assert result.returncode != 0
    assert "wokers" in result.stderr
