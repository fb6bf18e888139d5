"""Hash partitions by patient (PostgreSQL only; SQLite stays unpartitioned: a no-op there).

Every table of patient data becomes ``PARTITION BY HASH (patient_id)`` with
:data:`~registry.migrations.patient_keyed.PARTITIONS` partitions, so that a query naming the patient
(every ITI-18 FindDocuments, and the others once routed through ``document_locator``) is planned on
one partition of each table — the same property Citus needs to route it to one shard
(docs/registry-scale.md). The data is kept (tables rebuilt and copied).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08 00:00:01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from registry.migrations.patient_keyed import rebuild

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        rebuild(partitioned=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        rebuild(partitioned=False)
