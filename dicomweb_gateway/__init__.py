"""DICOMweb (PS3.18) server: QIDO-RS, WADO-RS, STOW-RS over a pluggable DICOM store backend.

This package imports neither ``drimbox`` nor ``registry``: its backends come in through the
:class:`DicomStore` protocol, and the node mounts :func:`create_dicomweb_router`.
"""

from dicomweb_gateway.app import create_app, create_dicomweb_router
from dicomweb_gateway.backend import (
    DicomStore,
    FailureReason,
    InstanceFile,
    QueryLevel,
    RetrieveTarget,
    SearchQuery,
    StoreOutcome,
    StoreStatus,
    WarningReason,
)
from dicomweb_gateway.backends.filesystem import FileStore
from dicomweb_gateway.cache import CachingStore, PrefetchReport, prefetch
from dicomweb_gateway.errors import (
    BackendError,
    BackendUnavailable,
    GatewayError,
    InvalidQuery,
    MalformedMultipart,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    RequestError,
    UnsupportedMediaType,
)
from dicomweb_gateway.settings import GatewaySettings

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "CachingStore",
    "DicomStore",
    "FailureReason",
    "FileStore",
    "GatewayError",
    "GatewaySettings",
    "InstanceFile",
    "InvalidQuery",
    "MalformedMultipart",
    "NotAcceptable",
    "NotFound",
    "PayloadTooLarge",
    "PrefetchReport",
    "QueryLevel",
    "RequestError",
    "RetrieveTarget",
    "SearchQuery",
    "StoreOutcome",
    "StoreStatus",
    "UnsupportedMediaType",
    "WarningReason",
    "create_app",
    "create_dicomweb_router",
    "prefetch",
]
