"""Map the node's exception tree to HTTP responses, in one place.

Bodies are RFC 9457 problem details (``application/problem+json``). Unreachable or slow PACS
answers 503 with ``Retry-After`` so clients back off instead of hammering a sick PACS.
"""

from __future__ import annotations

from typing import Any
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

__all__ = ["ERROR_RESPONSE", "document_error_responses", "install_error_handlers", "status_for"]

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


ERROR_RESPONSE: dict[str, Any] = {
    "description": "Refusal or failure: RFC 9457 problem details (application/problem+json); errors raised by the "
                   "web framework itself (HTTPException) carry {\"detail\": …} as application/json.",
    "content": {
        "application/problem+json": {"schema": {"type": "object", "properties": {
            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
            "detail": {"type": "string"}, "instance": {"type": "string"}}}},
        "application/json": {"schema": {"type": "object"}},
    },
}
"""The ``default`` response of every operation: any status the mapping above (or a limit) may give."""


def document_error_responses(app: FastAPI) -> None:
    """Declare :data:`ERROR_RESPONSE` as the ``default`` response of every operation in the OpenAPI.

    Why: routes list their success response only, so the contract (and schemathesis checking it)
    would call every 400/401/403/404/413/503 the node rightly answers "undocumented". The statuses
    come from one mapping (:func:`status_for`, the limits middleware), so they are documented once
    here rather than on each route.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                if isinstance(operation, dict) and "responses" in operation:
                    default = operation["responses"].setdefault("default", ERROR_RESPONSE)
                    # A router's own default (the gateway's) still meets the framework's JSON errors.
                    for media, body in ERROR_RESPONSE["content"].items():
                        default.setdefault("content", {}).setdefault(media, body)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_error_handlers(app: FastAPI) -> None:
    """Register the handler that turns :class:`DrimboxError` into problem details (and document it)."""
    document_error_responses(app)

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DrimboxError)
        return _problem(request, exc)

    app.add_exception_handler(DrimboxError, handler)
