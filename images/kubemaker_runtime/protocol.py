"""The wire format between the operator and the data-plane agent.

The operator builds an :class:`AgentConfig` for every pod it launches and passes it as
JSON in the ``KUBEMAKER_AGENT_CONFIG`` environment variable of the agent container.
When the agent ends it writes an :class:`AgentReport` as JSON to its termination
message (``/dev/termination-log``), where the operator reads it from the pod status.

Local mode builds the same config and reads the same report, so both paths are one.

Version skew
------------
The agent image is pinned apart from the operator, so after an upgrade either side may
be older than the other. Reading JSON (``model_validate_json``, and
:meth:`AgentReport.from_message`) is therefore tolerant, in both directions:

- **Unknown fields are ignored** and the known ones kept, at every level. The agent
  logs the ones it ignores in an AgentConfig at WARNING (a newer operator asked for
  something this agent does not do); the operator logs the ones in a report at DEBUG
  (it reads every report again at each reconcile).
- **Missing fields take their defaults**, so a newer reader reads an older writer.
- **AgentReport is versioned**: ``version`` is :data:`REPORT_VERSION` in every report
  written; a report without one is version 1 (version-1 agents left the default out).
  A version newer than the reader's is not an error: the reader keeps what it knows.
  Version 2 dropped ``simulated`` (a test-only flag); version-1 reports that carry it
  are read as any other.
- **AgentConfig carries no version**: the agent does what the fields say, and new
  fields default to the old behaviour.
- A report that cannot be read at all (not JSON, not an object, a known field of the
  wrong type, no ``outcome``) raises :class:`ReportError`, a ``ValueError`` whose
  message is one line naming what is wrong. Text longer than its limit is clipped on
  reading, not refused.

What keeps this safe is the writers' side, for every change to these models:

- A field keeps its name, type and set of values forever. A version adds optional
  fields or stops writing one; a change an older reader would misread (a new
  ``outcome``, a unit change) takes a new field name. Bump :data:`REPORT_VERSION`
  whenever the report's shape changes.
- A config setting that must not be ignored (one without which data would leak or be
  lost) is not added as a plain field: the operator must then refuse to launch an
  agent image too old for it.
- Agents before version 2 of the report refuse any config field they do not know.
  The operator writes the config without ``None`` values, so a new config field
  defaults to ``None`` (and stays unset) for as long as such agents may run.

Building these objects in Python (keyword arguments, ``model_validate`` of a dict)
stays strict: a misspelt field name fails loudly in the operator's and agent's tests.

This module imports nothing but pydantic and the standard library: the operator
imports it, and must not pull in boto3 or an algorithm's packages.
"""

from __future__ import annotations

import json
import logging
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

logger = logging.getLogger(__name__)

AGENT_CONFIG_ENV = "KUBEMAKER_AGENT_CONFIG"
# Kubernetes truncates a termination message at 4096 bytes; the report must fit.
TERMINATION_MESSAGE_LIMIT = 4096
# SageMaker caps FailureReason at 1024 characters.
FAILURE_REASON_LIMIT = 1024
# The AgentReport's shape this module writes; see "Version skew" above.
REPORT_VERSION = 2
# What a report without a version number is: version-1 agents wrote none.
UNVERSIONED_REPORT = 1
# Room for a ReportError's detail, so that it fits an event or a status message.
_ERROR_DETAIL_LIMIT = 300


class ReportError(ValueError):
    """An AgentReport that cannot be read at all; the message is one line."""


class _Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )
    # How loudly a reader says which fields it ignored.
    _unknown_fields_log_level: ClassVar[int] = logging.WARNING

    @model_validator(mode="before")
    @classmethod
    def _ignore_unknown_fields(cls, data: Any, info: ValidationInfo) -> Any:
        """Drop the fields a newer writer added, when reading JSON (see the docstring)."""
        if info.mode != "json" or not isinstance(data, dict):
            return data
        known = set(cls.model_fields)
        known.update(f.alias for f in cls.model_fields.values() if f.alias)
        unknown = sorted(str(key) for key in data if key not in known)
        if not unknown:
            return data
        logger.log(
            cls._unknown_fields_log_level,
            "%s: ignoring fields this version does not know: %s",
            cls.__name__,
            ", ".join(unknown),
        )
        return {key: value for key, value in data.items() if key in known}


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

    # The operator reads each report again at every reconcile: no warning each time.
    _unknown_fields_log_level: ClassVar[int] = logging.DEBUG

    version: int = Field(default=REPORT_VERSION, ge=1)
    # The job-level outcome the agent saw: "Completed" when the model was uploaded
    # (or there was nothing to upload), "Failed" when the agent itself failed.
    outcome: Literal["Completed", "Failed"]
    model_artifacts: str | None = None
    output_data: str | None = None
    # Text of /opt/ml/output/failure, written by the algorithm: becomes failureReason.
    # Longer text is clipped to the limit, also when reading a newer agent's report.
    failure_reason: str | None = None
    # The agent's own error (a channel that does not exist, a failed upload). ``user``
    # errors are the spec's fault and are never retried; ``platform`` errors may be.
    agent_error: str | None = None
    agent_error_kind: Literal["user", "platform"] | None = None
    bytes_downloaded: int = 0
    bytes_uploaded: int = 0
    # Final metrics an algorithm wrote to /opt/ml/output/metrics.json ({"name": value});
    # the operator merges them with what the job's metricDefinitions find in its logs.
    final_metrics: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _unversioned_is_version_1(cls, data: Any, info: ValidationInfo) -> Any:
        if info.mode == "json" and isinstance(data, dict) and "version" not in data:
            return {**data, "version": UNVERSIONED_REPORT}
        return data

    @field_validator("failure_reason", "agent_error")
    @classmethod
    def _clip_to_limit(cls, text: str | None) -> str | None:
        return _clip(text, FAILURE_REASON_LIMIT)

    def to_message(self) -> str:
        """Serialise within the termination-message limit, shortening text if needed.

        Kubernetes cuts a longer message, which would leave no JSON to read: text is
        shortened first, then the metrics go (the logs still carry them).
        """
        text = self._dump()
        for text_bytes, metrics in ((700, True), (700, False), (128, False)):
            if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT:
                break
            update: dict[str, Any] = {
                "failure_reason": _clip_json(self.failure_reason, text_bytes),
                "agent_error": _clip_json(self.agent_error, text_bytes),
            }
            if not metrics:
                update["final_metrics"] = {}
            text = self.model_copy(update=update)._dump()
        return text

    def _dump(self) -> str:
        # The version is always written, even where it is the default.
        fields = self.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        fields = {"version": self.version, **fields}
        return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_message(cls, message: str | bytes) -> AgentReport:
        """The report in a termination message, written by an agent of any version.

        Raises :class:`ReportError` (one line) when the message is no report at all.
        """
        try:
            return cls.model_validate_json(message)
        except ValidationError as exc:
            raise ReportError(f"unreadable agent report: {_one_line(exc)}") from None


TRANSFORM_CONFIG_ENV = "KUBEMAKER_TRANSFORM_CONFIG"
# The transformer's exit code when the data or the model refused the work (a "user"
# error): the operator fails the whole job at once instead of retrying the instance.
TRANSFORM_USER_ERROR_EXIT = 3


class TransformConfig(_Wire):
    """Everything the transformer of one BatchTransform instance needs (a BatchTransform
    spec with its model resolved and its storage settings)."""

    job_name: str
    input_uri: str
    output_uri: str
    content_type: str | None = None
    accept: str | None = None
    compression: Literal["None", "Gzip"] = "None"
    split_type: Literal["None", "Line", "RecordIO", "TFRecord"] = "None"
    assemble_with: Literal["None", "Line"] = "None"
    # Unset: what the model server's /execution-parameters says, else SageMaker's defaults.
    batch_strategy: Literal["MultiRecord", "SingleRecord"] | None = None
    max_payload_in_mb: int | None = Field(default=None, ge=0, le=100, alias="maxPayloadInMB")
    max_concurrent_transforms: int | None = Field(default=None, ge=0, le=1000)
    input_filter: str = "$"
    output_filter: str = "$"
    join_source: Literal["None", "Input"] = "None"
    invocations_timeout_in_seconds: int = Field(default=600, ge=1)
    invocations_max_retries: int = Field(default=3, ge=0)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    # The instances share the input objects: this one transforms shard(index, count).
    instance_count: int = Field(default=1, ge=1)
    server_url: str = "http://127.0.0.1:8080"


class TransformReport(_Wire):
    """What one transformer did, written to its termination message."""

    _unknown_fields_log_level: ClassVar[int] = logging.DEBUG

    version: int = Field(default=1, ge=1)
    outcome: Literal["Completed", "Failed", "Stopped"]
    objects_total: int = 0  # this instance's share
    objects_found: int = 0  # every instance's: all the objects under the input prefix
    objects_done: int = 0  # written now or found complete
    objects_skipped: int = 0  # of those, complete from an earlier attempt
    records: int = 0
    failure_reason: str | None = None
    # "user": the data or the model refused it (never retried); "platform": may be.
    error_kind: Literal["user", "platform"] | None = None

    @field_validator("failure_reason")
    @classmethod
    def _clip_to_limit(cls, text: str | None) -> str | None:
        return _clip(text, FAILURE_REASON_LIMIT)

    def to_message(self) -> str:
        return json.dumps(
            self.model_dump(mode="json", by_alias=True, exclude_none=True),
            ensure_ascii=False,
            separators=(",", ":"),
        )


def _one_line(exc: ValidationError) -> str:
    """The first error of a ValidationError as ``field: problem (got value)``."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"])
    if first["type"] == "json_invalid":
        detail = f"not JSON ({first['msg'].removeprefix('Invalid JSON: ')})"
    elif first["type"] == "model_type":
        detail = f"not a JSON object (got {_short(first['input'])})"
    elif first["type"] == "missing":
        detail = f"{where}: missing"
    else:
        detail = f"{where}: {first['msg']} (got {_short(first['input'])})"
    if len(errors) > 1:
        detail += f"; and {len(errors) - 1} more"
    detail = " ".join(detail.split())
    return _clip(detail, _ERROR_DETAIL_LIMIT) or ""


def _short(value: Any) -> str:
    return _clip(json.dumps(value, ensure_ascii=False, default=repr), 60) or ""


def _clip_json(text: str | None, max_bytes: int) -> str | None:
    """At most 512 characters, and at most max_bytes once JSON-escaped and encoded."""
    text = _clip(text, 512)
    while text is not None and len(text) > 3:
        over = len(json.dumps(text, ensure_ascii=False).encode()) - max_bytes
        if over <= 0:
            break
        # A character takes at most 6 bytes in JSON (an escaped control character).
        text = _clip(text, max(3, len(text) - -(-over // 6)))
    return text


def _clip(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 3] + "..."
