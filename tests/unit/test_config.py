"""The operator configuration: defaults, the chart's config.yaml, and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubemaker.config import CONFIG_ENV, ConfigError, OperatorConfig, load_config


def test_defaults_without_a_file() -> None:
    config = load_config(environ={})
    assert config == OperatorConfig()
    assert config.images.agent.startswith("ghcr.io/kubemaker/runtime:")
    assert "xgboost" in config.images.algorithms
    assert config.images.pull_policy == "IfNotPresent"
    assert config.instance_types["ml.m5.xlarge"].cpu == "4"
    assert config.instance_types["ml.m5.xlarge"].memory == "16Gi"
    assert config.instance_types["ml.p3.2xlarge"].gpus == 1
    # The workshop notebooks' types (train_instance_type="ml.c4.xlarge") exist too.
    assert config.instance_types["ml.c4.xlarge"].memory == "7.5Gi"
    assert config.instance_types["ml.p2.xlarge"].gpus == 1
    assert config.gpu.node_selector == {"nvidia.com/gpu.present": "true"}
    assert config.gpu.tolerations == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert config.watch_namespaces == []
    assert config.storage.s3_endpoint_url == ""


CHART_CONFIG = """
images:
  agent: registry.example/runtime:1.2.3
  algorithms: {xgboost: registry.example/xgboost:1.2.3}
  frameworks: {mxnet: registry.example/mxnet:1.2.3}
  pullPolicy: Always
instanceTypes:
  ml.m5.xlarge: {cpu: 4, memory: 16Gi}
  ml.p3.2xlarge:
    cpu: "8"
    memory: 61Gi
    gpus: 1
    nodeSelector: {node.kubernetes.io/instance-type: p3.2xlarge}
    tolerations: [{key: dedicated, operator: Equal, value: ml, effect: NoSchedule}]
gpu:
  nodeSelector: {accelerator: nvidia}
  tolerations: []
spot:
  nodeSelector: {lifecycle: spot}
  tolerations: [{key: spot, operator: Exists}]
storage:
  s3EndpointUrl: http://minio.minio:9000
  region: us-east-1
  credentialsSecret: s3-credentials
watchNamespaces: [ml-team-a, ml-team-b]
"""


def test_the_charts_config_yaml(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CHART_CONFIG)
    config = load_config(path)
    assert config.images.agent == "registry.example/runtime:1.2.3"
    assert config.images.pull_policy == "Always"
    # The chart's catalog replaces the built-in one.
    assert set(config.instance_types) == {"ml.m5.xlarge", "ml.p3.2xlarge"}
    # YAML reads `cpu: 4` as an integer; it is kept as a quantity string.
    assert config.instance_types["ml.m5.xlarge"].cpu == "4"
    p3 = config.instance_types["ml.p3.2xlarge"]
    assert p3.node_selector == {"node.kubernetes.io/instance-type": "p3.2xlarge"}
    assert p3.tolerations[0]["key"] == "dedicated"
    assert config.gpu.node_selector == {"accelerator": "nvidia"}
    assert config.spot.node_selector == {"lifecycle": "spot"}
    assert config.storage.credentials_secret == "s3-credentials"
    assert config.watch_namespaces == ["ml-team-a", "ml-team-b"]


def test_path_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("watchNamespaces: [only-this]\n")
    assert load_config(environ={CONFIG_ENV: str(path)}).watch_namespaces == ["only-this"]
    # An explicit path wins over the environment.
    other = tmp_path / "other.yaml"
    other.write_text("watchNamespaces: [other]\n")
    assert load_config(other, environ={CONFIG_ENV: str(path)}).watch_namespaces == ["other"]


def test_an_empty_file_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path) == OperatorConfig()


def test_a_named_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("images: {agnet: x}\n", "agnet"),
        ("instanceTypes: {ml.x: {cpu: '1'}}\n", "memory"),
        ("images: {pullPolicy: Sometimes}\n", "pullPolicy"),
        ("- a list\n", "must hold a mapping"),
        ("images: [unclosed\n", "not valid YAML"),
    ],
)
def test_invalid_configuration_names_the_problem(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_invalid_keys_are_named_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "images: {pullPolicy: Sometimes, agnet: x}\ninstanceTypes: {ml.x: {cpu: '1'}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"invalid operator configuration in {path}: "
        "images.pullPolicy: Input should be 'Always', 'IfNotPresent' or 'Never'; "
        "images.agnet: Extra inputs are not permitted; "
        "instanceTypes.ml.x.memory: Field required"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"images: {agent: caf\xe9}\n", "is not UTF-8 text (byte 19)"),
        (b"\xff\xfe", "is not UTF-8 text (byte 0)"),
        (b"gpu: " + b"[" * 5000 + b"]" * 5000 + b"\n", "is nested too deeply"),
    ],
    ids=["latin-1", "utf-16-bom", "too-deep"],
)
def test_a_file_that_is_no_configuration_names_the_file(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value) and message in str(caught.value)
    # The same through $KUBEMAKER_CONFIG.
    with pytest.raises(ConfigError, match=r"config\.yaml"):
        load_config(environ={CONFIG_ENV: str(path)})


def test_a_directory_is_no_configuration(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert str(caught.value) == f"cannot read the operator configuration {tmp_path}: Is a directory"
