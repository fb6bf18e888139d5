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

__all__ = ["InstanceInfo", "QueryLevel", "RetrievedInstance", "SeriesInfo", "StudyInfo"]


class QueryLevel(StrEnum):
    """Query/Retrieve Level (0008,0052) of the Study Root information model."""

    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """One instance as reported by an IMAGE-level C-FIND."""

    sop_class_uid: str
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
