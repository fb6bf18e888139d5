"""Initial registry index: patients, submission sets, document entries, codes, reference ids, associations.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _pk() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)


def upgrade() -> None:
    op.create_table(
        "patients",
        sa.Column("patient_id", sa.String(128), primary_key=True),
        sa.Column("ins", sa.String(32), nullable=False),
        sa.Column("ins_oid", sa.String(64), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "submission_sets",
        _pk(),
        sa.Column("entry_uuid", sa.String(45), nullable=False, unique=True),
        sa.Column("unique_id", sa.String(128), nullable=False, unique=True),
        sa.Column("patient_id", sa.String(128), nullable=False),
        sa.Column("source_id", sa.String(128), nullable=False),
        sa.Column("submission_time", sa.String(14), nullable=False),
        sa.Column("content_type_code", sa.String(256), nullable=False),
        sa.Column("content_type_scheme", sa.String(256), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ebrim", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_submission_sets_patient_id", "submission_sets", ["patient_id"])
    op.create_table(
        "document_entries",
        _pk(),
        sa.Column("entry_uuid", sa.String(45), nullable=False, unique=True),
        sa.Column("logical_uuid", sa.String(45), nullable=False),
        sa.Column("unique_id", sa.String(128), nullable=False, unique=True),
        sa.Column("patient_id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column(
            "submission_set_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("submission_sets.id"),
            nullable=False,
        ),
        sa.Column("class_code", sa.String(256), nullable=False),
        sa.Column("class_scheme", sa.String(256), nullable=False),
        sa.Column("type_code", sa.String(256), nullable=False),
        sa.Column("type_scheme", sa.String(256), nullable=False),
        sa.Column("format_code", sa.String(256), nullable=False),
        sa.Column("format_scheme", sa.String(256), nullable=False),
        sa.Column("facility_type_code", sa.String(256), nullable=False),
        sa.Column("facility_type_scheme", sa.String(256), nullable=False),
        sa.Column("practice_setting_code", sa.String(256), nullable=False),
        sa.Column("practice_setting_scheme", sa.String(256), nullable=False),
        sa.Column("creation_time", sa.String(14), nullable=False),
        sa.Column("service_start_time", sa.String(14), nullable=True),
        sa.Column("service_stop_time", sa.String(14), nullable=True),
        sa.Column("mime_type", sa.String(256), nullable=False),
        sa.Column("language_code", sa.String(35), nullable=False),
        sa.Column("title", sa.String(1024), nullable=False),
        sa.Column("hash_sha1", sa.String(40), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("blob_sha256", sa.String(64), nullable=False),
        sa.Column("repository_unique_id", sa.String(64), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ebrim", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_de_patient_status_type", "document_entries", ["patient_id", "status", "type_code"])
    op.create_index("ix_de_patient_status_class", "document_entries", ["patient_id", "status", "class_code"])
    op.create_index("ix_de_patient_creation", "document_entries", ["patient_id", "creation_time"])
    op.create_table(
        "document_codes",
        _pk(),
        sa.Column(
            "document_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("document_entries.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("code", sa.String(1024), nullable=False),
        sa.Column("scheme", sa.String(256), nullable=False),
    )
    op.create_index("ix_document_codes_document_id", "document_codes", ["document_id"])
    op.create_index("ix_dc_kind_code", "document_codes", ["kind", "code", "scheme"])
    op.create_table(
        "reference_ids",
        _pk(),
        sa.Column(
            "document_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("document_entries.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("value", sa.String(1024), nullable=False),
        sa.Column("id_value", sa.String(128), nullable=False),
        sa.Column("authority", sa.String(128), nullable=False),
        sa.Column("id_type", sa.String(64), nullable=False),
    )
    op.create_index("ix_reference_ids_document_id", "reference_ids", ["document_id"])
    op.create_index("ix_ref_type_value", "reference_ids", ["id_type", "id_value"])
    op.create_table(
        "associations",
        _pk(),
        sa.Column("entry_uuid", sa.String(45), nullable=False, unique=True),
        sa.Column("association_type", sa.String(256), nullable=False),
        sa.Column("source_uuid", sa.String(45), nullable=False),
        sa.Column("target_uuid", sa.String(45), nullable=False),
        sa.Column("patient_id", sa.String(128), nullable=False),
        sa.Column(
            "submission_set_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("submission_sets.id"),
            nullable=False,
        ),
        sa.Column("ebrim", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_associations_source_uuid", "associations", ["source_uuid"])
    op.create_index("ix_associations_target_uuid", "associations", ["target_uuid"])


def downgrade() -> None:
    for table in ("associations", "reference_ids", "document_codes", "document_entries", "submission_sets", "patients"):
        op.drop_table(table)
