"""The one authentication dependency every HTTP endpoint of the node goes through.

Routes declare ``principal: Authenticated``; :func:`require_protected_routes` runs when an app is
assembled and refuses to start an app in which any route (other than the explicit public ones, such
as liveness probes) does not depend on :func:`authenticate`. So no endpoint can bypass it by
omission.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from drimbox.errors import ConfigError, Unauthenticated
from drimbox.trust.principal import Principal
from drimbox.trust.tokens import TokenVerifier

__all__ = ["Authenticated", "DEV_PRINCIPAL", "authenticate", "require_protected_routes"]

DEV_PRINCIPAL = Principal(subject="developer", kind="developer", issuer="dev-mode", display_name="Developer (dev mode)")


def _verifier(request: Request) -> TokenVerifier | None:
    verifier: TokenVerifier | None = request.app.state.token_verifier
    return verifier


def authenticate(request: Request) -> Principal:
    """Return the authenticated caller, or raise :class:`Unauthenticated` (HTTP 401)."""
    verifier = _verifier(request)
    if verifier is None:
        # Dev mode: only reachable when the app was explicitly built with dev_mode (logged loudly).
        return DEV_PRINCIPAL
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("a bearer token is required (Authorization: Bearer …)")
    principal = verifier.verify(token.strip())
    request.state.principal = principal
    return principal


Authenticated = Annotated[Principal, Depends(authenticate)]


def _depends_on(dependant: Dependant, target: object) -> bool:
    return any(d.call is target or _depends_on(d, target) for d in dependant.dependencies)


def require_protected_routes(app: FastAPI, *, public: Iterable[str]) -> None:
    """Refuse an app in which a non-public route does not depend on :func:`authenticate`."""
    allowed = set(public)
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path not in allowed and not _depends_on(route.dependant, authenticate):
            raise ConfigError(f"route {route.path} does not go through authentication")
