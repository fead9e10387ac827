"""Request errors and the one table that turns them into gRPC status codes.

Store, conversion and service code raise these (or core's ValueError subclasses); the servicers
never pick a status code themselves. Messages name the value and the rule they broke.
"""
import math

import grpc

from hashmatch.v1 import RETRY_AFTER_KEY


class RequestError(Exception):
    """Base class: a request the server refuses, with a message safe to send to the caller."""


class InvalidRequest(RequestError, ValueError):
    """Malformed or out-of-range input."""


class NotFound(RequestError, LookupError):
    """The named case does not exist."""


class PermissionDenied(RequestError):
    """Wrong PIN, or a case locked after too many wrong PINs."""


class Unauthenticated(RequestError):
    """Missing or unknown platform API key."""


class LimitExceeded(RequestError):
    """A rate, stream or in-flight limit; the message names the limit."""


class RateLimited(LimitExceeded):
    """A token bucket or queue that is spent for now; `retry_after_s` says when to try again."""

    def __init__(self, message: str, retry_after_s: float):
        self.retry_after_s = max(1, math.ceil(retry_after_s))
        super().__init__(f"{message}; retry in {self.retry_after_s} s")


class NotReady(RequestError):
    """The list is still loading from the store."""


class ShuttingDown(NotReady):
    """The server is stopping: calls still open get this instead of work on its closed pools."""


class StoreUnavailable(RequestError):
    """The list database cannot be reached (PostgreSQL down or restarting); nothing was
    written, and the same call may succeed once it is back."""


class ResyncRequired(RequestError):
    """A resume token the server cannot continue from (another epoch of the list, below the
    retention floor, or a gap in the log): the copy must take a snapshot again."""


class ReadOnlyMirror(RequestError):
    """A case call on a server that follows another (`serve --follow`): send it to the primary."""


class SlowReader(LimitExceeded):
    """A Sync reader that stopped reading for longer than sync_stall_s."""


# Most specific first: the first class that matches decides the code.
STATUS_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (ResyncRequired, grpc.StatusCode.FAILED_PRECONDITION),
    (ReadOnlyMirror, grpc.StatusCode.FAILED_PRECONDITION),
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (LimitExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (NotReady, grpc.StatusCode.UNAVAILABLE),
    (StoreUnavailable, grpc.StatusCode.UNAVAILABLE),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
)


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """(code, message) for a known error class; None for anything else (a bug: INTERNAL)."""
    for cls, code in STATUS_CODES:
        if isinstance(exc, cls):
            return code, str(exc)
    return None


async def abort(context, exc: BaseException, count=None):
    """Ends the call with `exc`'s status (INTERNAL for a bug, logged by the caller).

    A `RateLimited` error also sends trailing metadata "retry-after-s: N" (whole seconds), so a
    client can wait without parsing the message. `count(code)` is told every status sent.
    """
    code, message = status_for(exc) or (grpc.StatusCode.INTERNAL, "internal error")
    if count is not None:
        count(code)
    retry = getattr(exc, "retry_after_s", None)
    await context.abort(code, message,
                        trailing_metadata=((RETRY_AFTER_KEY, str(retry)),) if retry else ())
