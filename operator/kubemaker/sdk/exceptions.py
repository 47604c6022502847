"""The SDK's exceptions, named as SageMaker's (``sagemaker.exceptions``) and boto3's."""

from __future__ import annotations

from collections.abc import Sequence


class UnexpectedStatusException(ValueError):
    """A job or endpoint ended in a status other than the one waited for; the message
    carries its ``failureReason``."""

    def __init__(self, message: str, allowed_statuses: Sequence[str], actual_status: str) -> None:
        super().__init__(message)
        self.allowed_statuses = list(allowed_statuses)
        self.actual_status = actual_status


class ModelError(RuntimeError):
    """The model's server refused or failed a request (``InvokeEndpoint``'s ModelError):
    ``status_code`` is its HTTP status, the message its answer."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code
