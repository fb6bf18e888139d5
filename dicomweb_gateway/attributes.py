"""Which attributes belong to which query level, and what each level returns by default.

Default return attributes are those of PS3.18 Tables 10.6.3-3 (study), 10.6.3-4 (series) and
10.6.3-5 (instance). The level sets follow the Patient/Study Root information models (PS3.4
C.6.1/C.6.2): the Patient and Study modules for STUDY, the Series-level modules for SERIES, and
everything else is an instance (IMAGE) attribute.
"""

from __future__ import annotations

from typing import Final

from pydicom.datadict import tag_for_keyword
from pydicom.tag import BaseTag, Tag

from dicomweb_gateway.backend import QueryLevel

__all__ = [
    "COMPUTED_KEYWORDS",
    "SERIES_KEYWORDS",
    "STUDY_KEYWORDS",
    "default_return_keywords",
    "level_of",
    "tags",
]

STUDY_DEFAULTS: Final = (
    "SpecificCharacterSet", "StudyDate", "StudyTime", "AccessionNumber", "InstanceAvailability",
    "ModalitiesInStudy", "ReferringPhysicianName", "TimezoneOffsetFromUTC", "RetrieveURL",
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID",
    "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
)  # fmt: skip
SERIES_DEFAULTS: Final = (
    "SpecificCharacterSet", "Modality", "TimezoneOffsetFromUTC", "SeriesDescription", "RetrieveURL",
    "SeriesInstanceUID", "SeriesNumber", "NumberOfSeriesRelatedInstances",
    "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime", "RequestAttributesSequence",
)  # fmt: skip
INSTANCE_DEFAULTS: Final = (
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "InstanceAvailability",
    "TimezoneOffsetFromUTC", "RetrieveURL", "InstanceNumber", "Rows", "Columns", "BitsAllocated",
    "NumberOfFrames",
)  # fmt: skip

STUDY_KEYWORDS: Final = frozenset({
    # Patient module (PS3.3 C.7.1.1) and Patient Study module (C.7.2.2)
    "PatientName", "PatientID", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence",
    "TypeOfPatientID", "OtherPatientIDsSequence", "PatientBirthDate", "PatientBirthTime", "PatientSex",
    "PatientComments", "EthnicGroup", "PatientAge", "PatientSize", "PatientWeight", "Occupation",
    "AdditionalPatientHistory", "AdmittingDiagnosesDescription", "PatientSpeciesDescription",
    # General Study module (C.7.2.1)
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
    "AccessionNumber", "IssuerOfAccessionNumberSequence", "StudyDescription", "PhysiciansOfRecord",
    "NameOfPhysiciansReadingStudy", "ProcedureCodeSequence", "ReasonForPerformedProcedureCodeSequence",
    "RequestingPhysician", "RequestedProcedureDescription", "TimezoneOffsetFromUTC",
    # Study-level return keys computed by the archive (PS3.4 C.6.1.1.2)
    "ModalitiesInStudy", "SOPClassesInStudy", "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances", "NumberOfPatientRelatedStudies", "InstanceAvailability",
})  # fmt: skip
SERIES_KEYWORDS: Final = frozenset({
    "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription", "SeriesDate", "SeriesTime",
    "Laterality", "BodyPartExamined", "ProtocolName", "PerformingPhysicianName", "OperatorsName",
    "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime", "PerformedProcedureStepID",
    "PerformedProcedureStepDescription", "RequestAttributesSequence", "Manufacturer",
    "InstitutionName", "StationName", "ManufacturerModelName", "FrameOfReferenceUID",
    "NumberOfSeriesRelatedInstances",
})  # fmt: skip
COMPUTED_KEYWORDS: Final = frozenset({
    "ModalitiesInStudy", "SOPClassesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
    "NumberOfSeriesRelatedInstances", "NumberOfPatientRelatedStudies", "InstanceAvailability", "RetrieveURL",
})  # fmt: skip
"""Attributes an archive derives (counts, aggregates, its own URLs) rather than reads from files."""


def level_of(keyword: str) -> QueryLevel:
    """The query level an attribute belongs to (IMAGE when not a study or series attribute)."""
    if keyword in STUDY_KEYWORDS:
        return QueryLevel.STUDY
    if keyword in SERIES_KEYWORDS:
        return QueryLevel.SERIES
    return QueryLevel.IMAGE


def default_return_keywords(level: QueryLevel, *, study_scoped: bool, series_scoped: bool) -> tuple[str, ...]:
    """Default return attributes of a search (PS3.18 §10.6.3.3, Tables 10.6.3-3 to -5).

    Parameters
    ----------
    level
        The search level.
    study_scoped, series_scoped
        Whether the path names the study / series: when it does not, the upper levels' default
        attributes are returned too (``/series`` returns study attributes, ``/instances`` study
        and series attributes).
    """
    keys: list[str] = []
    if level == QueryLevel.STUDY or not study_scoped:
        keys += STUDY_DEFAULTS
    if level == QueryLevel.SERIES or (level == QueryLevel.IMAGE and not series_scoped):
        keys += SERIES_DEFAULTS
    if level == QueryLevel.IMAGE:
        keys += INSTANCE_DEFAULTS
    keys.append("StudyInstanceUID")
    if level != QueryLevel.STUDY:
        keys.append("SeriesInstanceUID")
    return tuple(dict.fromkeys(keys))


def tags(keywords: tuple[str, ...] | list[str]) -> tuple[BaseTag, ...]:
    """Tags of ``keywords`` (all must be dictionary keywords)."""
    out = []
    for keyword in keywords:
        value = tag_for_keyword(keyword)
        if value is None:
            raise KeyError(keyword)
        out.append(Tag(value))
    return tuple(out)
