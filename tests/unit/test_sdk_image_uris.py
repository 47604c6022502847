"""kubemaker.sdk.image_uris: retrieve, resolve, and v1's get_image_uri."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from kubemaker.config import Images, OperatorConfig
from kubemaker.sdk import image_uris
from kubemaker.sdk.amazon import amazon_estimator
from kubemaker.sdk.image_uris import ResolvedImage, resolve, retrieve

XGBOOST = "ghcr.io/kubemaker/xgboost:0.1.0"
MXNET = "ghcr.io/kubemaker/mxnet:0.1.0"


@pytest.fixture
def shared_xgboost() -> OperatorConfig:
    """The catalog with XGBoost as both the built-in algorithm and a framework."""
    return OperatorConfig(
        images=Images(
            algorithms={"xgboost": XGBOOST}, frameworks={"mxnet": MXNET, "xgboost": XGBOOST}
        )
    )


@pytest.fixture
def custom() -> OperatorConfig:
    return OperatorConfig(
        images=Images(
            algorithms={"xgboost": "registry.example/xgb:2"},
            frameworks={"mxnet": "registry.example/mx:2", "sklearn": "registry.example/sk:1"},
        )
    )


# --- retrieve -----------------------------------------------------------------------


def test_retrieve_gives_the_catalogs_images() -> None:
    assert retrieve("xgboost", "us-east-1", "1.7-1") == XGBOOST
    assert retrieve("mxnet", region="eu-west-1", version="1.9.0", py_version="py38") == MXNET
    assert retrieve(framework="XGBoost") == XGBOOST
    assert retrieve("MXNet") == MXNET


def test_retrieve_ignores_what_chooses_among_sagemakers_images() -> None:
    image = retrieve(
        "mxnet",
        region="us-west-2",
        version="1.8.0",
        py_version="py37",
        instance_type="ml.p3.2xlarge",
        image_scope="inference",
        container_version="cu110",
        base_framework_version="pytorch1.9",
        sdk_version="2.100.0",
        distribution={},
    )
    assert image == MXNET


def test_retrieve_reads_the_given_configuration(custom: OperatorConfig) -> None:
    assert retrieve("xgboost", config=custom) == "registry.example/xgb:2"
    assert retrieve("sklearn", "us-east-1", "1.2-1", config=custom) == "registry.example/sk:1"


def test_retrieve_when_algorithm_and_framework_share_an_image(
    shared_xgboost: OperatorConfig,
) -> None:
    assert retrieve("xgboost", "us-east-1", "1.7-1", config=shared_xgboost) == XGBOOST
    assert retrieve("mxnet", config=shared_xgboost) == MXNET


@pytest.mark.parametrize("framework", ["linear-learner", "pytorch", "sklearn", "xgboost-neo"])
def test_retrieve_refuses_what_kubemaker_has_no_image_for(framework: str) -> None:
    with pytest.raises(ValueError, match=f"kubemaker has no image for '{framework}'") as e:
        retrieve(framework, "us-east-1", "1")
    message = str(e.value)
    assert "built-in algorithms: xgboost; frameworks: mxnet" in message
    assert "bring a SageMaker-compatible image with Estimator(image_uri=...)" in message


def test_retrieve_needs_a_framework() -> None:
    with pytest.raises(ValueError, match="name a framework"):
        retrieve(None)


@pytest.mark.parametrize(
    ("argument", "value", "reason"),
    [
        ("accelerator_type", "ml.eia2.medium", "Elastic Inference"),
        ("distribution", {"smdistributed": {"dataparallel": {"enabled": True}}}, "one image"),
        ("training_compiler_config", object(), "Training Compiler"),
        ("model_id", "huggingface-llm-falcon-7b", "JumpStart"),
        ("model_version", "*", "JumpStart"),
        ("serverless_inference_config", object(), "min_capacity 0"),
        ("inference_tool", "neuron", "Inferentia"),
    ],
)
def test_retrieve_refuses_what_it_cannot_provide(argument: str, value: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=f"{argument} is not supported by kubemaker") as e:
        retrieve("mxnet", "us-east-1", **{argument: value})
    assert reason in str(e.value)


def test_retrieve_names_jumpstart_before_the_missing_framework() -> None:
    with pytest.raises(ValueError, match="model_id is not supported"):
        retrieve(None, model_id="some-model", model_version="1.0.0")


# --- get_image_uri (v1) --------------------------------------------------------------


def test_get_image_uri_warns_and_retrieves() -> None:
    with pytest.warns(FutureWarning, match="get_image_uri has been renamed in sagemaker>=2") as w:
        image = amazon_estimator.get_image_uri("us-east-1", "xgboost")
    assert image == XGBOOST
    assert "image_uris.retrieve" in str(w[0].message)
    assert w[0].filename == __file__
    with pytest.warns(FutureWarning):
        assert amazon_estimator.get_image_uri("us-east-1", "xgboost", "1.0-1") == XGBOOST
    with pytest.warns(FutureWarning):
        assert amazon_estimator.get_image_uri("us-east-1", "xgboost", repo_version=1) == XGBOOST


def test_get_image_uri_refuses_what_retrieve_refuses() -> None:
    with (
        pytest.warns(FutureWarning),
        pytest.raises(ValueError, match="no image for 'forecasting-deepar'"),
    ):
        amazon_estimator.get_image_uri("us-east-1", "forecasting-deepar")


# --- resolve ------------------------------------------------------------------------


def test_resolved_image_is_frozen() -> None:
    resolved = ResolvedImage(image="x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        resolved.image = "y"  # type: ignore[misc]


@pytest.mark.parametrize(
    "uri",
    [
        "811284229777.dkr.ecr.us-east-1.amazonaws.com/xgboost:latest",
        "811284229777.dkr.ecr.us-east-1.amazonaws.com/xgboost:1",
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
        "246618743249.dkr.ecr.us-west-2.amazonaws.com/sagemaker-xgboost:1.0-1-cpu-py3",
        "450853457545.dkr.ecr.cn-north-1.amazonaws.com.cn/sagemaker-xgboost:1.5-1",
        "683313688378.dkr.ecr-fips.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost@sha256:" + "a" * 64,
    ],
)
def test_resolve_translates_sagemakers_xgboost_images(uri: str) -> None:
    assert resolve(uri) == ResolvedImage(
        algorithm_name="xgboost",
        note=f"the SageMaker image {uri} runs as kubemaker's built-in xgboost ({XGBOOST})",
    )


def test_resolve_xgboost_note_reads_as_documented() -> None:
    uri = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
    assert resolve(uri).note == (
        "the SageMaker image 683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
        " runs as kubemaker's built-in xgboost (ghcr.io/kubemaker/xgboost:0.1.0)"
    )


@pytest.mark.parametrize(
    ("uri", "version"),
    [
        ("763104351884.dkr.ecr.us-east-1.amazonaws.com/mxnet-training:1.9.0-cpu-py38", "1.9.0"),
        (
            "763104351884.dkr.ecr.us-west-2.amazonaws.com/"
            "mxnet-training:1.8.0-gpu-py37-cu110-ubuntu16.04",
            "1.8.0",
        ),
        ("520713654638.dkr.ecr.us-east-1.amazonaws.com/sagemaker-mxnet:1.4.1-cpu-py3", "1.4.1"),
        ("763104351884.dkr.ecr.us-east-1.amazonaws.com/mxnet-inference:1.9.0-gpu-py38", "1.9.0"),
        (
            "520713654638.dkr.ecr.us-east-1.amazonaws.com/sagemaker-mxnet-serving:1.4.1-cpu-py3",
            "1.4.1",
        ),
        ("763104351884.dkr.ecr.us-east-1.amazonaws.com/mxnet-training:latest", None),
        ("763104351884.dkr.ecr.us-east-1.amazonaws.com/mxnet-training@sha256:" + "b" * 64, None),
    ],
)
def test_resolve_translates_sagemakers_mxnet_images(uri: str, version: str | None) -> None:
    assert resolve(uri) == ResolvedImage(
        framework="mxnet",
        framework_version=version,
        note=f"the SageMaker image {uri} runs as kubemaker's mxnet framework image ({MXNET})",
    )


@pytest.mark.parametrize(
    ("uri", "name"),
    [
        ("382416733822.dkr.ecr.us-east-1.amazonaws.com/linear-learner:1", "linear-learner"),
        ("522234722520.dkr.ecr.us-east-1.amazonaws.com/forecasting-deepar:1", "forecasting-deepar"),
        ("382416733822.dkr.ecr.us-east-1.amazonaws.com/kmeans:latest", "kmeans"),
        ("811284229777.dkr.ecr.us-east-1.amazonaws.com/blazingtext:1", "blazingtext"),
        (
            "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
            "sklearn",
        ),
        ("763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.0-gpu-py310", "pytorch"),
        ("763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-training:2.13", "tensorflow"),
        ("785573368785.dkr.ecr.us-east-1.amazonaws.com/sagemaker-neo-mxnet:1.8", "neo-mxnet"),
    ],
)
def test_resolve_refuses_sagemaker_images_without_a_counterpart(uri: str, name: str) -> None:
    with pytest.raises(ValueError, match="has no counterpart in kubemaker") as e:
        resolve(uri)
    message = str(e.value)
    assert f"the SageMaker image {uri} ({name})" in message
    assert "built-in algorithms: xgboost; frameworks: mxnet" in message
    assert "bring a SageMaker-compatible image with Estimator(image_uri=...)" in message


def test_resolve_follows_the_catalog(custom: OperatorConfig) -> None:
    sklearn = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
    resolved = resolve(sklearn, config=custom)
    assert resolved.framework == "sklearn"
    assert resolved.framework_version == "1.2"
    assert resolved.note is not None
    assert resolved.note.endswith(
        "runs as kubemaker's sklearn framework image (registry.example/sk:1)"
    )
    xgb = resolve("811284229777.dkr.ecr.us-east-1.amazonaws.com/xgboost:1", config=custom)
    assert xgb.note is not None
    assert xgb.note.endswith("built-in xgboost (registry.example/xgb:2)")
    assert resolve("registry.example/mx:2", config=custom) == ResolvedImage(framework="mxnet")


@pytest.mark.parametrize(
    "uri",
    [
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-team/recommender:3",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/xgboost-custom:1",
        "ghcr.io/someone/trainer:latest",
        "python:3.11-slim",
        "ghcr.io/kubemaker/xgboost:0.2.0",
        "localhost:5000/xgboost:1",
        "xgboost:1",
    ],
)
def test_resolve_runs_other_images_as_given(uri: str) -> None:
    assert resolve(uri) == ResolvedImage(image=uri)


def test_resolve_catalog_images_run_as_their_algorithm_or_framework() -> None:
    assert resolve(XGBOOST) == ResolvedImage(algorithm_name="xgboost")
    assert resolve(MXNET) == ResolvedImage(framework="mxnet")


def test_resolve_prefers_the_algorithm_for_a_shared_image(shared_xgboost: OperatorConfig) -> None:
    assert resolve(XGBOOST, config=shared_xgboost) == ResolvedImage(algorithm_name="xgboost")
    uri = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
    resolved = resolve(uri, config=shared_xgboost)
    assert resolved.algorithm_name == "xgboost"
    assert resolved.framework is None
    assert resolve(MXNET, config=shared_xgboost) == ResolvedImage(framework="mxnet")


@pytest.mark.parametrize("uri", ["", "   ", None])
def test_resolve_needs_an_image(uri: Any) -> None:
    with pytest.raises(ValueError, match="image_uri must name a container image"):
        resolve(uri)


def test_module_exports() -> None:
    assert image_uris.__all__ == ["ResolvedImage", "resolve", "retrieve"]
    assert amazon_estimator.__all__ == ["get_image_uri"]
