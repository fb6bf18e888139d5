"""Value objects exchanged with the PACS bridge.

C-FIND results stay pydicom ``Dataset`` identifiers (nothing is lost); the hierarchical walk
summarises them as typed, immutable trees, and a retrieval yields one :class:`RetrievedInstance` per
file written to disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from pydicom import Dataset

__all__ = [
    "InstanceInfo",
    "QueryLevel",
    "RetrievedInstance",
    "SeriesInfo",
    "StoreFailure",
    "StoreReport",
    "StudyInfo",
]


class QueryLevel(StrEnum):
    """Query/Retrieve Level (0008,0052) of the Study Root information model."""

    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """One instance as reported by an IMAGE-level C-FIND.

    Every attribute but the SOP Instance UID is an optional return key (PS3.4 C.6.1.1.5): a PACS
    may leave it out. DCMTK's ``dcmqrscp`` returns neither SOP Class UID nor Rows/Columns, for
    instance, so they are ``None`` there.
    """

    sop_class_uid: str | None
    sop_instance_uid: str
    instance_number: int | None = None
    rows: int | None = None
    columns: int | None = None
    number_of_frames: int | None = None


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """One series (SERIES-level identifier) and its instances."""

    series_instance_uid: str
    modality: str
    identifier: Dataset = field(compare=False, repr=False)
    instances: tuple[InstanceInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class StudyInfo:
    """One study (STUDY-level identifier) and its series, as walked level by level."""

    study_instance_uid: str
    identifier: Dataset = field(compare=False, repr=False)
    series: tuple[SeriesInfo, ...] = ()

    @property
    def instance_count(self) -> int:
        """Number of instances in all series."""
        return sum(len(s.instances) for s in self.series)

    def sop_instance_uids(self) -> frozenset[str]:
        """Every SOP Instance UID of the study."""
        return frozenset(i.sop_instance_uid for s in self.series for i in s.instances)

    def sop_class_uids(self) -> frozenset[str]:
        """Every SOP Class UID the PACS reported (instances without one are left out)."""
        return frozenset(i.sop_class_uid for s in self.series for i in s.instances if i.sop_class_uid)

    def find_series(self, series_instance_uid: str) -> SeriesInfo | None:
        """The series with this UID, if the study has it."""
        return next((s for s in self.series if s.series_instance_uid == series_instance_uid), None)


@dataclass(frozen=True, slots=True)
class RetrievedInstance:
    """One instance received from a peer and durably written to ``path`` (DICOM file format)."""

    path: Path
    study_instance_uid: str
    series_instance_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    size: int


@dataclass(frozen=True, slots=True)
class StoreFailure:
    """One file that a C-STORE did not store (``status`` is ``None`` when nothing was sent)."""

    path: Path
    sop_instance_uid: str | None
    reason: str
    status: int | None = None


@dataclass(frozen=True, slots=True)
class StoreReport:
    """Outcome of storing files to a peer: what it stored, stored with a warning, or refused."""

    stored: tuple[str, ...] = ()
    """SOP Instance UIDs stored with status Success."""
    warnings: tuple[tuple[str, int], ...] = ()
    """(SOP Instance UID, status) stored with a warning status (e.g. 0xB000 coercion)."""
    failed: tuple[StoreFailure, ...] = ()
    bytes_sent: int = 0

    @property
    def ok(self) -> bool:
        """Whether every file was stored (possibly with warnings)."""
        return not self.failed
