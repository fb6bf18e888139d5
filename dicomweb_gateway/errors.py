"""The gateway's exception tree, and its one mapping to HTTP.

::

    GatewayError
    ├── RequestError                  400  the request is wrong; the message says how
    │   ├── InvalidQuery              400  unknown key, malformed UID, bad date/range, bad limit…
    │   ├── MalformedMultipart        400  missing boundary, truncated body, bad part headers
    │   ├── PayloadTooLarge           413  body or part count above the configured limits
    │   ├── NotAcceptable             406  nothing in ``Accept`` can be delivered (lists what can)
    │   └── UnsupportedMediaType      415  STOW body of another media type
    ├── NotFound                      404  no such study / series / instance / frame / bulk data
    └── BackendError                  502  the backend failed (PACS refused, protocol error…)
        └── BackendUnavailable        503  + ``Retry-After``: PACS unreachable, busy or timed out

Backends raise :class:`NotFound`, :class:`BackendUnavailable` and :class:`BackendError`; the
routes raise the :class:`RequestError` family. :func:`status_for` and :func:`error_response` are
the only places that turn them into HTTP, and :class:`GatewayRoute` applies them to every gateway
route, so a router works the same whatever app mounts it (an ``APIRouter`` cannot carry exception
handlers of its own).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "GatewayError",
    "GatewayRoute",
    "InvalidQuery",
    "MalformedMultipart",
    "NotAcceptable",
    "NotFound",
    "PayloadTooLarge",
    "RequestError",
    "UnsupportedMediaType",
    "error_response",
    "status_for",
]

_log = logging.getLogger(__name__)


class GatewayError(Exception):
    """Root of every error the gateway maps to an HTTP status."""


class RequestError(GatewayError):
    """The request cannot be served as written (4xx)."""


class InvalidQuery(RequestError):
    """A query parameter, path UID or header value is malformed."""


class MalformedMultipart(RequestError):
    """A ``multipart/related`` body does not parse."""


class PayloadTooLarge(RequestError):
    """The body exceeds the configured size or part-count limits."""


class NotAcceptable(RequestError):
    """No representation the client accepts can be delivered without loss.

    Parameters
    ----------
    message
        Why.
    available
        Media types (with ``transfer-syntax`` parameters) that *could* be delivered.
    """

    def __init__(self, message: str, available: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.available = tuple(available)


class UnsupportedMediaType(RequestError):
    """The request body's media type is not one the transaction accepts."""


class NotFound(GatewayError):
    """The addressed resource does not exist (in the backend or in the instance)."""


class BackendError(GatewayError):
    """The backend failed in a way that is not the client's fault."""


class BackendUnavailable(BackendError):
    """The backend is unreachable, busy or timed out; the client should retry later.

    Parameters
    ----------
    message
        Why.
    retry_after_s
        Suggested delay for ``Retry-After``; ``None`` uses the gateway's configured default.
    """

    def __init__(self, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def status_for(exc: GatewayError) -> int:
    """HTTP status code for a gateway error (the one mapping of the tree above)."""
    match exc:
        case NotAcceptable():
            return 406
        case UnsupportedMediaType():
            return 415
        case PayloadTooLarge():
            return 413
        case RequestError():
            return 400
        case NotFound():
            return 404
        case BackendUnavailable():
            return 503
        case _:
            return 502


def error_response(request: Request, exc: GatewayError, *, retry_after_s: int = 5) -> Response:
    """An RFC 9457 problem-details response for ``exc``, with a PS3.18 ``Warning`` header.

    PS3.18 §8.4.1 lets an origin server explain a failure with ``Warning: 299``; clients that do
    not read bodies (several viewers) still log that header.
    """
    status = status_for(exc)
    detail = str(exc)
    body: dict[str, object] = {
        "type": "about:blank",
        "title": type(exc).__name__,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    headers = {"Warning": f'299 {request.url.netloc or "-"}: "{_quote(detail)}"'}
    if isinstance(exc, NotAcceptable):
        body["available"] = list(exc.available)
    if isinstance(exc, BackendUnavailable):
        headers["Retry-After"] = str(exc.retry_after_s if exc.retry_after_s is not None else retry_after_s)
    if status >= 500:
        _log.warning("dicomweb %s %s -> %d: %s", request.method, request.url.path, status, detail)
    return JSONResponse(body, status_code=status, headers=headers, media_type="application/problem+json")


def _quote(text: str) -> str:
    # A header value is one line of visible ASCII; the body keeps the full message.
    flat = " ".join(text.split()).replace("\\", "\\\\").replace('"', '\\"')
    return flat.encode("ascii", "replace").decode("ascii")[:300]


class GatewayRoute(APIRoute):
    """An ``APIRoute`` that maps :class:`GatewayError` (and FastAPI's 422) to PS3.18 responses.

    The handler it wraps covers dependency resolution too, so errors raised by the mounter's store
    provider or authentication dependency are mapped the same way.
    """

    retry_after_s: int = 5

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler with the error mapping."""
        handler = super().get_route_handler()
        retry_after = self.retry_after_s

        async def mapped(request: Request) -> Response:
            try:
                return await handler(request)
            except GatewayError as exc:
                return error_response(request, exc, retry_after_s=retry_after)
            except RequestValidationError as exc:
                # PS3.18 uses 400 for every malformed request; FastAPI's default would be 422.
                return error_response(request, InvalidQuery(_validation_message(exc)))

        return mapped


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"
