"""Why a job failed, worded once for the cluster and for local mode.

Every failure is one of SageMaker's kinds, and its ``failureReason`` starts with that
kind (``ClientError: channel 'train' ...``) wherever the job ran:

    ClientError      the user's spec or data (a missing channel, a bad hyperparameter,
                     an image that cannot be pulled, a Job the cluster refused); never
                     retried: the same job fails the same way
    AlgorithmError   the algorithm's own failure on valid input; never retried
    PlatformError    the platform under the job (eviction, node loss, an object store
                     outage); retried within the job's retryStrategy
    ValidationError  the spec does not parse (the reason names the field)

A reason that already starts with a kind keeps it: SageMaker's algorithms (and ours)
write ``ClientError: ...`` to /opt/ml/output/failure for the user's errors.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from kubemaker_runtime.protocol import FAILURE_REASON_LIMIT

AgentErrorKind = Literal["user", "platform"]


class FailureKind(StrEnum):
    CLIENT = "ClientError"
    ALGORITHM = "AlgorithmError"
    PLATFORM = "PlatformError"
    VALIDATION = "ValidationError"
    # SageMaker's own, recognised when an image writes them to its failure file.
    INTERNAL = "InternalServerError"
    CAPACITY = "CapacityError"


def clip(text: str, limit: int = FAILURE_REASON_LIMIT) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def prefix_of(reason: object) -> FailureKind | None:
    """The kind a failure reason starts with (``ClientError: ...``), if any."""
    text = str(reason or "").lstrip()
    return next((kind for kind in FailureKind if text.startswith(kind.value + ":")), None)


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    message: str  # what happened, without the kind
    reason: str  # failureReason: the kind, then the message, within SageMaker's limit

    @property
    def retryable(self) -> bool:
        return self.kind is FailureKind.PLATFORM


def failure(kind: FailureKind, message: str) -> Failure:
    """A failure of ``kind``, unless ``message`` already names its own kind."""
    own = prefix_of(message)
    if own is not None:
        bare = message.lstrip()[len(own.value) + 1 :].strip()
        return Failure(own, bare, clip(message))
    return Failure(kind, message.strip(), clip(f"{kind.value}: {message}"))


def agent_failure(kind: AgentErrorKind | None, message: str) -> Failure:
    """The data-plane agent's own error: the user's (missing data) or the platform's."""
    if kind == "user":
        return failure(FailureKind.CLIENT, message)
    return failure(FailureKind.PLATFORM, f"the data-plane agent failed: {message}")


def exit_description(code: int) -> str:
    """How a process ended, in words (negative codes are signals, as subprocess has them)."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def algorithm_failure(
    *,
    failure_file: str | None,
    output: str | None,
    exit_code: int | None,
    out_of_memory: bool = False,
) -> Failure:
    """The algorithm's failure: its failure file first, else the end of its output, else
    how it ended. ``output`` is the kubelet's termination message on a cluster (the log's
    tail, FallbackToLogsOnError) and the log's tail in local mode."""
    for text in (failure_file, output):
        if text and text.strip():
            return failure(FailureKind.ALGORITHM, text)
    if out_of_memory:
        return failure(FailureKind.ALGORITHM, "the algorithm ran out of memory (OOMKilled)")
    if exit_code is None:
        return failure(FailureKind.ALGORITHM, "the algorithm failed")
    return failure(FailureKind.ALGORITHM, f"the algorithm {exit_description(exit_code)}")
