"""Table models of the registry index (SQLAlchemy 2 declarative, ``Mapped[...]``).

Every registry object keeps the ebRIM XML it was registered with (ids resolved to ``urn:uuid``,
repository slots added), zlib-compressed, so LeafClass answers are the registered metadata verbatim.
The attributes FindDocuments filters on (ITI TF-2a §3.18.4.1.2.3.7.1) are flattened into indexed
columns; multi-valued ones (eventCodeList, confidentialityCode, authorPerson, referenceIdList) go to
side tables with one row per value.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "AssociationRow",
    "Base",
    "DocumentCodeRow",
    "DocumentEntryRow",
    "PatientRow",
    "ReferenceIdRow",
    "SubmissionSetRow",
]

# Lengths: XDS uniqueIds are OIDs (64) or OID^extension; HL7 strings are bounded loosely.
_UUID = 45  # "urn:uuid:" + 36
_UID = 128
_CODE = 256
_TEXT = 1024


class Base(DeclarativeBase):
    """Declarative base of the registry tables."""


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

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    entry_uuid: Mapped[str] = mapped_column(String(_UUID), unique=True)
    unique_id: Mapped[str] = mapped_column(String(_UID), unique=True)
    patient_id: Mapped[str] = mapped_column(String(_UID), index=True)
    source_id: Mapped[str] = mapped_column(String(_UID))
    submission_time: Mapped[str] = mapped_column(String(14))
    content_type_code: Mapped[str] = mapped_column(String(_CODE))
    content_type_scheme: Mapped[str] = mapped_column(String(_CODE))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ebrim: Mapped[bytes] = mapped_column(LargeBinary)
    """Registered ``rim:RegistryPackage``, zlib-compressed UTF-8."""


class DocumentEntryRow(Base):
    """One DocumentEntry (stable) and where its bytes are."""

    __tablename__ = "document_entries"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    entry_uuid: Mapped[str] = mapped_column(String(_UUID), unique=True)
    logical_uuid: Mapped[str] = mapped_column(String(_UUID))
    unique_id: Mapped[str] = mapped_column(String(_UID), unique=True)
    patient_id: Mapped[str] = mapped_column(String(_UID))
    status: Mapped[str] = mapped_column(String(16))
    """``Approved`` or ``Deprecated`` (the ebRS StatusType URN without its prefix)."""
    submission_set_id: Mapped[int] = mapped_column(ForeignKey("submission_sets.id"))
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
    )


class DocumentCodeRow(Base):
    """One value of a multi-valued DocumentEntry attribute (kind ``event``, ``confidentiality``, ``author``)."""

    __tablename__ = "document_codes"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("document_entries.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    code: Mapped[str] = mapped_column(String(_TEXT))
    scheme: Mapped[str] = mapped_column(String(_CODE))
    """Coding scheme; empty for authors."""

    document: Mapped[DocumentEntryRow] = relationship(back_populates="codes")

    __table_args__ = (Index("ix_dc_kind_code", "kind", "code", "scheme"),)


class ReferenceIdRow(Base):
    """One ``referenceIdList`` value (ITI TF-3 §4.2.3.2.28), split for ``$XDSDocumentEntryReferenceIdList``."""

    __tablename__ = "reference_ids"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("document_entries.id", ondelete="CASCADE"), index=True)
    value: Mapped[str] = mapped_column(String(_TEXT))
    """The CXi value as submitted."""
    id_value: Mapped[str] = mapped_column(String(_UID))
    """CX.1: the Study Instance UID, accession number, order number…"""
    authority: Mapped[str] = mapped_column(String(_UID))
    """CX.4 universal id (OID), empty when absent."""
    id_type: Mapped[str] = mapped_column(String(64))
    """CX.5, e.g. ``urn:ihe:iti:xds:2016:studyInstanceUID``."""

    document: Mapped[DocumentEntryRow] = relationship(back_populates="reference_ids")

    __table_args__ = (Index("ix_ref_type_value", "id_type", "id_value"),)


class AssociationRow(Base):
    """One registered association (HasMember, RPLC, signs, UpdateAvailabilityStatus)."""

    __tablename__ = "associations"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    entry_uuid: Mapped[str] = mapped_column(String(_UUID), unique=True)
    association_type: Mapped[str] = mapped_column(String(_CODE))
    source_uuid: Mapped[str] = mapped_column(String(_UUID), index=True)
    target_uuid: Mapped[str] = mapped_column(String(_UUID), index=True)
    patient_id: Mapped[str] = mapped_column(String(_UID))
    submission_set_id: Mapped[int] = mapped_column(ForeignKey("submission_sets.id"))
    ebrim: Mapped[bytes] = mapped_column(LargeBinary)
    """Registered ``rim:Association``, zlib-compressed UTF-8."""
