"""The one place where edged's domain errors become gRPC status codes (and, derived from them, HTTP statuses)."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from edged import errors

logger = logging.getLogger(__name__)

_CODES: tuple[tuple[type[errors.EdgedError], grpc.StatusCode], ...] = (
    (errors.InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ModelNotFound, grpc.StatusCode.NOT_FOUND),
    (errors.LimitReached, grpc.StatusCode.RESOURCE_EXHAUSTED),  # Overloaded, BudgetExhausted
    (errors.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.Cancelled, grpc.StatusCode.CANCELLED),
    (errors.NoCloudLink, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),  # CloudUnavailable, ShuttingDown, NotReady
    (errors.SensitiveDataBlocked, grpc.StatusCode.PERMISSION_DENIED),
)


def status_code(error: errors.EdgedError) -> grpc.StatusCode:
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


# The HTTP API's status for each gRPC code: Google's canonical gRPC <-> HTTP mapping (google.rpc.Code), except
# CANCELLED, which has no answer to send (the caller went away): nginx's 499 is what access logs show for it.
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


# What edged.client raises for a status: the most specific class that covers every error sent with it.
_CLIENT_ERRORS: dict[grpc.StatusCode, type[errors.EdgedError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidRequest,
    grpc.StatusCode.NOT_FOUND: errors.ModelNotFound,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.LimitReached,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    grpc.StatusCode.CANCELLED: errors.Cancelled,
    grpc.StatusCode.FAILED_PRECONDITION: errors.NoCloudLink,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.PERMISSION_DENIED: errors.SensitiveDataBlocked,
}


def error_from_status(code: grpc.StatusCode, details: str) -> errors.EdgedError:
    """The domain error a client raises for a refused RPC (the inverse of status_code)."""
    kind = _CLIENT_ERRORS.get(code, errors.EngineError)
    if kind is errors.InvalidRequest:
        field, _, message = details.partition(": ")
        return errors.InvalidRequest(field, message) if message else errors.InvalidRequest("request", details)
    if kind is errors.SensitiveDataBlocked:
        return errors.SensitiveDataBlocked("", details)
    return kind(details if kind is not errors.EngineError else f"{code.name}: {details}")


def http_status(error: errors.EdgedError) -> tuple[int, str]:
    """The HTTP status of a domain error and its gRPC code's name (the HTTP API's error `code`)."""
    code = status_code(error)
    return _HTTP_STATUS[code], code.name.lower()


Req = TypeVar("Req")
Resp = TypeVar("Resp")
Servicer = TypeVar("Servicer")


def unary_errors(
    method: Callable[[Servicer, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]],
) -> Callable[[Servicer, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]]:
    """Translate domain errors raised by a unary handler into the matching status."""

    @functools.wraps(method)
    async def wrapper(self: Servicer, request: Req, context: grpc.aio.ServicerContext[Any, Any]) -> Resp:
        try:
            return await method(self, request, context)
        except errors.EdgedError as exc:
            await _abort(context, exc)
            raise  # unreachable: abort raises

    return wrapper


def stream_errors(
    method: Callable[[Servicer, Req, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Resp]],
) -> Callable[[Servicer, Req, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Resp]]:
    """Translate domain errors raised by a server-streaming handler into the matching status."""

    @functools.wraps(method)
    async def wrapper(
        self: Servicer, request: Req, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Resp]:
        try:
            async for item in method(self, request, context):
                yield item
        except errors.EdgedError as exc:
            await _abort(context, exc)

    return wrapper


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: errors.EdgedError) -> None:
    code = status_code(exc)
    if code == grpc.StatusCode.INTERNAL:
        logger.error("request failed: %s", exc)
    else:
        logger.debug("request refused (%s): %s", code.name, exc)
    await context.abort(code, str(exc))
