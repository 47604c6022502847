"""Container images, as ``sagemaker.image_uris`` names them, mapped to kubemaker's own.

kubemaker runs the images of its catalog (the operator configuration's
``images.algorithms`` and ``images.frameworks``) and any image the user brings.
:func:`retrieve` gives the catalog's image for an algorithm or framework;
:func:`resolve` turns an image URI a notebook holds, SageMaker's ECR images included,
into what a job runs. A SageMaker image kubemaker has no counterpart for is an error
that says what to do instead, never an image that fails to pull later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kubemaker.config import OperatorConfig

__all__ = ["ResolvedImage", "resolve", "retrieve"]

BRING_YOUR_OWN = "bring a SageMaker-compatible image with Estimator(image_uri=...)"

# SageMaker's ECR images: <account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]/<repo>[:tag][@digest]
_ECR = re.compile(
    r"^\d{12}\.dkr\.ecr(?:-fips)?\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repo>[^:@]+)(?::(?P<tag>[^@]+))?(?:@.+)?$"
)
_VERSION = re.compile(r"^\d+(?:\.\d+)*")

# SageMaker's repository name -> the name sagemaker.image_uris.retrieve knows it by. The
# catalog is keyed by the same names, so a catalog that adds an image adds its
# translation; a repository here with no catalog entry is refused.
_SAGEMAKER_REPOSITORIES: dict[str, str] = {
    # built-in algorithms
    "xgboost": "xgboost",
    "sagemaker-xgboost": "xgboost",
    "linear-learner": "linear-learner",
    "kmeans": "kmeans",
    "pca": "pca",
    "factorization-machines": "factorization-machines",
    "ntm": "ntm",
    "lda": "lda",
    "randomcutforest": "randomcutforest",
    "knn": "knn",
    "object2vec": "object2vec",
    "blazingtext": "blazingtext",
    "image-classification": "image-classification",
    "object-detection": "object-detection",
    "semantic-segmentation": "semantic-segmentation",
    "seq2seq": "seq2seq",
    "forecasting-deepar": "forecasting-deepar",
    "ipinsights": "ipinsights",
    # frameworks (Deep Learning Containers and their older names)
    "mxnet-training": "mxnet",
    "mxnet-inference": "mxnet",
    "mxnet-inference-eia": "mxnet",
    "sagemaker-mxnet": "mxnet",
    "sagemaker-mxnet-eia": "mxnet",
    "sagemaker-mxnet-serving": "mxnet",
    "sagemaker-mxnet-serving-eia": "mxnet",
    "pytorch-training": "pytorch",
    "pytorch-inference": "pytorch",
    "pytorch-inference-graviton": "pytorch",
    "sagemaker-pytorch": "pytorch",
    "tensorflow-training": "tensorflow",
    "tensorflow-inference": "tensorflow",
    "tensorflow-inference-graviton": "tensorflow",
    "sagemaker-tensorflow": "tensorflow",
    "sagemaker-tensorflow-scriptmode": "tensorflow",
    "sagemaker-tensorflow-serving": "tensorflow",
    "sagemaker-scikit-learn": "sklearn",
    "sagemaker-chainer": "chainer",
    "huggingface-pytorch-training": "huggingface",
    "huggingface-pytorch-inference": "huggingface",
    "huggingface-tensorflow-training": "huggingface",
    "huggingface-tensorflow-inference": "huggingface",
    "huggingface-pytorch-tgi-inference": "huggingface-llm",
    "autogluon-training": "autogluon",
    "autogluon-inference": "autogluon",
    "djl-inference": "djl-deepspeed",
    "sagemaker-tritonserver": "sagemaker-tritonserver",
    "sagemaker-sparkml-serving": "sparkml-serving",
    # SageMaker Neo's compiled-model images
    "xgboost-neo": "xgboost-neo",
    "image-classification-neo": "image-classification-neo",
    "sagemaker-neo-mxnet": "neo-mxnet",
    "sagemaker-inference-mxnet": "neo-mxnet",
    "sagemaker-neo-pytorch": "neo-pytorch",
    "sagemaker-inference-pytorch": "neo-pytorch",
    "sagemaker-neo-tensorflow": "neo-tensorflow",
    "sagemaker-inference-tensorflow": "neo-tensorflow",
    # processing and monitoring
    "sagemaker-spark-processing": "spark",
    "sagemaker-clarify-processing": "clarify",
    "sagemaker-model-monitor-analyzer": "model-monitor",
    "sagemaker-debugger-rules": "debugger",
    "sagemaker-base-python": "sagemaker-base-python",
}

# retrieve's arguments that ask for something kubemaker cannot provide, and why.
_UNSUPPORTED: dict[str, str] = {
    "accelerator_type": "Elastic Inference is gone from SageMaker too: use a GPU instance type",
    "distribution": "kubemaker has one image per framework, with no distributed variants "
    "(smdistributed, torch_distributed, ...)",
    "training_compiler_config": "SageMaker Training Compiler has no counterpart",
    "model_id": "SageMaker JumpStart models have no counterpart: " + BRING_YOUR_OWN,
    "model_version": "SageMaker JumpStart models have no counterpart: " + BRING_YOUR_OWN,
    "serverless_inference_config": "use an autoscaled Endpoint with min_capacity 0",
    "inference_tool": "AWS Inferentia images (inference_tool='neuron') have no counterpart",
}


@dataclass(frozen=True)
class ResolvedImage:
    """What a job runs for an image URI: exactly one of the first three is set."""

    algorithm_name: str | None = None  # built-in algorithm: algorithmSpecification.algorithmName
    framework: str | None = None  # script-mode framework
    framework_version: str | None = None
    image: str | None = None  # any other image: trainingImage, as given
    note: str | None = None  # set when a SageMaker image was translated: what runs instead


def _find(table: dict[str, str], name: str) -> tuple[str, str] | None:
    """The catalog's (name, image) for ``name``, compared case-insensitively."""
    wanted = name.lower()
    return next(((key, image) for key, image in table.items() if key.lower() == wanted), None)


def _offer(config: OperatorConfig) -> str:
    algorithms = ", ".join(sorted(config.images.algorithms)) or "none"
    frameworks = ", ".join(sorted(config.images.frameworks)) or "none"
    return f"built-in algorithms: {algorithms}; frameworks: {frameworks}"


def retrieve(
    framework: str | None,
    region: str | None = None,
    version: str | None = None,
    py_version: str | None = None,
    instance_type: str | None = None,
    accelerator_type: str | None = None,
    image_scope: str | None = None,
    container_version: str | None = None,
    distribution: dict[str, Any] | None = None,
    base_framework_version: str | None = None,
    training_compiler_config: Any = None,
    model_id: str | None = None,
    model_version: str | None = None,
    sdk_version: str | None = None,
    inference_tool: str | None = None,
    serverless_inference_config: Any = None,
    config: OperatorConfig | None = None,
) -> str:
    """The image kubemaker runs for ``framework`` (an algorithm or a framework).

    Region, versions, Python version, instance type, image scope and container version
    choose among SageMaker's images; kubemaker has one image per name, so they are
    accepted and ignored. Arguments that ask for what kubemaker cannot provide are
    refused by name. An empty ``distribution`` asks for nothing and is accepted.
    """
    del region, version, py_version, instance_type, image_scope, container_version
    del base_framework_version, sdk_version
    asked = {
        "accelerator_type": accelerator_type,
        "distribution": distribution or None,
        "training_compiler_config": training_compiler_config,
        "model_id": model_id,
        "model_version": model_version,
        "inference_tool": inference_tool,
        "serverless_inference_config": serverless_inference_config,
    }
    for name, value in asked.items():
        if value is not None:
            raise ValueError(
                f"image_uris.retrieve: {name} is not supported by kubemaker: {_UNSUPPORTED[name]}"
            )
    config = OperatorConfig() if config is None else config
    if not framework:
        raise ValueError(f"image_uris.retrieve: name a framework ({_offer(config)})")
    found = _find(config.images.algorithms, framework) or _find(config.images.frameworks, framework)
    if found is None:
        raise ValueError(
            f"kubemaker has no image for {framework!r} ({_offer(config)}): for anything "
            f"else, {BRING_YOUR_OWN}"
        )
    return found[1]


def resolve(image_uri: str, config: OperatorConfig | None = None) -> ResolvedImage:
    """What a job runs for ``image_uri``.

    The catalog's own images run as their algorithm (the algorithm wins when an image
    is both an algorithm's and a framework's: a framework estimator sets its framework
    itself). SageMaker's images of the algorithms and frameworks the catalog has run
    as kubemaker's, with a ``note`` saying so; SageMaker's other images are refused.
    Anything else, the user's own ECR images included, runs as given.
    """
    if not isinstance(image_uri, str) or not image_uri.strip():
        raise ValueError(f"image_uri must name a container image, not {image_uri!r}")
    config = OperatorConfig() if config is None else config
    images = config.images
    for name, image in images.algorithms.items():
        if image == image_uri:
            return ResolvedImage(algorithm_name=name)
    for name, image in images.frameworks.items():
        if image == image_uri:
            return ResolvedImage(framework=name)
    match = _ECR.match(image_uri)
    sagemaker_name = _SAGEMAKER_REPOSITORIES.get(match["repo"]) if match else None
    if match is None or sagemaker_name is None:
        return ResolvedImage(image=image_uri)
    algorithm = _find(images.algorithms, sagemaker_name)
    if algorithm is not None:
        return ResolvedImage(
            algorithm_name=algorithm[0],
            note=f"the SageMaker image {image_uri} runs as kubemaker's built-in "
            f"{algorithm[0]} ({algorithm[1]})",
        )
    framework = _find(images.frameworks, sagemaker_name)
    if framework is not None:
        version = _VERSION.match(match["tag"] or "")
        return ResolvedImage(
            framework=framework[0],
            framework_version=version[0] if version else None,
            note=f"the SageMaker image {image_uri} runs as kubemaker's {framework[0]} "
            f"framework image ({framework[1]})",
        )
    raise ValueError(
        f"the SageMaker image {image_uri} ({sagemaker_name}) has no counterpart in "
        f"kubemaker ({_offer(config)}): use one of those, or {BRING_YOUR_OWN}"
    )
