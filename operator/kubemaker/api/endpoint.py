"""Endpoint: SageMaker's endpoint config, endpoint and its autoscaling in one object.

SageMaker spreads a real-time endpoint over CreateModel, CreateEndpointConfig,
CreateEndpoint, UpdateEndpoint (deployment policy) and Application Auto Scaling. Here
one object holds it all: each production variant names its model inline (``model``),
carries its own ``autoScaling``, and a change to the spec is rolled out by the
``deploymentConfig`` policy, as UpdateEndpoint does.

Enum values that SageMaker writes in UPPER_SNAKE (``ALL_AT_ONCE``, ``CAPACITY_PERCENT``)
are CamelCase here (``AllAtOnce``, ``CapacityPercent``), as Kubernetes APIs spell them.

Why a module of this size: it is declarations only (models whose field descriptions
are the CRD's documentation for ``kubectl explain``), one kind's API in one place.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from kubemaker.api.common import (
    SAGEMAKER_NAME_PATTERN,
    STORAGE_URI_PATTERN,
    ApiModel,
    ModelSource,
    PodOverrides,
    PrinterColumn,
    ResourceBase,
    ResourceInfo,
    StatusBase,
    StatusModel,
    StorageConfig,
    cel,
    default_of,
    exactly_one_cel,
    list_map,
    name_rules,
)
from kubemaker.api.training import check_unique

MAX_ENDPOINT_NAME = 52


class AutoScaling(ApiModel):
    """Target-tracking autoscaling of a variant, run by the operator.

    SageMaker sets this up through Application Auto Scaling (target metric
    SageMakerVariantInvocationsPerInstance); here it is part of the variant. Set
    ``targetInvocationsPerInstance`` (the operator scales on the router's and model
    servers' metrics) or ``targetCpuUtilization`` (a standard autoscaling/v2
    HorizontalPodAutoscaler does, which needs metrics-server in the cluster).
    """

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.minCapacity <= self.maxCapacity",
                    "minCapacity must be <= maxCapacity",
                    ".minCapacity",
                ),
                cel(
                    exactly_one_cel("targetInvocationsPerInstance", "targetCpuUtilization"),
                    "set exactly one of targetInvocationsPerInstance or targetCpuUtilization",
                ),
                cel(
                    "!has(self.targetCpuUtilization) || self.minCapacity >= 1",
                    "a HorizontalPodAutoscaler cannot scale to zero: targetCpuUtilization "
                    "needs minCapacity >= 1",
                    ".minCapacity",
                ),
            ]
        }
    )

    min_capacity: int = Field(
        default=1,
        ge=0,
        le=1000,
        description=(
            "Fewest instances. 0: the variant scales to zero after scaleInCooldown without "
            "traffic, and the router holds requests while it scales up again."
        ),
    )
    max_capacity: int = Field(ge=1, le=1000, description="Most instances.")
    target_invocations_per_instance: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Invocations per instance per minute to hold (SageMaker's "
            "SageMakerVariantInvocationsPerInstance target value)."
        ),
    )
    target_cpu_utilization: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description=(
            "Average CPU utilization (% of the CPU request) to hold, through an "
            "autoscaling/v2 HorizontalPodAutoscaler (needs metrics-server)."
        ),
    )
    scale_in_cooldown: int = Field(
        default=300, ge=0, le=86400, description="Seconds after a scale-in before the next one."
    )
    scale_out_cooldown: int = Field(
        default=60,
        ge=0,
        le=86400,
        description=(
            "Seconds after a scale-out during which the variant is not scaled in; a larger "
            "scale-out still goes ahead (Application Auto Scaling's behaviour)."
        ),
    )
    disable_scale_in: bool = Field(
        default=False, description="Only ever scale out (SageMaker's DisableScaleIn)."
    )

    @model_validator(mode="after")
    def _check(self) -> AutoScaling:
        if self.min_capacity > self.max_capacity:
            raise ValueError("minCapacity must be <= maxCapacity")
        targets = (self.target_invocations_per_instance, self.target_cpu_utilization)
        if sum(t is not None for t in targets) != 1:
            raise ValueError(
                "set exactly one of targetInvocationsPerInstance or targetCpuUtilization"
            )
        if self.target_cpu_utilization is not None and self.min_capacity < 1:
            raise ValueError(
                "a HorizontalPodAutoscaler cannot scale to zero: targetCpuUtilization "
                "needs minCapacity >= 1"
            )
        return self


class ProductionVariant(ApiModel):
    """A model served behind the endpoint on its own instances (SageMaker's ProductionVariant)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.autoScaling) || (self.initialInstanceCount >= "
                    "self.autoScaling.minCapacity && self.initialInstanceCount <= "
                    "self.autoScaling.maxCapacity)",
                    "initialInstanceCount must lie between autoScaling.minCapacity and maxCapacity",
                    ".initialInstanceCount",
                )
            ]
        }
    )

    variant_name: str = Field(
        min_length=1,
        max_length=63,
        pattern=SAGEMAKER_NAME_PATTERN,
        description="Variant name, e.g. AllTraffic (the X-Amzn-Invoked-Production-Variant header).",
    )
    model: ModelSource = Field(
        description=(
            "The model: modelDataUrl + image, or trainingJobRef / tuningJobRef to deploy a "
            "job's model once it has completed."
        )
    )
    instance_type: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9.\-_]*$",
        description="Instance type, mapped to resources by the operator's catalog.",
    )
    initial_instance_count: int = Field(
        default=1, ge=1, le=1000, description="Instances (pods) to start with."
    )
    initial_variant_weight: float = Field(
        default=1.0,
        ge=0,
        le=1000,
        description=(
            "Relative share of traffic: a variant gets weight / sum of weights of the "
            "requests that do not name a variant."
        ),
    )
    auto_scaling: AutoScaling | None = Field(
        default=None, description="Scale the variant on invocations per instance."
    )
    container_startup_health_check_timeout_in_seconds: int | None = Field(
        default=None,
        ge=60,
        le=3600,
        description="How long the model server may take to answer GET /ping after start.",
    )

    @model_validator(mode="after")
    def _check(self) -> ProductionVariant:
        scaling = self.auto_scaling
        if scaling is not None and not (
            scaling.min_capacity <= self.initial_instance_count <= scaling.max_capacity
        ):
            raise ValueError(
                "initialInstanceCount must lie between autoScaling.minCapacity and maxCapacity"
            )
        return self


class CaptureOption(ApiModel):
    """What to capture."""

    capture_mode: Literal["Input", "Output"] = Field(description="Input or Output.")


class CaptureContentTypeHeader(ApiModel):
    """Which content types are captured as text rather than base64."""

    csv_content_types: list[str] | None = Field(
        default=None, max_length=10, description="CSV content types, e.g. text/csv."
    )
    json_content_types: list[str] | None = Field(
        default=None, max_length=10, description="JSON content types, e.g. application/json."
    )


class DataCaptureConfig(ApiModel):
    """Record requests and responses to storage (SageMaker's DataCaptureConfig)."""

    enable_capture: bool = Field(default=True, description="Whether capture is on.")
    initial_sampling_percentage: int = Field(
        default=100, ge=0, le=100, description="Percent of requests captured."
    )
    destination_s3_uri: str = Field(
        max_length=1024,
        pattern=STORAGE_URI_PATTERN,
        description=(
            "Where capture files go, as SageMaker lays them out: "
            "<uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/*.jsonl."
        ),
    )
    capture_options: list[CaptureOption] = Field(
        default_factory=lambda: [
            CaptureOption(capture_mode="Input"),
            CaptureOption(capture_mode="Output"),
        ],
        min_length=1,
        max_length=2,
        description="Input, Output or both (the default).",
        json_schema_extra={
            "default": [{"captureMode": "Input"}, {"captureMode": "Output"}],
            **list_map("captureMode"),
        },
    )
    capture_content_type_header: CaptureContentTypeHeader | None = Field(
        default=None, description="Content types captured as text."
    )


class CapacitySize(ApiModel):
    """A step of a canary or linear rollout."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.type != 'CapacityPercent' || self.value <= 100",
                    "a CapacityPercent value must be at most 100",
                    ".value",
                )
            ]
        }
    )

    type: Literal["InstanceCount", "CapacityPercent"] = Field(
        description="InstanceCount: value instances. CapacityPercent: value % of the fleet."
    )
    value: int = Field(ge=1, description="Instances or percent.")

    @model_validator(mode="after")
    def _check(self) -> CapacitySize:
        if self.type == "CapacityPercent" and self.value > 100:
            raise ValueError("a CapacityPercent value must be at most 100")
        return self


class TrafficRoutingConfiguration(ApiModel):
    """How traffic moves to the new fleet (SageMaker's TrafficRoutingConfig)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.type != 'Canary' || has(self.canarySize)",
                    "type Canary needs canarySize",
                    ".canarySize",
                ),
                cel(
                    "self.type != 'Linear' || has(self.linearStepSize)",
                    "type Linear needs linearStepSize",
                    ".linearStepSize",
                ),
                cel(
                    "self.type == 'Canary' || !has(self.canarySize)",
                    "canarySize is for type Canary only",
                    ".canarySize",
                ),
                cel(
                    "self.type == 'Linear' || !has(self.linearStepSize)",
                    "linearStepSize is for type Linear only",
                    ".linearStepSize",
                ),
            ]
        }
    )

    type: Literal["AllAtOnce", "Canary", "Linear"] = Field(
        default="AllAtOnce",
        description=(
            "AllAtOnce: all traffic in one step. Canary: canarySize first, the rest after "
            "waitIntervalInSeconds. Linear: linearStepSize every waitIntervalInSeconds."
        ),
    )
    wait_interval_in_seconds: int = Field(
        default=0, ge=0, le=3600, description="Seconds between traffic shifts."
    )
    canary_size: CapacitySize | None = Field(default=None, description="The canary's share.")
    linear_step_size: CapacitySize | None = Field(default=None, description="Each step's share.")

    @model_validator(mode="after")
    def _check(self) -> TrafficRoutingConfiguration:
        if self.type == "Canary" and self.canary_size is None:
            raise ValueError("type Canary needs canarySize")
        if self.type == "Linear" and self.linear_step_size is None:
            raise ValueError("type Linear needs linearStepSize")
        if self.type != "Canary" and self.canary_size is not None:
            raise ValueError("canarySize is for type Canary only")
        if self.type != "Linear" and self.linear_step_size is not None:
            raise ValueError("linearStepSize is for type Linear only")
        return self


class BlueGreenUpdatePolicy(ApiModel):
    """Update by starting a new fleet and shifting traffic to it (SageMaker's)."""

    traffic_routing_configuration: TrafficRoutingConfiguration = Field(
        default_factory=TrafficRoutingConfiguration,
        description="How traffic shifts.",
        json_schema_extra=default_of(TrafficRoutingConfiguration),
    )
    termination_wait_in_seconds: int = Field(
        default=0,
        ge=0,
        le=3600,
        description="Seconds the old fleet is kept after all traffic has moved (for rollback).",
    )
    maximum_execution_timeout_in_seconds: int | None = Field(
        default=None,
        ge=600,
        le=28800,
        description="Longest the whole update may take before it is rolled back.",
    )


ALARM_METRICS = Literal[
    "Invocation4XXErrors",
    "Invocation5XXErrors",
    "InvocationModelErrors",
    "ModelLatency",
    "OverheadLatency",
]


class Alarm(ApiModel):
    """A condition on the new fleet's metrics that rolls the update back.

    SageMaker names CloudWatch alarms here; kubemaker has no CloudWatch, so the alarm is
    written inline, with CloudWatch's fields, and the operator evaluates it on the
    metrics the model server exports for the new fleet.
    """

    alarm_name: str = Field(
        min_length=1, max_length=255, description="Name shown in events and status."
    )
    metric_name: ALARM_METRICS = Field(
        description=(
            "Invocation4XXErrors, Invocation5XXErrors, InvocationModelErrors (per period), "
            "ModelLatency or OverheadLatency (microseconds, mean over the period)."
        )
    )
    comparison_operator: Literal[
        "GreaterThanThreshold",
        "GreaterThanOrEqualToThreshold",
        "LessThanThreshold",
        "LessThanOrEqualToThreshold",
    ] = Field(default="GreaterThanThreshold", description="How the value meets threshold.")
    threshold: float = Field(description="Value that, compared as above, fires the alarm.")
    period_in_seconds: int = Field(
        default=60, ge=10, le=3600, description="Length of one evaluation period."
    )
    evaluation_periods: int = Field(
        default=1, ge=1, le=100, description="Periods in a row that must breach to fire."
    )


class AutoRollbackConfiguration(ApiModel):
    """When to roll an update back, besides a new fleet that never becomes ready."""

    alarms: list[Alarm] = Field(
        min_length=1,
        max_length=10,
        description="Any alarm firing during the update rolls it back.",
        json_schema_extra=list_map("alarmName"),
    )


class RollingUpdatePolicy(ApiModel):
    """Replace a variant's instances batch by batch, in place (SageMaker's RollingUpdatePolicy).

    For clusters without room for a second fleet (GPUs): at most ``maximumBatchSize``
    instances are replaced at a time; old and new instances serve side by side meanwhile.
    A rollback restores the old fleet's instances in one step.
    """

    maximum_batch_size: CapacitySize = Field(description="Instances replaced at a time.")
    wait_interval_in_seconds: int = Field(
        default=0, ge=0, le=3600, description="Seconds between batches, once a batch is ready."
    )
    maximum_execution_timeout_in_seconds: int | None = Field(
        default=None,
        ge=600,
        le=28800,
        description="Longest the whole update may take before it is rolled back.",
    )


class DeploymentConfig(ApiModel):
    """How a change to a variant's model, image, instance type or environment rolls out.

    SageMaker's DeploymentConfig: blue/green (the default, all at once) or rolling.
    A change to weights or instance counts only is applied in place, without either.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!(has(self.blueGreenUpdatePolicy) && has(self.rollingUpdatePolicy))",
                    "set blueGreenUpdatePolicy or rollingUpdatePolicy, not both",
                )
            ]
        }
    )

    blue_green_update_policy: BlueGreenUpdatePolicy | None = Field(
        default=None,
        description="Blue/green: all at once (the default), canary or linear.",
    )
    rolling_update_policy: RollingUpdatePolicy | None = Field(
        default=None, description="Rolling: replace instances batch by batch, in place."
    )
    auto_rollback_configuration: AutoRollbackConfiguration | None = Field(
        default=None, description="Alarms that roll the update back."
    )

    @model_validator(mode="after")
    def _check(self) -> DeploymentConfig:
        if self.blue_green_update_policy is not None and self.rolling_update_policy is not None:
            raise ValueError("set blueGreenUpdatePolicy or rollingUpdatePolicy, not both")
        return self


class EndpointSpec(ApiModel):
    """Desired state of an Endpoint: its endpoint config, autoscaling and update policy.

    Any change is rolled out with ``deploymentConfig``, as SageMaker's UpdateEndpoint.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.shadowProductionVariants) || self.shadowProductionVariants.all("
                    "s, !self.productionVariants.exists(p, p.variantName == s.variantName))",
                    "a shadow variant cannot have the name of a production variant",
                    ".shadowProductionVariants",
                )
            ]
        }
    )

    production_variants: list[ProductionVariant] = Field(
        min_length=1,
        max_length=10,
        description="The variants that serve traffic, split by initialVariantWeight.",
        json_schema_extra=list_map("variantName"),
    )
    shadow_production_variants: list[ProductionVariant] | None = Field(
        default=None,
        max_length=1,
        description=(
            "A variant that gets a copy of the traffic (by its weight) whose responses are "
            "recorded, not returned."
        ),
        json_schema_extra=list_map("variantName"),
    )
    data_capture_config: DataCaptureConfig | None = Field(
        default=None, description="Record requests and responses."
    )
    deployment_config: DeploymentConfig | None = Field(
        default=None,
        description="How updates roll out; unset: all at once once the new fleet is ready.",
    )
    storage: StorageConfig | None = Field(
        default=None, description="Object-store endpoint and credentials for the models."
    )
    pod_overrides: PodOverrides | None = Field(
        default=None, description="Changes to every variant's pods."
    )

    @field_validator("production_variants")
    @classmethod
    def _unique(cls, value: list[ProductionVariant]) -> list[ProductionVariant]:
        check_unique([v.variant_name for v in value], "variantName")
        return value

    @model_validator(mode="after")
    def _check(self) -> EndpointSpec:
        names = {v.variant_name for v in self.production_variants}
        for shadow in self.shadow_production_variants or ():
            if shadow.variant_name in names:
                raise ValueError("a shadow variant cannot have the name of a production variant")
        return self


EndpointStatusString = Literal[
    "OutOfService",
    "Creating",
    "Updating",
    "SystemUpdating",
    "RollingBack",
    "InService",
    "Deleting",
    "Failed",
    "UpdateRollbackFailed",
]

VariantStatusString = Literal["Creating", "Updating", "Deleting", "ActivatingTraffic", "Baking"]


class VariantStatus(StatusModel):
    """A step a variant is in (SageMaker's ProductionVariantStatus)."""

    status: VariantStatusString = Field(
        description="Creating, Updating, Deleting, ActivatingTraffic or Baking."
    )
    status_message: str | None = Field(default=None, max_length=1024, description="Details.")
    start_time: datetime | None = Field(default=None, description="When the step started.")


class DeployedImage(StatusModel):
    """The image a variant runs."""

    specified_image: str | None = Field(default=None, description="Image as given or resolved.")
    resolved_image: str | None = Field(default=None, description="Image digest, when known.")
    resolution_time: datetime | None = Field(default=None, description="When it was resolved.")


class ProductionVariantSummary(StatusModel):
    """A variant's observed state (SageMaker's ProductionVariantSummary)."""

    variant_name: str = Field(description="Variant name.")
    current_weight: float | None = Field(default=None, description="Weight now in effect.")
    desired_weight: float | None = Field(default=None, description="Weight asked for.")
    current_instance_count: int | None = Field(default=None, ge=0, description="Ready instances.")
    desired_instance_count: int | None = Field(
        default=None, ge=0, description="Instances asked for (by the spec or autoscaling)."
    )
    variant_status: list[VariantStatus] | None = Field(
        default=None, description="Steps in progress; empty when the variant is settled."
    )
    deployed_images: list[DeployedImage] | None = Field(
        default=None, description="Images the variant runs."
    )
    model_data_url: str | None = Field(
        default=None, description="The model served (resolved from a job reference)."
    )
    fleet: str | None = Field(
        default=None, description="The fleet (Deployment) serving the variant's current spec."
    )
    last_scaling_decision: str | None = Field(
        default=None, max_length=1024, description="The autoscaler's last decision and why."
    )
    last_scale_out_time: datetime | None = Field(default=None, description="Last scale-out.")
    last_scale_in_time: datetime | None = Field(default=None, description="Last scale-in.")
    last_traffic_time: datetime | None = Field(
        default=None, description="Last time the variant was seen receiving requests."
    )


class DataCaptureConfigSummary(StatusModel):
    """Data capture as it is (SageMaker's DataCaptureConfigSummary)."""

    enable_capture: bool | None = Field(default=None, description="Whether capture is on.")
    capture_status: Literal["Started", "Stopped"] | None = Field(
        default=None, description="Started or Stopped."
    )
    current_sampling_percentage: int | None = Field(
        default=None, ge=0, le=100, description="Percent of requests captured."
    )
    destination_s3_uri: str | None = Field(default=None, description="Where captures go.")


class DeploymentProgress(StatusModel):
    """An update of a variant's fleet, step by step (what ``kubectl get mep -o yaml`` shows)."""

    variant_name: str = Field(description="The variant being updated.")
    policy: Literal["AllAtOnce", "Canary", "Linear", "Rolling"] = Field(
        description="How the update rolls out."
    )
    old_fleet: str | None = Field(default=None, description="Fleet before the update.")
    new_fleet: str = Field(description="Fleet of the new spec.")
    phase: Literal[
        "Provisioning", "ShiftingTraffic", "Baking", "Completed", "RollingBack", "RolledBack"
    ] = Field(description="Where the update is.")
    step: int = Field(default=0, ge=0, description="Traffic steps taken so far.")
    new_fleet_traffic_percent: float = Field(
        default=0, ge=0, le=100, description="Share of the variant's traffic on the new fleet."
    )
    start_time: datetime | None = Field(default=None, description="When the update started.")
    step_time: datetime | None = Field(default=None, description="When the current step began.")
    message: str | None = Field(default=None, max_length=1024, description="What it waits for.")
    rollback_reason: str | None = Field(
        default=None, max_length=1024, description="Why it rolled back (the alarm, or the fleet)."
    )


class EndpointStatus(StatusBase):
    """Observed state of an Endpoint: SageMaker's DescribeEndpoint response."""

    endpoint_status: EndpointStatusString | None = Field(
        default=None,
        description=(
            "Creating, InService, Updating, SystemUpdating, RollingBack, "
            "UpdateRollbackFailed, OutOfService, Deleting or Failed, with SageMaker's meanings."
        ),
    )
    endpoint_url: str | None = Field(
        default=None,
        description=(
            "In-cluster URL of the endpoint's router: POST <endpointUrl>/invocations "
            "(variant by header X-Amzn-SageMaker-Target-Variant)."
        ),
    )
    production_variants: list[ProductionVariantSummary] | None = Field(
        default=None, description="Each production variant's state."
    )
    shadow_production_variants: list[ProductionVariantSummary] | None = Field(
        default=None, description="The shadow variant's state."
    )
    data_capture_config: DataCaptureConfigSummary | None = Field(
        default=None, description="Data capture as it is."
    )
    deployment: DeploymentProgress | None = Field(
        default=None, description="The update in progress (or the last one), step by step."
    )


ENDPOINT = ResourceInfo(
    kind="Endpoint",
    plural="endpoints",
    singular="endpoint",
    # "ep" is core/v1 Endpoints' short name.
    short_names=("mep",),
    spec_model=EndpointSpec,
    status_model=EndpointStatus,
    description=(
        "An Endpoint serves models over HTTP with SageMaker's /invocations contract, with "
        "weighted variants, autoscaling and blue/green updates (SageMaker's CreateEndpoint)."
    ),
    printer_columns=(
        PrinterColumn("Status", ".status.endpointStatus"),
        PrinterColumn("Variant", ".spec.productionVariants[0].variantName"),
        PrinterColumn("Instance", ".spec.productionVariants[0].instanceType"),
        PrinterColumn(
            "Ready", ".status.productionVariants[0].currentInstanceCount", type="integer"
        ),
        PrinterColumn("URL", ".status.endpointUrl", priority=1),
        PrinterColumn("Reason", ".status.failureReason", priority=1),
        PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
    mutable_spec_fields=None,
    object_rules=name_rules(MAX_ENDPOINT_NAME),
    max_name_length=MAX_ENDPOINT_NAME,
)


class Endpoint(ResourceBase):
    """An Endpoint object as a whole."""

    kind: Literal["Endpoint"] = "Endpoint"
    spec: EndpointSpec
    status: EndpointStatus | None = None

    info: ClassVar[ResourceInfo] = ENDPOINT


__all__ = [
    "ENDPOINT",
    "Alarm",
    "AutoRollbackConfiguration",
    "AutoScaling",
    "BlueGreenUpdatePolicy",
    "CapacitySize",
    "DataCaptureConfig",
    "DeploymentConfig",
    "DeploymentProgress",
    "Endpoint",
    "EndpointSpec",
    "EndpointStatus",
    "ProductionVariant",
    "ProductionVariantSummary",
    "RollingUpdatePolicy",
    "TrafficRoutingConfiguration",
]
