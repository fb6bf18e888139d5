"""FastAPI dependencies of the gateway routes, as ``Annotated`` aliases.

The mounter's ``store_provider`` (any FastAPI dependency returning a :class:`DicomStore`) is
resolved once per request by the router-level dependency :func:`binder` builds, which leaves the
store and the router's settings on ``request.state``; :data:`StoreDep` and :data:`SettingsDep`
read them back, so route signatures stay plain (``store: StoreDep``) while each mounted router
keeps its own backend and settings.
"""

import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from dicomweb_gateway.backend import DicomStore
from dicomweb_gateway.settings import GatewaySettings

__all__ = ["BaseUrlDep", "SettingsDep", "StoreDep", "binder", "get_base_url", "get_settings", "get_store"]

_RESOURCE = re.compile(r"^(.*?)/(?:studies|series|instances)(?:/|$)")


def binder(store_provider: Callable[..., Any], settings: GatewaySettings) -> Callable[..., Awaitable[None]]:
    """The router-level dependency that resolves ``store_provider`` and binds it to the request."""

    async def bind_gateway(request: Request, store: DicomStore = Depends(store_provider)) -> None:  # noqa: B008
        request.state.dicomweb_store = store
        request.state.dicomweb_settings = settings

    return bind_gateway


def get_store(request: Request) -> DicomStore:
    """The backend chosen for this request by the mounter's store provider."""
    store: DicomStore = request.state.dicomweb_store
    return store


def get_settings(request: Request) -> GatewaySettings:
    """The settings of the router serving this request."""
    settings: GatewaySettings = request.state.dicomweb_settings
    return settings


def get_base_url(request: Request, settings: Annotated[GatewaySettings, Depends(get_settings)]) -> str:
    """The DICOMweb root URL as the client sees it (for ``RetrieveURL`` and ``BulkDataURI``).

    ``GatewaySettings.public_base_url`` wins; otherwise it is the request URL up to its first
    ``/studies``, ``/series`` or ``/instances`` segment, which works whatever prefix the router is
    mounted under.
    """
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    url = request.url
    m = _RESOURCE.match(url.path)
    prefix = m.group(1) if m else ""
    netloc = url.netloc
    server = request.scope.get("server")
    if url.port is None and server and server[0] == url.hostname and server[1] not in (None, 80, 443):
        # Some clients (dicomweb-client) send "Host: 127.0.0.1" without the port; when the host is
        # the very address we listen on (no proxy in between), the port we listen on is the right one.
        netloc = f"{url.hostname}:{server[1]}"
    return f"{url.scheme}://{netloc}{prefix}"


StoreDep = Annotated[DicomStore, Depends(get_store)]
SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
BaseUrlDep = Annotated[str, Depends(get_base_url)]
