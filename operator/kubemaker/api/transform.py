"""BatchTransform: SageMaker's CreateTransformJob as a Kubernetes object.

The model is named inline (``model``: artifacts + image, or a TrainingJob / TuningJob
reference), where SageMaker takes the name of a Model created beforehand.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from kubemaker.api.common import (
    STORAGE_URI_PATTERN,
    ApiModel,
    EnvironmentMap,
    ModelSource,
    PodOverrides,
    PrinterColumn,
    ResourceBase,
    ResourceInfo,
    StatusBase,
    StatusModel,
    StorageConfig,
    cel,
    exactly_one_cel,
    name_rules,
)
from kubemaker.api.training import CompressionType
from kubemaker_runtime.transform.filters import FilterError, compile_path

# SageMaker's limit on maxConcurrentTransforms x maxPayloadInMB.
MAX_IN_FLIGHT_MB = 100

MAX_BATCH_TRANSFORM_NAME = 52


class TransformS3DataSource(ApiModel):
    """The objects to transform (SageMaker's TransformS3DataSource)."""

    s3_uri: str = Field(
        max_length=1024,
        pattern=STORAGE_URI_PATTERN,
        description=(
            "s3://bucket/prefix: every object under it is transformed. kubemaker also "
            "accepts pvc://claim/path and file:///path."
        ),
    )
    s3_data_type: Literal["S3Prefix"] = Field(
        default="S3Prefix", description="S3Prefix (manifest files are not supported)."
    )


class TransformDataSource(ApiModel):
    """SageMaker's TransformDataSource."""

    s3_data_source: TransformS3DataSource = Field(description="The objects to transform.")


class TransformInput(ApiModel):
    """What to transform (SageMaker's TransformInput)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(exactly_one_cel("dataSource", "uri"), "set exactly one of dataSource or uri")
            ]
        }
    )

    data_source: TransformDataSource | None = Field(
        default=None, description="SageMaker's form: dataSource.s3DataSource.s3Uri."
    )
    uri: str | None = Field(
        default=None,
        max_length=1024,
        pattern=STORAGE_URI_PATTERN,
        description="Short form: s3://bucket/prefix, pvc://claim/path or file:///path.",
    )
    content_type: str | None = Field(
        default=None,
        max_length=256,
        description="Content-Type sent with each request, e.g. text/csv.",
    )
    compression_type: CompressionType = Field(
        default="None", description="None, or Gzip: objects are decompressed first."
    )
    split_type: Literal["None", "Line", "RecordIO", "TFRecord"] = Field(
        default="None",
        description=(
            "How an object is split into records: None (one request per object), Line, "
            "RecordIO or TFRecord."
        ),
    )

    @model_validator(mode="after")
    def _one_source(self) -> TransformInput:
        if (self.data_source is None) == (self.uri is None):
            raise ValueError("set exactly one of dataSource or uri")
        return self

    @property
    def source_uri(self) -> str:
        if self.uri is not None:
            return self.uri
        assert self.data_source is not None  # guaranteed by _one_source
        return self.data_source.s3_data_source.s3_uri


class TransformOutput(ApiModel):
    """Where results go (SageMaker's TransformOutput)."""

    s3_output_path: str = Field(
        max_length=1024,
        pattern=STORAGE_URI_PATTERN,
        description="Prefix for the results: <input object name>.out for each input object.",
    )
    accept: str | None = Field(
        default=None, max_length=256, description="Accept header sent with each request."
    )
    assemble_with: Literal["None", "Line"] = Field(
        default="None",
        description="None: results concatenated as they are. Line: one result per line.",
    )


class TransformResources(ApiModel):
    """How many of which instance type (SageMaker's TransformResources)."""

    instance_type: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9.\-_]*$",
        description="Instance type, mapped to resources by the operator's catalog.",
    )
    instance_count: int = Field(
        default=1, ge=1, le=1000, description="Instances; input objects are spread over them."
    )


class DataProcessing(ApiModel):
    """JSONPath filters and joining of input and output (SageMaker's DataProcessing)."""

    input_filter: str = Field(
        default="$",
        max_length=63,
        description="JSONPath selecting the part of each input record to send, e.g. $[1:].",
    )
    output_filter: str = Field(
        default="$",
        max_length=63,
        description="JSONPath selecting the part of each joined record to write, e.g. $[0,-1].",
    )
    join_source: Literal["None", "Input"] = Field(
        default="None", description="Input: join each result with its input record."
    )

    @field_validator("input_filter", "output_filter")
    @classmethod
    def _parses(cls, value: str, info: ValidationInfo) -> str:
        # The apiserver cannot parse JSONPath: a path that does not parse fails the
        # BatchTransform before any pod, naming the field.
        name = "inputFilter" if info.field_name == "input_filter" else "outputFilter"
        try:
            compile_path(value, f"dataProcessing.{name}")
        except FilterError as exc:
            raise ValueError(str(exc)) from None
        return value


class ModelClientConfig(ApiModel):
    """How the transformer calls the model server (SageMaker's ModelClientConfig)."""

    invocations_timeout_in_seconds: int = Field(
        default=600, ge=1, le=3600, description="Timeout of one request."
    )
    invocations_max_retries: int = Field(
        default=3, ge=0, le=3, description="Retries of a failed request."
    )


_MULTI_RECORD_NEEDS_SPLIT = (
    "!has(self.batchStrategy) || self.batchStrategy != 'MultiRecord' || "
    "self.transformInput.splitType != 'None'"
)
_IN_FLIGHT = (
    "!has(self.maxConcurrentTransforms) || !has(self.maxPayloadInMB) || "
    f"self.maxConcurrentTransforms * self.maxPayloadInMB <= {MAX_IN_FLIGHT_MB}"
)


class BatchTransformSpec(ApiModel):
    """Desired state of a BatchTransform: SageMaker's CreateTransformJob request.

    Immutable once created, except ``stop`` and ``ttlSecondsAfterFinished``.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    _MULTI_RECORD_NEEDS_SPLIT,
                    "batchStrategy MultiRecord needs records: set transformInput.splitType",
                    ".batchStrategy",
                ),
                cel(
                    _IN_FLIGHT,
                    "maxConcurrentTransforms x maxPayloadInMB must be at most "
                    f"{MAX_IN_FLIGHT_MB} MB (SageMaker's limit)",
                    ".maxConcurrentTransforms",
                ),
            ]
        }
    )

    model: ModelSource = Field(
        description=(
            "The model: modelDataUrl + image, or trainingJobRef / tuningJobRef to use a "
            "job's model once it has completed."
        )
    )
    transform_input: TransformInput = Field(description="What to transform.")
    transform_output: TransformOutput = Field(description="Where results go.")
    transform_resources: TransformResources = Field(description="Instance type and count.")
    batch_strategy: Literal["MultiRecord", "SingleRecord"] | None = Field(
        default=None,
        description=(
            "SingleRecord: one record per request. MultiRecord: as many as fit in "
            "maxPayloadInMB. Unset: what the model server's /execution-parameters says, "
            "else SingleRecord."
        ),
    )
    max_payload_in_mb: int | None = Field(
        default=None,
        ge=0,
        le=100,
        alias="maxPayloadInMB",
        description=("Largest request body, in MB. Unset: from /execution-parameters, else 6."),
    )
    max_concurrent_transforms: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        description=("Requests in flight per instance. Unset: from /execution-parameters, else 1."),
    )
    data_processing: DataProcessing | None = Field(
        default=None, description="Input and output filters, joining results with inputs."
    )
    model_client_config: ModelClientConfig | None = Field(
        default=None, description="Request timeout and retries."
    )
    environment: EnvironmentMap | None = Field(
        default=None, description="Environment variables of the model server container."
    )
    storage: StorageConfig | None = Field(
        default=None, description="Object-store endpoint and credentials."
    )
    pod_overrides: PodOverrides | None = Field(default=None, description="Changes to the pods.")
    queue_name: str | None = Field(
        default=None,
        max_length=63,
        pattern=r"^[a-z0-9]([\-a-z0-9.]*[a-z0-9])?$",
        description="Kueue LocalQueue to submit the Job to.",
    )
    stop: bool = Field(
        default=False,
        description=(
            "Set to true to stop the transform (SageMaker's StopTransformJob). Cannot be set "
            "back to false."
        ),
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Seconds after the transform finishes before its Job and pods are deleted; the "
            "BatchTransform and its status stay."
        ),
    )

    @model_validator(mode="after")
    def _sagemakers_limits(self) -> BatchTransformSpec:
        # The same rules as the CRD's, for local mode.
        if self.batch_strategy == "MultiRecord" and self.transform_input.split_type == "None":
            raise ValueError(
                "batchStrategy MultiRecord needs records: set transformInput.splitType"
            )
        concurrency, payload = self.max_concurrent_transforms, self.max_payload_in_mb
        if concurrency and payload and concurrency * payload > MAX_IN_FLIGHT_MB:
            raise ValueError(
                f"maxConcurrentTransforms x maxPayloadInMB = {concurrency} x {payload} MB "
                f"is over {MAX_IN_FLIGHT_MB} MB (SageMaker's limit)"
            )
        return self


TransformJobStatusString = Literal["InProgress", "Completed", "Failed", "Stopping", "Stopped"]


class TransformObjectCounters(StatusModel):
    """Input objects by state."""

    total: int = Field(default=0, ge=0, description="Input objects found.")
    completed: int = Field(default=0, ge=0, description="Objects with their .out written.")
    failed: int = Field(default=0, ge=0, description="Objects that failed.")


class BatchTransformStatus(StatusBase):
    """Observed state of a BatchTransform: SageMaker's DescribeTransformJob response."""

    transform_job_status: TransformJobStatusString | None = Field(
        default=None,
        description=(
            "InProgress, Completed, Failed, Stopping or Stopped, with SageMaker's meanings."
        ),
    )
    transform_start_time: datetime | None = Field(
        default=None, description="When the transform started."
    )
    transform_end_time: datetime | None = Field(
        default=None, description="When it reached Completed, Failed or Stopped."
    )
    model_data_url: str | None = Field(
        default=None, description="The model used (resolved from a job reference)."
    )
    image: str | None = Field(default=None, description="The model server image used.")
    object_counters: TransformObjectCounters | None = Field(
        default=None, description="Input objects by state."
    )
    records_transformed: int | None = Field(
        default=None, ge=0, description="Records sent to the model and written, so far."
    )
    job_name: str | None = Field(default=None, description="Name of the batch/v1 Job.")


BATCH_TRANSFORM = ResourceInfo(
    kind="BatchTransform",
    plural="batchtransforms",
    singular="batchtransform",
    short_names=("bt",),
    spec_model=BatchTransformSpec,
    status_model=BatchTransformStatus,
    description=(
        "A BatchTransform runs a model over every object under an input prefix and writes "
        "<object>.out for each (SageMaker's CreateTransformJob)."
    ),
    printer_columns=(
        PrinterColumn("Status", ".status.transformJobStatus"),
        PrinterColumn("Instance", ".spec.transformResources.instanceType"),
        PrinterColumn("Count", ".spec.transformResources.instanceCount", type="integer"),
        PrinterColumn("Done", ".status.objectCounters.completed", type="integer"),
        PrinterColumn("Total", ".status.objectCounters.total", type="integer"),
        PrinterColumn("Records", ".status.recordsTransformed", type="integer"),
        PrinterColumn("Output", ".spec.transformOutput.s3OutputPath", priority=1),
        PrinterColumn("Reason", ".status.failureReason", priority=1),
        PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
    mutable_spec_fields=("stop", "ttlSecondsAfterFinished"),
    latching_spec_fields=("stop",),
    object_rules=name_rules(MAX_BATCH_TRANSFORM_NAME),
    max_name_length=MAX_BATCH_TRANSFORM_NAME,
)


class BatchTransform(ResourceBase):
    """A BatchTransform object as a whole."""

    kind: Literal["BatchTransform"] = "BatchTransform"
    spec: BatchTransformSpec
    status: BatchTransformStatus | None = None

    info: ClassVar[ResourceInfo] = BATCH_TRANSFORM


__all__ = [
    "BATCH_TRANSFORM",
    "BatchTransform",
    "BatchTransformSpec",
    "BatchTransformStatus",
    "DataProcessing",
    "ModelClientConfig",
    "TransformInput",
    "TransformOutput",
    "TransformResources",
]
