"""What a manifest references: every instance of the PACS walk, and how to name it in TID 2010.

TID 2010 (Key Object Selection, PS3.16) references an image with an IMAGE content item, a waveform
with WAVEFORM and any other composite object (SR, presentation state, encapsulated PDF, KOS…) with
COMPOSITE. highdicom decides IMAGE vs COMPOSITE by the presence of Rows/Columns in the dataset it is
given, which a C-FIND answer may lack (DCMTK's dcmqrscp returns neither) — so the kind is decided
here from the SOP Class, Rows/Columns only confirming it.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from pydicom import Dataset
from pydicom.uid import UID

from drimbox.manifest.errors import EmptyStudy, IncompleteEvidence
from drimbox.pacs.models import InstanceInfo, StudyInfo

__all__ = ["ReferenceKind", "evidence_datasets", "reference_kind"]

# Image IODs whose UID name does not say "Image Storage" (PS3.4 B.5).
_OTHER_IMAGE_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation Storage (an image IOD, PS3.3 A.51)
        "1.2.840.10008.5.1.4.1.1.66.7",  # Label Map Segmentation Storage
        "1.2.840.10008.5.1.4.1.1.481.1",  # RT Image Storage
        "1.2.840.10008.5.1.4.1.1.30",  # Parametric Map Storage
    }
)


class ReferenceKind(StrEnum):
    """Value Type of the TID 2010 content item that references an instance."""

    IMAGE = "IMAGE"
    WAVEFORM = "WAVEFORM"
    COMPOSITE = "COMPOSITE"


def reference_kind(instance: InstanceInfo) -> ReferenceKind:
    """IMAGE, WAVEFORM or COMPOSITE for one instance of the walk (its SOP Class must be known)."""
    name = UID(instance.sop_class_uid or "").name
    if "Waveform" in name:
        return ReferenceKind.WAVEFORM
    if "Image Storage" in name or instance.sop_class_uid in _OTHER_IMAGE_CLASSES:
        return ReferenceKind.IMAGE
    if instance.rows and instance.columns and "Storage" in name and "Presentation State" not in name:
        return ReferenceKind.IMAGE  # an image class pydicom does not name yet (newer than its dictionary)
    return ReferenceKind.COMPOSITE


def _check(study: StudyInfo) -> None:
    if study.instance_count == 0:
        raise EmptyStudy(f"study {study.study_instance_uid} has no instance to reference")
    unknown = tuple(i.sop_instance_uid for s in study.series for i in s.instances if not i.sop_class_uid)
    if unknown:
        raise IncompleteEvidence(
            f"{len(unknown)} instance(s) of study {study.study_instance_uid} have no SOP Class UID in the "
            f"PACS answers (first: {unknown[0]})",
            unknown,
        )


def evidence_datasets(study: StudyInfo, common: Dataset) -> Iterable[tuple[Dataset, ReferenceKind]]:
    """One small dataset per instance, in walk order (series, then instance number), and its kind.

    Each dataset has the keys highdicom needs (Study/Series/SOP UIDs and class), Rows/Columns for
    images only (that is what makes highdicom write an IMAGE item), and the attributes of
    ``common`` (patient and study, which highdicom copies from the first one).

    Raises
    ------
    EmptyStudy, IncompleteEvidence
        Nothing to reference, or an instance without SOP Class UID.
    """
    _check(study)
    for series in study.series:
        for instance in series.instances:
            kind = reference_kind(instance)
            ds = Dataset()
            ds.update(common)
            ds.StudyInstanceUID = study.study_instance_uid
            ds.SeriesInstanceUID = series.series_instance_uid
            ds.SOPClassUID = instance.sop_class_uid
            ds.SOPInstanceUID = instance.sop_instance_uid
            if kind is ReferenceKind.IMAGE:
                ds.Rows = instance.rows or 1  # only the presence counts (highdicom never copies them)
                ds.Columns = instance.columns or 1
            yield ds, kind
