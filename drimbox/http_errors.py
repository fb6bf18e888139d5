"""Map the node's exception tree to HTTP responses, in one place.

Bodies are RFC 9457 problem details (``application/problem+json``). Unreachable or slow PACS
answers 503 with ``Retry-After`` so clients back off instead of hammering a sick PACS.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from drimbox.errors import (
    AuthError,
    ConfigError,
    DimseFailure,
    DrimboxError,
    Forbidden,
    ImportFailed,
    InvalidRequest,
    LoginRequired,
    NetworkError,
    PacsError,
    PacsTimeout,
    PacsUnreachable,
    RegistryUnavailable,
    SourceUnavailable,
    Unauthenticated,
)

__all__ = ["install_error_handlers", "status_for"]

_RETRY_AFTER_S = "5"


def status_for(exc: DrimboxError) -> int:
    """HTTP status for a node error."""
    match exc:
        case LoginRequired():
            return 303
        case Unauthenticated():
            return 401
        case Forbidden():
            return 403
        case InvalidRequest():
            return 400
        case PacsUnreachable() | PacsTimeout() | RegistryUnavailable() | SourceUnavailable():
            return 503
        case NetworkError() | ImportFailed():
            return 502
        case DimseFailure() | PacsError():
            return 502
        case ConfigError():
            return 500
        case _:
            return 500


def _problem(request: Request, exc: DrimboxError) -> JSONResponse:
    status = status_for(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, LoginRequired):
        # A browser page: send the user to the login, which brings them back afterwards.
        return JSONResponse({"detail": str(exc)}, status_code=303,
                            headers={"Location": f"/auth/login?next={quote(exc.next_url, safe='')}"})
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    elif isinstance(exc, AuthError):
        pass
    elif status == 503:
        headers["Retry-After"] = _RETRY_AFTER_S
    body: dict[str, object] = {"type": "about:blank", "title": type(exc).__name__, "status": status,
                               "detail": str(exc), "instance": request.url.path}
    if isinstance(exc, InvalidRequest):
        body["problems"] = list(exc.problems)
    return JSONResponse(body, status_code=status, headers=headers, media_type="application/problem+json")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handler that turns :class:`DrimboxError` into problem details."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DrimboxError)
        return _problem(request, exc)

    app.add_exception_handler(DrimboxError, handler)
