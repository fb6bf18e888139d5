"""ITI-57 Update Document Set (ITI TF-2b §3.57): availability status changes of DocumentEntries.

The submission holds a SubmissionSet (same rules as ITI-41) and one or more
``UpdateAvailabilityStatus`` associations from it to the entryUUID of a registered DocumentEntry,
with ``OriginalStatus`` and ``NewStatus`` slots (ITI TF-2b §3.57.4.1.3.3.2). The change is a
compare-and-set: ``OriginalStatus`` must be the entry's current status (``XDSMetadataUpdateError``
otherwise, also when a concurrent update won). Metadata updates that create a new version of a
DocumentEntry are not supported (``XDSMetadataUpdateOperationError``). Same VIHF rules as ITI-41:
the assertion's patient, and the caller an author of each entry it changes.
"""

from __future__ import annotations

import copy
import logging
import uuid
from dataclasses import dataclass

from lxml import etree
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.context import RegistryContext
from registry.errors import ErrorCode, RegistryError, XdsFailure
from registry.security.vihf import VihfPrincipal
from registry.store import crud
from registry.store.models import AssociationRow, SubmissionSetRow
from registry.xds import ns
from registry.xds.authorization import authorship_error, patient_error
from registry.xds.ebrim import Association, read_objects
from registry.xds.entries import SubmissionSet
from registry.xds.responses import registry_response
from registry.xds.validation import validate_submission_set

__all__ = ["ACTION", "RESPONSE_ACTION", "update_document_set"]

ACTION = "urn:ihe:iti:2010:UpdateDocumentSet"
RESPONSE_ACTION = "urn:ihe:iti:2010:UpdateDocumentSetResponse"

_STATUS_PREFIX = "urn:oasis:names:tc:ebxml-regrep:StatusType:"
_STATUSES = ("Approved", "Deprecated")

log = logging.getLogger("registry.iti57")


@dataclass(frozen=True)
class _StatusChange:
    association: Association
    target: str
    original: str
    new: str


def _failure(code: ErrorCode, context: str, location: str = "") -> XdsFailure:
    return XdsFailure([RegistryError(code, context, location)])


def _status(association: Association, slot: str, errors: list[RegistryError]) -> str | None:
    values = association.slots.get(slot, [])
    if (
        len(values) != 1
        or not values[0].startswith(_STATUS_PREFIX)
        or values[0][len(_STATUS_PREFIX) :] not in _STATUSES
    ):
        errors.append(
            RegistryError(
                ErrorCode.METADATA_UPDATE_ERROR,
                f"{slot} must be one status URN ({_STATUS_PREFIX}Approved|Deprecated), got {values}",
                association.id,
            )
        )
        return None
    return values[0][len(_STATUS_PREFIX) :]


def _changes(associations: list[Association], submission_set_id: str) -> list[_StatusChange]:
    errors: list[RegistryError] = []
    changes: list[_StatusChange] = []
    status_ids = {a.id for a in associations if a.type == ns.ASSOC_UPDATE_AVAILABILITY}
    for association in associations:
        if association.type == ns.ASSOC_HAS_MEMBER and association.target in status_ids:
            continue  # membership of the status association in the SubmissionSet: allowed, nothing to do
        if association.type != ns.ASSOC_UPDATE_AVAILABILITY:
            errors.append(
                RegistryError(
                    ErrorCode.METADATA_UPDATE_OPERATION_ERROR,
                    f"association type {association.type!r} is not supported in an update "
                    "(UpdateAvailabilityStatus is)",
                    association.id,
                )
            )
            continue
        if association.source != submission_set_id:
            errors.append(
                RegistryError(
                    ErrorCode.METADATA_UPDATE_ERROR,
                    f"sourceObject {association.source!r} is not the SubmissionSet",
                    association.id,
                )
            )
        if not association.target.startswith("urn:uuid:"):
            errors.append(
                RegistryError(
                    ErrorCode.UNRESOLVED_REFERENCE,
                    f"targetObject {association.target!r} is not an entryUUID",
                    association.id,
                )
            )
        original = _status(association, "OriginalStatus", errors)
        new = _status(association, "NewStatus", errors)
        if original and new:
            changes.append(_StatusChange(association, association.target, original, new))
    if not errors and not changes:
        errors.append(
            RegistryError(
                ErrorCode.METADATA_UPDATE_OPERATION_ERROR,
                "no UpdateAvailabilityStatus association in the update",
                submission_set_id,
            )
        )
    if errors:
        raise XdsFailure(errors)
    return changes


def _check_targets(
    session: Session, changes: list[_StatusChange], submission_set: SubmissionSet, principal: VihfPrincipal
) -> list[RegistryError]:
    errors: list[RegistryError] = []
    for change in changes:
        row = crud.document_by_uuid(session, entry_uuid=change.target, for_update=True)
        where = change.association.id
        if row is None:
            errors.append(
                RegistryError(
                    ErrorCode.UNRESOLVED_REFERENCE, f"{change.target} is not a registered DocumentEntry", where
                )
            )
            continue
        if row.patient_id != submission_set.patient_id:
            errors.append(
                RegistryError(
                    ErrorCode.PATIENT_ID_DOES_NOT_MATCH,
                    f"{change.target} belongs to patient {row.patient_id}, the update to {submission_set.patient_id}",
                    where,
                )
            )
        if row.status != change.original:
            errors.append(
                RegistryError(
                    ErrorCode.METADATA_UPDATE_ERROR,
                    f"{change.target} is {row.status}, not {change.original} (OriginalStatus)",
                    where,
                )
            )
        author = authorship_error(
            principal,
            institutions={c.code for c in row.codes if c.kind == "institution"},
            persons={c.code for c in row.codes if c.kind == "author_id"},
            location=where,
            what=f"document {row.unique_id}",
        )
        if author:
            errors.append(author)
    return errors


def _remapped(element: etree._Element, ids: dict[str, str]) -> bytes:
    element = copy.deepcopy(element)
    for node in element.iter():
        if not isinstance(node.tag, str):
            continue
        for attribute in ("id", "classifiedObject", "registryObject", "sourceObject", "targetObject"):
            value = node.get(attribute)
            if value is not None and value in ids:
                node.set(attribute, ids[value])
            elif attribute == "id" and value is not None and not value.startswith("urn:uuid:"):
                node.set(attribute, f"urn:uuid:{uuid.uuid4()}")
        node.attrib.pop("status", None)
    return bytes(etree.tostring(element, encoding="UTF-8"))


def _apply(
    session: Session,
    ctx: RegistryContext,
    submission_set: SubmissionSet,
    associations: list[Association],
    changes: list[_StatusChange],
) -> None:
    def new_id(object_id: str) -> str:
        return object_id if object_id.startswith("urn:uuid:") else f"urn:uuid:{uuid.uuid4()}"

    ids = {submission_set.source.id: new_id(submission_set.source.id)}
    ids.update({a.id: new_id(a.id) for a in associations})
    set_row = SubmissionSetRow(
        entry_uuid=ids[submission_set.source.id],
        unique_id=submission_set.unique_id,
        patient_id=submission_set.patient_id,
        source_id=submission_set.source_id,
        submission_time=submission_set.submission_time,
        content_type_code=submission_set.content_type.code,
        content_type_scheme=submission_set.content_type.scheme,
        received_at=ctx.clock(),
        ebrim=crud.compress(_remapped(submission_set.source.element, ids)),
    )
    session.add(set_row)
    session.flush()
    for association in associations:
        session.add(
            AssociationRow(
                entry_uuid=ids[association.id],
                association_type=association.type,
                source_uuid=ids.get(association.source, association.source),
                target_uuid=ids.get(association.target, association.target),
                patient_id=submission_set.patient_id,
                submission_set_id=set_row.id,
                ebrim=crud.compress(_remapped(association.element, ids)),
            )
        )
    crud.record_identifiers(
        session,
        patient_id=submission_set.patient_id,
        objects=[
            ("entry_uuid", set_row.entry_uuid, "submission_set"),
            ("set_uid", set_row.unique_id, "submission_set"),
            *(("entry_uuid", ids[a.id], "association") for a in associations),
        ],
    )
    for change in changes:
        # Every target was checked to be this patient's entry (_check_targets).
        if not crud.set_document_status(
            session, patient_id=submission_set.patient_id, entry_uuid=change.target, old=change.original, new=change.new
        ):
            raise _failure(
                ErrorCode.METADATA_UPDATE_ERROR, f"{change.target} changed status concurrently", change.association.id
            )


def update_document_set(ctx: RegistryContext, payload: etree._Element, principal: VihfPrincipal) -> etree._Element:
    """Handle one ITI-57 request; return its ``rs:RegistryResponse``.

    Raises
    ------
    XdsFailure
        The update is refused; nothing changed.
    """
    if payload.tag != f"{{{ns.LCM}}}SubmitObjectsRequest":
        raise _failure(
            ErrorCode.REGISTRY_METADATA_ERROR,
            f"body element {etree.QName(payload).text} is not lcm:SubmitObjectsRequest",
        )
    object_list = payload.find(f"{{{ns.RIM}}}RegistryObjectList")
    if object_list is None:
        raise _failure(ErrorCode.REGISTRY_METADATA_ERROR, "rim:RegistryObjectList is missing")
    objects = read_objects(object_list)
    if objects.documents:
        raise _failure(
            ErrorCode.METADATA_UPDATE_OPERATION_ERROR,
            "DocumentEntry metadata updates (new versions) are not supported; only availability status changes are",
            objects.documents[0].id,
        )
    submission_set = validate_submission_set(objects, ctx.validation)
    if isinstance(submission_set, list):
        raise XdsFailure(submission_set)
    denied = patient_error(principal, submission_set.patient_id, submission_set.source.id)
    if denied:
        raise XdsFailure([denied])
    changes = _changes(objects.associations, submission_set.source.id)
    try:
        with ctx.database.session() as session:
            if crud.submission_set_exists(session, unique_id=submission_set.unique_id):
                raise _failure(
                    ErrorCode.DUPLICATE_UNIQUE_ID_IN_REGISTRY,
                    f"SubmissionSet uniqueId {submission_set.unique_id} is already registered",
                    submission_set.source.id,
                )
            errors = _check_targets(session, changes, submission_set, principal)
            if errors:
                raise XdsFailure(errors)
            _apply(session, ctx, submission_set, objects.associations, changes)
            session.commit()
    except IntegrityError as exc:
        raise _failure(ErrorCode.REGISTRY_ERROR, f"conflicting concurrent update: {exc.orig}") from exc
    for change in changes:
        log.info("ITI-57 %s: %s -> %s by %s", change.target, change.original, change.new, principal.name_id)
    return registry_response()
