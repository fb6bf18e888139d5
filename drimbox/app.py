"""Assembly of the node's two HTTP faces.

* the **site face** (``create_site_app``): the site's own users and viewer — DICOMweb over the local
  PACS, operator API;
* the **network face** (``create_network_app``): served over mutual TLS to trust-listed peers, and
  narrower (manifest-scoped WADO-RS only, see DESIGN §2b).

Every API router is included through :func:`~drimbox.trust.include_protected`, so every route goes
through the one authentication dependency. Browser pages (the portal, the viewer's entry) carry
their own browser-principal dependency — the same verification, answering "log in" (303) rather than
401 — attached to the whole router by its factory. Public routes show no patient data: liveness, the
contextual call's form target (it validates and stores the call, data comes after login), the login
round trip and static assets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from fastapi import APIRouter, Depends, FastAPI
from pydantic import BaseModel

from drimbox import __version__
from drimbox.http_errors import install_error_handlers
from drimbox.limits import HttpLimits, LimitsMiddleware, node_http_limits
from drimbox.trust import Authenticated, TokenVerifier, authenticate, include_protected
from drimbox.trust.login import LOGIN_PATHS

__all__ = ["PUBLIC_PATHS", "PacsProbe", "create_network_app", "create_site_app"]

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/contextual-call", "/web/static/drimbox.css"}) | LOGIN_PATHS
"""Paths that answer without authentication; none shows patient data."""


class PacsProbe(Protocol):
    """What the operator API needs of the PACS bridge."""

    def echo(self) -> None:
        """C-ECHO the site's PACS; raise a PacsError when it does not answer."""
        ...


class Health(BaseModel):
    status: str
    node: str
    version: str


class WhoAmI(BaseModel):
    subject: str
    kind: str
    rpps: str | None
    role: str | None


class EchoResult(BaseModel):
    pacs: str
    status: str


def _health_router(node_name: str) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz", response_model=Health, tags=["operations"])
    def healthz() -> Health:
        """Liveness: the process answers (no dependency checked, no data returned)."""
        return Health(status="ok", node=node_name, version=__version__)

    return router


def _identity_router() -> APIRouter:
    router = APIRouter(prefix="/api", tags=["identity"])

    @router.get("/whoami", response_model=WhoAmI)
    def whoami(principal: Authenticated) -> WhoAmI:
        """The caller as the node sees it."""
        return WhoAmI(subject=principal.subject, kind=principal.kind, rpps=principal.rpps, role=principal.role)

    return router


def _pacs_router(pacs: PacsProbe, pacs_label: str) -> APIRouter:
    router = APIRouter(prefix="/api/pacs", tags=["pacs"])

    @router.post("/echo", response_model=EchoResult)
    async def echo(principal: Authenticated) -> EchoResult:
        """C-ECHO the site's PACS (verifies the DIMSE link end to end)."""
        await asyncio.to_thread(pacs.echo)
        return EchoResult(pacs=pacs_label, status="ok")

    return router


def _new_app(title: str, verifier: TokenVerifier | None, limits: HttpLimits | None = None) -> FastAPI:
    app = FastAPI(title=title, version=__version__)
    app.state.token_verifier = verifier
    install_error_handlers(app)
    # Hostile input (issue 7): sizes and counts are refused before any route or dependency runs.
    app.add_middleware(LimitsMiddleware, limits=limits if limits is not None else node_http_limits())
    return app


def create_site_app(
    *, node_name: str, verifier: TokenVerifier | None, pacs: PacsProbe, pacs_label: str,
    extra_routers: tuple[APIRouter, ...] = (), public_routers: tuple[APIRouter, ...] = (),
    page_routers: tuple[APIRouter, ...] = (), mount: Callable[[FastAPI], None] | None = None,
    limits: HttpLimits | None = None,
) -> FastAPI:
    """The site-facing app. ``verifier=None`` is dev mode (every caller is the developer).

    ``public_routers`` show no patient data (contextual call target, login); ``page_routers`` are
    browser pages that authenticate themselves (their factory attaches the browser-principal
    dependency to every route); ``mount`` adds the viewer's static files last (its fallback route
    must not shadow the API); ``limits`` defaults to :func:`~drimbox.limits.node_http_limits`.
    """
    app = _new_app(f"DRIM-M node {node_name} (site)", verifier, limits)
    app.include_router(_health_router(node_name))
    for router in public_routers + page_routers:
        app.include_router(router)
    for router in (_identity_router(), _pacs_router(pacs, pacs_label), *extra_routers):
        include_protected(app, router)
    if mount is not None:
        mount(app)
    return app


def create_network_app(
    *, node_name: str, verifier: TokenVerifier | None, extra_routers: tuple[APIRouter, ...] = (),
    limits: HttpLimits | None = None, peer_check: Callable[..., None] | None = None,
    public_routers: tuple[APIRouter, ...] = (),
) -> FastAPI:
    """The network-facing app (mutual TLS is enforced by the server that runs it).

    ``peer_check`` (the trust list's inbound check) runs on every route but liveness and the
    ``public_routers`` (readiness: no data), before the token.
    """
    app = _new_app(f"DRIM-M node {node_name} (network)", verifier, limits)
    app.include_router(_health_router(node_name))
    for router in public_routers:
        app.include_router(router)
    for router in (_identity_router(), *extra_routers):
        if peer_check is None:
            include_protected(app, router)
        else:
            # The peer first (an untrusted node learns nothing, not even whether its token is good).
            app.include_router(router, dependencies=[Depends(peer_check), Depends(authenticate)])
    return app
