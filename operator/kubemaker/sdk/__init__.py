"""kubemaker's Python SDK: SageMaker's estimator flow on any Kubernetes cluster.

The module layout and call signatures are the SageMaker Python SDK's (v2, with v1's
names where the workshop material uses them), so notebook code runs with only its
imports changed: ``import kubemaker.sdk as sagemaker``. What maps to what, and what
is not supported: docs/sdk.md.
"""

# The submodules notebooks reach through the package (sagemaker.estimator.Estimator,
# sagemaker.local.LocalSession, ...); none has side effects at import.
from kubemaker.sdk import (
    deserializers,
    estimator,
    image_uris,
    inputs,
    local,
    predictor,
    serializers,
    session,
    transformer,
    tuner,
)
from kubemaker.sdk.estimator import Estimator
from kubemaker.sdk.inputs import TrainingInput, s3_input
from kubemaker.sdk.predictor import Predictor, RealTimePredictor
from kubemaker.sdk.session import LocalSession, Session, get_execution_role
from kubemaker.sdk.transformer import Transformer
from kubemaker.sdk.tuner import (
    CategoricalParameter,
    ContinuousParameter,
    HyperparameterTuner,
    IntegerParameter,
)

__all__ = [
    "CategoricalParameter",
    "ContinuousParameter",
    "Estimator",
    "HyperparameterTuner",
    "IntegerParameter",
    "LocalSession",
    "Predictor",
    "RealTimePredictor",
    "Session",
    "TrainingInput",
    "Transformer",
    "deserializers",
    "estimator",
    "get_execution_role",
    "image_uris",
    "inputs",
    "local",
    "predictor",
    "s3_input",
    "serializers",
    "session",
    "transformer",
    "tuner",
]
