"""The patient key in every key; the document locator.

Every table of patient data gets ``patient_id`` (the side tables copy it from their entry) and it
leads every primary key, unique constraint and foreign key, as a partitioned or distributed database
needs (a constraint can only be enforced within one partition). Global uniqueness of uniqueIds and
entryUUIDs moves to ``document_locator``, filled from the registered objects. Both dialects; the
data is kept (tables are rebuilt and copied, see :mod:`registry.migrations.patient_keyed`).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-08 00:00:00
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

from registry.migrations.patient_keyed import LOCATOR_BACKFILL, rebuild

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _from_entry(table: str) -> Callable[[list[str]], str]:
    """Rows of a side table with the patient of the entry they belong to."""

    def select(columns: list[str]) -> str:
        picked = ", ".join("d.patient_id" if c == "patient_id" else f"s.{c}" for c in columns)
        return f"SELECT {picked} FROM {table}__old s JOIN document_entries__old d ON d.id = s.document_id"

    return select


def upgrade() -> None:
    rebuild(partitioned=False, sources={t: _from_entry(t) for t in ("document_codes", "reference_ids")})
    op.create_table(
        "document_locator",
        sa.Column("id_kind", sa.String(16), nullable=False),
        sa.Column("value", sa.String(128), nullable=False),
        sa.Column("patient_id", sa.String(128), nullable=False),
        sa.Column("object_type", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id_kind", "value", name="pk_document_locator"),
    )
    op.execute(LOCATOR_BACKFILL)


def downgrade() -> None:
    raise NotImplementedError("revision 0002 is not reversible: restore a backup taken before the upgrade")
