"""Types shared by the four kinds: base models, storage, pod overrides, model sources, status.

Every model here is both the operator's parser (``Model.model_validate(obj)``) and the
source of the CRD schema (``kubemaker.crd`` turns ``model_json_schema()`` into OpenAPI).
So every field carries a description (it feeds ``kubectl explain``), bounds and enums
(they become apiserver validation), and cross-field rules twice: as a pydantic validator
for local mode and the operator, and as a CEL rule (``x-kubernetes-validations``) for the
apiserver. Keep both in step; the unit tests check the same invalid manifests against both.

Why a module of this size: it is declarations only (models whose field descriptions
are the CRD's documentation for ``kubectl explain``), one kind's API in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

GROUP = "kubemaker.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "kubemaker"

# --- patterns (apiserver regexes are RE2: no look-arounds, no back-references) ---

# s3://bucket/prefix, pvc://claim/path/in/claim, file:///absolute/path
STORAGE_URI_PATTERN = (
    r"^(s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?"
    r"|pvc://[a-z0-9]([\-a-z0-9.]*[a-z0-9])?(/.*)?"
    r"|file:///.*)$"
)
# A Kubernetes object name (DNS-1123 subdomain, as for Secrets and ServiceAccounts).
DNS1123_SUBDOMAIN_PATTERN = r"^[a-z0-9]([\-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([\-a-z0-9]*[a-z0-9])?)*$"
# A name that becomes part of a Service or host name (DNS-1035 label).
DNS1035_LABEL_PATTERN = r"^[a-z]([\-a-z0-9]*[a-z0-9])?$"
# SageMaker's own name pattern (job names, variant names): letters, digits, hyphens.
SAGEMAKER_NAME_PATTERN = r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$"
# An environment variable name, as SageMaker and the container runtime accept it.
ENV_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
# A Kubernetes resource quantity ("500m", "4", "16Gi"), the apiserver's own pattern.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]"
    r"|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY_RE = re.compile(QUANTITY_PATTERN)

# Bounds on free-form collections. SageMaker has the same or tighter ones; the apiserver
# needs them anyway to keep the estimated cost of CEL rules within its budget.
MAX_MAP_ENTRIES = 100
MAX_KEY_LENGTH = 256
MAX_LABEL_VALUE_LENGTH = 2048
MAX_HYPERPARAMETER_VALUE_LENGTH = 2500
MAX_ENV_VALUE_LENGTH = 4096
MAX_MESSAGE_LENGTH = 32768
FAILURE_REASON_MAX_LENGTH = 1024


def cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    """One ``x-kubernetes-validations`` entry (a CEL rule checked by the apiserver)."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def cel_string(text: str) -> str:
    """A CEL raw string literal (regexes keep their backslashes as they are)."""
    if "'" in text or "\n" in text:
        raise ValueError(f"cannot quote {text!r} as a CEL raw string")
    return f"r'{text}'"


def list_map(*keys: str) -> JsonDict:
    """Schema extras of a list whose items are keyed by ``keys`` (merge by key, no duplicates)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


def default_of(model: type[ApiModel]) -> JsonDict:
    """Schema extras giving an object field its model's defaults, spelled out.

    The apiserver checks a default against the CEL rules as written, before nested
    defaults apply, so ``default: {}`` would fail rules that read a defaulted field.
    """
    return {"default": model().dump()}


def exactly_one_cel(*names: str) -> str:
    """CEL: exactly one of the optional fields ``names`` is set."""
    return " + ".join(f"(has(self.{n}) ? 1 : 0)" for n in names) + " == 1"


def _count_set(model: BaseModel, *names: str) -> int:
    return sum(getattr(model, n) is not None for n in names)


class ApiModel(BaseModel):
    """Base of every spec model: camelCase on the wire, unknown fields are errors."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        # SageMaker's names start with "model" (modelDataUrl, modelArtifacts).
        protected_namespaces=(),
    )

    def dump(self) -> dict[str, Any]:
        """The manifest form: camelCase keys, unset optional fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class StatusModel(ApiModel):
    """Base of status models: written by the operator, read leniently.

    Unknown keys are ignored rather than rejected, so an operator reading a status that
    a newer version wrote (or that kopf added to) keeps working.
    """

    model_config = ConfigDict(extra="ignore")


# --- small shared types ---

MapKey = Annotated[str, Field(min_length=1, max_length=MAX_KEY_LENGTH)]
EnvName = Annotated[str, Field(min_length=1, max_length=MAX_KEY_LENGTH, pattern=ENV_NAME_PATTERN)]

StringMap = Annotated[
    dict[MapKey, Annotated[str, Field(max_length=MAX_LABEL_VALUE_LENGTH)]],
    Field(max_length=MAX_MAP_ENTRIES),
]

EnvironmentMap = Annotated[
    dict[EnvName, Annotated[str, Field(max_length=MAX_ENV_VALUE_LENGTH)]],
    Field(max_length=MAX_MAP_ENTRIES),
]


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, str) and not _QUANTITY_RE.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 4, 16Gi)")
    return value


class _QuantityCheck:
    """Validator marker, kept as a class so the JSON schema override below stays exact."""

    @staticmethod
    def __get_pydantic_core_schema__(source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(_check_quantity, handler(source))


Quantity = Annotated[
    int | str,
    _QuantityCheck,
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "pattern": QUANTITY_PATTERN,
        }
    ),
]

ResourceName = Annotated[str, Field(min_length=1, max_length=253)]
QuantityMap = Annotated[dict[ResourceName, Quantity], Field(max_length=32)]


class LocalObjectReference(ApiModel):
    """A reference to an object in the same namespace."""

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN_PATTERN,
        description="Name of the referenced object, in the same namespace.",
    )


class StorageConfig(ApiModel):
    """How the job's pods reach object storage; overrides the operator's defaults.

    SageMaker grants storage access through an IAM role; on Kubernetes that is either a
    ServiceAccount bound to a role (IRSA, Workload Identity: see podOverrides) or the
    keys in a Secret named here.
    """

    credentials_secret_ref: LocalObjectReference | None = Field(
        default=None,
        description=(
            "Secret in the same namespace holding AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (and optionally AWS_SESSION_TOKEN), passed to the "
            "data-plane agent as environment variables. Defaults to the operator's "
            "storage.credentialsSecret; leave both unset to use the pod's identity."
        ),
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://.+$",
        description=(
            "S3 API endpoint for an S3-compatible store, e.g. http://minio.minio:9000. "
            "Defaults to the operator's storage.s3EndpointUrl (empty: AWS S3)."
        ),
    )
    region: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[a-z0-9\-]*$",
        description="Object-store region, e.g. us-east-1. Defaults to the operator's.",
    )


class Toleration(ApiModel):
    """A Kubernetes toleration (core/v1 Toleration)."""

    key: str | None = Field(
        default=None, max_length=317, description="Taint key; empty with Exists matches all."
    )
    operator: Literal["Exists", "Equal"] = Field(
        default="Equal", description="Exists, or Equal (key and value must match)."
    )
    value: str | None = Field(default=None, max_length=63, description="Taint value (Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        default=None,
        description="For NoExecute: how long the pod stays bound after the taint appears.",
    )

    def to_kubernetes(self) -> dict[str, Any]:
        return self.dump()


class ResourceRequirements(ApiModel):
    """Compute resources for the algorithm container (core/v1 ResourceRequirements)."""

    requests: QuantityMap | None = Field(
        default=None,
        description="Minimum resources, e.g. {cpu: '2', memory: 8Gi, nvidia.com/gpu: 1}.",
    )
    limits: QuantityMap | None = Field(
        default=None, description="Maximum resources, e.g. {memory: 8Gi, nvidia.com/gpu: 1}."
    )


class SeccompProfile(ApiModel):
    """A seccomp profile (core/v1 SeccompProfile)."""

    type: Literal["RuntimeDefault", "Localhost", "Unconfined"] = Field(
        description="RuntimeDefault (the container runtime's), Localhost or Unconfined."
    )
    localhost_profile: str | None = Field(
        default=None, max_length=4096, description="With Localhost: the profile's path."
    )


class Capabilities(ApiModel):
    """Linux capabilities added to or dropped from a container (core/v1 Capabilities)."""

    add: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=64, description="Capabilities added, e.g. NET_BIND_SERVICE."
    )
    drop: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=64, description="Capabilities dropped, e.g. ALL."
    )


class _SecurityFields(ApiModel):
    run_as_user: int | None = Field(default=None, ge=0, description="UID the processes run as.")
    run_as_group: int | None = Field(default=None, ge=0, description="GID the processes run as.")
    run_as_non_root: bool | None = Field(
        default=None, description="Refuse to start a container whose user is root."
    )
    seccomp_profile: SeccompProfile | None = Field(default=None, description="Seccomp profile.")


class PodSecurityContext(_SecurityFields):
    """Pod-level security settings (a subset of core/v1 PodSecurityContext).

    Each field set here replaces the operator's default (``runAsNonRoot: true`` and
    ``seccompProfile: RuntimeDefault``, what Pod Security "restricted" asks).
    """

    fs_group: int | None = Field(
        default=None, ge=0, description="Group that owns the pod's volumes."
    )
    supplemental_groups: list[Annotated[int, Field(ge=0)]] | None = Field(
        default=None, max_length=32, description="Further groups of the processes."
    )


class SecurityContext(_SecurityFields):
    """Container security settings (a subset of core/v1 SecurityContext).

    Each field set here replaces the operator's default for the algorithm container
    (``allowPrivilegeEscalation: false``, ``capabilities: {drop: [ALL]}``).
    """

    allow_privilege_escalation: bool | None = Field(
        default=None, description="Whether a process may gain more privileges (setuid)."
    )
    privileged: bool | None = Field(default=None, description="Run as a privileged container.")
    read_only_root_filesystem: bool | None = Field(
        default=None, description="Mount the image's root filesystem read-only."
    )
    capabilities: Capabilities | None = Field(
        default=None, description="Capabilities to add and drop."
    )


class PodOverrides(ApiModel):
    """Changes to the pods the operator builds, applied after the instance-type catalog."""

    labels: StringMap | None = Field(default=None, description="Labels added to every pod.")
    annotations: StringMap | None = Field(
        default=None, description="Annotations added to every pod."
    )
    resources: ResourceRequirements | None = Field(
        default=None,
        description=(
            "Resources of the algorithm container. Replaces what resourceConfig.instanceType "
            "maps to in the operator's catalog, per resource name."
        ),
    )
    node_selector: StringMap | None = Field(
        default=None,
        description="Node labels the pods must match; merged over the catalog's.",
    )
    tolerations: list[Toleration] | None = Field(
        default=None,
        max_length=32,
        description="Tolerations added to the catalog's (and the GPU / spot defaults).",
    )
    service_account_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN_PATTERN,
        description=(
            "ServiceAccount the pods run as: the Kubernetes counterpart of SageMaker's "
            "RoleArn (IRSA, Workload Identity). Defaults to the namespace's default."
        ),
    )
    priority_class_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN_PATTERN,
        description="PriorityClass of the pods (e.g. to let spot work be preempted first).",
    )
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        default=None,
        max_length=16,
        description="Secrets used to pull the images from private registries.",
    )
    security_context: PodSecurityContext | None = Field(
        default=None,
        description=(
            "Pod security settings. The operator's pods satisfy Pod Security 'restricted' "
            "by default (runAsNonRoot, RuntimeDefault seccomp); set what an image needs "
            "otherwise here, e.g. runAsUser for an image that runs as root."
        ),
    )
    container_security_context: SecurityContext | None = Field(
        default=None,
        description=(
            "Security settings of the image's container (the algorithm, the model server), "
            "over the operator's defaults: allowPrivilegeEscalation false, all capabilities "
            "dropped. The operator's own containers keep theirs."
        ),
    )


class JobReference(ApiModel):
    """A reference to another kubemaker object in the same namespace."""

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN_PATTERN,
        description="Name of the referenced object, in the same namespace.",
    )


_MODEL_SOURCES = ("model_data_url", "training_job_ref", "tuning_job_ref")
_MODEL_SOURCES_CEL = ("modelDataUrl", "trainingJobRef", "tuningJobRef")


class ModelSource(ApiModel):
    """The model to serve: artifacts plus an image, or the output of a training job.

    SageMaker's CreateModel in one block: ``modelDataUrl`` + ``image`` (or a built-in
    ``algorithmName`` / script-mode ``framework``) for a model trained elsewhere, or
    ``trainingJobRef`` / ``tuningJobRef`` to wait for a TrainingJob (or a TuningJob's best
    training job) and deploy what it produced, with the image it was trained with.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    exactly_one_cel(*_MODEL_SOURCES_CEL),
                    "set exactly one of modelDataUrl, trainingJobRef or tuningJobRef",
                ),
                cel(
                    "!has(self.modelDataUrl) || has(self.image) || has(self.algorithmName)"
                    " || has(self.framework)",
                    "modelDataUrl needs an image, algorithmName or framework to serve it",
                ),
                cel(
                    "!(has(self.algorithmName) && (has(self.image) || has(self.framework)))",
                    "algorithmName cannot be combined with image or framework",
                ),
            ]
        }
    )

    model_data_url: str | None = Field(
        default=None,
        max_length=1024,
        pattern=STORAGE_URI_PATTERN,
        description=(
            "URI of model.tar.gz (s3://, pvc://claim/path or file://), as SageMaker's ModelDataUrl."
        ),
    )
    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description=(
            "Inference image (SageMaker's PrimaryContainer.Image). With a job reference it "
            "replaces the image the job was trained with."
        ),
    )
    algorithm_name: str | None = Field(
        default=None,
        max_length=170,
        pattern=r"^[a-z0-9][a-z0-9.\-_]*$",
        description="Built-in algorithm whose image serves the model, e.g. xgboost.",
    )
    framework: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9.\-_]*$",
        description="Script-mode framework whose serving image runs entryPoint, e.g. mxnet.",
    )
    framework_version: str | None = Field(
        default=None, max_length=64, description="Framework version, e.g. 1.9.1."
    )
    entry_point: str | None = Field(
        default=None,
        max_length=256,
        description=(
            "Inference script (model_fn, input_fn, predict_fn, output_fn), relative to "
            "sourceDir. With a job reference, defaults to the job's entryPoint."
        ),
    )
    source_dir: str | None = Field(
        default=None,
        max_length=1024,
        pattern=STORAGE_URI_PATTERN,
        description="Directory or sourcedir.tar.gz holding entryPoint (s3://, pvc://, file://).",
    )
    environment: EnvironmentMap | None = Field(
        default=None,
        description="Environment variables of the inference container.",
    )
    training_job_ref: JobReference | None = Field(
        default=None,
        description="Deploy the model of this TrainingJob once it has Completed.",
    )
    tuning_job_ref: JobReference | None = Field(
        default=None,
        description="Deploy the model of this TuningJob's best training job once it is done.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        if _count_set(self, *_MODEL_SOURCES) != 1:
            raise ValueError("set exactly one of modelDataUrl, trainingJobRef or tuningJobRef")
        if self.model_data_url is not None and not (
            self.image or self.algorithm_name or self.framework
        ):
            raise ValueError("modelDataUrl needs an image, algorithmName or framework to serve it")
        if self.algorithm_name is not None and (self.image or self.framework):
            raise ValueError("algorithmName cannot be combined with image or framework")
        return self


# --- status ---


ConditionStatus = Literal["True", "False", "Unknown"]

# Condition types the operator sets (others may follow; clients must ignore unknown ones).
# Ready:       the object reached what its spec asks for (job Completed, endpoint InService).
# Succeeded:   run-to-completion kinds: Unknown while running, True when Completed,
#              False when Failed or Stopped (Knative / Tekton convention).
# Failed:      True when the status string is Failed (``kubectl wait --for=condition=Failed``).
# Reconciling: True while the operator is still working toward the spec (kstatus).
# Stalled:     True when it cannot get there without a change to the spec (kstatus).
CONDITION_READY = "Ready"
CONDITION_SUCCEEDED = "Succeeded"
CONDITION_FAILED = "Failed"
CONDITION_RECONCILING = "Reconciling"
CONDITION_STALLED = "Stalled"


class Condition(StatusModel):
    """A Kubernetes status condition (metav1.Condition)."""

    type: str = Field(
        max_length=316,
        pattern=r"^([a-z0-9]([\-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([\-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][\-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        description="Ready, Succeeded, Failed, Reconciling or Stalled.",
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        default="",
        max_length=1024,
        description="One CamelCase word saying why, e.g. InProgress, Completed, AlgorithmError.",
    )
    message: str = Field(
        default="", max_length=MAX_MESSAGE_LENGTH, description="Human-readable details."
    )
    last_transition_time: datetime | None = Field(
        default=None, description="When status last changed."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation this condition was computed from."
    )


class MetricData(StatusModel):
    """A metric value, as SageMaker's MetricData."""

    metric_name: str = Field(max_length=255, description="Name from metricDefinitions.")
    value: float = Field(description="Last value found.")
    timestamp: datetime | None = Field(default=None, description="When it was found.")


class StatusBase(StatusModel):
    """Fields every kind's status carries."""

    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="metadata.generation the operator last acted on (kstatus, Argo CD, Flux).",
    )
    conditions: list[Condition] | None = Field(
        default=None,
        max_length=16,
        description="Kubernetes conditions: Ready, Succeeded, Failed, Reconciling, Stalled.",
        json_schema_extra=list_map("type"),
    )
    failure_reason: str | None = Field(
        default=None,
        max_length=FAILURE_REASON_MAX_LENGTH,
        description="Why it failed: the algorithm's /opt/ml/output/failure, or the platform's.",
    )
    creation_time: datetime | None = Field(
        default=None, description="When the operator first saw the object."
    )
    last_modified_time: datetime | None = Field(
        default=None, description="When the operator last changed this status."
    )

    def condition(self, type_: str) -> Condition | None:
        for cond in self.conditions or ():
            if cond.type == type_:
                return cond
        return None


# --- how a kind becomes a CRD ---


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0


@dataclass(frozen=True)
class ResourceInfo:
    """What ``kubemaker.crd`` needs to know about a kind beyond its schema."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec_model: type[ApiModel]
    status_model: type[StatusModel]
    description: str
    printer_columns: tuple[PrinterColumn, ...] = ()
    # Spec fields that may change after creation; None means the whole spec may change.
    mutable_spec_fields: tuple[str, ...] | None = None
    # Spec fields that, once true, cannot become false again.
    latching_spec_fields: tuple[str, ...] = ()
    # CEL rules on the whole object (the only place metadata.name is visible to CEL).
    object_rules: tuple[JsonDict, ...] = ()
    max_name_length: int = 63

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


def name_rules(max_length: int) -> tuple[JsonDict, ...]:
    """CEL on metadata.name: child Jobs, Services and host names are derived from it."""
    return (
        cel(
            f"self.metadata.name.size() <= {max_length}",
            f"metadata.name must be at most {max_length} characters "
            "(names of its Jobs, Services and pods are derived from it)",
        ),
        cel(
            f"self.metadata.name.matches({cel_string(DNS1035_LABEL_PATTERN)})",
            "metadata.name must be lower-case letters, digits and '-', starting with a letter "
            "(a DNS-1035 label: its Services and host names are derived from it)",
        ),
    )


def check_object_name(name: str, max_length: int) -> None:
    """Python twin of :func:`name_rules`, for local mode."""
    if len(name) > max_length:
        raise ValueError(f"metadata.name must be at most {max_length} characters")
    if not re.match(DNS1035_LABEL_PATTERN, name):
        raise ValueError(
            "metadata.name must be lower-case letters, digits and '-', starting with a letter"
        )


class ObjectMeta(BaseModel):
    """The parts of metadata the operator and local mode read; the rest passes through."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = ""
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class ResourceBase(BaseModel):
    """A whole object (apiVersion, kind, metadata, spec, status) as read from YAML."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", protected_namespaces=())

    info: ClassVar[ResourceInfo]

    api_version: Literal["kubemaker.io/v1alpha1"] = Field(
        default="kubemaker.io/v1alpha1", alias="apiVersion"
    )
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @model_validator(mode="after")
    def _check_name(self) -> ResourceBase:
        if self.metadata.name:
            check_object_name(self.metadata.name, self.info.max_name_length)
        return self


__all__ = [
    "API_VERSION",
    "CATEGORY",
    "CONDITION_FAILED",
    "CONDITION_READY",
    "CONDITION_RECONCILING",
    "CONDITION_STALLED",
    "CONDITION_SUCCEEDED",
    "GROUP",
    "STORAGE_URI_PATTERN",
    "VERSION",
    "ApiModel",
    "Condition",
    "EnvironmentMap",
    "JobReference",
    "LocalObjectReference",
    "MetricData",
    "ModelSource",
    "ObjectMeta",
    "PodOverrides",
    "PrinterColumn",
    "Quantity",
    "ResourceBase",
    "ResourceInfo",
    "ResourceRequirements",
    "StatusBase",
    "StatusModel",
    "StorageConfig",
    "StringMap",
    "Toleration",
    "cel",
    "cel_string",
    "default_of",
    "exactly_one_cel",
    "list_map",
]
