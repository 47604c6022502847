"""The object store every pod of the operator reads and writes: settings and credentials.

A kind's spec may name its own ``storage`` (endpoint, region, credentials Secret); what
it leaves out comes from the operator's configuration (the chart's ``config.storage``).
Containers get them as any AWS SDK reads them, so unmodified SageMaker images work.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from kubemaker.api.common import StorageConfig as StorageSpec
from kubemaker.config import OperatorConfig
from kubemaker_runtime.protocol import StorageConfig

JSON = dict[str, Any]

AWS_CREDENTIAL_KEYS = (
    ("AWS_ACCESS_KEY_ID", False),
    ("AWS_SECRET_ACCESS_KEY", False),
    ("AWS_SESSION_TOKEN", True),  # optional: only temporary credentials have one
)
# boto3 reads the first, older AWS SDKs and tools the second.
AWS_REGION_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION")


def storage_settings(own: StorageSpec | None, config: OperatorConfig) -> StorageConfig:
    endpoint = (own.s3_endpoint_url if own else None) or config.storage.s3_endpoint_url or None
    region = (own.region if own else None) or config.storage.region or None
    return StorageConfig(s3_endpoint_url=endpoint, region=region)


def credentials_secret(own: StorageSpec | None, config: OperatorConfig) -> str | None:
    if own is not None and own.credentials_secret_ref is not None:
        return own.credentials_secret_ref.name
    return config.storage.credentials_secret or None


def build_credentials_env(secret: str | None) -> list[JSON]:
    """AWS credentials from the Secret as environment variables (boto3's standard chain)."""
    if not secret:
        return []
    env = []
    for key, optional in AWS_CREDENTIAL_KEYS:
        ref: JSON = {"name": secret, "key": key}
        if optional:
            ref["optional"] = True
        env.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
    return env


def build_storage_env(own: StorageSpec | None, config: OperatorConfig) -> list[JSON]:
    """The storage as any AWS SDK reads it (every container of the pod gets it)."""
    settings = storage_settings(own, config)
    env = build_credentials_env(credentials_secret(own, config))
    if settings.s3_endpoint_url:
        env.append({"name": "AWS_ENDPOINT_URL_S3", "value": settings.s3_endpoint_url})
    if settings.region:
        env += [{"name": name, "value": settings.region} for name in AWS_REGION_VARIABLES]
    return env


def pvc_claim(uri: str | None) -> str | None:
    """The PersistentVolumeClaim a ``pvc://claim/path`` URI names."""
    parsed = urlparse(uri or "")
    return parsed.netloc if parsed.scheme == "pvc" and parsed.netloc else None
