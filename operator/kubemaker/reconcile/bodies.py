"""Helpers on the object bodies a controller caches from its watches (any kind)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, TypeVar

from kubemaker.api.common import API_VERSION, ResourceBase

R = TypeVar("R", bound=ResourceBase)


def parse_object(model: type[R], body: Mapping[str, Any]) -> R:
    """The cached object as its API model, checked with its name (a ValidationError
    names the field, from ``spec``)."""
    meta = body.get("metadata") or {}
    return model.model_validate(
        {
            "apiVersion": API_VERSION,
            "metadata": {"name": meta.get("name", ""), "namespace": meta.get("namespace")},
            "spec": body.get("spec") or {},
        }
    )


def slim(body: Any) -> dict[str, Any]:
    """An object as cached: without managedFields, often its largest part."""
    raw = dict(body)
    meta = raw.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        raw["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return raw


def resource_version(body: Mapping[str, Any]) -> int | None:
    value = (body.get("metadata") or {}).get("resourceVersion")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def status_patch(
    old: Mapping[str, Any], new: Mapping[str, Any], known: Collection[str]
) -> dict[str, Any]:
    """The merge patch from status ``old`` to ``new`` (empty when nothing changed).

    A field this operator knows (``known``) and no longer sets is removed; a field it
    does not know (a newer operator's) is left as it is.
    """
    current = {k: v for k, v in old.items() if v is not None}
    diff: dict[str, Any] = {k: v for k, v in new.items() if current.get(k) != v}
    diff.update({k: None for k in current if k not in new and k in known})
    return diff
