"""The SDK's calls as kubemaker objects: plain dicts, judged by the API's models."""

from __future__ import annotations

from typing import Any

from kubemaker.api import API_VERSION

JSON = dict[str, Any]


def resource(kind: str, name: str, spec: JSON, metadata: JSON | None = None) -> JSON:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name, **(metadata or {})},
        "spec": spec,
    }


def endpoint_spec(
    model: JSON, instance_type: str, instance_count: int, startup_timeout: int | None = None
) -> JSON:
    """One production variant, ``AllTraffic`` as SageMaker's ``deploy`` names it."""
    variant: JSON = {
        "variantName": "AllTraffic",
        "model": model,
        "instanceType": instance_type,
        "initialInstanceCount": instance_count,
    }
    if startup_timeout is not None:
        variant["containerStartupHealthCheckTimeoutInSeconds"] = int(startup_timeout)
    return {"productionVariants": [variant]}
