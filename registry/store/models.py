"""Table models of the registry index (SQLAlchemy 2 declarative, ``Mapped[...]``).

Every registry object keeps the ebRIM XML it was registered with (ids resolved to ``urn:uuid``,
repository slots added), zlib-compressed, so LeafClass answers are the registered metadata verbatim.
The attributes FindDocuments filters on (ITI TF-2a §3.18.4.1.2.3.7.1) are flattened into indexed
columns; multi-valued ones (eventCodeList, confidentialityCode, authorPerson, referenceIdList) go to
side tables with one row per value.

National scale (``docs/registry-scale.md``): every table of patient data carries ``patient_id``, the
partitioning (PostgreSQL hash partitions) and distribution (Citus) key, in its primary key, its unique
constraints and its foreign keys, so that one patient's rows live together and a query by patient
touches one partition. Identifiers that must be unique across the whole country (uniqueIds,
entryUUIDs) cannot be enforced by a per-partition constraint: :class:`DocumentLocatorRow` holds each
of them once, with its patient, and routes the queries that carry no patient id (GetDocuments,
ITI-43, ITI-57, RPLC targets) to the right partition.

On SQLite (unpartitioned) the row id alone is the primary key (SQLite only numbers a single
``INTEGER PRIMARY KEY``) and ``UNIQUE (patient_id, id)`` backs the composite foreign keys; those
constraints carry ``info={"dialects": ...}`` and :func:`registry.store.migrate.schema_drift` compares
each dialect with its own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "AssociationRow",
    "Base",
    "DocumentCodeRow",
    "DocumentEntryRow",
    "DocumentLocatorRow",
    "PatientRow",
    "ReferenceIdRow",
    "SubmissionSetRow",
]

# Lengths: XDS uniqueIds are OIDs (64) or OID^extension; HL7 strings are bounded loosely.
_UUID = 45  # "urn:uuid:" + 36
_UID = 128
_CODE = 256
_TEXT = 1024


SQLITE_ONLY: dict[str, Any] = {"dialects": ("sqlite",)}
"""``info`` of a constraint that exists on SQLite only (see the module docstring)."""


class Base(DeclarativeBase):
    """Declarative base of the registry tables."""


def _row_id() -> Mapped[int]:
    # Part of the composite primary key (patient_id, id); numbered by the database (a sequence on
    # PostgreSQL, the rowid on SQLite), unique on its own too.
    return mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)


def _patient_key() -> Mapped[str]:
    return mapped_column(String(_UID), primary_key=True)


def _sqlite_row_key(table: str) -> UniqueConstraint:
    return UniqueConstraint("patient_id", "id", name=f"uq_{table}_row", info=SQLITE_ONLY)


class PatientRow(Base):
    """The patient index: every patient id the registry holds documents for."""

    __tablename__ = "patients"

    patient_id: Mapped[str] = mapped_column(String(_UID), primary_key=True)
    """CX form ``<INS>^^^&<OID>&ISO^NH``."""
    ins: Mapped[str] = mapped_column(String(32))
    ins_oid: Mapped[str] = mapped_column(String(64))
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SubmissionSetRow(Base):
    """One registered submission set (ITI-41 or ITI-57)."""

    __tablename__ = "submission_sets"

    patient_id: Mapped[str] = _patient_key()
    id: Mapped[int] = _row_id()
    entry_uuid: Mapped[str] = mapped_column(String(_UUID))
    unique_id: Mapped[str] = mapped_column(String(_UID))
    source_id: Mapped[str] = mapped_column(String(_UID))
    submission_time: Mapped[str] = mapped_column(String(14))
    content_type_code: Mapped[str] = mapped_column(String(_CODE))
    content_type_scheme: Mapped[str] = mapped_column(String(_CODE))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ebrim: Mapped[bytes] = mapped_column(LargeBinary)
    """Registered ``rim:RegistryPackage``, zlib-compressed UTF-8."""

    __table_args__ = (
        UniqueConstraint("patient_id", "entry_uuid", name="uq_submission_sets_entry_uuid"),
        UniqueConstraint("patient_id", "unique_id", name="uq_submission_sets_unique_id"),
        _sqlite_row_key("submission_sets"),
    )


class DocumentEntryRow(Base):
    """One DocumentEntry (stable) and where its bytes are."""

    __tablename__ = "document_entries"

    patient_id: Mapped[str] = _patient_key()
    id: Mapped[int] = _row_id()
    entry_uuid: Mapped[str] = mapped_column(String(_UUID))
    logical_uuid: Mapped[str] = mapped_column(String(_UUID))
    unique_id: Mapped[str] = mapped_column(String(_UID))
    status: Mapped[str] = mapped_column(String(16))
    """``Approved`` or ``Deprecated`` (the ebRS StatusType URN without its prefix)."""
    submission_set_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    class_code: Mapped[str] = mapped_column(String(_CODE))
    class_scheme: Mapped[str] = mapped_column(String(_CODE))
    type_code: Mapped[str] = mapped_column(String(_CODE))
    type_scheme: Mapped[str] = mapped_column(String(_CODE))
    format_code: Mapped[str] = mapped_column(String(_CODE))
    format_scheme: Mapped[str] = mapped_column(String(_CODE))
    facility_type_code: Mapped[str] = mapped_column(String(_CODE))
    facility_type_scheme: Mapped[str] = mapped_column(String(_CODE))
    practice_setting_code: Mapped[str] = mapped_column(String(_CODE))
    practice_setting_scheme: Mapped[str] = mapped_column(String(_CODE))
    creation_time: Mapped[str] = mapped_column(String(14))
    service_start_time: Mapped[str | None] = mapped_column(String(14))
    service_stop_time: Mapped[str | None] = mapped_column(String(14))
    mime_type: Mapped[str] = mapped_column(String(_CODE))
    language_code: Mapped[str] = mapped_column(String(35))
    title: Mapped[str] = mapped_column(String(_TEXT))
    hash_sha1: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(BigInteger)
    blob_sha256: Mapped[str] = mapped_column(String(64))
    repository_unique_id: Mapped[str] = mapped_column(String(64))
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ebrim: Mapped[bytes] = mapped_column(LargeBinary)
    """Registered ``rim:ExtrinsicObject``, zlib-compressed UTF-8 (status is set when answering)."""

    codes: Mapped[list[DocumentCodeRow]] = relationship(back_populates="document", cascade="all, delete-orphan")
    reference_ids: Mapped[list[ReferenceIdRow]] = relationship(back_populates="document", cascade="all, delete-orphan")

    __table_args__ = (
        # FindDocuments always names the patient and (nearly) always the status; type or class
        # codes are the usual next filter (KOS of a patient), then time ranges.
        Index("ix_de_patient_status_type", "patient_id", "status", "type_code"),
        Index("ix_de_patient_status_class", "patient_id", "status", "class_code"),
        Index("ix_de_patient_creation", "patient_id", "creation_time"),
        UniqueConstraint("patient_id", "entry_uuid", name="uq_document_entries_entry_uuid"),
        UniqueConstraint("patient_id", "unique_id", name="uq_document_entries_unique_id"),
        _sqlite_row_key("document_entries"),
        ForeignKeyConstraint(
            ["patient_id", "submission_set_id"],
            ["submission_sets.patient_id", "submission_sets.id"],
            name="fk_document_entries_submission_set",
        ),
    )


def _document_key(table: str) -> ForeignKeyConstraint:
    return ForeignKeyConstraint(
        ["patient_id", "document_id"],
        ["document_entries.patient_id", "document_entries.id"],
        name=f"fk_{table}_document",
        ondelete="CASCADE",
    )


class DocumentCodeRow(Base):
    """One value of a multi-valued DocumentEntry attribute (kind ``event``, ``confidentiality``, ``author``)."""

    __tablename__ = "document_codes"

    patient_id: Mapped[str] = _patient_key()
    id: Mapped[int] = _row_id()
    document_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    kind: Mapped[str] = mapped_column(String(16))
    code: Mapped[str] = mapped_column(String(_TEXT))
    scheme: Mapped[str] = mapped_column(String(_CODE))
    """Coding scheme; empty for authors."""

    document: Mapped[DocumentEntryRow] = relationship(back_populates="codes")

    __table_args__ = (
        Index("ix_dc_kind_code", "kind", "code", "scheme"),
        Index("ix_document_codes_document", "patient_id", "document_id"),
        _document_key("document_codes"),
    )


class ReferenceIdRow(Base):
    """One ``referenceIdList`` value (ITI TF-3 §4.2.3.2.28), split for ``$XDSDocumentEntryReferenceIdList``."""

    __tablename__ = "reference_ids"

    patient_id: Mapped[str] = _patient_key()
    id: Mapped[int] = _row_id()
    document_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    value: Mapped[str] = mapped_column(String(_TEXT))
    """The CXi value as submitted."""
    id_value: Mapped[str] = mapped_column(String(_UID))
    """CX.1: the Study Instance UID, accession number, order number…"""
    authority: Mapped[str] = mapped_column(String(_UID))
    """CX.4 universal id (OID), empty when absent."""
    id_type: Mapped[str] = mapped_column(String(64))
    """CX.5, e.g. ``urn:ihe:iti:xds:2016:studyInstanceUID``."""

    document: Mapped[DocumentEntryRow] = relationship(back_populates="reference_ids")

    __table_args__ = (
        Index("ix_ref_type_value", "id_type", "id_value"),
        Index("ix_reference_ids_document", "patient_id", "document_id"),
        _document_key("reference_ids"),
    )


class AssociationRow(Base):
    """One registered association (HasMember, RPLC, signs, UpdateAvailabilityStatus)."""

    __tablename__ = "associations"

    patient_id: Mapped[str] = _patient_key()
    id: Mapped[int] = _row_id()
    entry_uuid: Mapped[str] = mapped_column(String(_UUID))
    association_type: Mapped[str] = mapped_column(String(_CODE))
    source_uuid: Mapped[str] = mapped_column(String(_UUID))
    target_uuid: Mapped[str] = mapped_column(String(_UUID))
    submission_set_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    ebrim: Mapped[bytes] = mapped_column(LargeBinary)
    """Registered ``rim:Association``, zlib-compressed UTF-8."""

    __table_args__ = (
        Index("ix_associations_source", "patient_id", "source_uuid"),
        Index("ix_associations_target", "patient_id", "target_uuid"),
        UniqueConstraint("patient_id", "entry_uuid", name="uq_associations_entry_uuid"),
        ForeignKeyConstraint(
            ["patient_id", "submission_set_id"],
            ["submission_sets.patient_id", "submission_sets.id"],
            name="fk_associations_submission_set",
        ),
    )


class DocumentLocatorRow(Base):
    """Where a globally unique identifier lives: its patient (the partition), and what it names.

    The only table not keyed by patient: its key is the identifier itself, so the database enforces
    that a uniqueId or entryUUID is registered once in the whole country, and a query by identifier
    (GetDocuments, ITI-43, ITI-57) finds the patient to route to in one index look-up.
    """

    __tablename__ = "document_locator"

    id_kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    """``entry_uuid`` (every registry object), ``document_uid`` or ``set_uid`` (uniqueIds)."""
    value: Mapped[str] = mapped_column(String(_UID), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(_UID))
    object_type: Mapped[str] = mapped_column(String(16))
    """``document``, ``submission_set`` or ``association``."""
