"""``Estimator`` and ``Framework``: SageMaker's create -> fit -> deploy flow on kubemaker.

``fit`` turns the estimator into a TrainingJob (a pure mapping, checked by the API's own
models before anything is created), creates it on the cluster or runs it in local mode
(``instance_type="local"``), and follows it as SageMaker's ``fit`` does. ``deploy`` makes
an Endpoint serving the job's model; ``transformer`` a BatchTransform of it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from kubemaker.api import TrainingJob
from kubemaker.sdk import _args, _manifests, image_uris
from kubemaker.sdk.exceptions import UnexpectedStatusException
from kubemaker.sdk.inputs import channels
from kubemaker.sdk.session import LocalSession, Session, is_local
from kubemaker.sdk.utils import base_name_from_image, name_from_base, pack_source

if TYPE_CHECKING:
    from kubemaker.sdk.deserializers import BaseDeserializer
    from kubemaker.sdk.predictor import Predictor
    from kubemaker.sdk.serializers import BaseSerializer
    from kubemaker.sdk.transformer import Transformer

logger = logging.getLogger("kubemaker.sdk")
JSON = dict[str, Any]
DEFAULT_MAX_RUN = 24 * 60 * 60
DEFAULT_VOLUME_SIZE = 30
# A Kubernetes name: the role names a ServiceAccount; anything else (an IAM ARN) cannot.
SERVICE_ACCOUNT = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def encode_hyperparameter(value: Any) -> str:
    """A hyperparameter as the string a TrainingJob holds: strings as they are, the rest
    as JSON (``0.1``, ``true``, ``[1, 2]``), which the containers decode back."""
    return value if isinstance(value, str) else json.dumps(value)


def service_account(role: str | None) -> str | None:
    """The ServiceAccount a ``role`` names, or None (with a note) for an IAM role."""
    if role is None or not role:
        return None
    if SERVICE_ACCOUNT.match(role):
        return role
    logger.warning(
        "kubemaker.sdk: role %r is not a ServiceAccount name; the pods run with the "
        "namespace's default ServiceAccount (pass a ServiceAccount name as role, e.g. one "
        "bound to an IAM role with IRSA, to choose their identity)",
        role,
    )
    return None


def tag_labels(tags: Sequence[Mapping[str, str]] | None) -> JSON:
    """SageMaker's tags as metadata: labels where Kubernetes allows, else annotations."""
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    label = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
    for tag in tags or []:
        key, value = str(tag["Key"]), str(tag.get("Value", ""))
        target = labels if label.match(key) and key and label.match(value) else annotations
        target[key] = value
    metadata: JSON = {}
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    return metadata


def check_object(manifest: JSON) -> None:
    """Judge a manifest with the API's models, as the apiserver and the operator will:
    a ValueError naming the field, before anything is created."""
    from kubemaker.api import BatchTransform, Endpoint, TuningJob
    from kubemaker.local.errors import LocalError
    from kubemaker.local.manifest import parse_resource

    models: dict[str, type[TrainingJob | TuningJob | Endpoint | BatchTransform]] = {
        "TrainingJob": TrainingJob,
        "TuningJob": TuningJob,
        "Endpoint": Endpoint,
        "BatchTransform": BatchTransform,
    }
    kind = manifest["kind"]
    try:
        parse_resource(manifest, models[kind], f"the {kind} {manifest['metadata']['name']}")
    except LocalError as exc:
        raise ValueError(exc.message) from None


def raise_for_status(kind: str, obj: JSON, field: str, allowed: Sequence[str]) -> None:
    status = obj.get("status", {})
    actual = status.get(field)
    if actual in allowed:
        return
    reason = status.get("failureReason") or "no reason given"
    raise UnexpectedStatusException(
        f"Error for {kind} {obj['metadata']['name']}: {actual}. Reason: {reason}",
        allowed,
        str(actual),
    )


class TrainingJobHandle:
    """``estimator.latest_training_job``: the job's name, ``describe()`` and ``wait()``."""

    def __init__(self, session: Session, name: str, instance_type: str | None) -> None:
        self.sagemaker_session = session
        self.name = self.job_name = name
        self.instance_type = instance_type

    def describe(self) -> JSON:
        return self.sagemaker_session.runner_for(self.instance_type).get("TrainingJob", self.name)

    def wait(self, logs: bool | str = True) -> JSON:
        runner = self.sagemaker_session.runner_for(self.instance_type)
        obj = runner.wait_for("TrainingJob", self.name, logs=logs not in (False, "None"))
        raise_for_status("TrainingJob", obj, "trainingJobStatus", ("Completed", "Stopped"))
        return obj


class EstimatorBase:
    """What every estimator shares; ``Estimator`` and ``Framework`` say what runs."""

    predictor_cls: ClassVar[type[Predictor] | None] = None

    def __init__(
        self,
        role: str | None = None,
        instance_count: int | None = None,
        instance_type: str | None = None,
        volume_size: int | None = None,
        max_run: int | None = None,
        input_mode: str = "File",
        output_path: str | None = None,
        base_job_name: str | None = None,
        sagemaker_session: Session | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        tags: Sequence[Mapping[str, str]] | None = None,
        model_uri: str | None = None,
        model_channel_name: str = "model",
        metric_definitions: Sequence[Mapping[str, str]] | None = None,
        use_spot_instances: bool | None = None,
        max_wait: int | None = None,
        checkpoint_s3_uri: str | None = None,
        checkpoint_local_path: str | None = None,
        environment: Mapping[str, str] | None = None,
        max_retry_attempts: int | None = None,
        pod_overrides: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        owner = type(self).__name__
        given = _args.merge(
            owner,
            {
                "instance_count": instance_count,
                "instance_type": instance_type,
                "volume_size": volume_size,
                "max_run": max_run,
                "max_wait": max_wait,
                "use_spot_instances": use_spot_instances,
            },
            kwargs,
        )
        if given["instance_type"] is None:
            raise ValueError(
                f"{owner}: instance_type is required: an instance type of the operator's "
                "catalog (e.g. ml.m5.xlarge), or 'local' to run on this machine"
            )
        self.role = role
        self.instance_count = int(given["instance_count"] or 1)
        self.instance_type: str = given["instance_type"]
        if self.instance_type == "local_gpu" and self.instance_count > 1:
            raise ValueError(f"{owner}: local_gpu runs one instance (instance_count=1)")
        self.volume_size = int(given["volume_size"] or DEFAULT_VOLUME_SIZE)
        self.max_run = int(given["max_run"] or DEFAULT_MAX_RUN)
        self.max_wait = given["max_wait"]
        self.use_spot_instances = bool(given["use_spot_instances"])
        self.input_mode = input_mode
        self.output_path = output_path
        self.base_job_name = base_job_name
        if sagemaker_session is None:
            sagemaker_session = LocalSession() if is_local(self.instance_type) else Session()
        self.sagemaker_session = sagemaker_session
        self._hyperparameters = dict(hyperparameters or {})
        self.tags = list(tags or [])
        self.model_uri = model_uri
        self.model_channel_name = model_channel_name
        self.metric_definitions = list(metric_definitions or [])
        self.checkpoint_s3_uri = checkpoint_s3_uri
        self.checkpoint_local_path = checkpoint_local_path
        self.environment = dict(environment or {})
        self.max_retry_attempts = max_retry_attempts
        # kubemaker's own: the TrainingJob's podOverrides (node selector, tolerations,
        # annotations, resources, ...), which SageMaker has no argument for.
        self.pod_overrides = dict(pod_overrides or {})
        self.latest_training_job: TrainingJobHandle | None = None
        self.deployed_endpoint: str | None = None
        # What deploy() and transformer() serve, when not the latest job's model.
        self.model_source: JSON | None = None

    # --- hyperparameters -----------------------------------------------------------------

    def set_hyperparameters(self, **kwargs: Any) -> None:
        self._hyperparameters.update(kwargs)

    def hyperparameters(self) -> dict[str, str]:
        return {k: encode_hyperparameter(v) for k, v in self._hyperparameters.items()}

    # --- what runs: each estimator says -------------------------------------------------

    def algorithm_specification(self, job_name: str) -> JSON:
        raise NotImplementedError

    def default_base_name(self) -> str:
        raise NotImplementedError

    # --- the TrainingJob -----------------------------------------------------------------

    def output_uri(self) -> str:
        """``output_path``, else the session's default bucket (not for a cluster job when
        the session keeps data in a local directory)."""
        if self.output_path:
            return self.output_path
        self.require_shared_storage("the model")
        session = self.sagemaker_session
        return session.store.uri(session.default_bucket(), "")

    def require_shared_storage(self, what: str) -> None:
        if is_local(self.instance_type) or self.sagemaker_session.local_mode:
            return
        if self.sagemaker_session.keeps_data_locally:
            raise ValueError(
                f"{what} would be kept in a local directory, which the cluster's pods cannot "
                "read: give the Session object storage (Session(s3_endpoint_url=...), "
                "AWS_ENDPOINT_URL_S3, or the chart's config.storage)"
            )

    def training_spec(self, job_name: str, inputs: Any = None) -> JSON:
        """The TrainingJob spec of this estimator for ``job_name`` (code uploaded)."""
        resource: JSON = {"instanceType": self.instance_type, "instanceCount": self.instance_count}
        resource["volumeSizeInGB"] = self.volume_size
        stopping: JSON = {"maxRuntimeInSeconds": self.max_run}
        if self.max_wait is not None:
            stopping["maxWaitTimeInSeconds"] = int(self.max_wait)
        algorithm = self.algorithm_specification(job_name)
        algorithm["trainingInputMode"] = self.input_mode
        if self.metric_definitions:
            algorithm["metricDefinitions"] = [
                {"name": d["Name"], "regex": d["Regex"]} for d in self.metric_definitions
            ]
        spec: JSON = {
            "algorithmSpecification": algorithm,
            "hyperParameters": self.hyperparameters(),
            "inputDataConfig": channels(inputs),
            "outputDataConfig": {"s3OutputPath": self.output_uri()},
            "resourceConfig": resource,
            "stoppingCondition": stopping,
        }
        if self.model_uri:
            spec["inputDataConfig"].append(
                {"channelName": self.model_channel_name, "uri": self.model_uri}
            )
        if not spec["inputDataConfig"]:
            del spec["inputDataConfig"]
        if self.environment:
            spec["environment"] = dict(self.environment)
        if self.checkpoint_s3_uri:
            checkpoint: JSON = {"s3Uri": self.checkpoint_s3_uri}
            if self.checkpoint_local_path:
                checkpoint["localPath"] = self.checkpoint_local_path
            spec["checkpointConfig"] = checkpoint
        if self.use_spot_instances:
            spec["enableManagedSpotTraining"] = True
        if self.max_retry_attempts is not None:
            spec["retryStrategy"] = {"maximumRetryAttempts": int(self.max_retry_attempts)}
        overrides = dict(self.pod_overrides)
        account = service_account(self.role)
        if account:
            overrides.setdefault("serviceAccountName", account)
        if overrides:
            spec["podOverrides"] = overrides
        return spec

    def training_job_manifest(self, job_name: str, inputs: Any = None) -> JSON:
        manifest = _manifests.resource(
            "TrainingJob", job_name, self.training_spec(job_name, inputs), tag_labels(self.tags)
        )
        check_object(manifest)
        return manifest

    def fit(
        self,
        inputs: Any = None,
        wait: bool = True,
        logs: bool | str = "All",
        job_name: str | None = None,
        experiment_config: Any = None,
    ) -> None:
        """Create the TrainingJob (on the cluster, or here for a local instance type);
        with ``wait``, follow it to its end, raising if it failed."""
        _args.check_supported({"experiment_config": experiment_config}, "fit")
        name = job_name or name_from_base(self.base_job_name or self.default_base_name())
        manifest = self.training_job_manifest(name, inputs)
        self.sagemaker_session.runner_for(self.instance_type).create(manifest)
        self.latest_training_job = TrainingJobHandle(
            self.sagemaker_session, name, self.instance_type
        )
        if wait:
            self.latest_training_job.wait(logs=logs)

    def _job(self) -> TrainingJobHandle:
        if self.latest_training_job is None:
            raise ValueError("no training job yet: call fit() first, or attach() to one")
        return self.latest_training_job

    @property
    def _current_job_name(self) -> str | None:
        return self.latest_training_job.name if self.latest_training_job else None

    @property
    def model_data(self) -> str:
        """Where the latest job's model.tar.gz is."""
        status = self._job().describe().get("status", {})
        uri = status.get("modelArtifacts", {}).get("s3ModelArtifacts")
        if not uri:
            raise ValueError(
                f"TrainingJob {self._job().name} has no model yet "
                f"({status.get('trainingJobStatus', 'not started')})"
            )
        return str(uri)

    def logs(self) -> None:
        """Show the latest job's log (until it ends, if it is running)."""
        self._job().wait(logs=True)

    # --- attach --------------------------------------------------------------------------

    @classmethod
    def attach(
        cls,
        training_job_name: str,
        sagemaker_session: Session | None = None,
        model_channel_name: str = "model",
    ) -> EstimatorBase:
        """An estimator for an existing TrainingJob (a LocalSession for one run here)."""
        session = sagemaker_session or Session()
        runner = session.local() if session.local_mode else session.cluster()
        obj = runner.get("TrainingJob", training_job_name)
        return cls.from_job(obj, session, model_channel_name)

    @classmethod
    def from_job(
        cls, obj: JSON, session: Session, model_channel_name: str = "model"
    ) -> EstimatorBase:
        """An estimator for a TrainingJob object (or a tuning job's definition, which
        has no name: then no job is attached)."""
        spec = obj["spec"]
        resources = spec.get("resourceConfig", {})
        common: JSON = {
            "role": spec.get("podOverrides", {}).get("serviceAccountName"),
            "pod_overrides": spec.get("podOverrides"),
            "instance_count": resources.get("instanceCount", 1),
            "instance_type": resources.get("instanceType"),
            "volume_size": resources.get("volumeSizeInGB"),
            "max_run": spec.get("stoppingCondition", {}).get("maxRuntimeInSeconds"),
            "output_path": spec.get("outputDataConfig", {}).get("s3OutputPath"),
            "sagemaker_session": session,
            "model_channel_name": model_channel_name,
            "metric_definitions": [
                {"Name": d["name"], "Regex": d["regex"]}
                for d in spec["algorithmSpecification"].get("metricDefinitions", [])
            ],
        }
        estimator = cls._from_spec(spec, common, session)
        estimator._hyperparameters = dict(spec.get("hyperParameters", {}))
        name = obj.get("metadata", {}).get("name")
        if name:
            estimator.latest_training_job = TrainingJobHandle(
                session, name, estimator.instance_type
            )
        return estimator

    @classmethod
    def _from_spec(cls, spec: JSON, common: JSON, session: Session) -> EstimatorBase:
        algorithm = spec["algorithmSpecification"]
        if algorithm.get("framework"):
            return framework_class(algorithm["framework"])(
                entry_point=algorithm["entryPoint"],
                source_dir=algorithm.get("sourceDir"),
                framework_version=algorithm.get("frameworkVersion"),
                **common,
            )
        image = algorithm.get("trainingImage") or image_uris.retrieve(
            algorithm["algorithmName"], config=session.operator_config()
        )
        return Estimator(image_uri=image, **common)

    # --- deploy and transform ------------------------------------------------------------

    def serving_model(self) -> JSON:
        """The Endpoint's / BatchTransform's ``model``: this estimator's latest job."""
        return self.model_source or {"trainingJobRef": {"name": self._job().name}}

    def deploy(
        self,
        initial_instance_count: int | None = None,
        instance_type: str | None = None,
        serializer: BaseSerializer | None = None,
        deserializer: BaseDeserializer | None = None,
        endpoint_name: str | None = None,
        wait: bool = True,
        model_name: str | None = None,
        tags: Sequence[Mapping[str, str]] | None = None,
        container_startup_health_check_timeout: int | None = None,
        **kwargs: Any,
    ) -> Predictor:
        """Serve the latest job's model from an Endpoint; a Predictor for it."""
        from kubemaker.sdk.predictor import deploy_model

        _args.merge("deploy", {}, kwargs)
        del model_name  # kubemaker has no Model objects: the job's name stands for it
        return deploy_model(
            self.sagemaker_session,
            self.serving_model(),
            endpoint_name or self._job().name,
            initial_instance_count=initial_instance_count,
            instance_type=instance_type,
            serializer=serializer,
            deserializer=deserializer,
            wait=wait,
            tags=tags,
            startup_timeout=container_startup_health_check_timeout,
            predictor_cls=self.predictor_cls,
            on_deployed=self._remember_endpoint,
        )

    def _remember_endpoint(self, name: str) -> None:
        self.deployed_endpoint = name

    def delete_endpoint(self) -> None:
        """v1: delete the Endpoint ``deploy`` made (v2: ``predictor.delete_endpoint()``)."""
        if self.deployed_endpoint is None:
            raise ValueError("this estimator has deployed no endpoint")
        self.sagemaker_session.runner_for(self.instance_type).delete_endpoint(
            self.deployed_endpoint
        )

    def transformer(
        self,
        instance_count: int,
        instance_type: str,
        strategy: str | None = None,
        assemble_with: str | None = None,
        output_path: str | None = None,
        accept: str | None = None,
        env: Mapping[str, str] | None = None,
        max_concurrent_transforms: int | None = None,
        max_payload: int | None = None,
        tags: Sequence[Mapping[str, str]] | None = None,
        role: str | None = None,
        model_name: str | None = None,
        **kwargs: Any,
    ) -> Transformer:
        """A Transformer (BatchTransform) with the latest job's model."""
        from kubemaker.sdk.transformer import Transformer

        _args.merge("transformer", {}, kwargs)
        del model_name
        return Transformer(
            self._job().name,
            instance_count,
            instance_type,
            strategy=strategy,
            assemble_with=assemble_with,
            output_path=output_path,
            accept=accept,
            max_concurrent_transforms=max_concurrent_transforms,
            max_payload=max_payload,
            tags=tags,
            env=env,
            base_transform_job_name=self._job().name,
            sagemaker_session=self.sagemaker_session,
            role=role or self.role,
            model=self.serving_model(),
        )


class Estimator(EstimatorBase):
    """Any image: a built-in algorithm's (by SageMaker's or kubemaker's image URI) or
    your own SageMaker-compatible training image."""

    def __init__(self, image_uri: str | None = None, role: str | None = None, **kwargs: Any):
        image_uri = _args.pop_v1(kwargs, "Estimator", image_uri=image_uri)["image_uri"]
        if not image_uri:
            raise ValueError("Estimator: image_uri is required (see image_uris.retrieve)")
        super().__init__(role=role, **kwargs)
        self.image_uri = image_uri
        self.resolved = image_uris.resolve(image_uri, self.sagemaker_session.operator_config())
        if self.resolved.note:
            logger.warning("kubemaker.sdk: %s", self.resolved.note)
        if self.resolved.framework and not self.resolved.algorithm_name:
            raise ValueError(
                f"Estimator: {image_uri} is a framework image, which runs your script: use "
                f"kubemaker.sdk.{self.resolved.framework}.* with entry_point=..."
            )

    def default_base_name(self) -> str:
        return self.resolved.algorithm_name or base_name_from_image(self.image_uri)

    def algorithm_specification(self, job_name: str) -> JSON:
        if self.resolved.algorithm_name:
            return {"algorithmName": self.resolved.algorithm_name}
        return {"trainingImage": self.resolved.image or self.image_uri}


class Framework(EstimatorBase):
    """Script mode: the framework's image runs ``entry_point`` from ``source_dir``, packed
    into ``sourcedir.tar.gz`` and uploaded beside the job as SageMaker's SDK does."""

    framework_name: ClassVar[str] = ""
    registry: ClassVar[dict[str, type[Framework]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.framework_name:
            Framework.registry[cls.framework_name] = cls

    def __init__(
        self,
        entry_point: str,
        source_dir: str | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        code_location: str | None = None,
        image_uri: str | None = None,
        dependencies: Sequence[str] | None = None,
        framework_version: str | None = None,
        py_version: str | None = None,
        distribution: Mapping[str, Any] | None = None,
        container_log_level: int = logging.INFO,
        **kwargs: Any,
    ) -> None:
        merged = _args.pop_v1(
            kwargs, type(self).__name__, image_uri=image_uri, distribution=distribution
        )
        super().__init__(hyperparameters=hyperparameters, **kwargs)
        self.entry_point = entry_point
        self.source_dir = source_dir
        self.code_location = code_location
        self.dependencies = list(dependencies or [])
        self.framework_version = framework_version
        self.py_version = py_version
        self.container_log_level = container_log_level
        self.distribution = dict(merged["distribution"] or {})
        self.check_distribution(self.distribution)
        self.image_uri = merged["image_uri"]

    def hyperparameters(self) -> dict[str, str]:
        """The script's hyperparameters; a log level other than INFO goes to the image
        as SageMaker's ``sagemaker_container_log_level`` (kept out of the script's)."""
        values = super().hyperparameters()
        if self.container_log_level != logging.INFO:
            values["sagemaker_container_log_level"] = str(self.container_log_level)
        return values

    def check_distribution(self, distribution: Mapping[str, Any]) -> None:
        if distribution:
            raise _args.UnsupportedArgument(
                f"{type(self).__name__}: distribution {dict(distribution)} is not supported"
            )

    def default_base_name(self) -> str:
        return f"{self.framework_name}-training"

    def upload_code(self, job_name: str) -> tuple[str, str]:
        """(sourceDir URI, entryPoint): ``source_dir`` as given when it is a URI already;
        else the packed code, uploaded under ``<code_location>/<job>/source/``."""
        if self.source_dir and "://" in self.source_dir:
            return self.source_dir, self.entry_point
        archive, entry = pack_source(self.entry_point, self.source_dir, self.dependencies)
        session = self.sagemaker_session
        if self.code_location:
            bucket, prefix = session.store.locate(self.code_location)
        else:
            self.require_shared_storage("the code")
            bucket, prefix = session.default_bucket(), ""
        key = "/".join(p for p in (prefix.strip("/"), job_name, "source", "sourcedir.tar.gz") if p)
        session.store.ensure_bucket(bucket)
        session.store.upload_bytes(archive, bucket, key)
        return session.store.uri(bucket, key), entry

    def algorithm_specification(self, job_name: str) -> JSON:
        source_dir, entry = self.upload_code(job_name)
        algorithm: JSON = {
            "framework": self.framework_name,
            "entryPoint": entry,
            "sourceDir": source_dir,
        }
        if self.framework_version:
            algorithm["frameworkVersion"] = self.framework_version
        if self.image_uri:
            resolved = image_uris.resolve(self.image_uri, self.sagemaker_session.operator_config())
            if resolved.image:
                algorithm["trainingImage"] = resolved.image
            elif resolved.note:
                logger.warning("kubemaker.sdk: %s", resolved.note)
        return algorithm


def framework_class(name: str) -> type[Framework]:
    """The estimator class of a script-mode framework (``mxnet`` -> ``MXNet``)."""
    import importlib

    try:
        importlib.import_module(f"kubemaker.sdk.{name}")
        return Framework.registry[name]
    except (ImportError, KeyError):
        raise ValueError(f"the SDK has no estimator for the framework {name!r}") from None
