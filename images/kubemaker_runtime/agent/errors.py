"""The agent's own failures, kept apart by whose fault they are.

``user``: the spec names data that is not there (a missing bucket, an empty prefix,
denied access); never retried. ``platform``: the store or the network failed; the
operator may retry. An algorithm's failure is neither: it arrives through the failure
file and the algorithm container's exit code, not as an AgentError.
"""

from __future__ import annotations

from typing import Literal

from kubemaker_runtime.storage import StorageError

ErrorKind = Literal["user", "platform"]


class AgentError(Exception):
    def __init__(self, message: str, kind: ErrorKind) -> None:
        super().__init__(message)
        self.message = message
        self.kind: ErrorKind = kind


class UserError(AgentError):
    def __init__(self, message: str) -> None:
        super().__init__(message, "user")


class PlatformError(AgentError):
    def __init__(self, message: str) -> None:
        super().__init__(message, "platform")


class Cancelled(PlatformError):
    """The agent was told to stop (SIGTERM) before the step finished."""


def from_storage(exc: StorageError, context: str) -> AgentError:
    """An AgentError carrying the storage error's kind, its message prefixed by context."""
    return AgentError(f"{context}: {exc.message}", exc.kind)
