"""Assembly: the DICOMweb router a node mounts, and a standalone app for tests and tools.

The node mounts :func:`create_dicomweb_router` once per face (site-facing, network-facing), each
with its own store provider, settings and authentication dependencies::

    router = create_dicomweb_router(pick_backend, settings, dependencies=[Depends(authenticate)])
    app.include_router(router, prefix="/dicom-web")

Errors are mapped by :class:`~dicomweb_gateway.errors.GatewayRoute`, the route class of every
gateway route, so the mapping travels with the router whatever app includes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.params import Depends as DependsParam
from fastapi.routing import APIRoute

from dicomweb_gateway.backend import DicomStore
from dicomweb_gateway.deps import binder
from dicomweb_gateway.errors import GatewayRoute
from dicomweb_gateway.qido import create_qido_router
from dicomweb_gateway.settings import GatewaySettings
from dicomweb_gateway.stow import create_stow_router
from dicomweb_gateway.wado import create_wado_router

__all__ = ["create_app", "create_dicomweb_router"]


def create_dicomweb_router(
    store_provider: Callable[..., Any],
    settings: GatewaySettings | None = None,
    *,
    dependencies: Sequence[DependsParam] = (),
    stow: bool = True,
) -> APIRouter:
    """The QIDO-RS, WADO-RS and STOW-RS routes of PS3.18 over the store ``store_provider`` returns.

    Parameters
    ----------
    store_provider
        A FastAPI dependency (sync or async callable, may itself depend on the request, the
        authenticated principal…) returning the :class:`DicomStore` for this request.
    settings
        Limits and choices; defaults read ``DICOMWEB_*`` environment variables.
    dependencies
        Extra dependencies run before every route, in order, before the store provider
        (authentication, audit, KOS scope checks).
    stow
        Whether to include STOW-RS (the network face has none, DESIGN §2b).

    Returns
    -------
    APIRouter
        Without prefix: the mounter includes it under ``/dicom-web`` or wherever it likes.
    """
    settings = settings if settings is not None else GatewaySettings()
    route_class: type[APIRoute] = type("GatewayRoute", (GatewayRoute,), {"retry_after_s": settings.retry_after_s})
    router = APIRouter(
        dependencies=[*dependencies, Depends(binder(store_provider, settings))],
        route_class=route_class,
    )
    sub_routers = [create_qido_router(), create_wado_router()]
    if stow:
        sub_routers.append(create_stow_router())
    for sub in sub_routers:
        for route in sub.routes:
            if isinstance(route, APIRoute):
                router.add_api_route(
                    route.path,
                    route.endpoint,
                    methods=sorted(route.methods or ()),
                    name=route.name,
                    summary=route.summary,
                    description=route.description,
                    tags=list(route.tags),
                    response_class=route.response_class,
                    responses={**_documented_responses(route), **route.responses},
                    route_class_override=route_class,
                )
    return router


_PROBLEM: dict[str, Any] = {
    "description": "PS3.18 error status, as RFC 9457 problem details",
    "content": {"application/problem+json": {"schema": {"type": "object"}}},
}
_ANY_BODY: dict[str, Any] = {"schema": {}}
_DICOM_JSON = {"application/dicom+json": _ANY_BODY, "application/json": _ANY_BODY}
_RENDERED = {"image/jpeg": _ANY_BODY, "image/png": _ANY_BODY}
_RETRIEVED = {"multipart/related": _ANY_BODY, "application/dicom": _ANY_BODY, "application/octet-stream": _ANY_BODY}


def _documented_responses(route: APIRoute) -> dict[int | str, dict[str, Any]]:
    """What each transaction answers, for the OpenAPI (the routes return raw ``Response`` objects).

    Why: without it the schema says ``application/json`` and "200 only", and a client (or schemathesis)
    holding the server to its schema finds DICOM JSON, multipart bodies and every PS3.18 error status
    undocumented.
    """
    tags = set(route.tags)
    if "QIDO-RS" in tags:
        return {200: {"description": "Matches (DICOM JSON)", "content": _DICOM_JSON}, "default": _PROBLEM}
    if "STOW-RS" in tags:
        report = {"description": "Store Instances Response (DICOM JSON)", "content": _DICOM_JSON}
        return {200: report, 202: report, 409: report, "default": _PROBLEM}
    if route.path.endswith(("/rendered", "/thumbnail")):
        content = _RENDERED
    elif route.path.endswith("/metadata"):
        content = _DICOM_JSON
    else:
        content = _RETRIEVED
    return {200: {"description": "The requested content", "content": content}, "default": _PROBLEM}


def create_app(
    store: DicomStore | Callable[..., Any],
    settings: GatewaySettings | None = None,
    *,
    prefix: str = "/dicom-web",
    dependencies: Sequence[DependsParam] = (),
) -> FastAPI:
    """A standalone FastAPI app serving ``store`` under ``prefix`` (tests, tools, a bare gateway).

    Parameters
    ----------
    store
        A :class:`DicomStore`, or a store provider dependency as for :func:`create_dicomweb_router`.
    """
    provider: Callable[..., Any]
    if isinstance(store, DicomStore):
        fixed = store

        def provider() -> DicomStore:
            return fixed
    else:
        provider = store
    app = FastAPI(title="DICOMweb gateway", docs_url=None, redoc_url=None)
    app.include_router(create_dicomweb_router(provider, settings, dependencies=dependencies), prefix=prefix)
    return app
