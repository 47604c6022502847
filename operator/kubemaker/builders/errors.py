"""Errors raised while building manifests from a spec."""

from __future__ import annotations


class SpecError(ValueError):
    """The spec asks for something this cluster cannot provide: a user error.

    ``field`` is the spec path at fault (``spec.resourceConfig.instanceType``); the
    job fails permanently with this message, and is never retried.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def validation_message(exc: Exception, prefix: str = "spec") -> str:
    """A one-line message naming each invalid field of a pydantic ValidationError."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc)
    parts = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "__root__")
        path = f"{prefix}.{location}" if location else prefix
        parts.append(f"{path}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)
