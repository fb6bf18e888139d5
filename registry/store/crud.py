"""Queries and writes of the registry index; keyword-only functions over a :class:`~sqlalchemy.orm.Session`.

The stored-query semantics (ITI TF-2a §3.18.4.1.2.3.7) live here as SQL: codes match on code and,
when given, coding scheme; time ranges are ``From`` inclusive and ``To`` exclusive; multi-valued
parameters are OR within one slot and AND across slots of the same name (eventCodeList,
confidentialityCode).

Routing (``docs/registry-scale.md``): every statement on a table of patient data names the patient
(``patient_id = …`` or ``IN (…)``), so that PostgreSQL plans it on one hash partition and Citus sends
it to one shard. Look-ups by identifier first ask ``document_locator`` (one primary-key probe) which
patient holds it, then query that patient's partition; registering an object records its identifiers
there, which is also what keeps them unique in the whole registry.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, exists, false, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, Session

from registry.store.models import (
    AssociationRow,
    DocumentCodeRow,
    DocumentEntryRow,
    DocumentLocatorRow,
    PatientRow,
    ReferenceIdRow,
)

__all__ = [
    "CodeFilter",
    "DocumentFilter",
    "ReferenceFilter",
    "compress",
    "count_documents",
    "decompress",
    "deprecate_document",
    "document_by_unique_id",
    "document_by_uuid",
    "documents_by_unique_ids",
    "documents_by_uuids",
    "ensure_patient",
    "existing_uuids",
    "find_documents",
    "locate",
    "record_identifiers",
    "related_associations",
    "set_document_status",
    "submission_set_exists",
]


def compress(xml: bytes) -> bytes:
    """Stored form of a registered ebRIM object."""
    return zlib.compress(xml, 6)


def decompress(blob: bytes) -> bytes:
    """The ebRIM XML of a stored object."""
    return zlib.decompress(blob)


@dataclass(frozen=True)
class CodeFilter:
    """A coded value to match: the code, and the coding scheme when the query gives it."""

    code: str
    scheme: str | None = None


@dataclass(frozen=True)
class ReferenceFilter:
    """A ``referenceIdList`` value to match: the id, and its type / authority when the query gives them."""

    id_value: str
    id_type: str | None = None
    authority: str | None = None


@dataclass
class DocumentFilter:
    """The parameters of a FindDocuments query (or an MHD search), already parsed."""

    patient_id: str
    statuses: Sequence[str] = ("Approved",)
    class_codes: Sequence[CodeFilter] = ()
    type_codes: Sequence[CodeFilter] = ()
    format_codes: Sequence[CodeFilter] = ()
    practice_setting_codes: Sequence[CodeFilter] = ()
    facility_type_codes: Sequence[CodeFilter] = ()
    event_codes: Sequence[Sequence[CodeFilter]] = ()
    """AND of OR-groups."""
    confidentiality_codes: Sequence[Sequence[CodeFilter]] = ()
    """AND of OR-groups."""
    creation_from: str | None = None
    creation_to: str | None = None
    service_start_from: str | None = None
    service_start_to: str | None = None
    service_stop_from: str | None = None
    service_stop_to: str | None = None
    author_persons: Sequence[str] = ()
    """SQL LIKE patterns (``%``, ``_``), OR-ed."""
    reference_ids: Sequence[ReferenceFilter] = field(default_factory=tuple)
    """OR-ed."""
    mime_types: Sequence[str] = ()


def _codes(
    code_column: InstrumentedAttribute[str], scheme_column: InstrumentedAttribute[str], filters: Sequence[CodeFilter]
) -> ColumnElement[bool]:
    return or_(
        *(
            and_(code_column == f.code, scheme_column == f.scheme) if f.scheme else code_column == f.code
            for f in filters
        )
    )


def _multi(kind: str, filters: Sequence[CodeFilter], patient_id: str) -> ColumnElement[bool]:
    return exists().where(
        DocumentCodeRow.patient_id == patient_id,  # the side table's partition, pruned when planning
        DocumentCodeRow.document_id == DocumentEntryRow.id,
        DocumentCodeRow.kind == kind,
        _codes(DocumentCodeRow.code, DocumentCodeRow.scheme, filters),
    )


def _references(filters: Sequence[ReferenceFilter], patient_id: str) -> ColumnElement[bool]:
    alternatives = []
    for f in filters:
        clauses = [ReferenceIdRow.id_value == f.id_value]
        if f.id_type:
            clauses.append(ReferenceIdRow.id_type == f.id_type)
        if f.authority:
            clauses.append(ReferenceIdRow.authority == f.authority)
        alternatives.append(and_(*clauses))
    return exists().where(
        ReferenceIdRow.patient_id == patient_id,
        ReferenceIdRow.document_id == DocumentEntryRow.id,
        or_(*alternatives),
    )


def _filtered(query: DocumentFilter) -> Select[DocumentEntryRow]:
    d = DocumentEntryRow
    statement = select(d).where(d.patient_id == query.patient_id)
    statement = statement.where(d.status.in_(query.statuses) if query.statuses else false())
    for filters, code, scheme in (
        (query.class_codes, d.class_code, d.class_scheme),
        (query.type_codes, d.type_code, d.type_scheme),
        (query.format_codes, d.format_code, d.format_scheme),
        (query.practice_setting_codes, d.practice_setting_code, d.practice_setting_scheme),
        (query.facility_type_codes, d.facility_type_code, d.facility_type_scheme),
    ):
        if filters:
            statement = statement.where(_codes(code, scheme, filters))
    for group in query.event_codes:
        statement = statement.where(_multi("event", group, query.patient_id))
    for group in query.confidentiality_codes:
        statement = statement.where(_multi("confidentiality", group, query.patient_id))
    for column, low, high in (
        (d.creation_time, query.creation_from, query.creation_to),
        (d.service_start_time, query.service_start_from, query.service_start_to),
        (d.service_stop_time, query.service_stop_from, query.service_stop_to),
    ):
        if low:
            statement = statement.where(column >= low)
        if high:
            statement = statement.where(column < high)
    if query.author_persons:
        statement = statement.where(
            exists().where(
                DocumentCodeRow.patient_id == query.patient_id,
                DocumentCodeRow.document_id == d.id,
                DocumentCodeRow.kind == "author",
                or_(*(DocumentCodeRow.code.like(pattern) for pattern in query.author_persons)),
            )
        )
    if query.reference_ids:
        statement = statement.where(_references(query.reference_ids, query.patient_id))
    if query.mime_types:
        statement = statement.where(d.mime_type.in_(query.mime_types))
    return statement


def find_documents(session: Session, *, query: DocumentFilter, limit: int, offset: int = 0) -> list[DocumentEntryRow]:
    """Matching entries, newest creationTime first; at most ``limit``."""
    statement = _filtered(query).order_by(DocumentEntryRow.creation_time.desc(), DocumentEntryRow.id.desc())
    return list(session.scalars(statement.limit(limit).offset(offset)))


def count_documents(session: Session, *, query: DocumentFilter) -> int:
    """How many entries match (MHD ``Bundle.total``)."""
    return session.scalar(select(func.count()).select_from(_filtered(query).subquery())) or 0


def locate(session: Session, *, id_kind: str, values: Sequence[str]) -> dict[str, str]:
    """Patient of each registered identifier among ``values`` (``id_kind``: see :class:`DocumentLocatorRow`)."""
    if not values:
        return {}
    rows = session.execute(
        select(DocumentLocatorRow.value, DocumentLocatorRow.patient_id).where(
            DocumentLocatorRow.id_kind == id_kind, DocumentLocatorRow.value.in_(values)
        )
    )
    return {str(value): str(patient) for value, patient in rows}


def record_identifiers(session: Session, *, patient_id: str, objects: Sequence[tuple[str, str, str]]) -> None:
    """Record where new objects live: ``(id_kind, value, object_type)`` each.

    The locator's primary key makes a second registration of the same identifier, anywhere in the
    registry, an :class:`~sqlalchemy.exc.IntegrityError` at flush.
    """
    session.add_all(
        DocumentLocatorRow(id_kind=kind, value=value, patient_id=patient_id, object_type=object_type)
        for kind, value, object_type in objects
    )


def documents_by_unique_ids(session: Session, *, unique_ids: Sequence[str]) -> dict[str, DocumentEntryRow]:
    """Registered entries among ``unique_ids``."""
    patients = set(locate(session, id_kind="document_uid", values=unique_ids).values())
    if not patients:
        return {}
    rows = session.scalars(
        select(DocumentEntryRow).where(
            DocumentEntryRow.patient_id.in_(patients), DocumentEntryRow.unique_id.in_(unique_ids)
        )
    )
    return {row.unique_id: row for row in rows}


def documents_by_uuids(session: Session, *, entry_uuids: Sequence[str]) -> list[DocumentEntryRow]:
    """Registered entries among ``entry_uuids``."""
    patients = set(locate(session, id_kind="entry_uuid", values=entry_uuids).values())
    if not patients:
        return []
    return list(
        session.scalars(
            select(DocumentEntryRow).where(
                DocumentEntryRow.patient_id.in_(patients), DocumentEntryRow.entry_uuid.in_(entry_uuids)
            )
        )
    )


def document_by_uuid(session: Session, *, entry_uuid: str, for_update: bool = False) -> DocumentEntryRow | None:
    """One entry by entryUUID; ``for_update`` locks its row (PostgreSQL) until the transaction ends."""
    patient = locate(session, id_kind="entry_uuid", values=[entry_uuid]).get(entry_uuid)
    if patient is None:
        return None
    statement = select(DocumentEntryRow).where(
        DocumentEntryRow.patient_id == patient, DocumentEntryRow.entry_uuid == entry_uuid
    )
    if for_update:
        statement = statement.with_for_update()
    return session.scalars(statement).first()


def document_by_unique_id(session: Session, *, unique_id: str) -> DocumentEntryRow | None:
    """One entry by uniqueId."""
    return documents_by_unique_ids(session, unique_ids=[unique_id]).get(unique_id)


def submission_set_exists(session: Session, *, unique_id: str) -> bool:
    """Whether a submission set with this uniqueId is registered."""
    return bool(locate(session, id_kind="set_uid", values=[unique_id]))


def existing_uuids(session: Session, *, uuids: Sequence[str]) -> set[str]:
    """Which of ``uuids`` already name a registered object."""
    return set(locate(session, id_kind="entry_uuid", values=uuids))


def deprecate_document(session: Session, *, patient_id: str, entry_uuid: str) -> bool:
    """Approved → Deprecated; ``False`` when the entry was not Approved (a concurrent change won)."""
    return set_document_status(session, patient_id=patient_id, entry_uuid=entry_uuid, old="Approved", new="Deprecated")


def set_document_status(session: Session, *, patient_id: str, entry_uuid: str, old: str, new: str) -> bool:
    """Compare-and-set of an entry's status; ``True`` if this call changed it."""
    result = session.execute(
        update(DocumentEntryRow)
        .where(
            DocumentEntryRow.patient_id == patient_id,
            DocumentEntryRow.entry_uuid == entry_uuid,
            DocumentEntryRow.status == old,
        )
        .values(status=new)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def related_associations(session: Session, *, uuids: Sequence[str]) -> list[AssociationRow]:
    """Associations whose source or target is one of ``uuids`` (GetAssociations)."""
    patients = set(locate(session, id_kind="entry_uuid", values=uuids).values())
    if not patients:
        return []
    statement = select(AssociationRow).where(
        AssociationRow.patient_id.in_(patients),
        or_(AssociationRow.source_uuid.in_(uuids), AssociationRow.target_uuid.in_(uuids)),
    )
    return list(session.scalars(statement.order_by(AssociationRow.id)))


def ensure_patient(session: Session, *, patient_id: str, ins: str, ins_oid: str, now: datetime) -> None:
    """Add the patient to the index unless present (safe against concurrent first submissions)."""
    values = {"patient_id": patient_id, "ins": ins, "ins_oid": ins_oid, "first_seen": now}
    if session.get_bind().dialect.name == "postgresql":
        session.execute(postgresql.insert(PatientRow).values(values).on_conflict_do_nothing())
    else:
        session.execute(sqlite.insert(PatientRow).values(values).on_conflict_do_nothing())
