"""Build the node's DICOMweb backends from its settings: PACS backend, spool, cache, prefetch.

``dicomweb.backend`` chooses the path to the PACS: ``orthanc`` (REST fast path, needs
``pacs.rest_url``), ``dimse`` (any PACS), or ``auto`` (``orthanc`` when ``pacs.rest_url`` is set).
Either is wrapped in the gateway's read-through :class:`~dicomweb_gateway.CachingStore`, so a
study retrieved once is served from the node's disk afterwards.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dicomweb_gateway import CachingStore, FileStore, GatewaySettings
from drimbox.config import NodeSettings
from drimbox.errors import ConfigError
from drimbox.pacs import MoveMediator, PacsClient
from drimbox.stores.dimse import DimseStore
from drimbox.stores.orthanc import OrthancStore
from drimbox.stores.ownership import CacheLock
from drimbox.stores.prefetch import PrefetchJobs
from drimbox.stores.spool import Spool

__all__ = ["BackendKind", "DicomwebService", "backend_kind", "build_dicomweb"]

log = logging.getLogger(__name__)

BackendKind = Literal["dimse", "orthanc"]


def backend_kind(settings: NodeSettings) -> BackendKind:
    """The PACS backend ``dicomweb.backend`` selects (``auto`` resolved).

    Raises
    ------
    ConfigError
        ``orthanc`` without ``pacs.rest_url``.
    """
    chosen = settings.dicomweb.backend
    if chosen == "auto":
        return "orthanc" if settings.pacs.rest_url else "dimse"
    if chosen == "orthanc" and not settings.pacs.rest_url:
        raise ConfigError(
            "dicomweb.backend: 'orthanc' needs pacs.rest_url (Orthanc's REST API)", key="dicomweb.backend"
        )
    return chosen


@dataclass
class DicomwebService:
    """The DICOMweb backends of one node, and what the faces need to mount them."""

    kind: BackendKind
    upstream: DimseStore | OrthancStore
    cache: FileStore
    store: CachingStore
    spool: Spool
    site_settings: GatewaySettings
    network_settings: GatewaySettings
    prefetch: PrefetchJobs
    lock: CacheLock
    _dimse: PacsClient | None = None

    def close(self) -> None:
        """Stop prefetching, release connections, the cache index and the cache directory."""
        self.prefetch.close()
        if isinstance(self.upstream, OrthancStore):
            self.upstream.close()
        if self._dimse is not None:
            self._dimse.close()
        self.cache.close()
        self.lock.release()


def _dirs(settings: NodeSettings) -> tuple[Path, Path]:
    data = settings.storage.data_dir
    web = settings.dicomweb
    return (web.cache_dir or data / "dicomweb-cache", web.spool_dir or data / "dicomweb-spool")


def _gateway_settings(settings: NodeSettings, spool: Spool, public_url: str | None) -> GatewaySettings:
    web = settings.dicomweb
    return GatewaySettings(
        max_results=web.max_results, max_stow_bytes=web.max_stow_bytes, retry_after_s=web.retry_after_s,
        spool_dir=spool.stow_dir, public_base_url=public_url,
    )  # fmt: skip


def build_dicomweb(settings: NodeSettings, *, mediator: MoveMediator | None = None) -> DicomwebService:
    """Build the backends (nothing is contacted yet; the cache index is opened and recovered).

    Parameters
    ----------
    settings
        The node's settings (``pacs``, ``local``, ``dimse``, ``dicomweb``, ``storage``).
    mediator
        The node's C-MOVE mediator, shared with its running SCP; without it a PACS that has no
        C-GET (``pacs.supports_c_get = false``) cannot be retrieved from over DIMSE.

    Raises
    ------
    ConfigError
        A bad ``[dicomweb]`` choice, or the cache directory in use by another process.
    """
    kind = backend_kind(settings)
    cache_dir, spool_dir = _dirs(settings)
    lock = CacheLock(cache_dir)  # before anything deletes leftovers there (see drimbox.stores.ownership)
    try:
        return _build(settings, kind, cache_dir, spool_dir, lock, mediator)
    except BaseException:
        lock.release()
        raise


def _build(
    settings: NodeSettings, kind: BackendKind, cache_dir: Path, spool_dir: Path, lock: CacheLock,
    mediator: MoveMediator | None,
) -> DicomwebService:  # fmt: skip
    web = settings.dicomweb
    spool = Spool(spool_dir)
    dimse: PacsClient | None = None
    upstream: DimseStore | OrthancStore
    if kind == "orthanc":
        assert settings.pacs.rest_url is not None
        upstream = OrthancStore(
            settings.pacs.rest_url, spool, parallel=web.parallel_downloads, timeout_s=settings.pacs.timeout_s,
            retry_after_s=web.retry_after_s,
        )  # fmt: skip
    else:
        # fsync=False: spooled files are transient; the cache fsyncs its own copy.
        dimse = PacsClient(settings.local, settings.pacs, settings.dimse, mediator=mediator, fsync=False)
        upstream = DimseStore(dimse, spool, retry_after_s=web.retry_after_s)
    cache = FileStore(cache_dir, max_bytes=web.cache_max_bytes or None)
    store = CachingStore(cache, upstream, revalidate_after_s=web.cache_revalidate_s)
    network_url = settings.http.public_network_url
    site = _gateway_settings(settings, spool, web.public_url)
    network = _gateway_settings(settings, spool, f"{network_url.rstrip('/')}/dicom-web" if network_url else None)
    log.info("dicomweb backend %s over %r, cache %s", kind, upstream, cache_dir)
    return DicomwebService(kind, upstream, cache, store, spool, site, network, PrefetchJobs(store), lock, dimse)
