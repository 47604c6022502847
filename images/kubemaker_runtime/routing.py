"""The routing table: what the operator (or local mode) tells an Endpoint's router.

The operator writes a :class:`RoutingTable` as JSON into the ConfigMap mounted in the
router's pods (``routes.json``); the router re-reads the file when it changes and
applies it without a restart or a dropped request. Local mode writes the same file.

- A request that names no variant goes to a production variant drawn by ``weight``
  (relative weights; a variant with weight 0 only gets requests that name it with
  ``X-Amzn-SageMaker-Target-Variant``). Within the variant, a fleet is drawn by its
  own ``weight``: during a blue/green update a variant has two fleets, the old one and
  the new one, and the operator moves the fleet weights step by step.
- ``shadow``: a copy of ``shadow.mirror_percentage`` % of production requests goes to the
  shadow variant, off the request's path; its answers are recorded, never returned.
- ``capture``: SageMaker's data capture (sampling, Input/Output, JSON Lines records).
- ``hold_timeout_seconds``: a variant whose fleets have no ready instance (scaled to
  zero) holds requests this long while the operator scales it up, then answers 503.
- ``version`` is a hash of the rest, set by :meth:`RoutingTable.with_version`: the
  router reports the version it applies (``GET /router/config`` and the metric
  ``kubemaker_router_config_info``), and the operator waits until every router replica
  applies a table before it removes a fleet the previous table still sent traffic to.

Version skew follows :mod:`kubemaker_runtime.protocol`: unknown fields are ignored, new
fields have defaults that keep the old behaviour.

Standard library and pydantic only: the operator imports this module.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict, Field

ROUTES_FILE = "routes.json"
TARGET_VARIANT_HEADER = "X-Amzn-SageMaker-Target-Variant"
INVOKED_VARIANT_HEADER = "X-Amzn-Invoked-Production-Variant"
DEFAULT_HOLD_TIMEOUT_SECONDS = 60.0


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Fleet(_Model):
    """One Deployment of a variant's model servers, reached through its Service."""

    name: str = Field(min_length=1, description="Fleet id (label value in metrics).")
    url: str = Field(min_length=1, description="Base URL, e.g. http://ep-a-1f2e3d:8080.")
    weight: float = Field(default=1.0, ge=0, description="Share within the variant.")
    instances: int = Field(default=1, ge=0, description="Ready instances (0: scaled to zero).")


class Variant(_Model):
    name: str = Field(min_length=1)
    weight: float = Field(default=1.0, ge=0, description="Share of requests naming no variant.")
    fleets: list[Fleet] = Field(min_length=1)


class Shadow(_Model):
    variant: Variant
    mirror_percentage: float = Field(
        default=100.0, ge=0, le=100, description="Percent of production requests copied."
    )


class Capture(_Model):
    """SageMaker's DataCaptureConfig as the router applies it."""

    destination: str = Field(min_length=1, description="s3://, file:// or pvc:// prefix.")
    sampling_percentage: float = Field(default=100.0, ge=0, le=100)
    capture_input: bool = True
    capture_output: bool = True
    csv_content_types: list[str] = Field(default_factory=lambda: ["text/csv"])
    json_content_types: list[str] = Field(default_factory=lambda: ["application/json"])


class RoutingTable(_Model):
    endpoint: str = Field(min_length=1)
    variants: list[Variant] = Field(min_length=1)
    shadow: Shadow | None = None
    capture: Capture | None = None
    hold_timeout_seconds: float = Field(default=DEFAULT_HOLD_TIMEOUT_SECONDS, gt=0)
    version: str = ""

    def content_hash(self) -> str:
        body = self.model_dump(mode="json", exclude={"version"})
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

    def with_version(self) -> RoutingTable:
        return self.model_copy(update={"version": self.content_hash()})

    def to_json(self) -> str:
        return self.with_version().model_dump_json(indent=2)

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)


__all__ = [
    "DEFAULT_HOLD_TIMEOUT_SECONDS",
    "INVOKED_VARIANT_HEADER",
    "ROUTES_FILE",
    "TARGET_VARIANT_HEADER",
    "Capture",
    "Fleet",
    "RoutingTable",
    "Shadow",
    "Variant",
]
