"""Helpers on the object bodies a controller caches from its watches (any kind)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any


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
