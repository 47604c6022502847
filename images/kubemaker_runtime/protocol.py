"""The wire format between the operator and the data-plane agent.

The operator builds an :class:`AgentConfig` for every pod it launches and passes it as
JSON in the ``KUBEMAKER_AGENT_CONFIG`` environment variable of the agent container.
When the agent ends it writes an :class:`AgentReport` as JSON to its termination
message (``/dev/termination-log``), where the operator reads it from the pod status.

Local mode builds the same config and reads the same report, so both paths are one.

This module imports nothing but pydantic and the standard library: the operator
imports it, and must not pull in boto3 or an algorithm's packages.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

AGENT_CONFIG_ENV = "KUBEMAKER_AGENT_CONFIG"
# Kubernetes truncates a termination message at 4096 bytes; the report must fit.
TERMINATION_MESSAGE_LIMIT = 4096
# SageMaker caps FailureReason at 1024 characters.
FAILURE_REASON_LIMIT = 1024


class _Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class ChannelConfig(_Wire):
    """One input channel, as the agent stages it under /opt/ml/input/data/<name>."""

    name: str
    uri: str = Field(description="s3://bucket/prefix, pvc://claim/path or file:///path")
    distribution: Literal["FullyReplicated", "ShardedByS3Key"] = "FullyReplicated"
    content_type: str | None = None
    compression: Literal["None", "Gzip"] = "None"
    # FastFile is staged like File: the algorithm sees the same files at the same path.
    input_mode: Literal["File", "Pipe", "FastFile"] = "File"
    # RecordIO: in Pipe mode each object is sent as one RecordIO record (SageMaker's rule).
    record_wrapper_type: Literal["None", "RecordIO"] = "None"


class CheckpointConfig(_Wire):
    uri: str
    local_path: str = "/opt/ml/checkpoints"
    sync_interval_seconds: int = 60


class StorageConfig(_Wire):
    """Object-store settings; credentials come from boto3's standard chain (env, IRSA)."""

    s3_endpoint_url: str | None = None
    region: str | None = None
    # Root under which the operator mounts PersistentVolumeClaims named in pvc:// URIs:
    # pvc://claim/path is read at <pvc_root>/claim/path.
    pvc_root: str = "/kubemaker/pvc"


class AgentConfig(_Wire):
    """Everything the agent needs to prepare, feed and finish one training host."""

    job_name: str
    hosts: list[str] = Field(min_length=1)
    # The agent finds its own host as hosts[int(os.environ["JOB_COMPLETION_INDEX"])]
    # (set by the Indexed Job); local mode sets that variable itself.
    network_interface_name: str = "eth0"
    # Goes to resourceconfig.json's current_instance_type (SageMaker's toolkit: "local").
    instance_type: str | None = None
    hyper_parameters: dict[str, str] = Field(default_factory=dict)
    channels: list[ChannelConfig] = Field(default_factory=list)
    output_path: str = Field(
        description="Where model.tar.gz and output.tar.gz go, e.g. s3://bucket/prefix/<job>/output"
    )
    checkpoint: CheckpointConfig | None = None
    storage: StorageConfig = Field(default_factory=StorageConfig)


class AgentReport(_Wire):
    """What the agent did, written to its termination message (<= 4096 bytes as JSON)."""

    version: Literal[1] = 1
    # The job-level outcome the agent saw: "Completed" when the model was uploaded
    # (or there was nothing to upload), "Failed" when the agent itself failed.
    outcome: Literal["Completed", "Failed"]
    model_artifacts: str | None = None
    output_data: str | None = None
    # Text of /opt/ml/output/failure, written by the algorithm: becomes failureReason.
    failure_reason: str | None = Field(default=None, max_length=FAILURE_REASON_LIMIT)
    # The agent's own error (a channel that does not exist, a failed upload). ``user``
    # errors are the spec's fault and are never retried; ``platform`` errors may be.
    agent_error: str | None = Field(default=None, max_length=FAILURE_REASON_LIMIT)
    agent_error_kind: Literal["user", "platform"] | None = None
    bytes_downloaded: int = 0
    bytes_uploaded: int = 0
    # Final metrics an algorithm wrote to /opt/ml/output/metrics.json ({"name": value});
    # the operator merges them with what the job's metricDefinitions find in its logs.
    final_metrics: dict[str, float] = Field(default_factory=dict)
    simulated: bool = False

    def to_message(self) -> str:
        """Serialise within the termination-message limit, shortening text if needed."""
        text = self.model_dump_json(by_alias=True, exclude_defaults=True)
        if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT:
            return text
        shorter = self.model_copy(
            update={
                "failure_reason": _clip(self.failure_reason, 512),
                "agent_error": _clip(self.agent_error, 512),
            }
        )
        text = shorter.model_dump_json(by_alias=True, exclude_defaults=True)
        if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT:
            return text
        # Still too long only with hundreds of metrics: the logs still carry them.
        return shorter.model_copy(update={"final_metrics": {}}).model_dump_json(
            by_alias=True, exclude_defaults=True
        )

    @classmethod
    def from_message(cls, message: str) -> AgentReport:
        return cls.model_validate_json(message)


def _clip(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 3] + "..."
