"""``Predictor``: requests to an Endpoint, as ``sagemaker.predictor.Predictor`` sends them.

On a cluster a request goes through the API server's service proxy to the Endpoint's
Service, with the kubeconfig's credentials: nothing has to be exposed. ``endpoint_url``
sends it straight to a URL instead (an ingress, a port-forward). A local endpoint
(``instance_type="local"``) is a ``kubemaker local serve`` process on this machine.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kubemaker.sdk import _args, _manifests
from kubemaker.sdk._http import post
from kubemaker.sdk.deserializers import (
    BaseDeserializer,
    BytesDeserializer,
    CSVDeserializer,
    JSONDeserializer,
    NumpyDeserializer,
    StringDeserializer,
)
from kubemaker.sdk.serializers import (
    BaseSerializer,
    CSVSerializer,
    IdentitySerializer,
    JSONSerializer,
    NumpySerializer,
)
from kubemaker.sdk.session import Session, is_local

if TYPE_CHECKING:
    from kubemaker.sdk._cluster import ClusterClient
    from kubemaker.sdk._localrun import LocalRunner

JSON = dict[str, Any]


class Predictor:
    """Send ``data`` to an Endpoint and read its answer, through a serializer and a
    deserializer. v1's ``RealTimePredictor`` keyword names (``content_type``,
    ``accept``, ``endpoint``) work too."""

    def __init__(
        self,
        endpoint_name: str,
        sagemaker_session: Session | None = None,
        serializer: BaseSerializer | None = None,
        deserializer: BaseDeserializer | None = None,
        *,
        endpoint_url: str | None = None,
        content_type: str | None = None,
        accept: str | None = None,
        **kwargs: Any,
    ) -> None:
        _args.merge(type(self).__name__, {}, kwargs)
        self.endpoint_name = endpoint_name
        self.sagemaker_session = sagemaker_session or Session()
        self.serializer = serializer if serializer is not None else self.default_serializer()
        self.deserializer = (
            deserializer if deserializer is not None else self.default_deserializer()
        )
        self.endpoint_url = endpoint_url.rstrip("/") if endpoint_url else None
        self._content_type = content_type
        self._accept = accept
        self._local = False

    def default_serializer(self) -> BaseSerializer | None:
        return IdentitySerializer()

    def default_deserializer(self) -> BaseDeserializer | None:
        return BytesDeserializer()

    # v1 set these on the predictor; v2 reads them from the serializer and deserializer.
    @property
    def content_type(self) -> str | None:
        if self._content_type:
            return self._content_type
        return self.serializer.CONTENT_TYPE if self.serializer is not None else None

    @content_type.setter
    def content_type(self, value: str | None) -> None:
        self._content_type = value

    @property
    def accept(self) -> str | None:
        if self._accept:
            return self._accept
        if self.deserializer is None:
            return None
        accepted = self.deserializer.ACCEPT
        return ", ".join(accepted) if isinstance(accepted, tuple) else str(accepted)

    @accept.setter
    def accept(self, value: str | None) -> None:
        self._accept = value

    @property
    def endpoint(self) -> str:
        return self.endpoint_name

    def _runner(self) -> ClusterClient | LocalRunner:
        session = self.sagemaker_session
        if self._local or session.local_mode:
            return session.local()
        return session.cluster()

    def predict(
        self,
        data: Any,
        initial_args: Mapping[str, str] | None = None,
        target_model: str | None = None,
        target_variant: str | None = None,
        inference_id: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """The Endpoint's answer to ``data``; ModelError when it refuses it."""
        _args.merge("predict", {}, kwargs)
        if target_model is not None:
            raise _args.UnsupportedArgument(
                "predict: target_model (multi-model endpoints) is not supported"
            )
        del inference_id  # SageMaker's capture id; capture here records every request
        args = dict(initial_args or {})
        content_type = args.get("ContentType", self.content_type)
        accept = args.get("Accept", self.accept)
        target_variant = args.get("TargetVariant", target_variant)
        body = data if self.serializer is None else self.serializer.serialize(data)
        if hasattr(body, "read"):
            body = body.read()
        if isinstance(body, str):
            body = body.encode()
        if not isinstance(body, bytes):
            raise TypeError(
                f"predict: with no serializer the data must be bytes or str, not "
                f"{type(body).__name__}"
            )
        if self.endpoint_url is not None:
            answer, answer_type = post(
                f"{self.endpoint_url}/invocations", body, content_type, accept, target_variant
            )
        else:
            answer, answer_type = self._runner().invoke(
                self.endpoint_name, body, content_type, accept, target_variant
            )
        if self.deserializer is None:
            return answer
        return self.deserializer.deserialize(io.BytesIO(answer), answer_type)

    def describe(self) -> JSON:
        return self._runner().get("Endpoint", self.endpoint_name)

    def update_endpoint(
        self,
        initial_instance_count: int | None = None,
        instance_type: str | None = None,
        model_name: str | None = None,
        tags: Sequence[Mapping[str, str]] | None = None,
        wait: bool = True,
        **kwargs: Any,
    ) -> None:
        """Change the instance count, type or model (a TrainingJob's name); the
        operator rolls it out as the Endpoint's deploymentConfig says."""
        _args.merge("update_endpoint", {}, kwargs)
        if tags:
            raise _args.UnsupportedArgument(
                "update_endpoint: tags cannot change here: label the Endpoint with kubectl"
            )
        runner = self._runner()
        current = runner.get("Endpoint", self.endpoint_name)
        manifest = {k: current[k] for k in ("apiVersion", "kind", "metadata", "spec")}
        manifest["metadata"] = {"name": self.endpoint_name}
        variants = manifest["spec"]["productionVariants"]
        if len(variants) != 1 and (initial_instance_count or instance_type or model_name):
            raise ValueError(
                f"Endpoint {self.endpoint_name} has {len(variants)} variants: edit it with "
                "kubectl to change one of them"
            )
        variant = variants[0]
        if initial_instance_count is not None:
            variant["initialInstanceCount"] = int(initial_instance_count)
        if instance_type is not None:
            variant["instanceType"] = instance_type
        if model_name is not None:
            variant["model"] = {"trainingJobRef": {"name": model_name}}
        from kubemaker.sdk.estimator import check_object

        check_object(manifest)
        if not wait and not self._local:
            self.sagemaker_session.cluster().patch(
                "Endpoint", self.endpoint_name, {"spec": manifest["spec"]}
            )
            return
        runner.update_endpoint(self.endpoint_name, manifest)

    def delete_endpoint(self, delete_endpoint_config: bool = True) -> None:
        """Delete the Endpoint (its fleets, Services and autoscaling go with it)."""
        del delete_endpoint_config  # the Endpoint is its own configuration here
        self._runner().delete_endpoint(self.endpoint_name)

    def delete_model(self) -> None:
        """Nothing to delete: kubemaker has no Model objects; the model stays with the
        TrainingJob that made it (delete that to remove it)."""


class RealTimePredictor(Predictor):
    """v1's name for :class:`Predictor` (no serializer: the data is sent as it is)."""

    def __init__(
        self,
        endpoint: str,
        sagemaker_session: Session | None = None,
        serializer: BaseSerializer | None = None,
        deserializer: BaseDeserializer | None = None,
        content_type: str | None = None,
        accept: str | None = None,
        **kwargs: Any,
    ) -> None:
        _args.warn_renamed(
            "RealTimePredictor has been renamed Predictor in sagemaker>=2 (kubemaker accepts "
            f"both). See {_args.V2_GUIDE} for details."
        )
        super().__init__(
            endpoint,
            sagemaker_session,
            serializer,
            deserializer,
            content_type=content_type,
            accept=accept,
            **kwargs,
        )

    def default_serializer(self) -> BaseSerializer | None:
        return None

    def default_deserializer(self) -> BaseDeserializer | None:
        return None


def deploy_model(
    session: Session,
    model: JSON,
    endpoint_name: str,
    *,
    initial_instance_count: int | None,
    instance_type: str | None,
    serializer: BaseSerializer | None,
    deserializer: BaseDeserializer | None,
    wait: bool,
    tags: Sequence[Mapping[str, str]] | None,
    startup_timeout: int | None,
    predictor_cls: type[Predictor] | None,
    on_deployed: Callable[[str], None] | None = None,
) -> Predictor:
    """Create the Endpoint serving ``model`` and a Predictor for it."""
    from kubemaker.sdk.estimator import check_object, raise_for_status, tag_labels

    if instance_type is None or initial_instance_count is None:
        raise ValueError(
            "deploy: initial_instance_count and instance_type are required (instance_type "
            "'local' serves it on this machine)"
        )
    local = session.local_mode or is_local(instance_type)
    spec = _manifests.endpoint_spec(model, instance_type, initial_instance_count, startup_timeout)
    manifest = _manifests.resource("Endpoint", endpoint_name, spec, tag_labels(tags))
    check_object(manifest)
    runner = session.local() if local else session.cluster()
    obj = runner.deploy(manifest, wait=wait)
    if wait:
        raise_for_status("Endpoint", obj, "endpointStatus", ("InService",))
    if on_deployed is not None:
        on_deployed(endpoint_name)
    predictor = (predictor_cls or Predictor)(endpoint_name, session)
    predictor._local = local
    if serializer is not None:
        predictor.serializer = serializer
    if deserializer is not None:
        predictor.deserializer = deserializer
    return predictor


# v1 module-level serializers (sagemaker.predictor.csv_serializer, ...), with a warning.
_V1 = {
    "csv_serializer": CSVSerializer,
    "json_serializer": JSONSerializer,
    "npy_serializer": NumpySerializer,
    "csv_deserializer": CSVDeserializer,
    "json_deserializer": JSONDeserializer,
    "numpy_deserializer": NumpyDeserializer,
    "string_deserializer": StringDeserializer,
}


def __getattr__(name: str) -> Any:
    factory = _V1.get(name)
    if factory is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _args.warn_renamed(
        f"{name} is no longer in sagemaker>=2: use {factory.__name__}() from "
        "kubemaker.sdk.serializers / deserializers (kubemaker accepts both). "
        f"See {_args.V2_GUIDE} for details."
    )
    return factory()
