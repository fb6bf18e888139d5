"""The patient-keyed layout of the registry tables, as migrations 0002 and 0003 build it.

Frozen with those revisions: a later change of the layout is a new revision, never an edit here
(the ORM models in :mod:`registry.store.models` describe head; these tables describe revision 0002/0003).

:func:`rebuild` moves every table of patient data to a new table of the same name, the data copied
over, in four steps that also work on a populated database:

1. each old table is renamed ``<name>__old`` (SQLite rewrites the references between them);
2. the new tables are created (PostgreSQL: columns only, ``PARTITION BY HASH (patient_id)`` and its
   partitions when asked; SQLite: with every constraint inline, as SQLite cannot add them later);
3. rows are copied, parents first, and the old tables dropped, children first;
4. PostgreSQL: primary keys, unique constraints, foreign keys and indexes are added under their
   final names (after the bulk copy, as a bulk load would), row-id sequences handed over; indexes are
   created last on both (index names are per schema: the old tables' are gone by then).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from alembic import op

__all__ = ["LOCATOR_BACKFILL", "PARTITIONS", "TABLES", "rebuild"]

PARTITIONS = 16
"""Hash partitions per table (see docs/registry-scale.md for the number)."""

_UUID, _UID, _CODE, _TEXT = 45, 128, 256, 1024
_ROW_ID_TABLES = ("submission_sets", "document_entries", "document_codes", "reference_ids", "associations")
TABLES = ("patients", *_ROW_ID_TABLES)
"""In foreign-key order: parents first."""


def _row_id(dialect: str) -> sa.Column[Any]:
    if dialect == "sqlite":
        return sa.Column("id", sa.Integer(), primary_key=True)  # the rowid: numbered by SQLite
    return sa.Column("id", sa.BigInteger(), nullable=False)


def _columns(table: str, dialect: str) -> list[sa.Column[Any]]:  # noqa: PLR0911 - one branch per table
    patient: sa.Column[Any] = sa.Column("patient_id", sa.String(_UID), nullable=False)
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

    def s(name: str, length: int, nullable: bool = False) -> sa.Column[Any]:
        return sa.Column(name, sa.String(length), nullable=nullable)

    if table == "patients":
        first_seen = sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False)
        return [patient, s("ins", 32), s("ins_oid", 64), first_seen]
    row: list[sa.Column[Any]] = [patient, _row_id(dialect)]
    ebrim = sa.Column("ebrim", sa.LargeBinary(), nullable=False)
    if table == "submission_sets":
        return [*row, s("entry_uuid", _UUID), s("unique_id", _UID), s("source_id", _UID), s("submission_time", 14),
                s("content_type_code", _CODE), s("content_type_scheme", _CODE),
                sa.Column("received_at", sa.DateTime(timezone=True), nullable=False), ebrim]
    if table == "document_entries":
        codes = [s(f"{k}_{p}", _CODE) for k in ("class", "type", "format", "facility_type", "practice_setting")
                 for p in ("code", "scheme")]
        return [*row, s("entry_uuid", _UUID), s("logical_uuid", _UUID), s("unique_id", _UID), s("status", 16),
                sa.Column("submission_set_id", big, nullable=False), *codes, s("creation_time", 14),
                s("service_start_time", 14, True), s("service_stop_time", 14, True), s("mime_type", _CODE),
                s("language_code", 35), s("title", _TEXT), s("hash_sha1", 40),
                sa.Column("size", sa.BigInteger(), nullable=False), s("blob_sha256", 64),
                s("repository_unique_id", 64), sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
                ebrim]
    document = sa.Column("document_id", big, nullable=False)
    if table == "document_codes":
        return [*row, document, s("kind", 16), s("code", _TEXT), s("scheme", _CODE)]
    if table == "reference_ids":
        return [*row, document, s("value", _TEXT), s("id_value", _UID), s("authority", _UID), s("id_type", 64)]
    return [*row, s("entry_uuid", _UUID), s("association_type", _CODE), s("source_uuid", _UUID),
            s("target_uuid", _UUID), sa.Column("submission_set_id", big, nullable=False), ebrim]


def _unique(table: str) -> list[tuple[str, list[str]]]:
    uniques = {
        "submission_sets": ["entry_uuid", "unique_id"],
        "document_entries": ["entry_uuid", "unique_id"],
        "associations": ["entry_uuid"],
    }.get(table, [])
    return [(f"uq_{table}_{column}", ["patient_id", column]) for column in uniques]


def _foreign_keys(table: str) -> list[tuple[str, list[str], str, list[str], str | None]]:
    if table in ("document_entries", "associations"):
        return [(f"fk_{table}_submission_set", ["patient_id", "submission_set_id"], "submission_sets",
                 ["patient_id", "id"], None)]
    if table in ("document_codes", "reference_ids"):
        return [(f"fk_{table}_document", ["patient_id", "document_id"], "document_entries", ["patient_id", "id"],
                 "CASCADE")]
    return []


_INDEXES: dict[str, list[tuple[str, list[str]]]] = {
    "document_entries": [
        ("ix_de_patient_status_type", ["patient_id", "status", "type_code"]),
        ("ix_de_patient_status_class", ["patient_id", "status", "class_code"]),
        ("ix_de_patient_creation", ["patient_id", "creation_time"]),
    ],
    "document_codes": [
        ("ix_dc_kind_code", ["kind", "code", "scheme"]),
        ("ix_document_codes_document", ["patient_id", "document_id"]),
    ],
    "reference_ids": [
        ("ix_ref_type_value", ["id_type", "id_value"]),
        ("ix_reference_ids_document", ["patient_id", "document_id"]),
    ],
    "associations": [
        ("ix_associations_source", ["patient_id", "source_uuid"]),
        ("ix_associations_target", ["patient_id", "target_uuid"]),
    ],
}


def _primary_key(table: str) -> list[str]:
    return ["patient_id"] if table == "patients" else ["patient_id", "id"]


def _sqlite_constraints(table: str) -> list[sa.schema.SchemaItem]:
    items: list[sa.schema.SchemaItem] = [sa.UniqueConstraint(*cols, name=name) for name, cols in _unique(table)]
    if table == "patients":
        items.append(sa.PrimaryKeyConstraint("patient_id"))
    if table in ("submission_sets", "document_entries"):  # parents of composite foreign keys
        items.append(sa.UniqueConstraint("patient_id", "id", name=f"uq_{table}_row"))
    for name, cols, parent, parent_cols, on_delete in _foreign_keys(table):
        items.append(sa.ForeignKeyConstraint(cols, [f"{parent}.{c}" for c in parent_cols], name=name,
                                             ondelete=on_delete))
    return items


def _default_copy(table: str, columns: list[str]) -> str:
    names = ", ".join(columns)
    return f"SELECT {names} FROM {table}__old"


def rebuild(*, partitioned: bool, sources: Mapping[str, Callable[[list[str]], str]] | None = None) -> None:
    """Move every table of patient data to the patient-keyed layout (see the module docstring).

    ``sources`` gives, per table, the ``SELECT`` that reads its rows from ``<table>__old`` in the
    order of the new columns (default: the same columns).
    """
    dialect = op.get_bind().dialect.name
    sources = sources or {}
    for table in TABLES:
        op.rename_table(table, f"{table}__old")
    for table in TABLES:
        columns = _columns(table, dialect)
        if dialect == "sqlite":
            op.create_table(table, *columns, *_sqlite_constraints(table))
        elif partitioned:
            op.create_table(table, *columns, postgresql_partition_by="HASH (patient_id)")
            for remainder in range(PARTITIONS):
                op.execute(f"CREATE TABLE {table}_p{remainder:02d} PARTITION OF {table} "
                           f"FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {remainder})")
        else:
            op.create_table(table, *columns)
        names = [c.name for c in columns]
        source = sources.get(table)
        select = source(names) if source else _default_copy(table, names)
        op.execute(f"INSERT INTO {table} ({', '.join(names)}) {select}")
    for table in reversed(TABLES):
        if dialect == "postgresql" and table != "patients":
            op.execute(f"ALTER SEQUENCE IF EXISTS {table}_id_seq OWNED BY NONE")
        op.drop_table(f"{table}__old")
    for table in TABLES:
        if dialect == "postgresql":
            _add_postgresql_keys(table)
        for name, indexed in _INDEXES.get(table, []):
            op.create_index(name, table, indexed)


def _add_postgresql_keys(table: str) -> None:
    op.create_primary_key(f"pk_{table}", table, _primary_key(table))
    for name, columns in _unique(table):
        op.create_unique_constraint(name, table, columns)
    for name, columns, parent, parent_columns, on_delete in _foreign_keys(table):
        op.create_foreign_key(name, table, parent, columns, parent_columns, ondelete=on_delete)
    if table != "patients":
        # The row-id sequence of revision 0001 (bigserial) keeps numbering: ids stay unique across revisions.
        op.execute(f"CREATE SEQUENCE IF NOT EXISTS {table}_id_seq AS bigint")
        op.execute(f"ALTER TABLE {table} ALTER COLUMN id SET DEFAULT nextval('{table}_id_seq')")
        op.execute(f"ALTER SEQUENCE {table}_id_seq OWNED BY {table}.id")
        op.execute(f"SELECT setval('{table}_id_seq', COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)")


LOCATOR_BACKFILL = (
    "INSERT INTO document_locator (id_kind, value, patient_id, object_type) "
    "SELECT 'entry_uuid', entry_uuid, patient_id, 'document' FROM document_entries "
    "UNION ALL SELECT 'document_uid', unique_id, patient_id, 'document' FROM document_entries "
    "UNION ALL SELECT 'entry_uuid', entry_uuid, patient_id, 'submission_set' FROM submission_sets "
    "UNION ALL SELECT 'set_uid', unique_id, patient_id, 'submission_set' FROM submission_sets "
    "UNION ALL SELECT 'entry_uuid', entry_uuid, patient_id, 'association' FROM associations"
)
"""Every identifier of the registered objects, with its patient."""
