"""How a node mounts the screening workflow: the service and its three routers, when enabled."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx
from fastapi import APIRouter

from dicomweb_gateway import CachingStore
from drimbox.config import NodeSettings
from drimbox.retrieve.model import ExamDirectory
from drimbox.retrieve.viewing import RemoteNodeStore, RemoteStudies
from drimbox.screening.api import network_router, site_router
from drimbox.screening.messages import NodeMessenger
from drimbox.screening.pages import screening_pages
from drimbox.screening.service import NodeParts, ScreeningService
from drimbox.screening.store import ScreeningStore
from drimbox.trust.audit import AuditTrail
from drimbox.trust.grants import KosGrants
from drimbox.trust.node_credential import NodeCredential
from drimbox.trust.peers import PeerPolicy

__all__ = ["ScreeningParts", "screening_for_node"]


@dataclass(frozen=True)
class ScreeningParts:
    """The service and what each face mounts."""

    service: ScreeningService
    site: APIRouter
    pages: APIRouter
    network: APIRouter


def screening_for_node(settings: NodeSettings, *, audit: AuditTrail, directory: ExamDirectory | None,
                       remote_store: RemoteNodeStore | None, remote_studies: RemoteStudies | None,
                       site_store: CachingStore | None, client: httpx.Client | None,
                       policy: PeerPolicy, grants: KosGrants | None = None,
                       node_credential: NodeCredential | None = None,
                       published: Callable[[str], str | None] | None = None) -> ScreeningParts | None:
    """The screening parts of a node, or ``None`` when the pilot is not enabled (``[screening] enabled``)."""
    if not settings.screening.enabled:
        return None
    parts = NodeParts(directory=directory, remote_store=remote_store, remote_studies=remote_studies,
                      site_store=site_store, messenger=NodeMessenger(client, policy) if client is not None else None,
                      audit=audit, grants=grants, node_credential=node_credential,
                      published=published)
    service = ScreeningService(settings, ScreeningStore.at(settings.storage.data_dir), parts)
    return ScreeningParts(service, site_router(service), screening_pages(service), network_router(service))
