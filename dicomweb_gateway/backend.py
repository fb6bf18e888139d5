"""The backend seam: what the gateway asks of a DICOM store, and the value objects it exchanges.

A backend is anything that can search, retrieve and store DICOM instances: the site's PACS over
DIMSE (pynetdicom), the PACS's own DICOMweb/REST fast path, the node's on-disk cache, a remote
node. Its methods are **synchronous** because the usual implementations are thread-based; the
routes call them from starlette's thread pool, and may call ``next()`` on one iterator from
different worker threads (never concurrently).

Errors a backend raises (see :mod:`dicomweb_gateway.errors`)::

    GatewayError
    ├── NotFound                 404  the study / series / instance does not exist
    └── BackendError             502  anything else that is the backend's fault
        └── BackendUnavailable   503  + Retry-After: unreachable, busy, timed out

Iterators are **closed** (``close()``, i.e. ``GeneratorExit`` in a generator) as soon as the
gateway stops consuming them: results truncated by ``limit``, client gone, error. A generator
backend releases its resources in ``finally`` (cancel the C-FIND/C-GET, release the association,
delete temp files).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydicom import Dataset
from pydicom.tag import BaseTag

from dicomweb_gateway.errors import BackendError, BackendUnavailable, NotFound

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "DicomStore",
    "FailureReason",
    "InstanceFile",
    "NotFound",
    "QueryLevel",
    "RetrieveTarget",
    "SearchQuery",
    "StoreOutcome",
    "StoreStatus",
    "WarningReason",
]


class QueryLevel(enum.StrEnum):
    """Query/Retrieve level (PS3.4 C.6.1.1): the value of QueryRetrieveLevel (0008,0052)."""

    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


@dataclass(frozen=True)
class SearchQuery:
    """One QIDO-RS search, already validated, in C-FIND terms (PS3.18 §10.6, PS3.4 C.4.1).

    Attributes
    ----------
    level
        What each result describes.
    study_uid, series_uid
        Scope from the resource path (``/studies/{study}/series/{series}/instances``); ``None`` when
        the path does not restrict it. They are also present in ``matching`` when set.
    matching
        Matching keys with their non-empty values, as C-FIND would carry them: UID lists as
        multi-valued UI, DA/TM/DT ranges as ``"A-B"``, wildcards ``*``/``?`` in text values.
    return_keys
        Attributes requested in the answer (the level's defaults and ``includefield``) that the
        backend should fill when it knows them (as empty C-FIND return keys).
    include_all
        ``includefield=all``: return every attribute the backend has at this level.
    fuzzy
        ``fuzzymatching=true``: person names match case-insensitively, by word prefix (PS3.4
        C.2.2.2.1.3 fuzzy semantic matching); a backend that cannot, matches literally.
    """

    level: QueryLevel
    matching: Dataset
    return_keys: tuple[BaseTag, ...] = ()
    study_uid: str | None = None
    series_uid: str | None = None
    include_all: bool = False
    fuzzy: bool = False


@dataclass(frozen=True)
class RetrieveTarget:
    """What a WADO-RS retrieve addresses: a study, a series or one instance (PS3.18 §10.4.1)."""

    study_uid: str
    series_uid: str | None = None
    sop_instance_uid: str | None = None

    def __post_init__(self) -> None:
        if self.sop_instance_uid is not None and self.series_uid is None:
            raise ValueError("an instance target needs its series UID")

    @property
    def level(self) -> QueryLevel:
        """The retrieve level this target implies."""
        if self.sop_instance_uid is not None:
            return QueryLevel.IMAGE
        return QueryLevel.SERIES if self.series_uid is not None else QueryLevel.STUDY


@dataclass(frozen=True)
class InstanceFile:
    """One retrieved instance: a DICOM Part 10 file on disk, with the keys the gateway needs.

    The file must stay readable until the consumer asks for the next item or closes the iterator;
    the backend may delete it afterwards (temp files of a C-GET).

    Attributes
    ----------
    path
        The Part 10 file (preamble, ``DICM``, File Meta Information, data set).
    study_uid, series_uid, sop_instance_uid, sop_class_uid
        Its identifying attributes.
    transfer_syntax
        The Transfer Syntax UID of the stored data set, as in its File Meta Information.
    size
        File size in bytes.
    """

    path: Path
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax: str
    size: int


class StoreStatus(enum.Enum):
    """Outcome of storing one instance (PS3.18 §10.5.3)."""

    STORED = "stored"
    WARNING = "warning"
    FAILED = "failed"


class FailureReason(enum.IntEnum):
    """Failure Reason (0008,1197) values a STOW response uses (PS3.18 Table 10.5.3-3, PS3.4 B.2.3)."""

    PROCESSING_FAILURE = 0x0110
    DUPLICATE_SOP_INSTANCE = 0x0111
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    OUT_OF_RESOURCES = 0xA700
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    CANNOT_UNDERSTAND = 0xC000
    TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122


class WarningReason(enum.IntEnum):
    """Warning Reason (0008,1196) values (PS3.18 Table 10.5.3-4, PS3.4 B.2.3)."""

    COERCION_OF_DATA_ELEMENTS = 0xB000
    ELEMENTS_DISCARDED = 0xB006
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xB007


@dataclass(frozen=True)
class StoreOutcome:
    """What happened to one stored instance.

    Attributes
    ----------
    status
        Stored, stored with a warning, or failed.
    failure_reason
        For ``FAILED``: the Failure Reason code.
    warning_reason
        For ``WARNING``: the Warning Reason code.
    message
        Free text for logs and the ``Warning`` header.
    """

    status: StoreStatus
    failure_reason: FailureReason | None = None
    warning_reason: WarningReason | None = None
    message: str = field(default="", compare=False)

    @classmethod
    def stored(cls) -> StoreOutcome:
        """Stored as sent."""
        return cls(StoreStatus.STORED)

    @classmethod
    def failed(cls, reason: FailureReason, message: str = "") -> StoreOutcome:
        """Not stored, for ``reason``."""
        return cls(StoreStatus.FAILED, failure_reason=reason, message=message)

    @classmethod
    def warning(cls, reason: WarningReason, message: str = "") -> StoreOutcome:
        """Stored, but not exactly as sent."""
        return cls(StoreStatus.WARNING, warning_reason=reason, message=message)


@runtime_checkable
class DicomStore(Protocol):
    """A DICOM store the gateway serves (PS3.18 QIDO-RS, WADO-RS, STOW-RS)."""

    def search(self, query: SearchQuery) -> Iterator[Dataset]:
        """Stream the matches of ``query``, one data set per study/series/instance.

        Each result carries the level's unique keys (StudyInstanceUID, and SeriesInstanceUID /
        SOPInstanceUID below study level), the matching keys and whatever ``return_keys`` it
        knows. Order is the backend's; the gateway applies offset/limit and closes the iterator
        once it has enough (a C-FIND backend then sends C-CANCEL).
        """
        ...

    def retrieve(self, target: RetrieveTarget) -> Iterator[InstanceFile]:
        """Stream the instances of ``target``, each as soon as it is on disk.

        Raises :class:`NotFound` (before the first item, ideally) when nothing matches. The first
        item must be yielded before the last instance is fetched: the gateway starts sending it
        to the client at once.
        """
        ...

    def store(self, path: Path) -> StoreOutcome:
        """Store the Part 10 file at ``path`` (a temp file the gateway owns; copy or move it).

        Returns the outcome for this instance; raises :class:`BackendUnavailable` when the store
        cannot be reached at all.
        """
        ...
