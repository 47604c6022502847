"""``MXNet``: an MXNet script on kubemaker's MXNet image.

Both of SageMaker's MXNet interfaces run: script mode (the entry point is run as a
script) and the original one (the image calls the script's ``train()``); the image tells
them apart by the script itself, so the estimator does not need to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from kubemaker.sdk import _args
from kubemaker.sdk.deserializers import BaseDeserializer, JSONDeserializer
from kubemaker.sdk.estimator import Framework
from kubemaker.sdk.predictor import Predictor
from kubemaker.sdk.serializers import BaseSerializer, JSONSerializer


class MXNetPredictor(Predictor):
    """JSON in, JSON out: what SageMaker's MXNet serving speaks by default."""

    def default_serializer(self) -> BaseSerializer | None:
        return JSONSerializer()

    def default_deserializer(self) -> BaseDeserializer | None:
        return JSONDeserializer()


class MXNet(Framework):
    """``MXNet(entry_point, framework_version=..., hyperparameters=..., instance_count=...,
    instance_type=...)``; several instances train with parameter servers (``dist_sync``
    and friends), which kubemaker sets up whatever ``distribution`` says."""

    framework_name: ClassVar[str] = "mxnet"
    predictor_cls = MXNetPredictor

    def check_distribution(self, distribution: Mapping[str, Any]) -> None:
        unknown = set(distribution) - {"parameter_server"}
        if unknown:
            raise _args.UnsupportedArgument(
                f"MXNet: distribution {sorted(unknown)} is not supported: several instances "
                "train with parameter servers ({'parameter_server': {'enabled': True}})"
            )
