"""``XGBoost``: your XGBoost script on kubemaker's XGBoost image (script mode).

The built-in algorithm (no script) is ``Estimator(image_uri=image_uris.retrieve("xgboost",
...))``, as in SageMaker.
"""

from __future__ import annotations

from typing import ClassVar

from kubemaker.sdk.deserializers import BaseDeserializer, CSVDeserializer
from kubemaker.sdk.estimator import Framework
from kubemaker.sdk.predictor import Predictor
from kubemaker.sdk.serializers import BaseSerializer, LibSVMSerializer


class XGBoostPredictor(Predictor):
    """LibSVM in, CSV out, as SageMaker's XGBoostPredictor; pass
    ``serializer=CSVSerializer()`` to send CSV rows."""

    def default_serializer(self) -> BaseSerializer | None:
        return LibSVMSerializer()

    def default_deserializer(self) -> BaseDeserializer | None:
        return CSVDeserializer()


class XGBoost(Framework):
    """``XGBoost(entry_point, framework_version="1.7-1", hyperparameters=...,
    instance_count=1, instance_type=...)``."""

    framework_name: ClassVar[str] = "xgboost"
    predictor_cls = XGBoostPredictor
