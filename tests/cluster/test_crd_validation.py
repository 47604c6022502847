"""The generated CRDs on a real apiserver: accepted, structural, and validating.

Every manifest under examples/ must be accepted; every case of
``tests/unit/test_api_invalid.py`` (the same list the pydantic models are tested with)
must be rejected with a message that names the bad field; the TrainingJob spec must be
immutable except ``stop`` and ``ttlSecondsAfterFinished``; status goes through the status
subresource and drives ``kubectl wait``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from conftest import LocalCluster

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"
EXAMPLES = REPO / "examples"
GROUP = "kubemaker.io"
PLURALS = ("trainingjobs", "tuningjobs", "endpoints", "batchtransforms")


def _load_cases() -> ModuleType:
    # One list of invalid manifests for both validators; loaded by path because the
    # test folders are not packages.
    path = REPO / "tests" / "unit" / "test_api_invalid.py"
    spec = importlib.util.spec_from_file_location("kubemaker_api_invalid_cases", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


cases = _load_cases()


def _example_documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(EXAMPLES.rglob("*.y*ml")):
        for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith(GROUP):
                found.append((f"{path.relative_to(REPO)}#{index}", doc))
    return found


EXAMPLE_DOCUMENTS = _example_documents()


@pytest.fixture(scope="module")
def crds(cluster: LocalCluster) -> Iterator[None]:
    # Server-side apply: idempotent whether or not the chart test installed them first.
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=kubemaker-tests",
        "-f", str(CRD_DIR),
    )  # fmt: skip
    names = [f"crd/{plural}.{GROUP}" for plural in PLURALS]
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)
    yield


def create(
    cluster: LocalCluster, manifest: dict[str, Any], namespace: str, *, dry_run: bool = False
) -> Any:
    args = ["create", "-n", namespace, "-f", "-", "-o", "json"]
    if dry_run:
        args.append("--dry-run=server")
    return cluster.kubectl(*args, input=json.dumps(manifest), check=False)


def test_crds_are_structural_and_named(cluster: LocalCluster, crds: None) -> None:
    for plural in PLURALS:
        crd = json.loads(cluster.kubectl("get", f"crd/{plural}.{GROUP}", "-o", "json").stdout)
        conditions = {c["type"]: c for c in crd["status"]["conditions"]}
        assert conditions["Established"]["status"] == "True"
        assert conditions["NamesAccepted"]["status"] == "True", conditions["NamesAccepted"]
        assert "NonStructuralSchema" not in conditions, conditions["NonStructuralSchema"]
        assert crd["spec"]["names"]["categories"] == ["kubemaker"]


def _short_names(cluster: LocalCluster) -> dict[str, set[str]]:
    """Group version -> short names, from the apiserver's discovery documents."""
    found: dict[str, set[str]] = {}
    versions = ["v1"]
    for group in json.loads(cluster.kubectl("get", "--raw", "/apis").stdout)["groups"]:
        versions += [v["groupVersion"] for v in group["versions"]]
    for group_version in versions:
        path = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        resources = json.loads(cluster.kubectl("get", "--raw", path).stdout)["resources"]
        found[group_version] = {s for r in resources for s in r.get("shortNames", ())}
    return found


def test_short_names_collide_with_nothing_here(cluster: LocalCluster, crds: None) -> None:
    found = _short_names(cluster)
    ours = found.pop(f"{GROUP}/v1alpha1")
    assert ours == {"tj", "hpt", "mep", "bt"}
    others = set().union(*found.values())
    assert "ep" in others  # core Endpoints: the reason Endpoint is "mep"
    assert not ours & others


def test_kubectl_explain_shows_descriptions(cluster: LocalCluster, crds: None) -> None:
    out = cluster.kubectl("explain", "trainingjobs.spec.resourceConfig.instanceType").stdout
    assert "instanceTypes catalog" in out
    out = cluster.kubectl("explain", "tuningjobs.spec.hyperParameterTuningJobConfig").stdout
    assert "strategy" in out and "Bayesian" in out


@pytest.mark.parametrize(
    "document", [doc for _, doc in EXAMPLE_DOCUMENTS], ids=[name for name, _ in EXAMPLE_DOCUMENTS]
)
def test_example_accepted(
    cluster: LocalCluster, crds: None, namespace: str, document: dict[str, Any]
) -> None:
    document = {**document, "metadata": {**document["metadata"], "namespace": namespace}}
    result = create(cluster, document, namespace)
    assert result.returncode == 0, result.stderr


def test_examples_exist() -> None:
    # The parametrised test above is empty without examples: say so rather than pass.
    assert EXAMPLE_DOCUMENTS, "no kubemaker manifests under examples/"


@pytest.mark.parametrize("kind", sorted(cases.VALID))
def test_valid_manifest_accepted_with_defaults(
    cluster: LocalCluster, crds: None, namespace: str, kind: str
) -> None:
    result = create(cluster, cases.VALID[kind], namespace)
    assert result.returncode == 0, result.stderr
    stored = json.loads(result.stdout)
    spec = stored["spec"]
    if kind == "TrainingJob":
        assert spec["stoppingCondition"] == {"maxRuntimeInSeconds": 86400}
        assert spec["algorithmSpecification"]["trainingInputMode"] == "File"
        assert spec["resourceConfig"]["instanceCount"] == 1
        assert spec["resourceConfig"]["volumeSizeInGB"] == 30
        assert spec["stop"] is False
        assert spec["inputDataConfig"][0]["compressionType"] == "None"
    elif kind == "TuningJob":
        config = spec["hyperParameterTuningJobConfig"]
        assert config["trainingJobEarlyStoppingType"] == "Off"
        ranges = config["parameterRanges"]["integerParameterRanges"][0]
        assert ranges["scalingType"] == "Auto"
    elif kind == "Endpoint":
        variant = spec["productionVariants"][0]
        assert variant["initialInstanceCount"] == 1
        assert variant["initialVariantWeight"] == 1
        assert variant["autoScaling"]["scaleInCooldown"] == 300
    else:
        assert spec["transformInput"]["compressionType"] == "None"
        assert spec["stop"] is False


@pytest.mark.parametrize("case", cases.CASES, ids=lambda c: c.id)
def test_invalid_manifest_rejected_naming_the_field(
    cluster: LocalCluster, crds: None, case: Any
) -> None:
    # A server-side dry run runs the whole validation (schema, CEL, strict fields)
    # without storing anything, so every case can share the default namespace.
    result = create(cluster, case.manifest(), "default", dry_run=True)
    assert result.returncode != 0, f"accepted: {case.manifest()}"
    assert case.field in result.stderr, result.stderr


def test_enough_invalid_cases() -> None:
    assert len(cases.CASES) >= 15


def _patch(cluster: LocalCluster, namespace: str, target: str, patch: dict[str, Any]) -> Any:
    return cluster.kubectl(
        "patch", "-n", namespace, target, "--type=merge", "-p", json.dumps(patch), check=False
    )


def test_training_job_spec_is_immutable_except_stop_and_ttl(
    cluster: LocalCluster, crds: None, namespace: str
) -> None:
    manifest = cases.VALID["TrainingJob"]
    assert create(cluster, manifest, namespace).returncode == 0
    target = f"trainingjob/{manifest['metadata']['name']}"

    changed = _patch(cluster, namespace, target, {"spec": {"hyperParameters": {"num_round": "99"}}})
    assert changed.returncode != 0
    assert "hyperParameters is immutable" in changed.stderr
    changed = _patch(cluster, namespace, target, {"spec": {"resourceConfig": {"instanceCount": 2}}})
    assert "resourceConfig is immutable" in changed.stderr
    added = _patch(
        cluster, namespace, target, {"spec": {"retryStrategy": {"maximumRetryAttempts": 2}}}
    )
    assert "retryStrategy is immutable" in added.stderr
    removed = _patch(cluster, namespace, target, {"spec": {"hyperParameters": None}})
    assert "hyperParameters is immutable" in removed.stderr

    assert (
        _patch(cluster, namespace, target, {"spec": {"ttlSecondsAfterFinished": 60}}).returncode
        == 0
    )
    assert _patch(cluster, namespace, target, {"spec": {"stop": True}}).returncode == 0
    back = _patch(cluster, namespace, target, {"spec": {"stop": False}})
    assert back.returncode != 0
    assert "stop cannot be set back to false" in back.stderr


def test_tuning_job_immutable_endpoint_mutable(
    cluster: LocalCluster, crds: None, namespace: str
) -> None:
    tuning = cases.VALID["TuningJob"]
    assert create(cluster, tuning, namespace).returncode == 0
    target = f"tuningjob/{tuning['metadata']['name']}"
    patch = {"spec": {"warmStartConfig": None, "stop": True}}
    assert _patch(cluster, namespace, target, patch).returncode == 0
    changed = _patch(
        cluster, namespace, target, {"spec": {"hyperParameterTuningJobConfig": {"randomSeed": 1}}}
    )
    assert "hyperParameterTuningJobConfig.randomSeed is immutable" in changed.stderr

    endpoint = cases.VALID["Endpoint"]
    assert create(cluster, endpoint, namespace).returncode == 0
    variants = json.loads(json.dumps(endpoint["spec"]["productionVariants"]))
    variants[0]["initialInstanceCount"] = 2
    result = _patch(
        cluster,
        namespace,
        f"endpoint.{GROUP}/{endpoint['metadata']['name']}",
        {"spec": {"productionVariants": variants}},
    )
    assert result.returncode == 0, result.stderr
    listed = cluster.kubectl("get", "-n", namespace, "mep", "-o", "name").stdout
    assert listed.strip() == f"endpoint.{GROUP}/{endpoint['metadata']['name']}"


def test_status_subresource_conditions_and_columns(
    cluster: LocalCluster, crds: None, namespace: str
) -> None:
    manifest = cases.VALID["TrainingJob"]
    name = manifest["metadata"]["name"]
    assert create(cluster, manifest, namespace).returncode == 0
    status = {
        "status": {
            "observedGeneration": 1,
            "trainingJobStatus": "Completed",
            "secondaryStatus": "Completed",
            "modelArtifacts": {
                "s3ModelArtifacts": f"s3://bucket/output/{name}/output/model.tar.gz"
            },
            "conditions": [
                {
                    "type": "Succeeded",
                    "status": "True",
                    "reason": "Completed",
                    "message": "",
                    "lastTransitionTime": "2025-01-01T00:00:00Z",
                    "observedGeneration": 1,
                }
            ],
            "kopf": {"progress": {"some-handler": {"retries": 1}}},
            "notInTheSchema": "pruned",
        }
    }
    result = cluster.kubectl(
        "patch", "-n", namespace, f"trainingjob/{name}", "--subresource=status",
        "--type=merge", "-p", json.dumps(status), "-o", "json",
    )  # fmt: skip
    stored = json.loads(result.stdout)
    assert stored["status"]["trainingJobStatus"] == "Completed"
    assert stored["status"]["kopf"] == {"progress": {"some-handler": {"retries": 1}}}
    assert "notInTheSchema" not in stored["status"]
    assert stored["metadata"]["generation"] == 1  # status writes never bump it

    cluster.kubectl(
        "wait", "-n", namespace, f"trainingjob/{name}", "--for=condition=Succeeded", "--timeout=10s"
    )
    table = cluster.kubectl("get", "-n", namespace, "tj", name, "--no-headers").stdout.split()
    assert table[:5] == [name, "Completed", "Completed", "ml.m5.xlarge", "1"]
    listed = cluster.kubectl("get", "-n", namespace, "kubemaker", "-o", "name").stdout
    assert f"trainingjob.{GROUP}/{name}" in listed


def test_invalid_status_rejected(cluster: LocalCluster, crds: None, namespace: str) -> None:
    manifest = cases.VALID["TrainingJob"]
    name = manifest["metadata"]["name"]
    assert create(cluster, manifest, namespace).returncode == 0
    result = cluster.kubectl(
        "patch", "-n", namespace, f"trainingjob/{name}", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"trainingJobStatus": "Exploded"}}), check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "trainingJobStatus" in result.stderr


def test_explicit_null_is_dropped_not_stored(
    cluster: LocalCluster, crds: None, namespace: str
) -> None:
    manifest = json.loads(json.dumps(cases.VALID["TrainingJob"]))
    manifest["spec"]["retryStrategy"] = None
    manifest["spec"]["checkpointConfig"] = None
    result = create(cluster, manifest, namespace)
    assert result.returncode == 0, result.stderr
    spec = json.loads(result.stdout)["spec"]
    assert "retryStrategy" not in spec and "checkpointConfig" not in spec
