"""The errors a model or the server raises, and the one table mapping them to HTTP codes.

A model signals bad input by raising one of these with a message meant for the caller;
the server answers with the status in :data:`STATUS_BY_ERROR` and the message as body.
Any other exception is a bug (or a broken model): the caller gets a 500 with a short
message, and the traceback goes to the log only.
"""

from __future__ import annotations


class ServingError(Exception):
    """Base of the errors whose message is safe to show to the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ServingError):
    """The payload cannot be parsed or does not fit the model (wrong feature count...)."""


class PayloadTooLarge(ServingError):
    """The request body is over the server's maximum payload."""


class UnsupportedMediaType(ServingError):
    """The request's Content-Type is not one the model decodes."""


class NotAcceptable(ServingError):
    """None of the types in the request's Accept header is one the model encodes."""


class ModelNotReady(ServingError):
    """The model is still loading (or failed to load)."""


class ModelNotFound(ServingError):
    """An Open Inference Protocol route named a model this server does not hold."""


class RouteNotFound(ServingError):
    """No such route."""


class MethodNotAllowed(ServingError):
    """The route exists, not with this method."""


# Most specific first: the first class an exception is an instance of decides.
STATUS_BY_ERROR: tuple[tuple[type[ServingError], int], ...] = (
    (InvalidInput, 400),
    (RouteNotFound, 404),
    (ModelNotFound, 404),
    (MethodNotAllowed, 405),
    (NotAcceptable, 406),
    (PayloadTooLarge, 413),
    (UnsupportedMediaType, 415),
    (ModelNotReady, 503),
)
INTERNAL_ERROR_STATUS = 500


def status_for(error: BaseException) -> int:
    """The HTTP status for an exception raised while handling a request."""
    for error_type, status in STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return status
    return INTERNAL_ERROR_STATUS
