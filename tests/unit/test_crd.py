"""The CRD generator: structural output, CEL rules, and committed files kept fresh."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field

from kubemaker import crd
from kubemaker.api import BATCH_TRANSFORM, ENDPOINT, KINDS, TRAINING_JOB, TUNING_JOB
from kubemaker.api.common import ResourceInfo

REPO = Path(__file__).resolve().parents[2]

# Short names of built-in kinds and of widely installed CRDs (Argo, Flux, cert-manager,
# Knative, Tekton, KEDA, Kueue, Kubeflow, Volcano, Istio...).
TAKEN_SHORT_NAMES = {
    "cm", "cs", "csr", "crd", "crds", "cj", "deploy", "ds", "ep", "ev", "hpa", "ing", "limits",
    "netpol", "no", "ns", "pc", "pdb", "po", "psp", "pv", "pvc", "quota", "rc", "rs", "sa",
    "sc", "sts", "svc", "ipa", "vac", "eps",
    "app", "apps", "appproj", "appset", "appsets", "ro", "wf", "cwf", "cwft", "wftmpl", "wfeb",
    "wfts", "wftsk", "ks", "hr", "gitrepo", "helmrepo", "hc", "ocirepo", "cert", "certs", "cr",
    "crs", "iss", "ciss", "ksvc", "kcfg", "rt", "kpa", "tr", "pr", "tt", "tb", "el", "so", "sj",
    "ta", "cta", "wl", "wls", "lq", "cq", "rf", "vcjob", "vj", "pg", "podgroup", "vs", "dr", "gw",
    "se", "pa", "ra", "ap",
}  # fmt: skip


def test_committed_crds_are_fresh() -> None:
    """`python -m kubemaker crds --check` passes on the checkout (CI runs the same)."""
    result = subprocess.run(
        [sys.executable, "-m", "kubemaker", "crds", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_reports_stale_missing_and_extra_files(tmp_path: Path) -> None:
    files = crd.generate()
    crd.write_files(files, tmp_path)
    assert crd.stale_files(files, tmp_path) == []
    first = sorted(files)[0]
    (tmp_path / first).write_text(files[first] + "# edited\n")
    (tmp_path / sorted(files)[1]).unlink()
    (tmp_path / "kubemaker.io_oldkinds.yaml").write_text("{}")
    problems = crd.stale_files(files, tmp_path)
    assert len(problems) == 3
    assert any("out of date" in p for p in problems)
    assert any("missing" in p for p in problems)
    assert any("not generated" in p for p in problems)
    crd.write_files(files, tmp_path)
    assert crd.stale_files(files, tmp_path) == []


def test_check_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    crd.add_arguments(parser)
    args = parser.parse_args(
        ["--crds-dir", str(tmp_path / "a"), "--chart-crds-dir", str(tmp_path / "b"), "--check"]
    )
    assert crd.run(args) == 1
    assert "stale" in capsys.readouterr().err
    args.check = False
    assert crd.run(args) == 0
    args.check = True
    assert crd.run(args) == 0


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    nodes = [(path, node)]
    for name, sub in node.get("properties", {}).items():
        nodes += _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        nodes += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        nodes += _walk(node["additionalProperties"], f"{path}.*")
    return nodes


@pytest.mark.parametrize("info", KINDS, ids=lambda i: i.kind)
def test_schema_is_structural(info: ResourceInfo) -> None:
    schema = crd.build_schema(info)
    for path, node in _walk(schema):
        forbidden = {"$ref", "$defs", "allOf", "oneOf", "not", "propertyNames",
                     "patternProperties", "title", "const", "nullable"} & set(node)  # fmt: skip
        assert not forbidden, f"{path}: {forbidden}"
        if node.get("x-kubernetes-int-or-string"):
            assert "type" not in node
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}]
            continue
        assert "anyOf" not in node, path
        assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}, (
            path
        )
        assert not ("properties" in node and "additionalProperties" in node), path
        if node["type"] == "array":
            assert "items" in node, path
        if node.get("x-kubernetes-list-type") == "map":
            item = node["items"]
            for key in node["x-kubernetes-list-map-keys"]:
                assert key in item.get("required", []) or "default" in item["properties"][key]


@pytest.mark.parametrize("info", KINDS, ids=lambda i: i.kind)
def test_every_property_has_a_description(info: ResourceInfo) -> None:
    schema = crd.build_schema(info)
    # Every named property carries a description; list items and map values are
    # described by the property that holds them.
    undocumented = [
        path
        for path, node in _walk(schema)
        if path
        and path != ".metadata"
        and not path.endswith((".*", "[]"))
        and not node.get("description")
    ]
    assert not undocumented


def _resolve(schema: dict[str, Any], json_path: str) -> dict[str, Any]:
    node = schema
    for part in json_path.strip(".").split("."):
        name, _, index = part.partition("[")
        node = node["properties"][name]
        if index:
            node = node["items"]
    return node


@pytest.mark.parametrize("info", KINDS, ids=lambda i: i.kind)
def test_printer_columns_point_at_real_fields(info: ResourceInfo) -> None:
    schema = crd.build_schema(info)
    schema["properties"]["metadata"] = {"properties": {"creationTimestamp": {"type": "string"}}}
    for column in info.printer_columns:
        node = _resolve(schema, column.json_path)
        expected = {"date": "string", "integer": "integer", "number": "number"}
        assert node.get("type") == expected.get(column.type, "string"), column


def test_names_category_and_short_names() -> None:
    seen: set[str] = set()
    for info in KINDS:
        names = crd.build_crd(info)["spec"]["names"]
        assert names["categories"] == ["kubemaker"]
        for short in names["shortNames"]:
            assert short not in TAKEN_SHORT_NAMES, short
            assert short not in seen
            seen.add(short)
        assert crd.build_crd(info)["metadata"]["name"] == f"{info.plural}.kubemaker.io"
    assert "ep" not in ENDPOINT.short_names


def _rules(node: dict[str, Any]) -> list[str]:
    return [r["rule"] for r in node.get("x-kubernetes-validations", [])]


def test_training_job_spec_immutable_except_stop_and_ttl() -> None:
    spec = crd.build_schema(TRAINING_JOB)["properties"]["spec"]
    rules = _rules(spec)
    assert "self.resourceConfig == oldSelf.resourceConfig" in rules
    assert any("has(self.hyperParameters) == has(oldSelf.hyperParameters)" in r for r in rules)
    assert not any("self.ttlSecondsAfterFinished" in r for r in rules)
    latch = [r for r in rules if "oldSelf.stop)" in r]
    assert latch == ["!has(oldSelf.stop) || !oldSelf.stop || (has(self.stop) && self.stop)"]
    # Every spec field but the two mutable ones is covered by exactly one rule.
    covered = {name for name in spec["properties"] if any(f"oldSelf.{name}" in r for r in rules)}
    assert set(spec["properties"]) - covered == {"ttlSecondsAfterFinished"}


def test_endpoint_spec_may_change() -> None:
    spec = crd.build_schema(ENDPOINT)["properties"]["spec"]
    assert not any("oldSelf" in r for r in _rules(spec))


def test_kind_rules_reach_the_schema() -> None:
    tuning = crd.build_schema(TUNING_JOB)
    config = tuning["properties"]["spec"]["properties"]["hyperParameterTuningJobConfig"]
    assert any("Hyperband" in r for r in _rules(config))
    ranges = config["properties"]["parameterRanges"]["properties"]["integerParameterRanges"]
    assert "self.minValue <= self.maxValue" in _rules(ranges["items"])
    assert any("metadata.name.size() <= 32" in r for r in _rules(tuning))
    model = crd.build_schema(BATCH_TRANSFORM)["properties"]["spec"]["properties"]["model"]
    assert any("has(self.trainingJobRef)" in r for r in _rules(model))


def test_map_key_patterns_become_cel() -> None:
    spec = crd.build_schema(TRAINING_JOB)["properties"]["spec"]
    env = spec["properties"]["environment"]
    assert env["additionalProperties"] == {"type": "string", "maxLength": 4096}
    assert "self.all(k, k.matches(r'^[a-zA-Z_][a-zA-Z0-9_]*$'))" in _rules(env)
    hyper = spec["properties"]["hyperParameters"]
    assert "self.all(k, k.size() <= 256)" in _rules(hyper)


def test_defaults_and_status_subresource() -> None:
    doc = crd.build_crd(TRAINING_JOB)
    version = doc["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["stoppingCondition"]["default"] == {"maxRuntimeInSeconds": 86400}
    assert spec["properties"]["stop"]["default"] is False
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["properties"]["kopf"]["x-kubernetes-preserve-unknown-fields"] is True
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert status["properties"]["creationTime"]["format"] == "date-time"


def test_rendered_yaml_round_trips() -> None:
    for name, text in crd.generate().items():
        assert text.startswith(crd.HEADER)
        doc = yaml.safe_load(text)
        assert name == f"kubemaker.io_{doc['spec']['names']['plural']}.yaml"


# --- the converter on its own ---


class _Inner(BaseModel):
    """Inner doc."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [{"rule": "true", "message": "m"}]}
    )
    a: int = Field(default=1, gt=0, description="a")


class _Outer(BaseModel):
    """Outer doc."""

    inner: _Inner | None = Field(default=None, description="field doc wins")
    kind: Literal["X"] = Field(default="X", description="const")
    mode: Literal["A", "B"] = Field(default="A", description="enum")


def test_refs_inlined_nullable_dropped_const_to_enum() -> None:
    out = crd.structural(_Outer.model_json_schema(by_alias=True))
    inner = out["properties"]["inner"]
    assert inner["description"] == "field doc wins"
    assert inner["properties"]["a"] == {
        "type": "integer",
        "description": "a",
        "default": 1,
        "exclusiveMinimum": True,
        "minimum": 0,
    }
    assert _rules(inner) == ["true"]
    assert "default" not in inner
    assert out["properties"]["kind"]["enum"] == ["X"]
    assert out["properties"]["mode"] == {
        "type": "string",
        "description": "enum",
        "default": "A",
        "enum": ["A", "B"],
    }


class _Union(BaseModel):
    """Not structural."""

    value: int | str = Field(description="either")


class _Node(BaseModel):
    """Recursive."""

    child: _Node | None = Field(default=None, description="child")


def test_unrepresentable_models_are_refused() -> None:
    with pytest.raises(crd.SchemaError, match="union"):
        crd.structural(_Union.model_json_schema())
    with pytest.raises(crd.SchemaError, match="recursive"):
        crd.structural(_Node.model_json_schema())
