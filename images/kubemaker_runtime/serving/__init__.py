"""The model server of kubemaker's serving images (SageMaker + Open Inference Protocol).

A serving image implements :class:`Model` and calls :func:`serve`; see
``docs/model-server.md``. Importing this package loads neither granian nor a model.
"""

from kubemaker_runtime.serving.app import App, Response, create_app
from kubemaker_runtime.serving.errors import (
    InvalidInput,
    ModelNotReady,
    NotAcceptable,
    PayloadTooLarge,
    ServingError,
    UnsupportedMediaType,
)
from kubemaker_runtime.serving.model import Model
from kubemaker_runtime.serving.server import serve
from kubemaker_runtime.serving.settings import ServerSettings

__all__ = [
    "App",
    "InvalidInput",
    "Model",
    "ModelNotReady",
    "NotAcceptable",
    "PayloadTooLarge",
    "Response",
    "ServerSettings",
    "ServingError",
    "UnsupportedMediaType",
    "create_app",
    "serve",
]
