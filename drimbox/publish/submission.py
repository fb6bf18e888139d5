"""The ITI-41 submission of one exam's KOS, with every DMP metadata of DESIGN §3.

One submission set holds the KOS document entry, optionally the CDA report as a second entry, and
the IHE DSG signature document over them (``signs`` the submission set), with RPLC associations to
the entries they replace. Ids are derived from the uniqueIds (UUID v5), so building the same
submission twice gives the same ids; the outbox stores the result anyway (the DSG signature and the
times make two builds differ in bytes).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from drimbox.config import CodeSetting, PublishSettings
from drimbox.publish import dmp
from drimbox.publish.xds.dsg import SOURCE_PURPOSE, dsg_signature
from drimbox.publish.xds.requests import DocumentPart
from drimbox.publish.xds.rim import (
    Association,
    Author,
    Code,
    DocumentEntry,
    Submission,
    SubmissionSet,
    association_slots,
    dtm,
    has_member,
)
from drimbox.publish.xds.signing import Signer
from drimbox.publish.xds.vocabulary import AssociationType
from drimbox.reports import ImagingReport, Organisation

__all__ = [
    "KOS_CLASS",
    "KOS_FORMAT",
    "KOS_TYPE",
    "BuiltSubmission",
    "Manifest",
    "Replaced",
    "SubmissionPolicy",
    "build_submission",
    "deprecation_set",
    "derived_uid",
    "entry_uuid",
]

KOS_CLASS = Code("31", "1.2.250.1.213.1.1.4.1", "Imagerie médicale")
KOS_TYPE = Code("IMG-KOS", "1.2.250.1.213.1.1.4.12", "Reference d'objets d'un examen d'imagerie")
KOS_FORMAT = Code("1.2.840.10008.5.1.4.1.1.88.59", "1.2.840.10008.2.6.1",
                  "Document de Références d'objets d'imagerie selon profil IHE RAD XDS-I")
KOS_TITLE = "Reference d'Objets d'un Examen d'Imagerie"
DSG_CLASS = Code("urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1", "URN", "Digital Signature")
DSG_TYPE = Code("E1762", "ASTM", "Full Document")
DSG_FORMAT = Code("http://www.w3.org/2000/09/xmldsig#", "URN", "Default Signature Style")
LOINC = "2.16.840.1.113883.6.1"
SNOMED_CT = "2.16.840.1.113883.6.96"
REPORT_TYPE = Code("18748-4", LOINC, "CR d'imagerie médicale")
_NOT_IMAGES = frozenset({"KO", "PR", "SR", "DOC", "REG", "SEG", "RWV", "PLAN", "FID"})

# PS3.16 Annex L: Body Part Examined → SNOMED CT anatomic region (the eventCodeList region when the
# CDA names none).
BODY_PART_REGIONS: dict[str, tuple[str, str]] = {
    "ABDOMEN": ("818983003", "Abdomen"),
    "ABDOMENPELVIS": ("818982008", "Abdomen et pelvis"),
    "BRAIN": ("12738006", "Cerveau"),
    "BREAST": ("76752008", "Sein"),
    "CHEST": ("51185008", "Thorax"),
    "CSPINE": ("122494005", "Rachis cervical"),
    "EXTREMITY": ("66019005", "Membre"),
    "FOOT": ("56459004", "Pied"),
    "HAND": ("85562004", "Main"),
    "HEAD": ("69536005", "Tête"),
    "HEADNECK": ("774007", "Tête et cou"),
    "HEART": ("80891009", "Coeur"),
    "HIP": ("24136001", "Hanche"),
    "KNEE": ("72696002", "Genou"),
    "LSPINE": ("122496007", "Rachis lombaire"),
    "NECK": ("45048000", "Cou"),
    "PELVIS": ("816092008", "Pelvis"),
    "SHOULDER": ("16982005", "Epaule"),
    "SKULL": ("89546000", "Crâne"),
    "TSPINE": ("122495006", "Rachis thoracique"),
    "WHOLEBODY": ("38266002", "Corps entier"),
}
MODALITY_NAMES: dict[str, str] = {
    "CR": "Computed Radiography", "CT": "Computed Tomography", "DX": "Digital Radiography",
    "MG": "Mammography", "MR": "Magnetic Resonance", "NM": "Nuclear Medicine", "OT": "Other",
    "PT": "Positron emission tomography", "RF": "Radio Fluoroscopy", "US": "Ultrasound",
    "XA": "X-Ray Angiography", "SC": "Secondary Capture",
}


def _code(setting: CodeSetting) -> Code:
    return Code(setting.code, setting.scheme, setting.display)


def derived_uid(*parts: str) -> str:
    """A deterministic UID under ``2.25`` (ISO/IEC 9834-8: the integer value of a UUID)."""
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, '|'.join(parts)).int}"


def entry_uuid(unique_id: str) -> str:
    """The entryUUID this node gives the entry of a uniqueId (stable across retries)."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_OID, 'entry|' + unique_id)}"


@dataclass(frozen=True, slots=True)
class Manifest:
    """The KOS to publish and what the PACS walk said of the exam."""

    sop_instance_uid: str
    data: bytes
    instances: tuple[str, ...]
    modalities: tuple[str, ...] = ()
    body_parts: tuple[str, ...] = ()
    study_description: str | None = None
    study_start: datetime | None = None
    """StudyDate/StudyTime of the PACS, converted to an aware datetime (site zone)."""


@dataclass(frozen=True, slots=True)
class SubmissionPolicy:
    """The site's choices for metadata (from :class:`~drimbox.config.PublishSettings`)."""

    source_id: str
    healthcare_facility_type: Code
    practice_setting: Code
    content_type: Code
    author_role: Code
    author_specialty: Code
    modality_scheme: str
    region_scheme: str
    zone: ZoneInfo
    accession_issuer: str | None = None
    organisation: Organisation | None = None
    publish_cda: bool = False
    cda_class: Code = Code("10", "1.2.250.1.213.1.1.4.1", "Compte rendu")
    cda_format: Code = Code("urn:asip:ci-sis:cr-img:2016", "1.2.250.1.213.1.1.4.2.282", "CR d'imagerie médicale")

    @classmethod
    def from_settings(cls, settings: PublishSettings, node_name: str) -> SubmissionPolicy:
        """The policy of a node's settings (sourceId derived from the node name when unset)."""
        organisation = (Organisation(settings.organisation_name, settings.organisation_id)
                        if settings.organisation_id else None)
        return cls(
            source_id=settings.source_id or derived_uid("drimbox-source", node_name),
            healthcare_facility_type=_code(settings.healthcare_facility_type),
            practice_setting=_code(settings.practice_setting),
            content_type=_code(settings.content_type),
            author_role=_code(settings.author_role),
            author_specialty=_code(settings.author_specialty),
            modality_scheme=settings.modality_scheme,
            region_scheme=settings.region_scheme,
            zone=ZoneInfo(settings.timezone),
            accession_issuer=settings.accession_issuer,
            organisation=organisation,
            publish_cda=settings.publish_cda,
            cda_class=_code(settings.cda_class_code),
            cda_format=_code(settings.cda_format_code),
        )


@dataclass(frozen=True, slots=True)
class Replaced:
    """The approved entries a new submission replaces (RPLC targets)."""

    kos: str | None = None
    cda: str | None = None


@dataclass(frozen=True, slots=True)
class BuiltSubmission:
    """A submission ready to store and send."""

    submission: Submission
    documents: tuple[DocumentPart, ...]


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest().upper()  # noqa: S324 - XDS hash is SHA-1 (ITI TF-3 4.2.3.2.14)


def _reported(report: ImagingReport, name: str) -> Code | None:
    value = getattr(report, name, None)  # CDA header values, when the parser provides them
    return Code(value.code, value.system, value.display) if value is not None else None


def event_codes(report: ImagingReport, manifest: Manifest, policy: SubmissionPolicy) -> tuple[Code, ...]:
    """eventCodeList: the exam's modalities (from the PACS), then its anatomic regions.

    Regions come from the CDA's SNOMED CT codes when it has some, else from the series'
    Body Part Examined (PS3.16 Annex L).
    """
    codes: list[Code] = []
    for modality in manifest.modalities:
        if modality and modality not in _NOT_IMAGES:
            codes.append(Code(modality, policy.modality_scheme, MODALITY_NAMES.get(modality, modality)))
    regions = [Code(c.code, policy.region_scheme, c.display)
               for c in getattr(report, "exam_codes", ()) if c.system == SNOMED_CT]
    if not regions:
        for part in manifest.body_parts:
            known = BODY_PART_REGIONS.get(part.upper().replace(" ", ""))
            if known:
                regions.append(Code(known[0], policy.region_scheme, known[1]))
    for region in regions:
        if region not in codes:
            codes.append(region)
    return tuple(dict.fromkeys(codes))


def reference_ids(report: ImagingReport, policy: SubmissionPolicy) -> tuple[str, ...]:
    """referenceIdList: accession, Study Instance UID, order (ITI TF-3 4.2.3.2.23)."""
    issuer = report.accession_issuer or policy.accession_issuer
    values = [dmp.accession_reference(report.accession_number, issuer),
              dmp.study_reference(report.study_instance_uid)]
    if report.order_id:
        values.append(dmp.order_reference(report.order_id, issuer))
    return tuple(values)


def _author(report: ImagingReport, policy: SubmissionPolicy) -> Author:
    organisation = report.organisation if report.organisation.id_nat_struct else policy.organisation
    return Author(
        person=dmp.person_xcn(report.author),
        institutions=(dmp.organisation_xon(organisation),) if organisation else (),
        roles=(f"{policy.author_role.code}^{policy.author_role.display}^{policy.author_role.scheme}",),
        specialties=(f"{policy.author_specialty.code}^{policy.author_specialty.display}"
                     f"^{policy.author_specialty.scheme}",),
    )


def build_submission(
    report: ImagingReport,
    manifest: Manifest,
    policy: SubmissionPolicy,
    signer: Signer,
    *,
    submission_uid: str,
    now: datetime,
    replaces: Replaced = Replaced(),
) -> BuiltSubmission:
    """The ITI-41 submission of ``manifest`` for ``report`` (DESIGN §3).

    Raises
    ------
    ValueError
        When the patient has no qualified INS (callers check before).
    """
    patient_id = dmp.patient_cx(report.patient)
    author = _author(report, policy)
    legal = dmp.person_xcn(report.legal_authenticator or report.author)
    confidentiality = dmp.confidentiality_codes(report.visibility)
    references = reference_ids(report, policy)
    facility = _reported(report, "healthcare_facility_type") or policy.healthcare_facility_type
    practice = _reported(report, "practice_setting") or policy.practice_setting
    start = report.service_start or manifest.study_start or report.effective_time
    stop = report.service_stop
    # What every entry of the submission shares; each entry replaces the rest.
    common = DocumentEntry(
        entry_uuid="", unique_id="", mime_type="", title="", class_code=KOS_CLASS, type_code=KOS_TYPE,
        format_code=KOS_FORMAT, creation_time="", language_code="fr-FR", patient_id=patient_id,
        healthcare_facility_type=facility, practice_setting=practice,
        source_patient_id=dmp.source_patient_cx(report.patient), confidentiality=confidentiality,
        authors=(author,), legal_authenticator=legal, reference_ids=references,
    )
    kos = replace(
        common, entry_uuid=entry_uuid(manifest.sop_instance_uid), unique_id=manifest.sop_instance_uid,
        mime_type="application/dicom", title=KOS_TITLE, comments=manifest.study_description or "KOS",
        class_code=KOS_CLASS, type_code=KOS_TYPE, format_code=KOS_FORMAT, creation_time=dtm(now),
        language_code="fr-FR", event_codes=event_codes(report, manifest, policy),
        source_patient_info=dmp.source_patient_info(report.patient), service_start=dtm(start),
        service_stop=dtm(stop) if stop else None, hash=_sha1(manifest.data), size=len(manifest.data),
    )
    entries = [kos]
    parts = [DocumentPart(kos.entry_uuid, kos.mime_type, manifest.data)]
    signed = [(kos.unique_id, manifest.data)]
    if policy.publish_cda and report.cda:
        cda = replace(
            common, entry_uuid=entry_uuid(report.document_id), unique_id=report.document_id, mime_type="text/xml",
            title=report.title, class_code=policy.cda_class,
            type_code=_reported(report, "document_code") or REPORT_TYPE,
            format_code=policy.cda_format, creation_time=dtm(report.effective_time),
            language_code=getattr(report, "language_code", None) or "fr-FR",
            event_codes=event_codes(report, manifest, policy),
            source_patient_info=dmp.source_patient_info(report.patient), service_start=dtm(start),
            service_stop=dtm(stop) if stop else None, hash=_sha1(report.cda), size=len(report.cda),
        )
        entries.append(cda)
        parts.append(DocumentPart(cda.entry_uuid, cda.mime_type, report.cda))
        signed.append((cda.unique_id, report.cda))
    signature = dsg_signature(signer, signed, submission_uid, signed_at=now)
    signature_uid = derived_uid("dsg", submission_uid)
    dsg = replace(
        common, entry_uuid=entry_uuid(signature_uid), unique_id=signature_uid, mime_type="text/xml", title="Source",
        class_code=DSG_CLASS, type_code=DSG_TYPE, format_code=DSG_FORMAT, creation_time=dtm(now),
        language_code="art", event_codes=(SOURCE_PURPOSE,), service_start=dtm(now), service_stop=dtm(now),
        hash=_sha1(signature), size=len(signature),
    )
    entries.append(dsg)
    parts.append(DocumentPart(dsg.entry_uuid, dsg.mime_type, signature))
    submission_set = SubmissionSet(
        entry_uuid=entry_uuid(submission_uid), unique_id=submission_uid, source_id=policy.source_id,
        patient_id=patient_id, submission_time=dtm(now), content_type=policy.content_type, authors=(author,),
        title=report.title, comments=f"Examen {report.accession_number}",
    )
    associations = [has_member(_association_id(submission_uid, e.entry_uuid), submission_set.entry_uuid,
                               e.entry_uuid) for e in entries]
    # The ANS samples give the signs association a SubmissionSetStatus too: harmless, and what the DMP sees.
    associations.append(Association(_association_id(submission_uid, "signs"), AssociationType.SIGNS,
                                    dsg.entry_uuid, submission_set.entry_uuid, association_slots()))
    for entry, target in ((kos, replaces.kos), (entries[1] if len(entries) == 3 else None, replaces.cda)):
        if entry is not None and target:
            associations.append(Association(_association_id(submission_uid, "rplc", entry.entry_uuid),
                                            AssociationType.RPLC, entry.entry_uuid, target))
    return BuiltSubmission(Submission(submission_set, tuple(entries), tuple(associations)), tuple(parts))


def _association_id(*parts: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_OID, 'assoc|' + '|'.join(parts))}"


def deprecation_set(report: ImagingReport | None, patient_id: str, policy: SubmissionPolicy, *, submission_uid: str,
                    now: datetime, authors: Sequence[Author] = ()) -> SubmissionSet:
    """The submission set of an ITI-57 deprecation."""
    if report is not None and not authors:
        authors = (_author(report, policy),)
    return SubmissionSet(
        entry_uuid=entry_uuid(submission_uid), unique_id=submission_uid, source_id=policy.source_id,
        patient_id=patient_id, submission_time=dtm(now), content_type=policy.content_type, authors=tuple(authors),
        title="Dépublication", comments=None,
    )
