"""The node's DICOMweb routers, one per face, and the prefetch API (DESIGN §2b).

- **site face** ``/dicom-web``: QIDO-RS, WADO-RS and STOW-RS over the local PACS through the cache;
- **network face** ``/dicom-web``: WADO-RS only (retrieve, metadata, bulk data, frames, rendered,
  thumbnails) — no QIDO, no STOW;
- **site face** ``/api/prefetch``: queue studies for the cache, and follow the job.

Both faces include these routers with :func:`drimbox.trust.include_protected`, so every route is
authenticated before the gateway's own dependencies run.

**Manifest scope.** DESIGN §2b limits the network face to the instances of the KOS named in the
``KOS-SOPInstanceUID`` header, for a KOS this node published and has not deprecated.
:func:`network_dicomweb_router` takes that check as its ``kos_scope`` dependency, run before the
store is chosen on every network route (the node supplies :mod:`drimbox.trust.scope`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, StringConstraints

from dicomweb_gateway import DicomStore, GatewaySettings, create_dicomweb_router
from drimbox.stores.prefetch import PrefetchJob, PrefetchJobs, StudyPrefetch

__all__ = [
    "DICOMWEB_PREFIX",
    "KosScope",
    "PrefetchRequest",
    "PrefetchStatus",
    "network_dicomweb_router",
    "prefetch_router",
    "site_dicomweb_router",
]

DICOMWEB_PREFIX = "/dicom-web"
_UID = r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$"

KosScope = Callable[..., Any]
"""A FastAPI dependency that admits (or refuses with 400/403) a network-face request for the KOS in its
``KOS-SOPInstanceUID`` header (DESIGN §2b; :func:`drimbox.trust.scope.kos_scope_dependency`)."""


def _provider(store: DicomStore) -> Callable[[], DicomStore]:
    def cached_pacs() -> DicomStore:
        return store

    return cached_pacs


def site_dicomweb_router(store: DicomStore, settings: GatewaySettings) -> APIRouter:
    """The site face's full DICOMweb (QIDO, WADO, STOW) under ``/dicom-web``."""
    router = APIRouter(prefix=DICOMWEB_PREFIX)
    router.include_router(create_dicomweb_router(_provider(store), settings, stow=True))
    return router


def network_dicomweb_router(
    store: DicomStore, settings: GatewaySettings, *, kos_scope: KosScope | None = None
) -> APIRouter:
    """The network face's DICOMweb under ``/dicom-web``: the WADO-RS routes only.

    Parameters
    ----------
    kos_scope
        The manifest-scope check (see the module docstring).
    """
    dependencies = [Depends(kos_scope)] if kos_scope is not None else []
    gateway = create_dicomweb_router(_provider(store), settings, dependencies=dependencies, stow=False)
    # QIDO-RS is the gateway's other read transaction; a peer only ever retrieves (RetrieveURLs).
    gateway.routes[:] = [r for r in gateway.routes if isinstance(r, APIRoute) and "WADO-RS" in r.tags]
    router = APIRouter(prefix=DICOMWEB_PREFIX)
    router.include_router(gateway)
    return router


Uid = Annotated[str, StringConstraints(pattern=_UID, max_length=64)]


class PrefetchRequest(BaseModel):
    """Studies to bring into the cache."""

    studies: Annotated[list[Uid], Field(min_length=1, max_length=500)]


class StudyStatus(BaseModel):
    """One study of a prefetch job."""

    study_uid: str
    state: str
    instances: int
    bytes: int
    from_cache: bool
    error: str | None


class PrefetchStatus(BaseModel):
    """A prefetch job."""

    id: str
    state: str
    status_url: str
    studies: list[StudyStatus]


def _status(job: PrefetchJob, url: str) -> PrefetchStatus:
    def one(s: StudyPrefetch) -> StudyStatus:
        return StudyStatus(study_uid=s.study_uid, state=s.state, instances=s.instances, bytes=s.bytes,
                           from_cache=s.from_cache, error=s.error)  # fmt: skip

    return PrefetchStatus(id=job.id, state=job.state, status_url=url, studies=[one(s) for s in job.studies])


def prefetch_router(jobs: PrefetchJobs) -> APIRouter:
    """``POST /api/prefetch`` (202 + status URL) and ``GET /api/prefetch/{job}``."""
    router = APIRouter(prefix="/api/prefetch", tags=["cache"])

    @router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=PrefetchStatus)
    def start_prefetch(body: PrefetchRequest, request: Request, response: Response) -> PrefetchStatus:
        """Queue studies for the node cache; follow the job at ``status_url`` (also ``Location``)."""
        job = jobs.submit(body.studies)
        url = str(request.url_for("prefetch_status", job_id=job.id))
        response.headers["Location"] = url
        return _status(job, url)

    @router.get("/{job_id}", response_model=PrefetchStatus, name="prefetch_status")
    def prefetch_status(job_id: str, request: Request) -> PrefetchStatus:
        """Progress of a prefetch job (404 once forgotten)."""
        job = jobs.get(job_id) if re.fullmatch(r"[0-9a-f]{32}", job_id) else None
        if job is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no prefetch job {job_id}")
        return _status(job, str(request.url))

    return router
