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
    """A one-line message naming each invalid field of a pydantic ValidationError.

    ``prefix`` is the path of the model that was validated (``spec`` for a spec model);
    empty when it was a whole object, whose error locations already start at its root.
    """
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc)
    parts = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "__root__")
        path = ".".join(p for p in (prefix, location) if p) or "object"
        parts.append(f"{path}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)
