"""``Transformer``: batch predictions (a BatchTransform), as SageMaker's Transformer.

``model_name`` names a TrainingJob: kubemaker has no Model objects, a job's model is
served straight from its artifact (``estimator.transformer(...)`` fills it in).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kubemaker.sdk import _args, _manifests
from kubemaker.sdk.estimator import check_object, raise_for_status, service_account, tag_labels
from kubemaker.sdk.session import LocalSession, Session, is_local
from kubemaker.sdk.utils import name_from_base

if TYPE_CHECKING:
    from kubemaker.sdk._cluster import ClusterClient
    from kubemaker.sdk._localrun import LocalRunner

JSON = dict[str, Any]


class Transformer:
    def __init__(
        self,
        model_name: str,
        instance_count: int,
        instance_type: str,
        strategy: str | None = None,
        assemble_with: str | None = None,
        output_path: str | None = None,
        accept: str | None = None,
        max_concurrent_transforms: int | None = None,
        max_payload: int | None = None,
        tags: Sequence[Mapping[str, str]] | None = None,
        env: Mapping[str, str] | None = None,
        base_transform_job_name: str | None = None,
        sagemaker_session: Session | None = None,
        role: str | None = None,
        model: JSON | None = None,
        **kwargs: Any,
    ) -> None:
        _args.merge("Transformer", {}, kwargs)
        self.model_name = model_name
        # kubemaker's model source; model_name names a TrainingJob unless this is given.
        self.model = model or {"trainingJobRef": {"name": model_name}}
        self.instance_count = instance_count
        self.instance_type = instance_type
        self.strategy = strategy
        self.assemble_with = assemble_with
        self.output_path = output_path
        self.accept = accept
        self.max_concurrent_transforms = max_concurrent_transforms
        self.max_payload = max_payload
        self.tags = list(tags or [])
        self.env = dict(env or {})
        self.base_transform_job_name = base_transform_job_name
        if sagemaker_session is None:
            sagemaker_session = LocalSession() if is_local(instance_type) else Session()
        self.sagemaker_session = sagemaker_session
        self.role = role
        self.latest_transform_job: str | None = None

    def _runner(self) -> ClusterClient | LocalRunner:
        return self.sagemaker_session.runner_for(self.instance_type)

    def transform_spec(
        self,
        job_name: str,
        data: str,
        content_type: str | None = None,
        compression_type: str | None = None,
        split_type: str | None = None,
        input_filter: str | None = None,
        output_filter: str | None = None,
        join_source: str | None = None,
        model_client_config: Mapping[str, int] | None = None,
    ) -> JSON:
        transform_input: JSON = {"uri": data}
        if content_type:
            transform_input["contentType"] = content_type
        if compression_type:
            transform_input["compressionType"] = compression_type
        if split_type:
            transform_input["splitType"] = split_type
        output: JSON = {"s3OutputPath": self.output_path or self._default_output(job_name)}
        if self.accept:
            output["accept"] = self.accept
        if self.assemble_with:
            output["assembleWith"] = self.assemble_with
        spec: JSON = {
            "model": self.model,
            "transformInput": transform_input,
            "transformOutput": output,
            "transformResources": {
                "instanceType": self.instance_type,
                "instanceCount": self.instance_count,
            },
        }
        if self.strategy:
            spec["batchStrategy"] = self.strategy
        if self.max_payload is not None:
            spec["maxPayloadInMB"] = self.max_payload
        if self.max_concurrent_transforms is not None:
            spec["maxConcurrentTransforms"] = self.max_concurrent_transforms
        processing = {
            key: value
            for key, value in (
                ("inputFilter", input_filter),
                ("outputFilter", output_filter),
                ("joinSource", join_source),
            )
            if value is not None
        }
        if processing:
            spec["dataProcessing"] = processing
        if model_client_config:
            names = {
                "InvocationsTimeoutInSeconds": "invocationsTimeoutInSeconds",
                "InvocationsMaxRetries": "invocationsMaxRetries",
            }
            unknown = set(model_client_config) - set(names)
            if unknown:
                raise ValueError(
                    f"model_client_config: unknown keys {sorted(unknown)} (known: "
                    f"{', '.join(names)})"
                )
            spec["modelClientConfig"] = {names[k]: v for k, v in model_client_config.items()}
        if self.env:
            spec["environment"] = dict(self.env)
        account = service_account(self.role)
        if account:
            spec["podOverrides"] = {"serviceAccountName": account}
        return spec

    def _default_output(self, job_name: str) -> str:
        session = self.sagemaker_session
        if session.keeps_data_locally and not (session.local_mode or is_local(self.instance_type)):
            raise ValueError(
                "output_path is required: this session keeps data in a local directory, "
                "which the cluster's pods cannot write"
            )
        return session.store.uri(session.default_bucket(), job_name)

    def transform(
        self,
        data: str,
        data_type: str = "S3Prefix",
        content_type: str | None = None,
        compression_type: str | None = None,
        split_type: str | None = None,
        job_name: str | None = None,
        input_filter: str | None = None,
        output_filter: str | None = None,
        join_source: str | None = None,
        model_client_config: Mapping[str, int] | None = None,
        wait: bool = True,
        logs: bool = True,
        **kwargs: Any,
    ) -> None:
        """Predict every record of every object under ``data``; the outputs land under
        ``output_path`` as ``<object>.out``."""
        _args.merge("Transformer.transform", {}, kwargs)
        if data_type != "S3Prefix":
            raise _args.UnsupportedArgument(
                f"transform: data_type {data_type!r} is not supported: give an S3Prefix"
            )
        base = self.base_transform_job_name or self.model_name
        name = job_name or name_from_base(base)
        spec = self.transform_spec(
            name,
            data,
            content_type,
            compression_type,
            split_type,
            input_filter,
            output_filter,
            join_source,
            model_client_config,
        )
        manifest = _manifests.resource("BatchTransform", name, spec, tag_labels(self.tags))
        check_object(manifest)
        self._runner().create(manifest)
        self.latest_transform_job = name
        if wait:
            self.wait(logs=logs)

    def _name(self) -> str:
        if self.latest_transform_job is None:
            raise ValueError("no transform job yet: call transform() first")
        return self.latest_transform_job

    def wait(self, logs: bool = True) -> JSON:
        obj = self._runner().wait_for("BatchTransform", self._name(), logs=logs)
        raise_for_status("BatchTransform", obj, "transformJobStatus", ("Completed", "Stopped"))
        return obj

    def describe(self) -> JSON:
        return self._runner().get("BatchTransform", self._name())

    def stop_transform_job(self, wait: bool = True) -> None:
        self._runner().stop("BatchTransform", self._name())
        if wait:
            self._runner().wait_for("BatchTransform", self._name(), logs=False)

    @property
    def output(self) -> str:
        """Where the outputs are (``output_path`` as the job has it)."""
        spec = self.describe()["spec"]
        return str(spec["transformOutput"]["s3OutputPath"])
