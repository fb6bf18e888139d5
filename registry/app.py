"""Assembly of the registry's HTTP app.

The registry is the national index of study references (the DMP's role in production):

- ``POST /xds/repository`` — Document Repository: ITI-41 Provide and Register, ITI-43 Retrieve (SOAP 1.2, MTOM)
- ``POST /xds/registry`` — Document Registry: ITI-18 Stored Query, ITI-57 Update Document Set (SOAP 1.2)
- ``GET /fhir/DocumentReference``, ``/fhir/DocumentReference/{id}``, ``/fhir/Binary/{id}`` — MHD ITI-67/68
- ``GET /healthz`` — liveness; ``GET /readyz`` — readiness (database, document store); ``GET /metrics`` —
  Prometheus metrics: the unauthenticated operations routes (no patient data), besides:
- ``GET /whitelist`` — the signed trust list of nodes (F11; public, its signature is its protection), when a
  :class:`~registry.trustlist.TrustListPublisher` is given

The schema is migrated to Alembic ``head`` when the app is created. Every request gets a request id
(the caller's ``X-Request-ID`` or a new one), bound to its log events and returned (:mod:`registry.ops.access`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import BaseModel

from registry.config import RegistrySettings
from registry.context import RegistryContext
from registry.limits import LimitsMiddleware, registry_http_limits
from registry.mhd.router import create_mhd_router
from registry.ops.access import AccessLogMiddleware
from registry.ops.routes import operations_router
from registry.security.xmldsig import install_io_policy
from registry.store.migrate import upgrade_to_head
from registry.trustlist import TrustListPublisher, trustlist_router
from registry.xds.router import create_xds_router

__all__ = ["create_app"]

_VERSION = "0.1.0"


class Health(BaseModel):
    status: str
    service: str
    version: str


def create_app(
    settings: RegistrySettings,
    *,
    context: RegistryContext | None = None,
    trust_list: TrustListPublisher | None = None,
) -> FastAPI:
    """Build the registry app from its settings (or from a prepared context, for tests).

    With ``trust_list``, the app also serves the signed list of nodes at ``GET /whitelist``.
    """
    ctx = context if context is not None else RegistryContext.from_settings(settings)
    upgrade_to_head(ctx.database.engine)
    install_io_policy()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        ctx.database.dispose()

    # No /docs, /redoc or /openapi.json: every endpoint but /healthz is authenticated.
    app = FastAPI(
        title="DRIM-M registry", version=_VERSION, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.settings = ctx.settings
    app.state.registry = ctx
    # Hostile input (issue 7): sizes and counts are refused before any route or dependency runs.
    app.add_middleware(LimitsMiddleware, limits=registry_http_limits(ctx.settings.max_request_bytes))
    # Outermost: refusals by the limits are logged and counted too.
    app.add_middleware(AccessLogMiddleware, metrics=ctx.metrics)
    app.include_router(create_xds_router())
    app.include_router(create_mhd_router())
    app.include_router(operations_router())
    if trust_list is not None:
        app.include_router(trustlist_router(trust_list))

    @app.get("/healthz", response_model=Health, tags=["operations"])
    def healthz() -> Health:
        """Liveness: the process answers."""
        return Health(status="ok", service="registry", version=_VERSION)

    return app
