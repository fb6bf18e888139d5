"""The node's DICOMweb backends: the PACS behind the gateway's ``DicomStore`` protocol, and the cache.

- :class:`DimseStore` -- any PACS over DIMSE (hierarchical C-FIND, C-GET or C-MOVE, C-STORE);
- :class:`OrthancStore` -- the fast path through Orthanc's REST API and DICOMweb plugin;
- :func:`build_dicomweb` -- the backend ``[dicomweb]`` selects, wrapped in the gateway's
  read-through cache, with the spool and the prefetch jobs;
- :func:`site_dicomweb_router`, :func:`network_dicomweb_router`, :func:`prefetch_router` -- what
  the two HTTP faces mount.

Errors from the PACS bridge are translated to the gateway's tree in one place
(:mod:`drimbox.stores.errors`): unreachable or timed out → 503 with ``Retry-After``; unknown study → 404.
"""

from drimbox.stores.dimse import DimseStore
from drimbox.stores.factory import DicomwebService, backend_kind, build_dicomweb
from drimbox.stores.orthanc import OrthancStore
from drimbox.stores.prefetch import PrefetchJob, PrefetchJobs, StudyPrefetch, prefetch_study
from drimbox.stores.routes import network_dicomweb_router, prefetch_router, site_dicomweb_router
from drimbox.stores.spool import Spool

__all__ = [
    "DicomwebService",
    "DimseStore",
    "OrthancStore",
    "PrefetchJob",
    "PrefetchJobs",
    "Spool",
    "StudyPrefetch",
    "backend_kind",
    "build_dicomweb",
    "network_dicomweb_router",
    "prefetch_router",
    "prefetch_study",
    "site_dicomweb_router",
]
