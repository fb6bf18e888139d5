"""The one authentication dependency every HTTP endpoint of the node goes through.

Apps never include a router directly: :func:`include_protected` attaches :func:`authenticate` to
every route of the router, so no endpoint can bypass it by omission (a route that forgets to ask
for the principal is still authenticated). Only liveness probes and the login routes
(:data:`drimbox.trust.login.LOGIN_PATHS`) are included unprotected. The bearer scheme is declared
through :class:`fastapi.security.HTTPBearer`, so it appears in OpenAPI.

A caller is identified by EITHER an ``Authorization: Bearer`` token (verified by the app's
``state.token_verifier``; a bad or expired one is 401, never silently ignored) OR, when there is
none, the browser session cookie (``drimbox_session``, looked up in ``app.state.session_store``,
:mod:`drimbox.trust.sessions`). API clients get 401 without credentials; browser pages use
:data:`BrowserPrincipal`, which instead redirects to the login and back (``LoginRequired`` → 303).
Dev mode (``token_verifier`` is ``None``, only when the app was explicitly built so) is the
developer principal for everyone.

:func:`actor_of` turns the caller into the :class:`~drimbox.retrieve.model.Actor` the consumer side
acts for: the bearer token (or the session's access token) is what is forwarded to source nodes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from drimbox.errors import LoginRequired, Unauthenticated
from drimbox.retrieve.model import Actor
from drimbox.trust.audit import AuditEvent, AuditTrail
from drimbox.trust.binding import NetworkBinding
from drimbox.trust.principal import Principal
from drimbox.trust.sessions import SESSION_COOKIE, Session, SessionStore
from drimbox.trust.tokens import TokenVerifier

__all__ = [
    "DEV_PRINCIPAL",
    "Authenticated",
    "BrowserActor",
    "BrowserPrincipal",
    "CurrentActor",
    "actor_of",
    "authenticate",
    "browser_principal",
    "include_protected",
]

DEV_PRINCIPAL = Principal(subject="developer", kind="developer", issuer="dev-mode",
                          display_name="Developer (dev mode)")

_bearer = HTTPBearer(auto_error=False, description="Access token of a health professional or a node (JWT).")


def _identify(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal | None:
    """The caller by bearer token, else by session cookie; ``None`` when there is neither."""
    verifier: TokenVerifier | None = request.app.state.token_verifier
    if verifier is None:
        # Dev mode: only reachable when the app was explicitly built with dev_mode (logged loudly).
        request.state.principal = DEV_PRINCIPAL
        return DEV_PRINCIPAL
    if credentials is not None and credentials.credentials.strip():
        principal = verifier.verify(credentials.credentials.strip())
        request.state.principal = principal
        return principal
    store: SessionStore | None = getattr(request.app.state, "session_store", None)
    cookie = request.cookies.get(SESSION_COOKIE)
    if store is not None and cookie:
        session = store.get(cookie)
        if session is not None:
            request.state.session = session
            request.state.principal = session.principal
            return session.principal
    return None


def _refused(request: Request, exc: Unauthenticated) -> Unauthenticated:
    """Audit a refused authentication (``auth.refused``: the reason, the path, the client) and return it."""
    audit: AuditTrail | None = getattr(request.app.state, "audit", None)
    if audit is not None:
        audit.record(AuditEvent(action="auth.refused", outcome="refused",
                                source=request.client.host if request.client else None,
                                detail=f"{request.method} {request.url.path}: {exc}"))
    return exc


def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """Return the authenticated caller (bearer token or session), or raise :class:`Unauthenticated` (HTTP 401).

    On the network face the principal is bound to the presenting peer node (``app.state.principal_binding``,
    :class:`~drimbox.trust.binding.NetworkBinding`). Every refusal is audited when the app has an audit
    trail (``app.state.audit``).
    """
    try:
        principal = _identify(request, credentials)
        if principal is None:
            raise Unauthenticated("a bearer token (Authorization: Bearer …) or a login session is required")
        binding: NetworkBinding | None = getattr(request.app.state, "principal_binding", None)
        if binding is not None:
            principal = binding.bind(request, principal)
            request.state.principal = principal
    except Unauthenticated as exc:
        raise _refused(request, exc) from None
    return principal


def browser_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """Like :func:`authenticate`, but a browser without session is sent to the login, then back here.

    An invalid bearer token is still 401: only the *absence* of credentials leads to the login.
    """
    try:
        principal = _identify(request, credentials)
    except Unauthenticated as exc:
        raise _refused(request, exc) from None
    if principal is None:
        query = f"?{request.url.query}" if request.url.query else ""
        raise LoginRequired("login required", next_url=f"{request.url.path}{query}")
    return principal


Authenticated = Annotated[Principal, Depends(authenticate)]
BrowserPrincipal = Annotated[Principal, Depends(browser_principal)]


def session_of(request: Request) -> Session | None:
    """The session the request was authenticated by (``None`` for a bearer token or dev mode)."""
    found = getattr(request.state, "session", None)
    return found if isinstance(found, Session) else None


def actor_of(request: Request, principal: Principal) -> Actor:
    """On whose behalf the consumer side acts: the caller, their token to forward, emergency access.

    The token is the request's bearer token, else the session's access token ("" in dev mode
    without either); emergency access is what the session recorded (``Situation`` of the call).
    """
    session = session_of(request)
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        token = value.strip()
    elif session is not None:
        token = session.access_token
    else:
        token = ""
    return Actor(subject=principal.subject, rpps=principal.rpps, role=principal.role,
                 display_name=principal.display_name, token=token,
                 emergency=session.emergency if session is not None else False)


def _current_actor(request: Request, principal: Authenticated) -> Actor:
    return actor_of(request, principal)


def _browser_actor(request: Request, principal: BrowserPrincipal) -> Actor:
    return actor_of(request, principal)


CurrentActor = Annotated[Actor, Depends(_current_actor)]
"""The acting practitioner of an API request (401 without credentials)."""
BrowserActor = Annotated[Actor, Depends(_browser_actor)]
"""The acting practitioner of a browser page (login redirect without credentials)."""


def include_protected(app: FastAPI, router: APIRouter) -> None:
    """Include ``router`` with :func:`authenticate` on every one of its routes."""
    app.include_router(router, dependencies=[Depends(authenticate)])
