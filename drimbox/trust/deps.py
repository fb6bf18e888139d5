"""The one authentication dependency every HTTP endpoint of the node goes through.

Apps never include a router directly: :func:`include_protected` attaches :func:`authenticate` to
every route of the router, so no endpoint can bypass it by omission (a route that forgets to ask
for the principal is still authenticated). Only liveness probes are included unprotected. The
bearer scheme is declared through :class:`fastapi.security.HTTPBearer`, so it appears in OpenAPI.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from drimbox.errors import Unauthenticated
from drimbox.trust.principal import Principal
from drimbox.trust.tokens import TokenVerifier

__all__ = ["DEV_PRINCIPAL", "Authenticated", "authenticate", "include_protected"]

DEV_PRINCIPAL = Principal(subject="developer", kind="developer", issuer="dev-mode",
                          display_name="Developer (dev mode)")

_bearer = HTTPBearer(auto_error=False, description="Access token of a health professional or a node (JWT).")


def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """Return the authenticated caller, or raise :class:`Unauthenticated` (HTTP 401)."""
    verifier: TokenVerifier | None = request.app.state.token_verifier
    if verifier is None:
        # Dev mode: only reachable when the app was explicitly built with dev_mode (logged loudly).
        return DEV_PRINCIPAL
    if credentials is None or not credentials.credentials.strip():
        raise Unauthenticated("a bearer token is required (Authorization: Bearer …)")
    principal = verifier.verify(credentials.credentials.strip())
    request.state.principal = principal
    return principal


Authenticated = Annotated[Principal, Depends(authenticate)]


def include_protected(app: FastAPI, router: APIRouter) -> None:
    """Include ``router`` with :func:`authenticate` on every one of its routes."""
    app.include_router(router, dependencies=[Depends(authenticate)])
