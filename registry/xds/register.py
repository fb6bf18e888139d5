"""Registering a validated ITI-41 submission: one database transaction, documents durable first.

Order inside the transaction (ITI TF-2b §3.42.4.1.3, DMP rules):

1. Replay and duplicates: a document uniqueId already registered with another hash is
   ``XDSNonIdenticalHash`` (another size: ``XDSNonIdenticalSize``). When every content document is
   already registered with the same bytes, the submission is a replay of one that succeeded (the
   caller lost the reply): success, nothing written — its regenerated signature is not stored again.
   A submission mixing registered and new documents is refused.
2. The SubmissionSet uniqueId must be new (``XDSDuplicateUniqueIdInRegistry``); ids given as
   ``urn:uuid:`` must be new.
3. RPLC: the target exists (``UnresolvedReferenceException``), is Approved
   (``XDSRegistryDeprecatedDocumentError``), is the same patient's (``XDSPatientIdDoesNotMatch``)
   and the caller is one of its authors.
4. Document bytes are written to the blob store (fsync'd), then rows are inserted, replaced entries
   deprecated (compare-and-set), and the transaction committed. Any error rolls everything back.
"""

from __future__ import annotations

import copy
import hashlib
import uuid
from dataclasses import dataclass

from lxml import etree
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.context import RegistryContext
from registry.errors import ErrorCode, RegistryError, XdsFailure
from registry.security.vihf import VihfPrincipal
from registry.store import crud
from registry.store.models import AssociationRow, DocumentCodeRow, DocumentEntryRow, ReferenceIdRow, SubmissionSetRow
from registry.xds import ns
from registry.xds.authorization import authorship_error
from registry.xds.ebrim import RegistryObject
from registry.xds.entries import DocumentEntry, ValidatedSubmission
from registry.xds.hl7 import parse_patient_id

__all__ = ["RegistrationOutcome", "register_submission"]

_R = f"{{{ns.RIM}}}"


@dataclass(frozen=True)
class RegistrationOutcome:
    """What registration did."""

    replay: bool
    """Nothing written: the same documents were already registered."""
    entry_uuids: dict[str, str]
    """Symbolic id → entryUUID of each object written."""


def _new_uuid(object_id: str) -> str:
    return object_id if object_id.startswith("urn:uuid:") else f"urn:uuid:{uuid.uuid4()}"


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()  # noqa: S324 - XDS hash is SHA-1 by definition


def _duplicates(session: Session, submission: ValidatedSubmission) -> tuple[bool, list[RegistryError]]:
    registered = crud.documents_by_unique_ids(session, unique_ids=[d.unique_id for d in submission.documents])
    errors: list[RegistryError] = []
    for document in submission.documents:
        row = registered.get(document.unique_id)
        if row is None:
            continue
        if row.hash_sha1 != _sha1(document.content):
            errors.append(
                RegistryError(
                    ErrorCode.NON_IDENTICAL_HASH,
                    f"document {document.unique_id} is already registered with hash {row.hash_sha1}; this one has "
                    f"{_sha1(document.content)}",
                    document.symbolic_id,
                )
            )
        elif row.size != len(document.content):
            errors.append(
                RegistryError(
                    ErrorCode.NON_IDENTICAL_SIZE,
                    f"document {document.unique_id} is already registered with size {row.size}",
                    document.symbolic_id,
                )
            )
    if errors:
        return False, errors
    content = [d for d in submission.documents if not d.is_signature]
    if content and all(d.unique_id in registered for d in content):
        return True, []
    already = sorted(d.unique_id for d in submission.documents if d.unique_id in registered)
    if already:
        errors.append(
            RegistryError(
                ErrorCode.REGISTRY_METADATA_ERROR,
                f"document(s) {', '.join(already)} already registered while others are new: a submission is either "
                "new or an exact replay",
                submission.submission_set.source.id,
            )
        )
    return False, errors


def _check_new_ids(session: Session, submission: ValidatedSubmission) -> list[RegistryError]:
    errors: list[RegistryError] = []
    if crud.submission_set_exists(session, unique_id=submission.submission_set.unique_id):
        errors.append(
            RegistryError(
                ErrorCode.DUPLICATE_UNIQUE_ID_IN_REGISTRY,
                f"SubmissionSet uniqueId {submission.submission_set.unique_id} is already registered",
                submission.submission_set.source.id,
            )
        )
    given = [
        submission.submission_set.source.id,
        *(d.symbolic_id for d in submission.documents),
        *(a.id for a in submission.associations),
    ]
    for taken in sorted(crud.existing_uuids(session, uuids=[i for i in given if i.startswith("urn:uuid:")])):
        errors.append(
            RegistryError(
                ErrorCode.REGISTRY_METADATA_ERROR, f"entryUUID {taken} already names a registered object", taken
            )
        )
    return errors


def _check_replacements(
    session: Session, submission: ValidatedSubmission, principal: VihfPrincipal
) -> list[RegistryError]:
    errors: list[RegistryError] = []
    for source, target in submission.replaces.items():
        row = crud.document_by_uuid(session, entry_uuid=target, for_update=True)
        if row is None:
            errors.append(
                RegistryError(
                    ErrorCode.UNRESOLVED_REFERENCE, f"RPLC target {target} is not a registered document", source
                )
            )
            continue
        if row.status != "Approved":
            errors.append(
                RegistryError(
                    ErrorCode.DEPRECATED_DOCUMENT,
                    f"RPLC target {target} ({row.unique_id}) is {row.status}, not Approved",
                    source,
                )
            )
        if row.patient_id != submission.submission_set.patient_id:
            errors.append(
                RegistryError(
                    ErrorCode.PATIENT_ID_DOES_NOT_MATCH,
                    f"RPLC target {target} belongs to patient {row.patient_id}, the replacement to "
                    f"{submission.submission_set.patient_id}",
                    source,
                )
            )
        author = authorship_error(
            principal,
            institutions=_codes_of(row, "institution"),
            persons=_codes_of(row, "author_id"),
            location=source,
            what=f"the replaced document {target}",
        )
        if author:
            errors.append(author)
    return errors


def _codes_of(row: DocumentEntryRow, kind: str) -> set[str]:
    return {c.code for c in row.codes if c.kind == kind}


def _remap(element: etree._Element, ids: dict[str, str]) -> None:
    """Resolve symbolic ids in ``element`` and its nested objects; nested objects get their own uuid."""
    for node in element.iter():
        if not isinstance(node.tag, str):
            continue
        for attribute in ("id", "classifiedObject", "registryObject", "sourceObject", "targetObject"):
            value = node.get(attribute)
            if value is None:
                continue
            if value in ids:
                node.set(attribute, ids[value])
            elif attribute == "id" and node is not element:
                node.set(attribute, _new_uuid(value))
        node.attrib.pop("status", None)


def _slot(name: str, value: str) -> etree._Element:
    slot = etree.Element(f"{_R}Slot", name=name)
    etree.SubElement(etree.SubElement(slot, f"{_R}ValueList"), f"{_R}Value").text = value
    return slot


def _registered_document(document: DocumentEntry, ids: dict[str, str], repository_id: str) -> bytes:
    element = copy.deepcopy(document.source.element)
    _remap(element, ids)
    element.set("lid", ids[document.symbolic_id])
    for slot in element.findall(f"{_R}Slot"):
        if slot.get("name") in ("hash", "size", "repositoryUniqueId"):
            element.remove(slot)
    for position, slot in enumerate(
        (
            _slot("hash", _sha1(document.content)),
            _slot("size", str(len(document.content))),
            _slot("repositoryUniqueId", repository_id),
        )
    ):
        element.insert(position, slot)
    return bytes(etree.tostring(element, encoding="UTF-8"))


def _registered_package(package: RegistryObject, ids: dict[str, str]) -> bytes:
    element = copy.deepcopy(package.element)
    nested = any(c.get("classificationNode") == ns.CLS_SUBMISSION_SET for c in element.findall(f"{_R}Classification"))
    if not nested:  # it was a top-level Classification: keep it with the package it classifies
        element.append(
            etree.Element(
                f"{_R}Classification",
                classificationNode=ns.CLS_SUBMISSION_SET,
                classifiedObject=package.id,
                id=f"urn:uuid:{uuid.uuid4()}",
            )
        )
    _remap(element, ids)
    return bytes(etree.tostring(element, encoding="UTF-8"))


def _document_row(
    document: DocumentEntry, ids: dict[str, str], ctx: RegistryContext, blob_key: str, submission_set: SubmissionSetRow
) -> DocumentEntryRow:
    entry_uuid = ids[document.symbolic_id]
    row = DocumentEntryRow(
        entry_uuid=entry_uuid,
        logical_uuid=entry_uuid,
        unique_id=document.unique_id,
        patient_id=document.patient_id,
        status="Approved",
        class_code=document.class_code.code,
        class_scheme=document.class_code.scheme,
        type_code=document.type_code.code,
        type_scheme=document.type_code.scheme,
        format_code=document.format_code.code,
        format_scheme=document.format_code.scheme,
        facility_type_code=document.facility_type.code,
        facility_type_scheme=document.facility_type.scheme,
        practice_setting_code=document.practice_setting.code,
        practice_setting_scheme=document.practice_setting.scheme,
        creation_time=document.creation_time,
        service_start_time=document.service_start_time,
        service_stop_time=document.service_stop_time,
        mime_type=document.mime_type,
        language_code=document.language_code,
        title=document.title[:1024],
        hash_sha1=_sha1(document.content),
        size=len(document.content),
        blob_sha256=blob_key,
        repository_unique_id=ctx.settings.repository_unique_id,
        registered_at=ctx.clock(),
        ebrim=crud.compress(_registered_document(document, ids, ctx.settings.repository_unique_id)),
    )
    row.codes = [
        *(DocumentCodeRow(kind="event", code=c.code, scheme=c.scheme) for c in document.event_codes),
        *(DocumentCodeRow(kind="confidentiality", code=c.code, scheme=c.scheme) for c in document.confidentiality),
        *(DocumentCodeRow(kind="author", code=v, scheme="") for v in _author_values(document.source)),
        *(DocumentCodeRow(kind="author_id", code=i, scheme="") for i in _author_ids(document)),
        *(
            DocumentCodeRow(kind="institution", code=i, scheme="")
            for i in sorted({x.id for x in document.institutions})
        ),
    ]
    row.reference_ids = [
        ReferenceIdRow(value=r.value, id_value=r.id, authority=r.authority_oid, id_type=r.id_type)
        for r in document.reference_ids
    ]
    row.submission_set_id = submission_set.id
    return row


def _author_values(document: RegistryObject) -> list[str]:
    return [v for c in document.classified_by(ns.DE_AUTHOR) for v in c.slots.get("authorPerson", []) if v]


def _author_ids(document: DocumentEntry) -> list[str]:
    ids = {p.id for p in document.authors}
    if document.legal_authenticator:
        ids.add(document.legal_authenticator.id)
    return sorted(ids)


def _write(session: Session, ctx: RegistryContext, submission: ValidatedSubmission) -> dict[str, str]:
    submission_set = submission.submission_set
    ids = {submission_set.source.id: _new_uuid(submission_set.source.id)}
    ids.update({d.symbolic_id: _new_uuid(d.symbolic_id) for d in submission.documents})
    ids.update({a.id: _new_uuid(a.id) for a in submission.associations})
    now = ctx.clock()
    set_row = SubmissionSetRow(
        entry_uuid=ids[submission_set.source.id],
        unique_id=submission_set.unique_id,
        patient_id=submission_set.patient_id,
        source_id=submission_set.source_id,
        submission_time=submission_set.submission_time,
        content_type_code=submission_set.content_type.code,
        content_type_scheme=submission_set.content_type.scheme,
        received_at=now,
        ebrim=crud.compress(_registered_package(submission_set.source, ids)),
    )
    session.add(set_row)
    session.flush()
    # Bytes are durable before any row can point at them (a crash leaves at worst an orphan file).
    blob_keys = {d.symbolic_id: ctx.blobs.put(d.content) for d in submission.documents}
    for document in submission.documents:
        session.add(_document_row(document, ids, ctx, blob_keys[document.symbolic_id], set_row))
    for association in submission.associations:
        element = copy.deepcopy(association.element)
        _remap(element, ids)
        session.add(
            AssociationRow(
                entry_uuid=ids[association.id],
                association_type=association.type,
                source_uuid=ids.get(association.source, association.source),
                target_uuid=ids.get(association.target, association.target),
                patient_id=submission_set.patient_id,
                submission_set_id=set_row.id,
                ebrim=crud.compress(etree.tostring(element, encoding="UTF-8")),
            )
        )
    crud.record_identifiers(
        session,
        patient_id=submission_set.patient_id,  # validation checked every entry is the set's patient
        objects=[
            ("entry_uuid", ids[submission_set.source.id], "submission_set"),
            ("set_uid", submission_set.unique_id, "submission_set"),
            *(("entry_uuid", ids[d.symbolic_id], "document") for d in submission.documents),
            *(("document_uid", d.unique_id, "document") for d in submission.documents),
            *(("entry_uuid", ids[a.id], "association") for a in submission.associations),
        ],
    )
    cx = parse_patient_id(submission_set.patient_id, ctx.settings.accepted_ins_oids)
    crud.ensure_patient(session, patient_id=submission_set.patient_id, ins=cx.id, ins_oid=cx.authority_oid, now=now)
    session.flush()
    for source, target in submission.replaces.items():
        if not crud.deprecate_document(session, patient_id=submission_set.patient_id, entry_uuid=target):
            raise XdsFailure(
                [
                    RegistryError(
                        ErrorCode.DEPRECATED_DOCUMENT, f"RPLC target {target} was deprecated concurrently", source
                    )
                ]
            )
    return ids


def _attempt(ctx: RegistryContext, submission: ValidatedSubmission, principal: VihfPrincipal) -> RegistrationOutcome:
    with ctx.database.session() as session:
        replay, errors = _duplicates(session, submission)
        if replay:
            return RegistrationOutcome(replay=True, entry_uuids={})
        errors += _check_new_ids(session, submission) if not errors else []
        errors += _check_replacements(session, submission, principal) if not errors else []
        if errors:
            raise XdsFailure(errors)
        ids = _write(session, ctx, submission)
        session.commit()
        return RegistrationOutcome(replay=False, entry_uuids=ids)


def register_submission(
    ctx: RegistryContext, submission: ValidatedSubmission, principal: VihfPrincipal
) -> RegistrationOutcome:
    """Register ``submission`` atomically (see the module docstring).

    Raises
    ------
    XdsFailure
        Every reason the submission is refused; nothing was written.
    """
    try:
        return _attempt(ctx, submission, principal)
    except IntegrityError:
        # A concurrent transaction registered one of our unique ids first: decide again against it
        # (it is either a replay of ours, a hash conflict, or a duplicate).
        try:
            return _attempt(ctx, submission, principal)
        except IntegrityError as exc:
            raise XdsFailure(
                [RegistryError(ErrorCode.REGISTRY_ERROR, f"conflicting concurrent submission: {exc.orig}", "")]
            ) from exc
