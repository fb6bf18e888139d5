"""The metadata rules of an ITI-41 submission, as the DMP applies them (ITI TF-3 §4.2, CI-SIS DMP).

Every rule that fails yields one :class:`~registry.errors.RegistryError` whose ``codeContext`` names
the attribute and the offending value and whose ``location`` is the object id: a submission with
several faults is answered with all of them. The rules, object by object:

SubmissionSet (ITI TF-3 §4.2.3.3)
    exactly one RegistryPackage classified as SubmissionSet; ``submissionTime`` (UTC
    ``YYYYMMDDhhmmss``); ``patientId`` (``<INS>^^^&<INS OID>&ISO^NH``, key checked); ``sourceId`` and
    ``uniqueId`` (OIDs); ``contentTypeCode`` (scheme ``1.2.250.1.213.2.2``); at least one author.
DocumentEntry (ITI TF-3 §4.2.3.2)
    ``objectType`` stable; ``mimeType``; ``uniqueId`` (OID or OID^extension; a DICOM UID for a KOS);
    ``patientId`` equal to the SubmissionSet's; ``sourcePatientId`` (CX with ``^PI``/``^NH``);
    ``sourcePatientInfo`` (content documents: PID-5, PID-7, PID-8); ``creationTime`` and
    ``serviceStartTime`` (UTC), ``serviceStopTime`` when present (UTC, not before the start);
    ``languageCode``; title; ``legalAuthenticator`` (XCN, ``IDNPS`` from ``1.2.250.1.71.4.2.1``);
    authors (each one ``authorPerson`` XCN and ≥ 1 ``authorInstitution`` XON, ``IDNST`` from
    ``1.2.250.1.71.4.2.2``); one each of classCode, typeCode, formatCode, healthcareFacilityTypeCode
    (scheme ``1.2.250.1.71.4.2.4``), practiceSettingCode (``1.2.250.1.213.1.1.4.9``), with their
    coding scheme and display name; confidentialityCode: exactly one of N/R/V
    (``2.16.840.1.113883.5.25``) plus DMP visibility codes (``1.2.250.1.213.1.1.4.13``); eventCodeList
    items coded; ``referenceIdList`` values in CXi form; ``hash``/``size`` when present match the bytes.
KOS (``application/dicom``)
    classCode ``31`` (``1.2.250.1.213.1.1.4.1``), typeCode ``IMG-KOS`` (``1.2.250.1.213.1.1.4.12``),
    formatCode ``1.2.840.10008.5.1.4.1.1.88.59`` (``1.2.840.10008.2.6.1``), a Study Instance UID in
    ``referenceIdList``.
DSG signature document (source of ``signs``, IHE DSG)
    ``text/xml``, classCode ``urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1`` (URN), typeCode ``E1762`` (ASTM),
    formatCode ``http://www.w3.org/2000/09/xmldsig#`` (URN); exactly one per submission.
Associations (ITI TF-3 §4.2.2)
    every document is the target of one HasMember from the SubmissionSet with
    ``SubmissionSetStatus`` ``Original``; ``signs`` from the signature document to the
    SubmissionSet; ``RPLC`` from a submitted document to an existing entry (``urn:uuid:``); no other
    association type.
Message-wide
    unique ids distinct (``XDSRegistryDuplicateUniqueIdInMessage``); patient ids equal
    (``XDSPatientIdDoesNotMatch``); every ExtrinsicObject has its ``Document`` (``XDSMissingDocument``)
    and every ``Document`` its ExtrinsicObject (``XDSMissingDocumentMetadata``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from registry.errors import ErrorCode, RegistryError
from registry.xds import ns
from registry.xds.ebrim import Association, Classification, RegistryObject, SubmittedObjects
from registry.xds.entries import Code, DocumentEntry, SubmissionSet, ValidatedSubmission
from registry.xds.hl7 import (
    OID,
    Hl7FormatError,
    ReferenceId,
    Xcn,
    Xon,
    parse_dtm,
    parse_patient_id,
    parse_reference_id,
    parse_source_patient_id,
    parse_xcn,
    parse_xon,
)

__all__ = [
    "CODE_SCHEMES",
    "DSG_CODES",
    "KOS_CODES",
    "ValidationContext",
    "validate_submission",
    "validate_submission_set",
]

_MIME = re.compile(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+$", re.IGNORECASE)
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_UNIQUE_ID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+(\^[^\s^]{1,16})?$")
_PID_FIELD = re.compile(r"^PID-(\d+)\|(.*)$")

CONFIDENTIALITY_HL7 = "2.16.840.1.113883.5.25"
CONFIDENTIALITY_DMP = "1.2.250.1.213.1.1.4.13"

CODE_SCHEMES: Mapping[str, frozenset[str] | None] = {
    "classCode": frozenset({"1.2.250.1.213.1.1.4.1"}),
    "typeCode": frozenset({"1.2.250.1.213.1.1.4.12", "2.16.840.1.113883.6.1"}),
    "formatCode": None,
    "healthcareFacilityTypeCode": frozenset({"1.2.250.1.71.4.2.4"}),
    "practiceSettingCode": frozenset({"1.2.250.1.213.1.1.4.9"}),
    "contentTypeCode": frozenset({"1.2.250.1.213.2.2"}),
}
"""Coding schemes the DMP accepts per coded attribute of a content document (None: any coded value)."""

KOS_CODES: Mapping[str, Code] = {
    "classCode": Code("31", "1.2.250.1.213.1.1.4.1"),
    "typeCode": Code("IMG-KOS", "1.2.250.1.213.1.1.4.12"),
    "formatCode": Code("1.2.840.10008.5.1.4.1.1.88.59", "1.2.840.10008.2.6.1"),
}
"""Codes of a KOS imaging manifest entry (DESIGN §3, CI-SIS imagerie)."""

DSG_CODES: Mapping[str, Code] = {
    "classCode": Code("urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1", "URN"),
    "typeCode": Code("E1762", "ASTM"),
    "formatCode": Code("http://www.w3.org/2000/09/xmldsig#", "URN"),
}
"""Codes of an IHE DSG signature document entry (ITI TF-3 §5.5.4)."""

CONFIDENTIALITY_VALUES: Mapping[str, frozenset[str]] = {
    CONFIDENTIALITY_HL7: frozenset({"N", "R", "V"}),
    CONFIDENTIALITY_DMP: frozenset({"MASQUE_PS", "INVISIBLE_PATIENT", "INVISIBLE_REPRESENTANTS_LEGAUX"}),
}

_DOCUMENT_CODES = (
    ("classCode", ns.DE_CLASS_CODE),
    ("typeCode", ns.DE_TYPE_CODE),
    ("formatCode", ns.DE_FORMAT_CODE),
    ("healthcareFacilityTypeCode", ns.DE_HEALTHCARE_FACILITY_TYPE_CODE),
    ("practiceSettingCode", ns.DE_PRACTICE_SETTING_CODE),
)


@dataclass(frozen=True)
class ValidationContext:
    """What the rules depend on besides the message."""

    accepted_ins_oids: tuple[str, ...]
    repository_unique_id: str


@dataclass
class _Findings:
    errors: list[RegistryError] = field(default_factory=list)

    def add(self, context: str, location: str, code: ErrorCode = ErrorCode.REGISTRY_METADATA_ERROR) -> None:
        self.errors.append(RegistryError(code, context, location))


def _single(obj: RegistryObject, name: str, found: _Findings, *, required: bool = True) -> str | None:
    values = [v for v in obj.slots.get(name, []) if v]
    if len(values) > 1:
        found.add(f"{name}: exactly one value expected, got {len(values)}", obj.id)
        return None
    if not values:
        if required:
            found.add(f"{name} is missing", obj.id)
        return None
    return values[0]


def _external_id(obj: RegistryObject, scheme: str, name: str, found: _Findings) -> str | None:
    values = obj.external_ids.get(scheme, [])
    if len(values) != 1 or not values[0]:
        found.add(f"{name}: exactly one ExternalIdentifier expected, got {len(values)}", obj.id)
        return None
    return values[0]


def _code(classification: Classification, name: str, location: str, found: _Findings) -> Code | None:
    schemes = [s for s in classification.slots.get("codingScheme", []) if s]
    if not classification.code:
        found.add(f"{name}: nodeRepresentation (the code) is empty", location)
        return None
    if len(schemes) != 1:
        found.add(f"{name} {classification.code!r}: exactly one codingScheme expected, got {len(schemes)}", location)
        return None
    if not classification.name:
        found.add(f"{name} {classification.code!r}: the display name (rim:Name) is missing", location)
        return None
    return Code(classification.code, schemes[0], classification.name)


def _one_code(obj: RegistryObject, scheme: str, name: str, found: _Findings) -> Code | None:
    classified = obj.classified_by(scheme)
    if len(classified) != 1:
        found.add(f"{name}: exactly one expected, got {len(classified)}", obj.id)
        return None
    return _code(classified[0], name, obj.id, found)


def _check_scheme(code: Code | None, name: str, location: str, found: _Findings) -> None:
    allowed = CODE_SCHEMES.get(name)
    if code is not None and allowed is not None and code.scheme not in allowed:
        found.add(
            f"{name} {code.code!r}: coding scheme {code.scheme!r} is not {' or '.join(sorted(allowed))}", location
        )


def _authors(obj: RegistryObject, scheme: str, found: _Findings) -> tuple[list[Xcn], list[Xon]]:
    persons: list[Xcn] = []
    institutions: list[Xon] = []
    classified = obj.classified_by(scheme)
    if not classified:
        found.add("author: at least one author (authorPerson, authorInstitution) is required", obj.id)
    for author in classified:
        values = [v for v in author.slots.get("authorPerson", []) if v]
        if len(values) != 1:
            found.add(f"authorPerson: exactly one value per author expected, got {len(values)}", obj.id)
        for value in values:
            try:
                persons.append(parse_xcn(value, "authorPerson"))
            except Hl7FormatError as exc:
                found.add(str(exc), obj.id)
        orgs = [v for v in author.slots.get("authorInstitution", []) if v]
        if not orgs:
            found.add("authorInstitution: at least one per author is required", obj.id)
        for value in orgs:
            try:
                institution = parse_xon(value, "authorInstitution")
            except Hl7FormatError as exc:
                found.add(str(exc), obj.id)
                continue
            if institution.id_type != "IDNST":
                found.add(
                    f"authorInstitution {value!r}: the DMP requires a national structure identifier (IDNST)", obj.id
                )
            institutions.append(institution)
    return persons, institutions


def _time(obj: RegistryObject, name: str, found: _Findings, *, required: bool) -> str | None:
    value = _single(obj, name, found, required=required)
    if value is None:
        return None
    try:
        parse_dtm(value, name)
    except Hl7FormatError as exc:
        found.add(str(exc), obj.id)
        return None
    return value


def _patient_id(value: str | None, context: ValidationContext, location: str, found: _Findings) -> str | None:
    if value is None:
        return None
    try:
        parse_patient_id(value, context.accepted_ins_oids)
    except Hl7FormatError as exc:
        found.add(str(exc), location)
        return None
    return value


def _check_submission_set(
    objects: SubmittedObjects, context: ValidationContext, found: _Findings
) -> SubmissionSet | None:
    sets = [p for p in objects.packages if p.is_submission_set]
    others = [p.id for p in objects.packages if not p.is_submission_set]
    if others:
        found.add(f"RegistryPackage {', '.join(others)}: folders are not accepted by this registry", others[0])
    if len(sets) != 1:
        found.add(f"exactly one SubmissionSet expected, got {len(sets)}", "SubmitObjectsRequest")
        return None
    package = sets[0]
    submission_time = _time(package, "submissionTime", found, required=True)
    patient_id = _patient_id(
        _external_id(package, ns.SS_PATIENT_ID, "XDSSubmissionSet.patientId", found), context, package.id, found
    )
    source_id = _external_id(package, ns.SS_SOURCE_ID, "XDSSubmissionSet.sourceId", found)
    if source_id is not None and not OID.match(source_id):
        found.add(f"XDSSubmissionSet.sourceId {source_id!r} is not an OID", package.id)
    unique_id = _external_id(package, ns.SS_UNIQUE_ID, "XDSSubmissionSet.uniqueId", found)
    if unique_id is not None and not OID.match(unique_id):
        found.add(f"XDSSubmissionSet.uniqueId {unique_id!r} is not an OID", package.id)
    content_type = _one_code(package, ns.SS_CONTENT_TYPE_CODE, "contentTypeCode", found)
    _check_scheme(content_type, "contentTypeCode", package.id, found)
    persons, institutions = _authors(package, ns.SS_AUTHOR, found)
    if None in (submission_time, patient_id, source_id, unique_id, content_type):
        return None
    assert submission_time and patient_id and source_id and unique_id and content_type
    return SubmissionSet(
        package, unique_id, source_id, patient_id, submission_time, content_type, persons, institutions
    )


def _check_source_patient_info(doc: RegistryObject, found: _Findings) -> None:
    values = [v for v in doc.slots.get("sourcePatientInfo", []) if v]
    if not values:
        found.add("sourcePatientInfo is missing (PID-5 name, PID-7 birth date, PID-8 sex)", doc.id)
        return
    fields: dict[str, str] = {}
    for value in values:
        match = _PID_FIELD.match(value)
        if not match:
            found.add(f"sourcePatientInfo value {value!r} is not of the form PID-<n>|<value>", doc.id)
            continue
        fields[match.group(1)] = match.group(2)
    for number, meaning in (("5", "name"), ("7", "birth date"), ("8", "sex")):
        if not fields.get(number):
            found.add(f"sourcePatientInfo: PID-{number} ({meaning}) is missing", doc.id)
    if fields.get("7") and not re.match(r"^\d{4}(\d{2}(\d{2})?)?$", fields["7"]):
        found.add(f"sourcePatientInfo: PID-7 {fields['7']!r} is not a date YYYY[MM[DD]]", doc.id)
    if fields.get("8") and fields["8"] not in ("M", "F", "U", "O", "A", "N"):
        found.add(f"sourcePatientInfo: PID-8 {fields['8']!r} is not an HL7 administrative sex", doc.id)


def _check_confidentiality(doc: RegistryObject, found: _Findings) -> list[Code]:
    codes: list[Code] = []
    for classification in doc.classified_by(ns.DE_CONFIDENTIALITY_CODE):
        code = _code(classification, "confidentialityCode", doc.id, found)
        if code is None:
            continue
        allowed = CONFIDENTIALITY_VALUES.get(code.scheme)
        if allowed is None or code.code not in allowed:
            found.add(
                f"confidentialityCode {code.code!r} ({code.scheme}) is neither N/R/V of {CONFIDENTIALITY_HL7} "
                f"nor a DMP visibility code of {CONFIDENTIALITY_DMP}",
                doc.id,
            )
        codes.append(code)
    if sum(1 for c in codes if c.scheme == CONFIDENTIALITY_HL7) != 1:
        found.add(f"confidentialityCode: exactly one code of {CONFIDENTIALITY_HL7} (N, R or V) is required", doc.id)
    return codes


def _check_profile(entry: DocumentEntry, found: _Findings) -> None:
    """KOS and DSG entries carry fixed codes."""
    profile: Mapping[str, Code] | None = None
    if entry.is_signature:
        profile = DSG_CODES
        if entry.mime_type != "text/xml":
            found.add(f"DSG signature document: mimeType {entry.mime_type!r} must be text/xml", entry.symbolic_id)
    elif entry.mime_type == "application/dicom":
        profile = KOS_CODES
        if not re.match(r"^[0-2](\.(0|[1-9][0-9]*))+$", entry.unique_id) or len(entry.unique_id) > 64:
            found.add(f"uniqueId {entry.unique_id!r} of a KOS must be its SOP Instance UID", entry.symbolic_id)
        if not any(r.id_type == "urn:ihe:iti:xds:2016:studyInstanceUID" for r in entry.reference_ids):
            found.add(
                "referenceIdList: a KOS must reference its Study Instance UID "
                "(<uid>^^^^urn:ihe:iti:xds:2016:studyInstanceUID)",
                entry.symbolic_id,
            )
    else:
        for name, code in (("classCode", entry.class_code), ("typeCode", entry.type_code)):
            _check_scheme(code, name, entry.symbolic_id, found)
    if profile is None:
        return
    what = "DSG signature document" if entry.is_signature else "KOS"
    for name, actual in (
        ("classCode", entry.class_code),
        ("typeCode", entry.type_code),
        ("formatCode", entry.format_code),
    ):
        expected = profile[name]
        if (actual.code, actual.scheme) != (expected.code, expected.scheme):
            found.add(
                f"{name} of a {what} must be {expected.code!r} ({expected.scheme}), got {actual.code!r} "
                f"({actual.scheme})",
                entry.symbolic_id,
            )


def _check_document(
    doc: RegistryObject, is_signature: bool, context: ValidationContext, found: _Findings
) -> DocumentEntry | None:
    before = len(found.errors)
    if doc.object_type != ns.STABLE_DOCUMENT_ENTRY:
        found.add(
            f"objectType {doc.object_type!r}: only stable DocumentEntries ({ns.STABLE_DOCUMENT_ENTRY}) are accepted",
            doc.id,
        )
    if not _MIME.match(doc.mime_type):
        found.add(f"mimeType {doc.mime_type!r} is not a media type", doc.id)
    unique_id = _external_id(doc, ns.DE_UNIQUE_ID, "XDSDocumentEntry.uniqueId", found)
    if unique_id is not None and not _UNIQUE_ID.match(unique_id):
        found.add(f"XDSDocumentEntry.uniqueId {unique_id!r} is not an OID or OID^extension", doc.id)
    patient_id = _patient_id(
        _external_id(doc, ns.DE_PATIENT_ID, "XDSDocumentEntry.patientId", found), context, doc.id, found
    )
    source_patient_id = _single(doc, "sourcePatientId", found)
    if source_patient_id is not None:
        try:
            parse_source_patient_id(source_patient_id)
        except Hl7FormatError as exc:
            found.add(str(exc), doc.id)
    if not is_signature:
        _check_source_patient_info(doc, found)
    creation_time = _time(doc, "creationTime", found, required=True)
    start = _time(doc, "serviceStartTime", found, required=True)
    stop = _time(doc, "serviceStopTime", found, required=False)
    if start and stop and stop < start:
        found.add(f"serviceStopTime {stop} is before serviceStartTime {start}", doc.id)
    language = _single(doc, "languageCode", found)
    if language is not None and not _LANGUAGE.match(language):
        found.add(f"languageCode {language!r} is not an RFC 5646 tag (e.g. fr-FR)", doc.id)
    if not doc.title:
        found.add("title (rim:Name) is missing", doc.id)
    legal = _single(doc, "legalAuthenticator", found)
    legal_authenticator = None
    if legal is not None:
        try:
            legal_authenticator = parse_xcn(legal, "legalAuthenticator")
        except Hl7FormatError as exc:
            found.add(str(exc), doc.id)
        else:
            if legal_authenticator.id_type != "IDNPS":
                found.add(f"legalAuthenticator {legal!r}: the DMP requires a national identifier (IDNPS)", doc.id)
    persons, institutions = _authors(doc, ns.DE_AUTHOR, found)
    codes = {name: _one_code(doc, scheme, name, found) for name, scheme in _DOCUMENT_CODES}
    _check_scheme(codes["healthcareFacilityTypeCode"], "healthcareFacilityTypeCode", doc.id, found)
    _check_scheme(codes["practiceSettingCode"], "practiceSettingCode", doc.id, found)
    confidentiality = _check_confidentiality(doc, found)
    events = [c for c in (_code(e, "eventCodeList", doc.id, found) for e in doc.classified_by(ns.DE_EVENT_CODE)) if c]
    references: list[ReferenceId] = []
    for value in doc.slots.get(ns.SLOT_REFERENCE_ID_LIST, []):
        try:
            references.append(parse_reference_id(value))
        except Hl7FormatError as exc:
            found.add(str(exc), doc.id)
    declared_hash = _single(doc, "hash", found, required=False)
    if declared_hash is not None and not re.match(r"^[0-9a-fA-F]{40}$", declared_hash):
        found.add(f"hash {declared_hash!r} is not a hex SHA-1", doc.id)
    declared_size = _single(doc, "size", found, required=False)
    if declared_size is not None and not declared_size.isdigit():
        found.add(f"size {declared_size!r} is not a number of bytes", doc.id)
    repository = _single(doc, "repositoryUniqueId", found, required=False)
    if repository is not None and repository != context.repository_unique_id:
        found.add(
            f"repositoryUniqueId {repository!r} is not this repository ({context.repository_unique_id})",
            doc.id,
            ErrorCode.REPOSITORY_METADATA_ERROR,
        )
    if len(found.errors) > before:
        return None
    assert unique_id and patient_id and creation_time and language
    entry = DocumentEntry(
        source=doc,
        unique_id=unique_id,
        patient_id=patient_id,
        mime_type=doc.mime_type,
        class_code=_present(codes["classCode"]),
        type_code=_present(codes["typeCode"]),
        format_code=_present(codes["formatCode"]),
        facility_type=_present(codes["healthcareFacilityTypeCode"]),
        practice_setting=_present(codes["practiceSettingCode"]),
        creation_time=creation_time,
        service_start_time=start,
        service_stop_time=stop,
        language_code=language,
        title=doc.title,
        confidentiality=confidentiality,
        event_codes=events,
        authors=persons,
        institutions=institutions,
        legal_authenticator=legal_authenticator,
        reference_ids=references,
        declared_hash=declared_hash.lower() if declared_hash else None,
        declared_size=int(declared_size) if declared_size else None,
        is_signature=is_signature,
    )
    _check_profile(entry, found)
    return entry if len(found.errors) == before else None


def _present(code: Code | None) -> Code:
    assert code is not None  # guarded by the error count of the caller
    return code


def _check_associations(
    objects: SubmittedObjects, submission_set_id: str, found: _Findings
) -> tuple[set[str], dict[str, str]]:
    """Structure of the associations; returns (signature document ids, RPLC source → target)."""
    documents = {d.id for d in objects.documents}
    members: dict[str, int] = dict.fromkeys(documents, 0)
    signers: set[str] = set()
    replaces: dict[str, str] = {}
    for association in objects.associations:
        where = association.id or "Association"
        if association.type == ns.ASSOC_HAS_MEMBER:
            _check_membership(association, submission_set_id, documents, members, found)
        elif association.type == ns.ASSOC_SIGNS:
            if association.source not in documents:
                found.add(
                    f"signs association: source {association.source!r} is not a document of the submission", where
                )
            elif association.target != submission_set_id and association.target not in documents:
                found.add(
                    f"signs association: target {association.target!r} is neither the SubmissionSet nor a "
                    "document of the submission",
                    where,
                )
            else:
                signers.add(association.source)
        elif association.type == ns.ASSOC_RPLC:
            if association.source not in documents:
                found.add(f"RPLC association: source {association.source!r} is not a document of the submission", where)
            elif not association.target.startswith("urn:uuid:"):
                found.add(
                    f"RPLC association: target {association.target!r} must be the entryUUID of a registered "
                    "document (urn:uuid:…)",
                    where,
                    ErrorCode.UNRESOLVED_REFERENCE,
                )
            elif association.source in replaces:
                found.add(f"RPLC association: {association.source!r} replaces more than one document", where)
            else:
                replaces[association.source] = association.target
        else:
            found.add(
                f"association type {association.type!r} is not accepted by this registry "
                "(HasMember, RPLC and signs are)",
                where,
            )
    for document, count in members.items():
        if count != 1:
            found.add(
                f"document {document!r} must be the target of exactly one HasMember association from the "
                f"SubmissionSet, found {count}",
                document,
            )
    if len(signers) != 1:
        found.add(
            f"exactly one DSG signature document (source of a signs association) is required, found {len(signers)}",
            submission_set_id,
        )
    return signers, replaces


def _check_membership(
    association: Association, submission_set_id: str, documents: set[str], members: dict[str, int], found: _Findings
) -> None:
    where = association.id or "Association"
    if association.source != submission_set_id:
        found.add(f"HasMember association: source {association.source!r} is not the SubmissionSet", where)
        return
    if association.target not in documents:
        found.add(
            f"HasMember association: target {association.target!r} is not a document of the submission "
            "(references to registered objects are not accepted)",
            where,
        )
        return
    status = association.slots.get("SubmissionSetStatus", [])
    if status != ["Original"]:
        found.add(
            f"HasMember association to {association.target!r}: SubmissionSetStatus must be 'Original', got {status!r}",
            where,
        )
    members[association.target] += 1


def _signers(objects: SubmittedObjects) -> set[str]:
    return {a.source for a in objects.associations if a.type == ns.ASSOC_SIGNS}


def _check_ids(objects: SubmittedObjects, found: _Findings) -> None:
    seen: set[str] = set()
    for obj_id in [
        *(p.id for p in objects.packages),
        *(d.id for d in objects.documents),
        *(a.id for a in objects.associations),
    ]:
        if not obj_id:
            found.add("an object has no id attribute", "RegistryObjectList")
        elif obj_id in seen:
            found.add(f"object id {obj_id!r} is used more than once", obj_id)
        seen.add(obj_id)


def validate_submission(
    objects: SubmittedObjects, contents: Mapping[str, bytes], context: ValidationContext
) -> ValidatedSubmission | list[RegistryError]:
    """Apply every rule of the module docstring.

    Parameters
    ----------
    objects
        The submitted registry objects.
    contents
        Document bytes by ``xdsb:Document/@id``.
    context
        Accepted INS OIDs and this repository's id.

    Returns
    -------
    ValidatedSubmission | list[RegistryError]
        The typed submission, or every error found.
    """
    found = _Findings()
    for name in objects.unsupported:
        found.add(f"{name}: not accepted in a Provide and Register request", "RegistryObjectList")
    _check_ids(objects, found)
    if not [d for d in objects.documents if d.id not in _signers(objects)]:
        found.add("the submission must carry at least one document besides its DSG signature", "RegistryObjectList")
    submission_set = _check_submission_set(objects, context, found)
    packages = [p.id for p in objects.packages if p.is_submission_set]
    signers, replaces = _check_associations(objects, packages[0] if len(packages) == 1 else "", found)
    documents: list[DocumentEntry] = []
    for doc in objects.documents:
        entry = _check_document(doc, doc.id in signers, context, found)
        if entry is None:
            continue
        if doc.id not in contents:
            found.add(f"DocumentEntry {doc.id!r} has no Document in the request", doc.id, ErrorCode.MISSING_DOCUMENT)
            continue
        entry.content = contents[doc.id]
        _check_hash(entry, found)
        documents.append(entry)
    for doc_id in contents.keys() - {d.id for d in objects.documents}:
        found.add(
            f"Document {doc_id!r} has no DocumentEntry (ExtrinsicObject) in the metadata",
            doc_id,
            ErrorCode.MISSING_DOCUMENT_METADATA,
        )
    _check_message_wide(submission_set, documents, found)
    if found.errors or submission_set is None:
        return found.errors
    return ValidatedSubmission(submission_set, documents, objects.associations, replaces)


def _check_hash(entry: DocumentEntry, found: _Findings) -> None:
    actual_hash = hashlib.sha1(entry.content).hexdigest()  # noqa: S324 - XDS hash is SHA-1 by definition
    if entry.declared_hash is not None and entry.declared_hash != actual_hash:
        found.add(
            f"hash {entry.declared_hash} declared for {entry.unique_id} but the document's SHA-1 is {actual_hash}",
            entry.symbolic_id,
            ErrorCode.REPOSITORY_METADATA_ERROR,
        )
    if entry.declared_size is not None and entry.declared_size != len(entry.content):
        found.add(
            f"size {entry.declared_size} declared for {entry.unique_id} but the document has "
            f"{len(entry.content)} bytes",
            entry.symbolic_id,
            ErrorCode.REPOSITORY_METADATA_ERROR,
        )


def _check_message_wide(submission_set: SubmissionSet | None, documents: list[DocumentEntry], found: _Findings) -> None:
    unique_ids = [d.unique_id for d in documents] + ([submission_set.unique_id] if submission_set else [])
    for unique_id in sorted({u for u in unique_ids if unique_ids.count(u) > 1}):
        found.add(
            f"uniqueId {unique_id} appears more than once in the submission",
            unique_id,
            ErrorCode.DUPLICATE_UNIQUE_ID_IN_MESSAGE,
        )
    if submission_set is None:
        return
    for document in documents:
        if document.patient_id != submission_set.patient_id:
            found.add(
                f"patientId {document.patient_id} of {document.symbolic_id} differs from the SubmissionSet's "
                f"{submission_set.patient_id}",
                document.symbolic_id,
                ErrorCode.PATIENT_ID_DOES_NOT_MATCH,
            )


def validate_submission_set(
    objects: SubmittedObjects, context: ValidationContext
) -> SubmissionSet | list[RegistryError]:
    """The SubmissionSet rules alone (ITI-57 submissions carry one SubmissionSet and associations)."""
    found = _Findings()
    submission_set = _check_submission_set(objects, context, found)
    if found.errors or submission_set is None:
        return found.errors
    return submission_set
