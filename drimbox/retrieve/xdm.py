"""IHE XDM (ITI TF-1 §16, ITI TF-3 §4.2.3 / ITI-32 Distribute Document Set on Media) for one exam (F10).

**Export** (:func:`export_xdm`) writes a zip with the layout ITI-32 prescribes::

    README.TXT                          who made the archive, what it holds, whom to contact
    INDEX.HTM                           the same for a browser, with a link to every file
    IHE_XDM/SUBSET01/METADATA.XML       lcm:SubmitObjectsRequest: a submission set, one document entry
                                        per document (the KOS, the report), with URI, hash and size
    IHE_XDM/SUBSET01/KOS00001.DCM       the imaging manifest (XDS-I.b: the DICOM images are not
    IHE_XDM/SUBSET01/DOC00002.XML|PDF   document entries; the KOS references them)
    IHE_XDM/SUBSET01/DICOM/S0001/I00001.DCM …   every instance, one directory per series

The zip is *streamed* to a file or to any writable object (an HTTP response): instances are copied
in 1 MiB chunks, never held whole, ZIP64 when a member or the archive needs it. Names are 8.3 so the
archive also burns to ISO 9660 media unchanged.

**Import** (:func:`read_xdm`, :func:`import_xdm`) judges an untrusted archive before extracting
anything (:mod:`drimbox.retrieve.xdm_safety`: zip bombs, traversal, links, encryption), parses
METADATA.XML, checks every document against its ``hash`` and ``size`` slots while extracting it, and
extracts under names it makes itself (``dicom/000001.dcm``) — an archive's names never become paths.
Every problem found is reported in one :class:`~drimbox.errors.InvalidRequest`.
"""

from __future__ import annotations

import hashlib
import html
import io
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Generic, Protocol, TypeVar
from zoneinfo import ZoneInfo

import pydicom
import structlog
from lxml import etree
from pydicom import Dataset
from pydicom.errors import InvalidDicomError

from drimbox import __version__
from drimbox.config import NodeSettings
from drimbox.errors import InvalidRequest
from drimbox.publish import dmp
from drimbox.publish.submission import (
    KOS_CLASS,
    KOS_FORMAT,
    KOS_TITLE,
    KOS_TYPE,
    MODALITY_NAMES,
    REPORT_TYPE,
    derived_uid,
    entry_uuid,
)
from drimbox.publish.xds.rim import (
    Author,
    Code,
    DocumentEntry,
    Submission,
    SubmissionSet,
    dtm,
    has_member,
    parse_extrinsic_object,
    submit_objects_request,
)
from drimbox.publish.xds.vocabulary import NS
from drimbox.reports import Organisation
from drimbox.retrieve.model import Exam, InstanceRef, PatientTraits, SeriesRef
from drimbox.retrieve.xdm_safety import (
    MemberTooLarge,
    XdmLimits,
    check_archive,
    copy_member,
    is_dicom_head,
    member_paths,
    normalise_name,
    path_problem,
)

__all__ = [
    "DEFAULT_LIMITS",
    "KOS_SOP_CLASS",
    "METADATA_NAME",
    "SUBSET",
    "ExportLookup",
    "ExportSource",
    "ExtractedDocument",
    "XdmContents",
    "XdmDocument",
    "XdmImport",
    "XdmImporter",
    "XdmLimits",
    "XdmOrigin",
    "XdmSummary",
    "exam_from_directory",
    "export_xdm",
    "import_xdm",
    "read_xdm",
    "source_from_directory",
    "traits_from_contents",
]

log = structlog.get_logger(__name__)

DEFAULT_LIMITS = XdmLimits()

SUBSET = "IHE_XDM/SUBSET01"
METADATA_NAME = "METADATA.XML"
KOS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"
_MEDIA_DIRECTORY_CLASS = "1.2.840.10008.1.3.10"
_CHUNK = 1024 * 1024
_PDF_FORMAT = Code("urn:ihe:iti:xds-sd:pdf:2008", "1.3.6.1.4.1.19376.1.2.3", "PDF embedded in CDA")
_TEXT_FORMAT = Code("urn:ihe:iti:xds-sd:text:2008", "1.3.6.1.4.1.19376.1.2.3", "Text embedded in CDA")
_CONFIDENTIALITY_NORMAL = dmp.CONFIDENTIALITY_NORMAL
_REPORT_EXTENSIONS = {"text/xml": "XML", "application/xml": "XML", "application/pdf": "PDF", "text/plain": "TXT"}
# Files a viewer or a burning tool puts on media beside the documents: never taken for DICOM.
_NOT_DICOM_SUFFIXES = frozenset({".htm", ".html", ".txt", ".xml", ".xsl", ".css", ".js", ".pdf", ".jpg", ".jpeg",
                                 ".png", ".gif", ".ico", ".inf", ".exe", ".dll", ".ini", ".json"})
_INS_OIDS = frozenset({"1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9", "1.2.250.1.213.1.4.10",
                       "1.2.250.1.213.1.4.11"})


# -- who makes the archive ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class XdmOrigin:
    """The site writing an archive: what README.TXT says and what METADATA.XML's entries carry."""

    node_name: str
    source_id: str
    """XDSSubmissionSet.sourceId (the node's OID, as in its ITI-41 submissions)."""
    institution_name: str = ""
    institution_id: str = ""
    """IdNatStruct of the site (``1`` + FINESS …): the authorInstitution of every entry."""
    contact: str = ""
    """Whom the recipient asks about the archive (README.TXT, INDEX.HTM)."""
    healthcare_facility_type: Code = Code("SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel")
    practice_setting: Code = Code("AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire")
    content_type: Code = Code("04", "1.2.250.1.213.2.2", "Hospitalisation de jour")
    modality_scheme: str = "1.2.250.1.213.1.1.5.618"
    cda_class: Code = Code("10", "1.2.250.1.213.1.1.4.1", "Compte rendu")
    cda_format: Code = Code("urn:asip:ci-sis:cr-img:2016", "1.2.250.1.213.1.1.4.2.282", "CR d'imagerie médicale")
    zone: str = "Europe/Paris"
    """The site's zone: DICOM dates are its wall clock, XDS times are UTC."""

    @classmethod
    def from_settings(cls, settings: NodeSettings, *, contact: str = "") -> XdmOrigin:
        """The origin of a node: its publication identity (the same the DMP sees) and codes."""
        publish = settings.publish

        def code(setting: Any) -> Code:
            return Code(setting.code, setting.scheme, setting.display)

        return cls(
            node_name=settings.name,
            source_id=publish.source_id or derived_uid("drimbox-source", settings.name),
            institution_name=publish.organisation_name,
            institution_id=publish.organisation_id,
            contact=contact,
            healthcare_facility_type=code(publish.healthcare_facility_type),
            practice_setting=code(publish.practice_setting),
            content_type=code(publish.content_type),
            modality_scheme=publish.modality_scheme,
            cda_class=code(publish.cda_class_code),
            cda_format=code(publish.cda_format_code),
            zone=publish.timezone,
        )

    @property
    def label(self) -> str:
        return self.institution_name or self.node_name

    def author(self) -> Author:
        institutions = ((dmp.organisation_xon(Organisation(self.institution_name or self.node_name,
                                                           self.institution_id)),)
                        if self.institution_id else ((self.label,) if self.label else ()))
        return Author(institutions=institutions)


# -- export ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class XdmDocument:
    """One document of the archive's METADATA.XML (the KOS or the report)."""

    name: str
    """Member name in the archive."""
    mime_type: str
    unique_id: str
    sha1: str
    size: int


@dataclass(frozen=True, slots=True)
class XdmSummary:
    """What :func:`export_xdm` wrote."""

    submission_set_uid: str
    kos_uid: str
    documents: tuple[XdmDocument, ...]
    instances: int
    instance_bytes: int
    members: tuple[str, ...]
    missing: tuple[str, ...] = ()
    """Instances the KOS references that were not in ``files`` (the archive holds the rest)."""


@dataclass(slots=True)
class _Instance:
    sop_uid: str
    path: Path
    series_uid: str
    name: str = ""


def _header(path: Path) -> Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True)


def _text(ds: Dataset | None, keyword: str) -> str:
    if ds is None:
        return ""
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _ins_of(ds: Dataset) -> tuple[str, str] | None:
    """The INS and its OID, from PatientID or OtherPatientIDsSequence (DESIGN §3)."""
    candidates = [ds, *ds.get("OtherPatientIDsSequence", [])]
    for item in candidates:
        for qualifier in item.get("IssuerOfPatientIDQualifiersSequence", []):
            oid = str(qualifier.get("UniversalEntityID", "")).strip()
            if oid in _INS_OIDS and str(item.get("PatientID", "")).strip():
                return str(item.PatientID).strip(), oid
    return None


def _patient(traits: PatientTraits | None, sources: Sequence[Dataset]) -> tuple[str, str, tuple[str, ...]]:
    """patientId, sourcePatientId, sourcePatientInfo of the entries.

    With the traits of the contextual call (or an INS in the KOS or the files) the patient id is the
    INS (``…^^^&OID&ISO^NH``); otherwise the DICOM PatientID with its issuer, for lack of anything better.
    ``sources`` is the KOS then an instance: a KOS made here lacks the issuer and the INS of its evidence.
    """
    ds = next((d for d in sources if _text(d, "PatientID")), sources[0] if sources else None)
    pid = _text(ds, "PatientID")
    issuer = next((_text(d, "IssuerOfPatientID") for d in sources if _text(d, "IssuerOfPatientID")), "")
    local = f"{dmp._escape(pid)}^^^{dmp._authority(issuer)}^PI" if pid else ""
    if traits is not None:
        patient_id = traits.xds_patient_id
        if traits.local_id:
            local = f"{dmp._escape(traits.local_id)}^^^{dmp._authority(traits.local_issuer)}^PI"
        info = [f"PID-5|{dmp._escape(traits.birth_name)}^{dmp._escape(traits.first_given_name)}^^^^^L",
                f"PID-7|{traits.birth_date:%Y%m%d}", f"PID-8|{traits.sex}"]
        return patient_id, local or patient_id, tuple(info)
    ins = next((found for d in sources if (found := _ins_of(d))), None)
    patient_id = f"{ins[0]}^^^&{ins[1]}&ISO^NH" if ins else local or "UNKNOWN^^^"
    if ins and local.startswith(f"{ins[0]}^"):
        local = patient_id  # PatientID is the INS itself (identity rule "ins")
    info = []
    if ds is not None:
        name = ds.get("PatientName")
        if name:
            info.append(f"PID-5|{dmp._escape(name.family_name)}^{dmp._escape(name.given_name)}^^^^^L")
        if _text(ds, "PatientBirthDate"):
            info.append(f"PID-7|{_text(ds, 'PatientBirthDate')}")
        if _text(ds, "PatientSex"):
            info.append(f"PID-8|{_text(ds, 'PatientSex')}")
    return patient_id, local or patient_id, tuple(info)


def _make_kos(exam: Exam, instances: list[_Instance]) -> bytes:
    """A Manifest KOS of the instances, for an export whose original KOS is not at hand.

    It gets its own SOP Instance UID (derived from the instances): reusing the published KOS's UID
    for other bytes would make two different objects one.
    """
    from highdicom import sr
    from highdicom.ko import KeyObjectSelection, KeyObjectSelectionDocument

    evidence = [_header(i.path) for i in instances]
    sops = sorted(i.sop_uid for i in instances)
    uid = derived_uid("xdm-kos", exam.study_uid, hashlib.sha256("|".join(sops).encode()).hexdigest())
    content = KeyObjectSelection(document_title=sr.CodedConcept("113030", "DCM", "Manifest"),
                                 referenced_objects=evidence)
    kos = KeyObjectSelectionDocument(evidence=evidence, content=content,
                                     series_instance_uid=derived_uid("xdm-kos-series", uid), series_number=9999,
                                     sop_instance_uid=uid, instance_number=1, manufacturer="drimbox")
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, kos, enforce_file_format=True)
    return buffer.getvalue()


def _zip_info(name: str, when: datetime, size: int | None = None) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=when.timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o100644 << 16  # a plain file, readable: what an extracting tool should create
    info.create_system = 3
    if size is not None:
        info.file_size = size  # lets zipfile decide on ZIP64 before it writes the local header
    return info


def _write_bytes(zf: zipfile.ZipFile, name: str, data: bytes, when: datetime) -> None:
    zf.writestr(_zip_info(name, when), data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)


def _write_file(zf: zipfile.ZipFile, name: str, path: Path, when: datetime) -> tuple[int, str]:
    """Copy one file into the zip in chunks; its size and SHA-1, computed on the way."""
    digest = hashlib.sha1()  # noqa: S324 - XDS hash is SHA-1
    size = 0
    with path.open("rb") as source, zf.open(_zip_info(name, when, path.stat().st_size), "w") as member:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            member.write(chunk)
    return size, digest.hexdigest().upper()


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest().upper()  # noqa: S324 - XDS hash is SHA-1


def _instances(exam: Exam, files: Mapping[str, Path]) -> list[_Instance]:
    """The files in KOS order (series as listed, then instances), named 8.3 for media."""
    series_of = {i.sop_instance_uid: s.series_uid for s in exam.series for i in s.instances}
    order = {i.sop_instance_uid: n for n, i in enumerate(i for s in exam.series for i in s.instances)}
    found = []
    for sop, path in files.items():
        series = series_of.get(sop) or _text(_header(path), "SeriesInstanceUID")
        found.append(_Instance(sop, Path(path), series))
    series_order = list(dict.fromkeys([s.series_uid for s in exam.series] + [i.series_uid for i in found]))
    found.sort(key=lambda i: (series_order.index(i.series_uid), order.get(i.sop_uid, len(order)), i.sop_uid))
    counters: dict[str, int] = {}
    for instance in found:
        series_number = series_order.index(instance.series_uid) + 1
        counters[instance.series_uid] = counters.get(instance.series_uid, 0) + 1
        instance.name = f"{SUBSET}/DICOM/S{series_number:04d}/I{counters[instance.series_uid]:05d}.DCM"
    return found


def _entry_codes(exam: Exam, origin: XdmOrigin) -> tuple[Code, ...]:
    return tuple(Code(m, origin.modality_scheme, MODALITY_NAMES.get(m, m))
                 for m in exam.modalities if m and m not in ("KO", "PR", "SR", "DOC"))


def _reference_ids(exam: Exam, kos: Dataset | None) -> tuple[str, ...]:
    refs = []
    if exam.accession_number:
        issuer = None
        if kos is not None:
            for item in kos.get("IssuerOfAccessionNumberSequence", []):
                issuer = str(item.get("UniversalEntityID", "")) or None
        refs.append(dmp.accession_reference(exam.accession_number, issuer))
    refs.append(dmp.study_reference(exam.study_uid))
    return tuple(refs)


def _metadata(exam: Exam, origin: XdmOrigin, patient: tuple[str, str, tuple[str, ...]], now: datetime,
              documents: list[tuple[XdmDocument, DocumentEntry]], submission_uid: str) -> bytes:
    """METADATA.XML: the rim builders of ITI-41, plus the ``URI`` slot XDM adds (ITI TF-3 4.2.3.2.24)."""
    patient_id = patient[0]
    submission_set = SubmissionSet(
        entry_uuid=entry_uuid(submission_uid), unique_id=submission_uid, source_id=origin.source_id,
        patient_id=patient_id, submission_time=dtm(now), content_type=origin.content_type,
        authors=(origin.author(),), title=exam.description or "Examen d'imagerie",
        comments=f"Export XDM de {origin.label}",
    )
    entries = tuple(entry for _, entry in documents)
    associations = tuple(has_member(f"urn:uuid:{_uuid('assoc', submission_uid, e.entry_uuid)}",
                                    submission_set.entry_uuid, e.entry_uuid) for e in entries)
    request = submit_objects_request(Submission(submission_set, entries, associations))
    rim = f"{{{NS['rim']}}}"
    for document, entry in documents:
        eo = request.find(f".//{rim}ExtrinsicObject[@id='{entry.entry_uuid}']")
        assert eo is not None
        slot = etree.Element(f"{rim}Slot", name="URI")
        etree.SubElement(etree.SubElement(slot, f"{rim}ValueList"), f"{rim}Value").text = \
            str(PurePosixPath(document.name).relative_to(SUBSET))
        slots = eo.findall(f"{rim}Slot")
        # Slots come first in an ExtrinsicObject (ebRIM schema order); URI goes after the others.
        eo.insert(eo.index(slots[-1]) + 1 if slots else 0, slot)
    return bytes(etree.tostring(request, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def _uuid(*parts: str) -> str:
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_OID, "xdm|" + "|".join(parts)))


def _kos_entry(exam: Exam, origin: XdmOrigin, patient: tuple[str, str, tuple[str, ...]], kos: Dataset,
               document: XdmDocument, now: datetime) -> DocumentEntry:
    zone = ZoneInfo(origin.zone)
    created = dmp.dicom_local_datetime(_text(kos, "ContentDate"), _text(kos, "ContentTime"), zone) or now
    return DocumentEntry(
        entry_uuid=entry_uuid(document.unique_id), unique_id=document.unique_id, mime_type="application/dicom",
        patient_id=patient[0], title=KOS_TITLE, class_code=KOS_CLASS, type_code=KOS_TYPE, format_code=KOS_FORMAT,
        healthcare_facility_type=origin.healthcare_facility_type, practice_setting=origin.practice_setting,
        creation_time=dtm(created), language_code="fr-FR", source_patient_id=patient[1],
        confidentiality=(_CONFIDENTIALITY_NORMAL,), authors=(origin.author(),), event_codes=_entry_codes(exam, origin),
        source_patient_info=patient[2], service_start=dtm(exam.performed) if exam.performed else None,
        comments=exam.description or None, reference_ids=_reference_ids(exam, kos), hash=document.sha1,
        size=document.size,
    )


def _report_entry(exam: Exam, origin: XdmOrigin, patient: tuple[str, str, tuple[str, ...]], kos: Dataset,
                  document: XdmDocument, now: datetime) -> DocumentEntry:
    fmt = origin.cda_format if document.mime_type in ("text/xml", "application/xml") else \
        _PDF_FORMAT if document.mime_type == "application/pdf" else _TEXT_FORMAT
    title = exam.report.title if exam.report is not None and exam.report.title else "Compte rendu d'imagerie"
    created = exam.report.creation_time if exam.report is not None and exam.report.creation_time else now
    return DocumentEntry(
        entry_uuid=entry_uuid(document.unique_id), unique_id=document.unique_id, mime_type=document.mime_type,
        patient_id=patient[0], title=title, class_code=origin.cda_class, type_code=REPORT_TYPE, format_code=fmt,
        healthcare_facility_type=origin.healthcare_facility_type, practice_setting=origin.practice_setting,
        creation_time=dtm(created), language_code="fr-FR", source_patient_id=patient[1],
        confidentiality=(_CONFIDENTIALITY_NORMAL,), authors=(origin.author(),), event_codes=_entry_codes(exam, origin),
        source_patient_info=patient[2], service_start=dtm(exam.performed) if exam.performed else None,
        reference_ids=_reference_ids(exam, kos), hash=document.sha1, size=document.size,
    )


def _readme(exam: Exam, origin: XdmOrigin, kos: Dataset, instances: list[_Instance], report: bool,
            now: datetime) -> bytes:
    name = kos.get("PatientName")
    lines = [
        "IHE XDM - Distribute Document Set on Media (ITI-32)",
        "====================================================",
        "",
        f"Made by:      {origin.label} (DRIM-M node {origin.node_name}, drimbox {__version__})",
        f"Made on:      {now.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC",
        f"Contact:      {origin.contact or 'the imaging department of ' + origin.label}",
        "",
        "Contents",
        "--------",
        f"Patient:      {name.family_name if name else ''} {name.given_name if name else ''}".rstrip(),
        f"Exam:         {exam.description or '(no description)'}"
        f"{' - ' + exam.performed.strftime('%Y-%m-%d') if exam.performed else ''}",
        f"Accession:    {exam.accession_number or '-'}",
        f"Study UID:    {exam.study_uid}",
        f"Images:       {len(instances)} DICOM instances in {len({i.series_uid for i in instances})} series "
        f"({SUBSET}/DICOM/)",
        f"Manifest:     {SUBSET}/KOS00001.DCM (DICOM Key Object Selection, IHE XDS-I.b)",
        f"Report:       {'included' if report else 'not included'}",
        f"Metadata:     {SUBSET}/{METADATA_NAME} (ebRIM SubmitObjectsRequest)",
        "",
        "Open INDEX.HTM in a web browser for the list of files. The DICOM files are lossless copies of",
        "those the source PACS holds; import them with any DICOM viewer or PACS, or with",
        "`drimbox xdm import`. This archive contains personal health data: handle it accordingly.",
        "",
    ]
    return "\r\n".join(lines).encode("utf-8")


def _index(exam: Exam, origin: XdmOrigin, kos: Dataset, instances: list[_Instance],
           documents: list[XdmDocument], series_labels: dict[str, str], now: datetime) -> bytes:
    e = html.escape
    name = kos.get("PatientName")
    rows = [f'<li><a href="{e(d.name)}">{e(d.name)}</a> ({e(d.mime_type)}, {d.size} octets)</li>'
            for d in documents]
    series_blocks = []
    by_series: dict[str, list[_Instance]] = {}
    for instance in instances:
        by_series.setdefault(instance.series_uid, []).append(instance)
    for series_uid, members in by_series.items():
        links = "".join(f'<li><a href="{e(i.name)}">{e(PurePosixPath(i.name).name)}</a></li>' for i in members)
        series_blocks.append(f"<h3>{e(series_labels.get(series_uid, series_uid))}</h3><ul>{links}</ul>")
    page = f"""<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8"><title>Examen d'imagerie - XDM</title></head>
<body>
<h1>Examen d'imagerie</h1>
<p>Patient : {e(str(name.family_name if name else ''))} {e(str(name.given_name if name else ''))}<br>
Examen : {e(exam.description or '')} {e(exam.performed.strftime('%Y-%m-%d') if exam.performed else '')}<br>
N° d'examen : {e(exam.accession_number or '-')}<br>
Produit par {e(origin.label)} le {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC.
Contact : {e(origin.contact or origin.label)}</p>
<p><a href="README.TXT">README.TXT</a> - <a href="{SUBSET}/{METADATA_NAME}">{SUBSET}/{METADATA_NAME}</a></p>
<h2>Documents</h2>
<ul>{''.join(rows)}</ul>
<h2>Images DICOM ({len(instances)})</h2>
{''.join(series_blocks)}
</body></html>
"""
    return page.encode("utf-8")


def export_xdm(
    exam: Exam,
    files: Mapping[str, Path],
    destination: BinaryIO | Path,
    *,
    origin: XdmOrigin,
    traits: PatientTraits | None = None,
    report: bytes | None = None,
    report_mime: str | None = None,
    kos: bytes | None = None,
    now: datetime | None = None,
) -> XdmSummary:
    """Write ``exam`` as an XDM zip to ``destination`` (a path, or a writable — possibly unseekable — file).

    Parameters
    ----------
    exam
        The exam (its KOS entry); gives series order, accession, dates and modalities.
    files
        SOP Instance UID → Part 10 file (a :class:`~drimbox.retrieve.model.RetrievalReport`'s ``received``).
    origin
        The writing site (:meth:`XdmOrigin.from_settings`).
    traits
        The patient's INS traits: the entries' patientId is then the INS; otherwise the INS is taken
        from the KOS or the files (OtherPatientIDsSequence), else their PatientID.
    report, report_mime
        The report document (CDA ``text/xml`` or ``application/pdf``), as published with the exam.
    kos
        The KOS bytes; when ``None`` a Manifest KOS of the files is made (its own SOP Instance UID).

    Raises
    ------
    InvalidRequest
        No instance to export, a report without its MIME type, a KOS that is not a KOS.
    """
    problems = []
    if not files:
        problems.append("no DICOM instance to export")
    if report is not None and report_mime not in _REPORT_EXTENSIONS:
        problems.append(f"report MIME type {report_mime!r} is not one of {sorted(_REPORT_EXTENSIONS)}")
    if problems:
        raise InvalidRequest("cannot export this exam as XDM", problems=tuple(problems))
    now = now or datetime.now(UTC)
    instances = _instances(exam, files)
    kos_bytes = kos if kos is not None else _make_kos(exam, instances)
    kos_ds = pydicom.dcmread(io.BytesIO(kos_bytes), stop_before_pixels=True)
    if _text(kos_ds, "SOPClassUID") != KOS_SOP_CLASS:
        raise InvalidRequest("the manifest is not a KOS", problems=(f"SOP Class {_text(kos_ds, 'SOPClassUID')}",))
    kos_uid = _text(kos_ds, "SOPInstanceUID")
    patient = _patient(traits, [kos_ds, _header(instances[0].path)])
    submission_uid = derived_uid("xdm", kos_uid, now.isoformat())
    local = now.astimezone(ZoneInfo(origin.zone))
    series_labels = {}
    for instance in instances:
        if instance.series_uid not in series_labels:
            head = _header(instance.path)
            series_labels[instance.series_uid] = " ".join(
                x for x in (f"Série {_text(head, 'SeriesNumber')}", _text(head, "Modality"),
                            _text(head, "SeriesDescription")) if x.strip())
    documents = [XdmDocument(f"{SUBSET}/KOS00001.DCM", "application/dicom", kos_uid, _sha1(kos_bytes),
                             len(kos_bytes))]
    if report is not None and report_mime is not None:
        report_uid = exam.report.unique_id if exam.report is not None else derived_uid("xdm-report", kos_uid)
        documents.append(XdmDocument(f"{SUBSET}/DOC00002.{_REPORT_EXTENSIONS[report_mime]}", report_mime,
                                     report_uid, _sha1(report), len(report)))
    entries = [(documents[0], _kos_entry(exam, origin, patient, kos_ds, documents[0], now))]
    if len(documents) > 1:
        entries.append((documents[1], _report_entry(exam, origin, patient, kos_ds, documents[1], now)))
    metadata = _metadata(exam, origin, patient, now, entries, submission_uid)
    referenced = exam.sop_instance_uids() | {
        str(r.ReferencedSOPInstanceUID) for item in kos_ds.get("CurrentRequestedProcedureEvidenceSequence", [])
        for s in item.get("ReferencedSeriesSequence", []) for r in s.get("ReferencedSOPSequence", [])}
    missing = tuple(sorted(referenced - set(files)))
    members: list[str] = []
    total = 0
    own_file = isinstance(destination, Path)
    out: BinaryIO = destination.open("wb") if isinstance(destination, Path) else destination
    try:
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            front = [("README.TXT", _readme(exam, origin, kos_ds, instances, report is not None, now)),
                    ("INDEX.HTM", _index(exam, origin, kos_ds, instances, documents, series_labels, now)),
                    (f"{SUBSET}/{METADATA_NAME}", metadata), (documents[0].name, kos_bytes)]
            if report is not None:
                front.append((documents[1].name, report))
            for name, data in front:
                _write_bytes(zf, name, data, local)
                members.append(name)
            for instance in instances:
                size, _ = _write_file(zf, instance.name, instance.path, local)
                total += size
                members.append(instance.name)
    finally:
        if own_file:
            out.close()
    log.info("xdm exported", kos=kos_uid, instances=len(instances), bytes=total, missing=len(missing))
    return XdmSummary(submission_uid, kos_uid, tuple(documents), len(instances), total, tuple(members), missing)


def exam_from_directory(directory: Path) -> tuple[Exam, dict[str, Path], bytes | None]:
    """An exam as the retriever left it on disk (``<dir>/<series_uid>/<sop>.dcm``), for an export
    whose KOS entry is not at hand (the CLI, the API after a restart).

    A KOS among the files (SOP Class 88.59) is taken as the manifest and returned apart; hidden
    files (``.part`` of a transfer in progress) are skipped.
    """
    files: dict[str, Path] = {}
    kos: bytes | None = None
    series: dict[str, list[InstanceRef]] = {}
    first: Dataset | None = None
    modalities: dict[str, None] = {}
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        try:
            ds = _header(path)
        except (InvalidDicomError, OSError, ValueError):
            continue
        sop_class, sop = _text(ds, "SOPClassUID"), _text(ds, "SOPInstanceUID")
        if not sop:
            continue
        if sop_class == KOS_SOP_CLASS:
            kos = kos or path.read_bytes()
            continue
        first = first or ds
        files[sop] = path
        series.setdefault(_text(ds, "SeriesInstanceUID"), []).append(InstanceRef(sop_class, sop))
        if _text(ds, "Modality"):
            modalities[_text(ds, "Modality")] = None
    if first is None:
        raise InvalidRequest(f"no DICOM instance under {directory}", problems=(f"{directory}: no DICOM file",))
    kos_uid = _text(pydicom.dcmread(io.BytesIO(kos), stop_before_pixels=True), "SOPInstanceUID") if kos else \
        directory.name
    zone = ZoneInfo("Europe/Paris")
    exam = Exam(
        kos_uid=kos_uid, entry_uuid="", repository_unique_id="", study_uid=_text(first, "StudyInstanceUID"),
        accession_number=_text(first, "AccessionNumber") or None,
        performed=dmp.dicom_local_datetime(_text(first, "StudyDate"), _text(first, "StudyTime"), zone),
        modalities=tuple(modalities), description=_text(first, "StudyDescription"),
        body_part=_text(first, "BodyPartExamined"), source_site=_text(first, "InstitutionName"),
        series=tuple(SeriesRef(uid, "", tuple(refs)) for uid, refs in series.items()),
    )
    return exam, files, kos


# -- import ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExtractedDocument:
    """A document of METADATA.XML, extracted and checked against its hash and size."""

    unique_id: str
    mime_type: str
    path: Path
    sha1: str
    size: int
    type_code: str | None = None


@dataclass(frozen=True, slots=True)
class XdmContents:
    """What :func:`read_xdm` extracted (under ``directory``, which the caller removes when done)."""

    directory: Path
    instances: dict[str, Path]
    """SOP Instance UID → extracted file (images etc.; neither the KOS nor a DICOMDIR)."""
    documents: tuple[ExtractedDocument, ...]
    patient_id: str
    """The submission set's patientId (``INS^^^&OID&ISO^NH`` from a DRIM-M node)."""
    submission_set_uid: str
    kos: Path | None = None
    kos_uid: str | None = None
    report: Path | None = None
    report_mime: str | None = None
    warnings: tuple[str, ...] = ()
    """Not refused, but worth telling: instances the KOS references that the archive lacks, files ignored."""


@dataclass(slots=True)
class _Declared:
    """A document as METADATA.XML declares it."""

    member: str
    unique_id: str
    mime_type: str
    sha1: str
    size: int
    type_code: str | None


def _uri(values: tuple[str, ...]) -> str:
    """The URI slot; long URIs are split in ``n|part`` values (ITI TF-3 4.2.3.2.24)."""
    if len(values) > 1 and all("|" in v and v.split("|", 1)[0].isdigit() for v in values):
        ordered = sorted(values, key=lambda v: int(v.split("|", 1)[0]))
        return "".join(v.split("|", 1)[1] for v in ordered)
    return values[0] if values else ""


def _parse_metadata(data: bytes, where: str, subset: str, members: dict[str, str],
                    problems: list[str]) -> tuple[list[_Declared], str, str]:
    """The documents of one METADATA.XML, each resolved to an archive member; problems appended."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        problems.append(f"{where}: METADATA.XML not parseable ({exc})")
        return [], "", ""
    if root.getroottree().docinfo.doctype:
        problems.append(f"{where}: METADATA.XML has a DOCTYPE (entities are not accepted)")
        return [], "", ""
    if root.tag != f"{{{NS['lcm']}}}SubmitObjectsRequest":
        problems.append(f"{where}: METADATA.XML is not an lcm:SubmitObjectsRequest ({root.tag})")
        return [], "", ""
    rim = f"{{{NS['rim']}}}"
    package = root.find(f".//{rim}RegistryPackage")
    patient_id = submission_uid = ""
    if package is not None:
        for ei in package.iterfind(f"{rim}ExternalIdentifier"):
            scheme = ei.get("identificationScheme")
            if scheme == "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446":
                patient_id = ei.get("value", "")
            elif scheme == "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8":
                submission_uid = ei.get("value", "")
    declared = []
    entries = root.findall(f".//{rim}ExtrinsicObject")
    if not entries:
        problems.append(f"{where}: METADATA.XML declares no document")
    for eo in entries:
        entry = parse_extrinsic_object(eo)
        label = f"{where}: document {entry.unique_id or entry.entry_uuid}"
        uri = _uri(entry.slots.get("URI", ()))
        if not uri:
            problems.append(f"{label} has no URI slot")
            continue
        if "://" in uri or uri.startswith("urn:") or path_problem(uri):
            problems.append(f"{label}: URI {uri!r} does not name a file of the subset")
            continue
        member = members.get(normalise_name(f"{subset}/{uri}").casefold())
        if member is None:
            problems.append(f"{label} refers to {uri!r}, absent from the archive")
            continue
        sha1, size = entry.slot("hash"), entry.slot("size")
        if not sha1 or not size or not size.isdigit():
            problems.append(f"{label} has no valid hash and size slots")
            continue
        type_code = entry.type_code.code if entry.type_code is not None else None
        declared.append(_Declared(member, entry.unique_id, entry.mime_type, sha1.upper(), int(size), type_code))
    return declared, patient_id, submission_uid


def _read_limited(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    buffer = io.BytesIO()
    copy_member(zf, info, buffer, budget=limit, limit=limit)
    return buffer.getvalue()


def _declared_dicom(name: str) -> bool:
    """Whether the archive's own layout says this member is DICOM (a DICOM/ directory, a .dcm name)."""
    parts = [p.casefold() for p in normalise_name(name).split("/")]
    return "dicom" in parts[:-1] or parts[-1].endswith(".dcm")


def _refuse(problems: Sequence[str]) -> InvalidRequest:
    return InvalidRequest(f"not an acceptable XDM archive ({len(problems)} problem(s))", problems=tuple(problems))


def read_xdm(archive: Path, workdir: Path, *, limits: XdmLimits = DEFAULT_LIMITS) -> XdmContents:
    """Judge, then extract, an XDM archive; return its DICOM instances, KOS and report.

    Nothing is written before the headers and METADATA.XML are judged; then documents and DICOM
    files are extracted one by one under a new directory in ``workdir`` (names made here), each
    checked (hash, size, DICOM magic) while it is copied. On any problem the extracted files are
    removed and :class:`InvalidRequest` lists every problem found.
    """
    problems: list[str] = []
    try:
        handle = archive.open("rb")
    except OSError as exc:
        raise _refuse([f"{archive.name}: cannot be read ({exc.strerror})"]) from exc
    with handle:
        try:
            zf = zipfile.ZipFile(handle)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
            raise _refuse([f"{archive.name}: not a zip archive, or truncated/corrupt ({exc})"]) from exc
        with zf:
            return _read(zf, handle, workdir, limits, problems)


def _read(zf: zipfile.ZipFile, handle: BinaryIO, workdir: Path, limits: XdmLimits,
          problems: list[str]) -> XdmContents:
    problems.extend(check_archive(zf, handle, limits))
    if problems and any("too many members" in p for p in problems):
        raise _refuse(problems)
    infos = [i for i in zf.infolist() if not i.is_dir()]
    members = member_paths(i.filename for i in infos)
    by_name = {i.filename: i for i in infos}
    metadata_infos = [i for i in infos if _is_metadata(i.filename)]
    if not metadata_infos:
        problems.append("missing IHE_XDM/<subset>/METADATA.XML")
    declared: list[_Declared] = []
    patient_id = submission_uid = ""
    if not problems:  # METADATA.XML is only inflated once the headers are known to be safe
        for info in metadata_infos:
            try:
                data = _read_limited(zf, info, limits.max_metadata_bytes)
            except MemberTooLarge:
                problems.append(f"{info.filename}: METADATA.XML larger than {limits.max_metadata_bytes} bytes")
                continue
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                problems.append(f"{info.filename}: METADATA.XML cannot be extracted ({exc})")
                continue
            subset = normalise_name(info.filename).rsplit("/", 1)[0]
            found, pid, suid = _parse_metadata(data, info.filename, subset, members, problems)
            declared.extend(found)
            patient_id, submission_uid = patient_id or pid, submission_uid or suid
    if problems:
        raise _refuse(problems)
    target = Path(tempfile.mkdtemp(prefix="xdm-", dir=workdir))
    try:
        return _extract(zf, by_name, declared, target, limits, patient_id, submission_uid)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def _is_metadata(name: str) -> bool:
    parts = normalise_name(name).split("/")
    return len(parts) == 3 and parts[0].upper() == "IHE_XDM" and parts[2].upper() == METADATA_NAME


class _Budget:
    def __init__(self, total: int) -> None:
        self.left = total


def _extract_one(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, limits: XdmLimits,
                 budget: _Budget) -> Any:
    with path.open("wb") as out:
        result = copy_member(zf, info, out, budget=budget.left, limit=limits.max_member_bytes)
    budget.left -= result.size
    if result.size != info.file_size:
        raise zipfile.BadZipFile(f"{info.filename!r}: {result.size} bytes inflated, header says {info.file_size}")
    return result


def _extract(zf: zipfile.ZipFile, by_name: dict[str, zipfile.ZipInfo], declared: list[_Declared], target: Path,
             limits: XdmLimits, patient_id: str, submission_uid: str) -> XdmContents:
    problems: list[str] = []
    warnings: list[str] = []
    budget = _Budget(limits.max_total_bytes)
    (target / "documents").mkdir()
    (target / "dicom").mkdir()
    documents: list[ExtractedDocument] = []
    document_members = {d.member for d in declared}
    for number, doc in enumerate(declared, start=1):
        info = by_name[doc.member]
        suffix = ".dcm" if doc.mime_type == "application/dicom" else \
            "." + _REPORT_EXTENSIONS.get(doc.mime_type, "bin").lower()
        path = target / "documents" / f"{number:04d}{suffix}"
        try:
            result = _extract_one(zf, info, path, limits, budget)
        except (MemberTooLarge, zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            problems.append(f"{doc.member!r}: cannot be extracted, corrupt member ({exc})")
            continue
        if result.sha1 != doc.sha1:
            problems.append(f"{doc.member!r}: hash mismatch, SHA-1 {result.sha1}, METADATA.XML says {doc.sha1}")
        if result.size != doc.size:
            problems.append(f"{doc.member!r}: size mismatch, {result.size} bytes, METADATA.XML says {doc.size}")
        if doc.mime_type == "application/dicom" and not is_dicom_head(result.head):
            problems.append(f"{doc.member!r}: declared application/dicom but not DICOM")
        documents.append(ExtractedDocument(doc.unique_id, doc.mime_type, path, result.sha1, result.size,
                                           doc.type_code))
    instances: dict[str, Path] = {}
    count = 0
    for name, info in by_name.items():
        if name in document_members or _is_metadata(name):
            continue
        declared_dicom = _declared_dicom(name)
        if not declared_dicom and (PurePosixPath(normalise_name(name)).suffix.lower() in _NOT_DICOM_SUFFIXES):
            continue
        count += 1
        path = target / "dicom" / f"{count:06d}.dcm"
        try:
            result = _extract_one(zf, info, path, limits, budget)
        except (MemberTooLarge, zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            problems.append(f"{name!r}: cannot be extracted, corrupt member ({exc})")
            path.unlink(missing_ok=True)
            continue
        if not is_dicom_head(result.head):
            path.unlink()
            if declared_dicom:
                problems.append(f"{name!r}: not DICOM (no DICM preamble) where DICOM is declared")
            else:
                warnings.append(f"{name!r}: not DICOM, ignored")
            continue
        try:
            ds = _header(path)
        except (InvalidDicomError, ValueError, OSError, EOFError) as exc:
            problems.append(f"{name!r}: not readable DICOM ({exc})")
            continue
        sop, sop_class = _text(ds, "SOPInstanceUID"), _text(ds, "SOPClassUID")
        if _text(ds.file_meta, "MediaStorageSOPClassUID") == _MEDIA_DIRECTORY_CLASS or sop_class == KOS_SOP_CLASS:
            path.unlink()  # a DICOMDIR, or a KOS beside the documents: not an instance to import
            continue
        if not sop:
            problems.append(f"{name!r}: DICOM without SOP Instance UID")
        elif sop in instances:
            problems.append(f"{name!r}: SOP Instance UID {sop} appears twice in the archive")
        else:
            instances[sop] = path
    kos = next((d for d in documents if d.mime_type == "application/dicom"), None)
    kos_uid = None
    if kos is not None and not problems:
        kos_ds = _header(kos.path)
        if _text(kos_ds, "SOPClassUID") != KOS_SOP_CLASS:
            problems.append(f"document {kos.unique_id}: application/dicom but not a KOS")
        else:
            kos_uid = _text(kos_ds, "SOPInstanceUID")
            referenced = {str(r.ReferencedSOPInstanceUID)
                          for item in kos_ds.get("CurrentRequestedProcedureEvidenceSequence", [])
                          for s in item.get("ReferencedSeriesSequence", []) for r in s.get("ReferencedSOPSequence", [])}
            absent = sorted(referenced - set(instances))
            if absent:
                warnings.append(f"{len(absent)} instance(s) referenced by the KOS are not in the archive")
    if problems:
        raise _refuse(problems)
    if not instances:
        raise _refuse(["the archive holds no DICOM instance"])
    report = next((d for d in documents if d.mime_type in _REPORT_EXTENSIONS), None)
    return XdmContents(
        directory=target, instances=instances, documents=tuple(documents), patient_id=patient_id,
        submission_set_uid=submission_uid, kos=kos.path if kos and kos_uid else None, kos_uid=kos_uid,
        report=report.path if report else None, report_mime=report.mime_type if report else None,
        warnings=tuple(warnings),
    )


def traits_from_contents(contents: XdmContents, *, ins: str | None = None, ins_oid: str | None = None,
                         local_id: str | None = None, local_issuer: str | None = None) -> PatientTraits | None:
    """The patient's traits for the import, from the archive's instances (and the INS given, if any).

    The INS is the one given by the operator, else the one the instances carry (PatientID or
    OtherPatientIDsSequence with an INS OID); names, birth date and sex come from the instances.
    ``None`` when there is no INS at all (the importer then keeps the instances' own identity).
    """
    first = _header(next(iter(contents.instances.values())))
    found = _ins_of(first)
    if ins is None and found is None:
        return None
    if ins is None and found is not None:
        ins, ins_oid = found
    name = first.get("PatientName")
    birth = _text(first, "PatientBirthDate")
    sex = _text(first, "PatientSex")
    problems = []
    if not name:
        problems.append("the instances carry no PatientName")
    if len(birth) != 8 or not birth.isdigit():
        problems.append("the instances carry no usable PatientBirthDate")
    if problems:
        raise InvalidRequest("the patient's traits cannot be read from the archive", problems=tuple(problems))
    assert ins is not None
    return PatientTraits(
        ins=ins, ins_oid=ins_oid or "1.2.250.1.213.1.4.8", birth_name=str(name.family_name),
        first_given_name=str(name.given_name).split(" ")[0], birth_date=datetime.strptime(birth, "%Y%m%d").date(),
        sex="M" if sex == "M" else "F" if sex == "F" else "U", local_id=local_id, local_issuer=local_issuer,
    )


R_co = TypeVar("R_co", covariant=True)


class XdmImporter(Protocol[R_co]):
    """What :func:`import_xdm` needs of :class:`drimbox.retrieve.importer.StudyImporter`."""

    def import_study(self, files: Sequence[Path], traits: PatientTraits | None,
                     progress: Any = None) -> R_co: ...


R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class XdmImport(Generic[R]):
    """An archive read and imported: what it held, and the importer's report."""

    contents: XdmContents
    report: R


def import_xdm(archive: Path, importer: XdmImporter[R], traits: PatientTraits | None, *, workdir: Path,
               limits: XdmLimits = DEFAULT_LIMITS, progress: Any = None, keep: bool = False) -> XdmImport[R]:
    """:func:`read_xdm` then ``importer.import_study`` of its instances (identity reconciled by the importer).

    The KOS is not imported (its RetrieveURLs point at the source node, not at this PACS); the
    extracted files are removed afterwards unless ``keep``.
    """
    contents = read_xdm(archive, workdir, limits=limits)
    try:
        files = sorted(contents.instances.values())
        report = importer.import_study(files, traits, progress) if progress is not None else \
            importer.import_study(files, traits)
    finally:
        if not keep:
            shutil.rmtree(contents.directory, ignore_errors=True)
    return XdmImport(contents, report)


# -- what the API and the CLI export -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExportSource:
    """Everything an export needs that is not on disk (from the consumer's exam directory when known)."""

    exam: Exam
    files: Mapping[str, Path]
    kos: bytes | None = None
    traits: PatientTraits | None = None
    report: bytes | None = None
    report_mime: str | None = None


def source_from_directory(directory: Path) -> ExportSource:
    """An :class:`ExportSource` from a retrieved study's directory alone (:func:`exam_from_directory`)."""
    exam, files, kos = exam_from_directory(directory)
    return ExportSource(exam, files, kos)


ExportLookup = Callable[[str], ExportSource | None]
