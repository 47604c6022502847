"""The errors the router answers with, and the one table mapping them to HTTP codes.

Every message is meant for the caller. An exception that is none of these is a bug: the
caller gets a 500 with a short message and the traceback goes to the log only.
"""

from __future__ import annotations


class RouterError(Exception):
    """Base of the errors whose message is safe to show to the caller.

    ``variant`` and ``fleet`` name where the request was going when the router knew it:
    the error then counts in that variant's metrics and carries the invoked-variant
    header, as an upstream's own error would.
    """

    def __init__(self, message: str, variant: str | None = None, fleet: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.variant = variant
        self.fleet = fleet


class RouteNotFound(RouterError):
    pass


class MethodNotAllowed(RouterError):
    pass


class UnknownVariant(RouterError):
    """The target-variant header names no production variant (SageMaker: ValidationError)."""


class PayloadTooLarge(RouterError):
    pass


class TableNotLoaded(RouterError):
    """No valid routing table yet."""


class NoTrafficWeight(RouterError):
    """Every production variant has weight 0 and the request names none."""


class HoldTimeout(RouterError):
    """No instance of the variant answered a connection within the hold timeout."""


class VariantRemoved(RouterError):
    """The variant a held request waits for left the routing table meanwhile."""


class NotSent(RouterError):
    """The upstream refused the connection (or DNS failed): the request never left, so
    it is safe to send again. Held and retried; it reaches a caller only as a bug."""


class UpstreamFailed(RouterError):
    """The upstream broke the connection after the request was sent."""


class UpstreamTimeout(RouterError):
    """The upstream did not answer within the invocation timeout."""


STATUS_BY_ERROR: tuple[tuple[type[RouterError], int], ...] = (
    (UnknownVariant, 400),
    (RouteNotFound, 404),
    (MethodNotAllowed, 405),
    (PayloadTooLarge, 413),
    (UpstreamFailed, 502),
    (TableNotLoaded, 503),
    (NoTrafficWeight, 503),
    (HoldTimeout, 503),
    (VariantRemoved, 503),
    (NotSent, 503),
    (UpstreamTimeout, 504),
)
INTERNAL_ERROR_STATUS = 500


def status_for(error: BaseException) -> int:
    for error_type, status in STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return status
    return INTERNAL_ERROR_STATUS
