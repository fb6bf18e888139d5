"""The KOS imaging manifest of an exam (DESIGN §3, IHE XDS-I.b, PS3.3 A.35.4 Key Object Selection).

Built with highdicom's :class:`~highdicom.ko.KeyObjectSelectionDocument` (title (113030, DCM,
"Manifest"), TID 2010 content, CurrentRequestedProcedureEvidenceSequence), then completed with what
highdicom does not do:

- the INS triple in place of the PACS's local identifier (:mod:`drimbox.manifest.patient`);
- ``RetrieveURL`` (0008,1190) on every series item: the node's network-facing WADO-RS *series* URL
  (DRIM-M; optionally ``RetrieveLocationUID`` for XDS-I.b consumers);
- ReferencedRequestSequence (:mod:`drimbox.manifest.request`) and IssuerOfAccessionNumberSequence;
- WAVEFORM items for waveforms (highdicom only writes IMAGE or COMPOSITE);
- dates and times taken from the report rather than the clock, so that the same inputs give the same
  bytes: a retried publication sends exactly the same document.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from highdicom.ko import KeyObjectSelection, KeyObjectSelectionDocument
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import UID

from drimbox.manifest.evidence import ReferenceKind, evidence_datasets
from drimbox.manifest.patient import apply_patient, patient_name, require_ins
from drimbox.manifest.request import issuer_sequence, request_item
from drimbox.manifest.uids import manifest_series_uid, manifest_uid
from drimbox.pacs.models import StudyInfo
from drimbox.reports import ImagingReport

__all__ = [
    "KOS_SOP_CLASS",
    "BuiltManifest",
    "ManifestBuilder",
    "ManifestOptions",
    "RetrieveUrl",
    "build_manifest",
    "encode_manifest",
    "series_retrieve_url",
]

KOS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"
"""Key Object Selection Document Storage."""

RetrieveUrl = Callable[[str, str], str]
"""(Study Instance UID, Series Instance UID) → the series' WADO-RS URL."""


def series_retrieve_url(dicomweb_root: str) -> RetrieveUrl:
    """RetrieveURLs under a WADO-RS root: ``{root}/studies/{study}/series/{series}`` (PS3.18 10.4.1).

    Parameters
    ----------
    dicomweb_root
        The node's *network-facing* DICOMweb root, e.g. ``https://db.site.fr/dicom-web``.
    """
    root = dicomweb_root.rstrip("/")
    return lambda study, series: f"{root}/studies/{study}/series/{series}"


@dataclass(frozen=True)
class ManifestOptions:
    """Site choices for the manifest's own attributes.

    Attributes
    ----------
    manufacturer
        Manufacturer (0008,0070) of the KOS (the node).
    series_number, series_description
        The manifest series (one per study, every version in it).
    institution_name
        InstitutionName; when ``None``, the report's organisation as the ANS KOS writes it: its name
        and its IdNatStruct in the 10th component (``Centre de radiologie Ambroise^^^^^^^^^1012…``).
    zone
        The site's zone: DICOM dates and times are local wall-clock time (PS3.5 6.2), with
        TimezoneOffsetFromUTC (0008,0201) saying which.
    retrieve_location_uid
        When set, RetrieveLocationUID (0040,E011) of every series item (IHE XDS-I.b consumers that
        retrieve by DICOM rather than by RetrieveURL).
    description
        Add a TEXT "Key Object Description" item naming the exam (as the ANS KOS does).
    """

    manufacturer: str = "DRIMBOX"
    series_number: int = 999
    series_description: str = "Manifeste DRIM-M"
    institution_name: str | None = None
    zone: tzinfo = field(default_factory=lambda: ZoneInfo("Europe/Paris"))
    retrieve_location_uid: str | None = None
    description: bool = True


def _common(study: StudyInfo, report: ImagingReport) -> Dataset:
    """Patient and study attributes highdicom copies from the first evidence dataset."""
    found = study.identifier
    ds = Dataset()
    ds.PatientID = report.patient.ins
    ds.PatientName = patient_name(report.patient)
    ds.PatientBirthDate = report.patient.birth_date
    ds.PatientSex = {"M": "M", "F": "F"}.get(report.patient.sex, "")
    ds.AccessionNumber = report.accession_number
    ds.StudyID = str(found.get("StudyID", "") or "")
    ds.StudyDate = str(found.get("StudyDate", "") or "")
    ds.StudyTime = str(found.get("StudyTime", "") or "")
    ds.ReferringPhysicianName = str(found.get("ReferringPhysicianName", "") or "")
    return ds


def _institution(report: ImagingReport) -> str | None:
    """Name and IdNatStruct, XON-like (HL7 XON.1 name, XON.10 identifier) within LO's 64 characters."""
    organisation = report.organisation
    if not organisation.id_nat_struct:
        return organisation.name[:64] or None
    suffix = "^" * 9 + organisation.id_nat_struct
    return organisation.name[: 64 - len(suffix)] + suffix


def _description(report: ImagingReport, study: StudyInfo) -> str | None:
    act = report.exam_codes[0].display if report.exam_codes else ""
    label = act or str(study.identifier.get("StudyDescription", "") or "")
    return f"Examen : {label}" if label else None


def _set_times(kos: Dataset, moment: datetime, zone: tzinfo) -> None:
    local = moment.astimezone(zone)
    date, time = local.strftime("%Y%m%d"), local.strftime("%H%M%S")
    kos.InstanceCreationDate = kos.ContentDate = kos.SeriesDate = date
    kos.InstanceCreationTime = kos.ContentTime = kos.SeriesTime = time
    kos.TimezoneOffsetFromUTC = local.strftime("%z")
    for equipment in kos.get("ContributingEquipmentSequence", []):
        equipment.ContributionDateTime = local.strftime("%Y%m%d%H%M%S%z")


def _complete_evidence(kos: Dataset, retrieve_url: RetrieveUrl, options: ManifestOptions) -> None:
    for study_item in kos.CurrentRequestedProcedureEvidenceSequence:
        for series_item in study_item.ReferencedSeriesSequence:
            series_item.RetrieveURL = retrieve_url(study_item.StudyInstanceUID, series_item.SeriesInstanceUID)
            if options.retrieve_location_uid:
                series_item.RetrieveLocationUID = options.retrieve_location_uid


def _mark_waveforms(kos: Dataset, waveforms: set[str]) -> None:
    for item in kos.ContentSequence:
        if item.ValueType == "COMPOSITE" and item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID in waveforms:
            item.ValueType = ReferenceKind.WAVEFORM.value


def build_manifest(
    study: StudyInfo,
    report: ImagingReport,
    retrieve_url: RetrieveUrl,
    *,
    revision: int = 0,
    options: ManifestOptions | None = None,
) -> KeyObjectSelectionDocument:
    """Build the KOS manifest of ``report``'s exam as the PACS walk ``study`` found it.

    Parameters
    ----------
    study
        The hierarchical C-FIND walk (:meth:`drimbox.pacs.PacsClient.walk_study`): every instance
        of every series is referenced. Its Study Instance UID is the manifest's.
    report
        The report (patient identity, accession, request, organisation, authoring time).
    retrieve_url
        RetrieveURL of each series (:func:`series_retrieve_url`).
    revision
        Content revision of the same report version (see :func:`~drimbox.manifest.uids.manifest_uid`).
    options
        Site choices (:class:`ManifestOptions`).

    Returns
    -------
    KeyObjectSelectionDocument
        A pydicom dataset with file meta information; :func:`encode_manifest` gives its bytes.

    Raises
    ------
    IdentityNotQualified
        The identity is not qualified or has no INS (permanent: dead-letter).
    EmptyStudy, IncompleteEvidence
        Nothing to reference, or instances without SOP Class UID.
    """
    options = options or ManifestOptions()
    require_ins(report.patient)
    study_uid = study.study_instance_uid
    references = list(evidence_datasets(study, _common(study, report)))
    evidence = [ds for ds, _kind in references]
    content = KeyObjectSelection(
        document_title=codes.DCM.Manifest,
        referenced_objects=evidence,
        description=_description(report, study) if options.description else None,
    )
    local = report.effective_time.astimezone(options.zone)
    kos = KeyObjectSelectionDocument(
        evidence=evidence,
        content=content,
        series_instance_uid=manifest_series_uid(study_uid),
        series_number=options.series_number,
        sop_instance_uid=manifest_uid(study_uid, report.set_id, report.version_number, revision),
        instance_number=report.version_number * 1000 + revision,
        manufacturer=options.manufacturer,
        institution_name=options.institution_name or _institution(report),
        requested_procedures=[request_item(report, study_uid)],
        specific_character_set="ISO_IR 192",  # UTF-8: names and descriptions carry accents
        series_description=options.series_description,
        content_date=local.date(),
        content_time=local.time().replace(microsecond=0),
    )
    # The references are independent items, not a narrative: SEPARATE (as the ANS KOS; highdicom
    # writes CONTINUOUS, its default for every SR root container).
    kos.ContinuityOfContent = "SEPARATE"
    apply_patient(kos, report.patient)
    if report.accession_issuer:
        kos.IssuerOfAccessionNumberSequence = issuer_sequence(report.accession_issuer)
    if "StudyDescription" in study.identifier and study.identifier.StudyDescription:
        kos.StudyDescription = str(study.identifier.StudyDescription)
    _complete_evidence(kos, retrieve_url, options)
    _mark_waveforms(kos, {ds.SOPInstanceUID for ds, kind in references if kind is ReferenceKind.WAVEFORM})
    _set_times(kos, report.effective_time, options.zone)
    return kos


def encode_manifest(kos: Dataset) -> bytes:
    """The KOS as a DICOM Part 10 file (Explicit VR Little Endian), ready for ITI-41."""
    buffer = io.BytesIO()
    kos.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class BuiltManifest:
    """A manifest and its Part 10 bytes."""

    sop_instance_uid: str
    data: bytes
    dataset: Dataset = field(repr=False, compare=False)


class ManifestBuilder:
    """The node's manifest factory: its network WADO-RS root and options, bound once.

    ``builder(study, report, revision)`` has the shape of the publication pipeline's ``KosFactory``
    (returning the UID and the bytes).

    Parameters
    ----------
    dicomweb_root
        The node's network-facing DICOMweb root (RetrieveURLs point under it).
    options
        Site choices.
    """

    def __init__(self, dicomweb_root: str, options: ManifestOptions | None = None) -> None:
        self.retrieve_url = series_retrieve_url(dicomweb_root)
        self.options = options or ManifestOptions()

    def __call__(self, study: StudyInfo, report: ImagingReport, revision: int = 0) -> BuiltManifest:
        kos = build_manifest(study, report, self.retrieve_url, revision=revision, options=self.options)
        return BuiltManifest(sop_instance_uid=str(UID(kos.SOPInstanceUID)), data=encode_manifest(kos), dataset=kos)
