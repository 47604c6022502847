"""TrainingJob: SageMaker's CreateTrainingJob as a Kubernetes object.

Field names are SageMaker's in camelCase. What SageMaker does with an IAM role, a VPC or
its managed instances, kubemaker does with Kubernetes' own means: a Secret or a
ServiceAccount for storage access (``storage``, ``podOverrides``), an instance-type
catalog in the operator's configuration, Kueue for queueing (``queueName``).
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from kubemaker.api.common import (
    MAX_HYPERPARAMETER_VALUE_LENGTH,
    MAX_KEY_LENGTH,
    MAX_MAP_ENTRIES,
    STORAGE_URI_PATTERN,
    ApiModel,
    EnvironmentMap,
    MetricData,
    PodOverrides,
    PrinterColumn,
    ResourceBase,
    ResourceInfo,
    StatusBase,
    StatusModel,
    StorageConfig,
    cel,
    cel_string,
    default_of,
    exactly_one_cel,
    list_map,
    name_rules,
)

InputMode = Literal["File", "Pipe"]
CompressionType = Literal["None", "Gzip"]
S3DataDistributionType = Literal["FullyReplicated", "ShardedByS3Key"]

HyperParameters = Annotated[
    dict[
        Annotated[str, Field(min_length=1, max_length=MAX_KEY_LENGTH)],
        Annotated[str, Field(max_length=MAX_HYPERPARAMETER_VALUE_LENGTH)],
    ],
    Field(max_length=MAX_MAP_ENTRIES),
]

# Names of built-in algorithms and script-mode frameworks: keys of the operator's
# images.algorithms / images.frameworks catalogs.
CATALOG_NAME_PATTERN = r"^[a-z0-9][a-z0-9.\-_]*$"
# SageMaker's 28-day ceiling on MaxRuntimeInSeconds.
MAX_RUNTIME_LIMIT = 2_419_200
DEFAULT_CHECKPOINT_PATH = "/opt/ml/checkpoints"


# Regex syntax that Python's re accepts and Go's regexp (RE2, what CEL's matches() runs)
# refuses, found by compiling both (and fuzzing them against each other): look-arounds,
# comments, atomic groups, conditionals, named back-references, non-ASCII group names and
# the a/L/u/x flags; back-references, the \Z \u \U \N escapes and an escaped non-ASCII
# character; possessive quantifiers; repeat counts over 1000 or of a group (RE2 caps their
# product at 1000); in a [set], \b (a backspace to Python) and [: (a POSIX class to RE2,
# which then wants one more "]"). The CRD's rule skips a regex that has any of them.
PYTHON_ONLY_REGEX_SYNTAX = (
    r"[(][?]([=!#>(]|<[=!]|P=|P<[^>]*[^\x00-\x7f]|[aiLmsux-]*[aLux])"
    r"|\\[1-9ZuUN]|\\[^\x00-\x7f]|[*+?}][+]|[{][0-9,]*[0-9]{4}|[)][{]"
    r"|\[\^?\]?([^\]\\]|\\.)*(\\b|\[:)"
)


class MetricDefinition(ApiModel):
    """A metric the operator finds in the algorithm's logs with a regular expression."""

    name: str = Field(min_length=1, max_length=255, description="Metric name, e.g. validation:auc.")
    regex: str = Field(
        min_length=1,
        max_length=500,
        description=(
            "Python regular expression whose first group is the value, e.g. "
            "'.*\\[[0-9]+\\].*#011validation-auc:([-+]?[0-9]*\\.?[0-9]+)'."
        ),
        json_schema_extra={
            "x-kubernetes-validations": [
                # CEL has no Python regexes, but compiles RE2 at run time: ''.matches(self)
                # fails to evaluate on an invalid regex, and an evaluation error refuses the
                # object with RE2's reason ("|| !''.matches(self)" keeps every valid regex
                # true; "|| true" would swallow the error). Syntax only Python knows skips
                # the check; the model's validator compiles every regex with Python's re.
                cel(
                    f"self.matches({cel_string(PYTHON_ONLY_REGEX_SYNTAX)})"
                    " || ''.matches(self) || !''.matches(self)",
                    "must be a valid regular expression",
                ),
            ]
        },
    )

    @field_validator("regex")
    @classmethod
    def _compiles(cls, regex: str) -> str:
        try:
            cls.compile_regex(regex)
        except ValueError as exc:
            raise PydanticCustomError("regex_invalid", "{reason}", {"reason": str(exc)}) from None
        return regex

    @staticmethod
    def compile_regex(regex: str) -> re.Pattern[str]:
        """The regex compiled as the operator runs it; ValueError (one line) if it cannot be."""
        try:
            return re.compile(regex)
        except (re.error, OverflowError, RecursionError) as exc:
            raise ValueError(f"not a valid Python regular expression: {exc}") from None


class AlgorithmSpecification(ApiModel):
    """What runs: an image, a built-in algorithm, or a framework's script (script mode).

    Set ``trainingImage`` for any SageMaker-compatible image, ``algorithmName`` for a
    built-in algorithm (its image comes from the operator's catalog), or ``framework`` +
    ``entryPoint`` (+ ``sourceDir``) for script mode, as the SageMaker Python SDK's
    framework estimators do; ``trainingImage`` then replaces the framework's image.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.trainingImage) || has(self.algorithmName) || has(self.framework)",
                    "set one of trainingImage, algorithmName or framework",
                ),
                cel(
                    "!(has(self.algorithmName) && (has(self.trainingImage)"
                    " || has(self.framework)))",
                    "algorithmName cannot be combined with trainingImage or framework",
                ),
                cel(
                    "!has(self.framework) || has(self.entryPoint)",
                    "framework (script mode) needs entryPoint",
                ),
                cel(
                    "has(self.framework) || !(has(self.entryPoint) || has(self.sourceDir)"
                    " || has(self.frameworkVersion))",
                    "entryPoint, sourceDir and frameworkVersion need framework (script mode)",
                ),
            ]
        }
    )

    training_image: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description=(
            "Training image, started with the argument 'train' as SageMaker does "
            "(e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/my-algo:1.0)."
        ),
    )
    algorithm_name: str | None = Field(
        default=None,
        max_length=170,
        pattern=CATALOG_NAME_PATTERN,
        description=(
            "Built-in algorithm, e.g. xgboost; the operator's images.algorithms maps it to "
            "an image."
        ),
    )
    training_input_mode: InputMode = Field(
        default="File",
        description=(
            "File: channels are downloaded before training starts. Pipe: streamed "
            "through FIFOs while it runs. A channel's inputMode overrides it."
        ),
    )
    metric_definitions: list[MetricDefinition] | None = Field(
        default=None,
        max_length=40,
        description=(
            "Metrics found in the algorithm's log (the first instance's): their last values "
            "appear in status.finalMetricDataList when the algorithm has ended, and as the "
            "operator's kubemaker_training_metric gauges while it runs."
        ),
        json_schema_extra=list_map("name"),
    )
    framework: str | None = Field(
        default=None,
        max_length=64,
        pattern=CATALOG_NAME_PATTERN,
        description=(
            "Script mode: the framework that runs entryPoint, e.g. mxnet; the operator's "
            "images.frameworks maps it to an image unless trainingImage is set."
        ),
    )
    framework_version: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[0-9A-Za-z.\-_]+$",
        description="Script mode: framework version, e.g. 1.9.1 (informational).",
    )
    entry_point: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Script mode: the script to run, relative to sourceDir, e.g. train.py.",
    )
    source_dir: str | None = Field(
        default=None,
        max_length=1024,
        pattern=STORAGE_URI_PATTERN,
        description=(
            "Script mode: URI of a directory or a sourcedir.tar.gz with entryPoint and its "
            "modules (s3://, pvc://claim/path or file://). Unset: entryPoint is in the image."
        ),
    )

    @model_validator(mode="after")
    def _one_algorithm(self) -> AlgorithmSpecification:
        if not (self.training_image or self.algorithm_name or self.framework):
            raise ValueError("set one of trainingImage, algorithmName or framework")
        if self.algorithm_name and (self.training_image or self.framework):
            raise ValueError("algorithmName cannot be combined with trainingImage or framework")
        if self.framework and not self.entry_point:
            raise ValueError("framework (script mode) needs entryPoint")
        if not self.framework and (self.entry_point or self.source_dir or self.framework_version):
            raise ValueError(
                "entryPoint, sourceDir and frameworkVersion need framework (script mode)"
            )
        return self

    @field_validator("metric_definitions")
    @classmethod
    def _unique_metric_names(
        cls, value: list[MetricDefinition] | None
    ) -> list[MetricDefinition] | None:
        check_unique([m.name for m in value or ()], "metric name")
        return value


class S3DataSource(ApiModel):
    """Where a channel's data is (SageMaker's S3DataSource)."""

    s3_uri: str = Field(
        max_length=1024,
        pattern=STORAGE_URI_PATTERN,
        description=(
            "s3://bucket/prefix (an object, or every object under the prefix). kubemaker "
            "also accepts pvc://claim/path and file:///path here."
        ),
    )
    s3_data_type: Literal["S3Prefix"] = Field(
        default="S3Prefix",
        description="S3Prefix: every object under s3Uri. (Manifest files are not supported.)",
    )
    s3_data_distribution_type: S3DataDistributionType = Field(
        default="FullyReplicated",
        description=(
            "FullyReplicated: every instance gets all the data. ShardedByS3Key: each "
            "instance gets 1/instanceCount of the objects."
        ),
    )


class DataSource(ApiModel):
    """A channel's data source (SageMaker's DataSource)."""

    s3_data_source: S3DataSource = Field(description="The objects to stage.")


class Channel(ApiModel):
    """One named input, staged at /opt/ml/input/data/<channelName>.

    Give the data either as SageMaker does (``dataSource.s3DataSource``) or with the
    shorter ``uri`` (always FullyReplicated).
    """

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(exactly_one_cel("dataSource", "uri"), "set exactly one of dataSource or uri")
            ]
        }
    )

    channel_name: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9.\-_]+$",
        description="Channel name, e.g. train or validation (SM_CHANNEL_<NAME> in the container).",
    )
    data_source: DataSource | None = Field(
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
        description="MIME type of the data, e.g. text/csv or application/x-recordio-protobuf.",
    )
    compression_type: CompressionType = Field(
        default="None", description="None, or Gzip: objects are decompressed when staged."
    )
    input_mode: InputMode | None = Field(
        default=None,
        description="File or Pipe for this channel; defaults to trainingInputMode.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Channel:
        if (self.data_source is None) == (self.uri is None):
            raise ValueError("set exactly one of dataSource or uri")
        return self

    @property
    def source_uri(self) -> str:
        """The data's URI, whichever form the spec used."""
        if self.uri is not None:
            return self.uri
        assert self.data_source is not None  # guaranteed by _one_source
        return self.data_source.s3_data_source.s3_uri

    @property
    def distribution(self) -> S3DataDistributionType:
        if self.data_source is None:
            return "FullyReplicated"
        return self.data_source.s3_data_source.s3_data_distribution_type


class OutputDataConfig(ApiModel):
    """Where the results go (SageMaker's OutputDataConfig)."""

    s3_output_path: str = Field(
        max_length=1024,
        pattern=STORAGE_URI_PATTERN,
        description=(
            "Prefix for the results: <s3OutputPath>/<job name>/output/model.tar.gz and "
            "output.tar.gz, as SageMaker lays them out (s3://, pvc://claim/path or file://)."
        ),
    )


class ResourceConfig(ApiModel):
    """How many of which instance type (SageMaker's ResourceConfig)."""

    instance_type: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9.\-_]*$",
        description=(
            "Instance type, e.g. ml.m5.xlarge or ml.p3.2xlarge; the operator's "
            "instanceTypes catalog maps it to CPU, memory, GPUs, node selector and "
            "tolerations."
        ),
    )
    instance_count: int = Field(
        default=1,
        ge=1,
        le=1000,
        description=(
            "Number of instances: one pod each. Their host names (resourceconfig.json's "
            "hosts, SM_HOSTS) are {job}-{index}: <name>-0 ... <name>-(N-1) on the first "
            "attempt, <name>-r1-0 ... on a retry."
        ),
    )
    volume_size_in_gb: int = Field(
        default=30,
        ge=1,
        le=16384,
        alias="volumeSizeInGB",
        description=(
            "Scratch space per instance for input, model, output and checkpoints "
            "(requested as ephemeral storage)."
        ),
    )


class StoppingCondition(ApiModel):
    """Time limits (SageMaker's StoppingCondition)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.maxWaitTimeInSeconds)"
                    " || self.maxWaitTimeInSeconds >= self.maxRuntimeInSeconds",
                    "maxWaitTimeInSeconds must be at least maxRuntimeInSeconds",
                    ".maxWaitTimeInSeconds",
                )
            ]
        }
    )

    max_runtime_in_seconds: int = Field(
        default=86400,
        ge=1,
        le=MAX_RUNTIME_LIMIT,
        description=(
            "Longest time the algorithm may run (all retries together); then the job ends "
            "with secondary status MaxRuntimeExceeded and keeps what was uploaded."
        ),
    )
    max_wait_time_in_seconds: int | None = Field(
        default=None,
        ge=1,
        le=2 * MAX_RUNTIME_LIMIT,
        description=(
            "Longest time the whole job may take, waiting for nodes, queue admission or "
            "spot capacity included; at least maxRuntimeInSeconds."
        ),
    )

    @model_validator(mode="after")
    def _wait_covers_runtime(self) -> StoppingCondition:
        if (
            self.max_wait_time_in_seconds is not None
            and self.max_wait_time_in_seconds < self.max_runtime_in_seconds
        ):
            raise ValueError("maxWaitTimeInSeconds must be at least maxRuntimeInSeconds")
        return self


class RetryStrategy(ApiModel):
    """Retries after platform failures (SageMaker's RetryStrategy)."""

    maximum_retry_attempts: int = Field(
        ge=1,
        le=30,
        description=(
            "How many times to retry after a platform failure (node lost, pod evicted, spot "
            "capacity reclaimed), resuming from checkpoints. An algorithm error is never "
            "retried."
        ),
    )


class CheckpointConfig(ApiModel):
    """Checkpoints kept in storage, so a retried or spot job resumes (SageMaker's)."""

    s3_uri: str = Field(
        max_length=1024,
        pattern=STORAGE_URI_PATTERN,
        description="Where checkpoints are synced (s3://, pvc://claim/path or file://).",
    )
    local_path: str = Field(
        default=DEFAULT_CHECKPOINT_PATH,
        max_length=4096,
        pattern=r"^/.*$",
        description="Directory in the container the algorithm writes checkpoints to.",
    )


class TrainingJobDefinition(ApiModel):
    """The fields a TrainingJob and a TuningJob's trainingJobTemplate share."""

    algorithm_specification: AlgorithmSpecification = Field(
        description="What runs: trainingImage, algorithmName or script mode."
    )
    input_data_config: list[Channel] | None = Field(
        default=None,
        max_length=20,
        description="Input channels, staged under /opt/ml/input/data/<channelName>.",
        json_schema_extra=list_map("channelName"),
    )
    output_data_config: OutputDataConfig = Field(description="Where the model goes.")
    resource_config: ResourceConfig = Field(description="Instance type and count.")
    stopping_condition: StoppingCondition = Field(
        default_factory=StoppingCondition,
        description="Time limits; by default 1 day of runtime.",
        json_schema_extra=default_of(StoppingCondition),
    )
    retry_strategy: RetryStrategy | None = Field(
        default=None, description="Retries after platform failures; unset: none."
    )
    checkpoint_config: CheckpointConfig | None = Field(
        default=None, description="Checkpoint sync to storage; unset: none."
    )
    enable_managed_spot_training: bool = Field(
        default=False,
        description=(
            "Run on spot / preemptible nodes (the operator's spot nodeSelector and "
            "tolerations); a reclaimed node is a platform failure, retried from checkpoints."
        ),
    )
    environment: EnvironmentMap | None = Field(
        default=None, description="Environment variables of the algorithm container."
    )
    storage: StorageConfig | None = Field(
        default=None,
        description="Object-store endpoint and credentials; defaults to the operator's.",
    )
    pod_overrides: PodOverrides | None = Field(
        default=None,
        description=(
            "Changes to the pods: labels, annotations, resources, nodeSelector, tolerations, "
            "serviceAccountName, priorityClassName, imagePullSecrets."
        ),
    )
    queue_name: str | None = Field(
        default=None,
        max_length=63,
        pattern=r"^[a-z0-9]([\-a-z0-9.]*[a-z0-9])?$",
        description=(
            "Kueue LocalQueue to submit to: the Job is created suspended with the label "
            "kueue.x-k8s.io/queue-name and starts when Kueue admits it."
        ),
    )

    @field_validator("input_data_config")
    @classmethod
    def _unique_channels(cls, value: list[Channel] | None) -> list[Channel] | None:
        check_unique([c.channel_name for c in value or ()], "channelName")
        return value


class TrainingJobSpec(TrainingJobDefinition):
    """Desired state of a TrainingJob: SageMaker's CreateTrainingJob request.

    Immutable once created, except ``stop`` and ``ttlSecondsAfterFinished``.
    """

    hyper_parameters: HyperParameters | None = Field(
        default=None,
        description=(
            "Hyperparameters passed to the algorithm in "
            "/opt/ml/input/config/hyperparameters.json. Values are strings, as in "
            "SageMaker: quote numbers ('100')."
        ),
    )
    stop: bool = Field(
        default=False,
        description=(
            "Set to true to stop the job (SageMaker's StopTrainingJob): it ends as Stopped, "
            "uploading what the algorithm saved. Cannot be set back to false."
        ),
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Seconds after the job finishes before its Kubernetes Job, pods and Service are "
            "deleted (logs go with them). The TrainingJob and its status stay, so GitOps "
            "tools do not train it again. Unset: kept until the TrainingJob is deleted."
        ),
    )


class TrainingJobStatusString(StrEnum):
    """SageMaker's TrainingJobStatus."""

    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"


class SecondaryStatus(StrEnum):
    """SageMaker's SecondaryStatus, plus Pending (waiting for Kueue or for nodes)."""

    PENDING = "Pending"
    STARTING = "Starting"
    DOWNLOADING = "Downloading"
    TRAINING = "Training"
    UPLOADING = "Uploading"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    MAX_RUNTIME_EXCEEDED = "MaxRuntimeExceeded"
    MAX_WAIT_TIME_EXCEEDED = "MaxWaitTimeExceeded"
    INTERRUPTED = "Interrupted"
    RESTARTING = "Restarting"
    COMPLETED = "Completed"
    FAILED = "Failed"


# The one table of final statuses: nothing changes a job once it reaches one of these.
TERMINAL_TRAINING_STATUSES: frozenset[TrainingJobStatusString] = frozenset(
    {
        TrainingJobStatusString.COMPLETED,
        TrainingJobStatusString.FAILED,
        TrainingJobStatusString.STOPPED,
    }
)


class SecondaryStatusTransition(StatusModel):
    """One step of the job's progress (SageMaker's SecondaryStatusTransition)."""

    status: SecondaryStatus = Field(description="The secondary status entered.")
    start_time: datetime = Field(description="When it was entered.")
    end_time: datetime | None = Field(default=None, description="When it was left.")
    status_message: str | None = Field(
        default=None, max_length=1024, description="Details, e.g. which instance is downloading."
    )


class ModelArtifacts(StatusModel):
    """Where the trained model is (SageMaker's ModelArtifacts)."""

    s3_model_artifacts: str = Field(
        max_length=1024, description="URI of model.tar.gz (s3://, pvc:// or file://)."
    )


#: Annotation naming the metrics (comma-separated) whose series the status records; a
#: TuningJob sets it on its trials to the objective metric.
ANNOTATION_METRIC_SERIES = "kubemaker.io/metric-series"


class MetricSeries(StatusModel):
    """A metric's values during training, step by step (ours: SageMaker keeps them in
    CloudWatch)."""

    metric_name: str = Field(max_length=255, description="Name from metricDefinitions.")
    attempt: int = Field(default=0, ge=0, description="The attempt whose log they come from.")
    steps: list[int] = Field(
        max_length=1000, description="Step n is the metric's n-th value in the log (1, 2, ...)."
    )
    values: list[float] = Field(max_length=1000, description="The value at each step.")


class TrainingJobStatus(StatusBase):
    """Observed state of a TrainingJob: SageMaker's DescribeTrainingJob response."""

    training_job_status: TrainingJobStatusString | None = Field(
        default=None,
        description=(
            "InProgress, Completed, Failed, Stopping or Stopped, with SageMaker's meanings."
        ),
    )
    secondary_status: SecondaryStatus | None = Field(
        default=None,
        description=(
            "Finer progress: Pending (waiting for queue admission or nodes), Starting, "
            "Downloading, Training, Uploading, Completed; Stopping, Stopped, "
            "MaxRuntimeExceeded, MaxWaitTimeExceeded; Interrupted (a platform failure) and "
            "Restarting (retrying it); Failed."
        ),
    )
    training_start_time: datetime | None = Field(
        default=None,
        description=(
            "When the instances started (SageMaker's meaning): the first agent began "
            "preparing the input, before the algorithm started. maxRuntimeInSeconds and "
            "trainingTimeInSeconds count from here."
        ),
    )
    training_end_time: datetime | None = Field(
        default=None, description="When the job reached Completed, Failed or Stopped."
    )
    training_time_in_seconds: int | None = Field(
        default=None, ge=0, description="Seconds from trainingStartTime to trainingEndTime."
    )
    secondary_status_transitions: list[SecondaryStatusTransition] | None = Field(
        default=None, description="Every secondary status the job went through, oldest first."
    )
    model_artifacts: ModelArtifacts | None = Field(
        default=None, description="The uploaded model, once the job has Completed."
    )
    final_metric_data_list: list[MetricData] | None = Field(
        default=None,
        description=(
            "Last value of each metric: from metricDefinitions applied to the logs, and what "
            "the algorithm wrote to /opt/ml/output/metrics.json."
        ),
    )
    metric_series: list[MetricSeries] | None = Field(
        default=None,
        description=(
            "Values of the metrics named by the kubemaker.io/metric-series annotation, "
            "step by step, as far as the log has been read (every 10 s while it runs)."
        ),
    )
    training_image: str | None = Field(
        default=None,
        description="The image that ran, after algorithmName or framework was resolved.",
    )
    retry_count: int | None = Field(
        default=None,
        ge=0,
        description="Platform failures retried so far (at most maximumRetryAttempts).",
    )
    job_name: str | None = Field(
        default=None, description="Name of the batch/v1 Job running the current attempt."
    )


MAX_TRAINING_JOB_NAME = 52

TRAINING_JOB = ResourceInfo(
    kind="TrainingJob",
    plural="trainingjobs",
    singular="trainingjob",
    short_names=("tj",),
    spec_model=TrainingJobSpec,
    status_model=TrainingJobStatus,
    description=(
        "A TrainingJob runs a SageMaker-compatible training algorithm on one or more "
        "instances and uploads the model (SageMaker's CreateTrainingJob)."
    ),
    printer_columns=(
        PrinterColumn("Status", ".status.trainingJobStatus", description="SageMaker status"),
        PrinterColumn("Secondary", ".status.secondaryStatus", description="Progress"),
        PrinterColumn("Instance", ".spec.resourceConfig.instanceType"),
        PrinterColumn("Count", ".spec.resourceConfig.instanceCount", type="integer"),
        PrinterColumn("Algorithm", ".spec.algorithmSpecification.algorithmName", priority=1),
        PrinterColumn("Image", ".status.trainingImage", priority=1),
        PrinterColumn("Model", ".status.modelArtifacts.s3ModelArtifacts", priority=1),
        PrinterColumn("Reason", ".status.failureReason", priority=1),
        PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
    mutable_spec_fields=("stop", "ttlSecondsAfterFinished"),
    latching_spec_fields=("stop",),
    object_rules=name_rules(MAX_TRAINING_JOB_NAME),
    max_name_length=MAX_TRAINING_JOB_NAME,
)


class TrainingJob(ResourceBase):
    """A TrainingJob object as a whole, e.g. read from a manifest in local mode."""

    kind: Literal["TrainingJob"] = "TrainingJob"
    spec: TrainingJobSpec
    status: TrainingJobStatus | None = None

    info: ClassVar[ResourceInfo] = TRAINING_JOB


def check_unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"duplicate {what} {name!r}")
        seen.add(name)
