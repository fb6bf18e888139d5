"""Bulk loading of synthetic XDS metadata into a registry database with PostgreSQL ``COPY`` (benchmarks only).

Rows are copies of what a real ITI-41 registration of the ANS sample writes — the registered ebRIM of
the KOS entry, of its DSG signature entry, of the submission set and of its three associations, and
their side-table rows — with identifiers made unique per patient and submission (INS with a valid
key, uniqueIds, entryUUIDs, Study UID, accession). Each patient gets ``submissions`` submissions of
two entries (KOS + signature), as a node publishing one exam at a time would produce.

As any bulk load: foreign keys and secondary indexes are dropped first and re-created after, tables
are copied by two processes in parallel (one per core), serial sequences are moved past the loaded
ids, then ``ANALYZE``.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.dialects import postgresql

from registry.store import crud
from registry.store.migrate import upgrade_to_head
from registry.store.models import AssociationRow, Base, DocumentEntryRow, SubmissionSetRow

__all__ = ["LoadPlan", "Templates", "bulk_load", "capture_templates", "patient_ins"]

TESTS = Path(__file__).resolve().parents[1] / "tests" / "registry"
_TABLES = ("submission_sets", "document_entries", "document_codes", "reference_ids", "associations",
           "document_locator")
Row = tuple[Any, ...]
_ZLIB_LEVEL = 1
"""The service compresses at level 6; level 1 is 2.7× faster to generate and only ~10 % larger
(2.1 KB instead of 1.9 KB per KOS entry), with the same decompression cost for queries."""


def patient_ins(index: int) -> str:
    """A deterministic 15-character INS with a correct key for patient ``index``."""
    body = f"1{(index // 10**6) % 100:02d}01{index % 10**8:08d}"
    return f"{body}{97 - int(body) % 97:02d}"


def patient_cx(index: int) -> str:
    """The XDS patient id (CX) of patient ``index``: the partitioning key of every table."""
    return f"{patient_ins(index)}^^^&1.2.250.1.213.1.4.10&ISO^NH"


def _uuid(serial: int, role: int) -> str:
    return f"urn:uuid:{uuid.UUID(int=(serial << 8 | role) * 0x9E3779B97F4A7C15 % (1 << 128), version=4)}"


@dataclass
class Templates:
    """Rows of one real registration, as column dicts, and the identifiers to replace in them."""

    submission_set: dict[str, Any]
    documents: list[dict[str, Any]]
    codes: list[list[dict[str, Any]]]
    references: list[list[dict[str, Any]]]
    associations: list[dict[str, Any]]
    tokens: dict[str, str]


def _columns(row: Any) -> dict[str, Any]:
    values = {c.key: getattr(row, c.key) for c in row.__table__.columns}
    # SQLite returns timestamps without their zone; they are UTC (binary COPY wants them aware)
    return {k: v.replace(tzinfo=UTC) if isinstance(v, datetime) and v.tzinfo is None else v for k, v in values.items()}


def capture_templates() -> Templates:
    """Register the ANS sample once (in-process, SQLite) and keep what was written."""
    sys.path[:0] = [str(TESTS)]
    from conftest import start_registry  # type: ignore[import-not-found]
    from xdsfactory import Submission, TestPki  # type: ignore[import-not-found]

    workdir = Path(tempfile.mkdtemp(prefix="registry-templates-"))
    pki = TestPki.create(workdir)
    sub = Submission()
    running = start_registry("sqlite", workdir / "registry", pki, None)
    registry = next(running)
    try:
        assert registry.publish(sub).status.endswith("Success")
        with registry.context.database.session() as session:
            docs = list(session.scalars(select(DocumentEntryRow).order_by(DocumentEntryRow.id)))
            documents = [_columns(d) | {"ebrim": crud.decompress(d.ebrim).decode()} for d in docs]
            codes = [[_columns(c) for c in d.codes] for d in docs]
            references = [[_columns(r) for r in d.reference_ids] for d in docs]
            ss = session.scalars(select(SubmissionSetRow)).one()
            submission_set = _columns(ss) | {"ebrim": crud.decompress(ss.ebrim).decode()}
            associations = [
                _columns(a) | {"ebrim": crud.decompress(a.ebrim).decode()}
                for a in session.scalars(select(AssociationRow).order_by(AssociationRow.id))
            ]
    finally:
        running.close()
        shutil.rmtree(workdir, ignore_errors=True)
    tokens = {
        "ins": sub.ins,
        "kos_uid": sub.kos_uid,
        "sig_uid": sub.signature_uid,
        "ss_uid": sub.submission_set_uid,
        "study": sub.study_uid,
        "accession": sub.accession,
        "ss_uuid": submission_set["entry_uuid"],
        "kos_uuid": documents[0]["entry_uuid"],
        "sig_uuid": documents[1]["entry_uuid"],
    }
    tokens.update({f"assoc{n}": a["entry_uuid"] for n, a in enumerate(associations)})
    return Templates(submission_set, documents, codes, references, associations, tokens)


@dataclass(frozen=True)
class LoadPlan:
    """How many patients and submissions per patient (entries = 2 × patients × submissions)."""

    patients: int
    submissions: int

    @property
    def entries(self) -> int:
        return 2 * self.patients * self.submissions


class _Rows:
    """Row generator of one table: a template row with its identifier columns substituted.

    Each string column holding identifiers is pre-split around them, so a row is one ``join``
    per column instead of a ``replace`` per identifier over the whole (9 KB) ebRIM text.
    """

    def __init__(self, templates: Templates, template: dict[str, Any], columns: list[str]) -> None:
        self.template = template
        self.columns = columns
        by_text = {old: key for key, old in templates.tokens.items()}
        pattern = re.compile("|".join(re.escape(old) for old in sorted(by_text, key=len, reverse=True)))
        self.parts: dict[str, list[tuple[bool, str]]] = {}
        for column in columns:
            value = template[column]
            if isinstance(value, str) and pattern.search(value):
                pieces: list[tuple[bool, str]] = []
                position = 0
                for match in pattern.finditer(value):
                    pieces += [(False, value[position : match.start()]), (True, by_text[match.group()])]
                    position = match.end()
                self.parts[column] = [*pieces, (False, value[position:])]

    def make(self, values: dict[str, str], compress: bool) -> list[Any]:
        row = dict(self.template)
        for column, pieces in self.parts.items():
            row[column] = "".join(values[text] if is_token else text for is_token, text in pieces)
        if compress:
            row["ebrim"] = zlib.compress(row["ebrim"].encode(), _ZLIB_LEVEL)
        return [row[c] for c in self.columns]


def _values(templates: Templates, p: int, k: int, submissions: int) -> dict[str, str]:
    serial = p * submissions + k
    values = {
        "ins": patient_ins(p),
        "kos_uid": f"2.25.1{serial:012d}1",
        "sig_uid": f"2.25.1{serial:012d}2",
        "ss_uid": f"2.25.1{serial:012d}3",
        "study": f"1.2.250.1.999.4.{serial}",
        "accession": f"ACC{serial:010d}",
        "ss_uuid": _uuid(serial, 1),
        "kos_uuid": _uuid(serial, 2),
        "sig_uuid": _uuid(serial, 3),
    }
    values.update({f"assoc{n}": _uuid(serial, 10 + n) for n in range(len(templates.associations))})
    return values


def _table_rows(table: str, templates: Templates, plan: LoadPlan) -> tuple[list[str], Iterator[Row]]:
    """Columns and rows of ``table``; ids follow serial numbers so that every table agrees."""
    t = templates
    skip = {"id", "submission_set_id"}
    if table == "submission_sets":
        columns = [c for c in t.submission_set if c != "id"]
        makers = [_Rows(t, t.submission_set, columns)]
    elif table == "document_entries":
        columns = [c for c in t.documents[0] if c not in skip]
        makers = [_Rows(t, d, columns) for d in t.documents]
    elif table == "associations":
        columns = [c for c in t.associations[0] if c not in skip]
        makers = [_Rows(t, a, columns) for a in t.associations]
    elif table == "document_locator":

        def located() -> Iterator[Row]:
            objects = [("entry_uuid", "ss_uuid", "submission_set"), ("set_uid", "ss_uid", "submission_set"),
                       ("entry_uuid", "kos_uuid", "document"), ("entry_uuid", "sig_uuid", "document"),
                       ("document_uid", "kos_uid", "document"), ("document_uid", "sig_uid", "document"),
                       *(("entry_uuid", f"assoc{n}", "association") for n in range(len(t.associations)))]
            for p in range(plan.patients):
                patient = patient_cx(p)
                for k in range(plan.submissions):
                    values = _values(t, p, k, plan.submissions)
                    for kind, token, object_type in objects:
                        yield (kind, values[token], patient, object_type)

        return ["id_kind", "value", "patient_id", "object_type"], located()
    else:
        source = t.codes if table == "document_codes" else t.references
        columns = (
            ["kind", "code", "scheme"] if table == "document_codes" else ["value", "id_value", "authority", "id_type"]
        )
        per_doc = [[_Rows(t, row, columns) for row in rows] for rows in source]

        def side() -> Iterator[Row]:
            for p in range(plan.patients):
                patient = patient_cx(p)
                for k in range(plan.submissions):
                    serial, values = p * plan.submissions + k, _values(t, p, k, plan.submissions)
                    for number, makers_of_doc in enumerate(per_doc):
                        for maker in makers_of_doc:
                            yield (patient, 2 * serial + number + 1, *maker.make(values, False))

        return ["patient_id", "document_id", *columns], side()

    def rows() -> Iterator[Row]:
        for p in range(plan.patients):
            for k in range(plan.submissions):
                serial, values = p * plan.submissions + k, _values(t, p, k, plan.submissions)
                for number, maker in enumerate(makers):
                    made = maker.make(values, True)
                    if table == "submission_sets":
                        yield (serial + 1, *made)
                    elif table == "document_entries":
                        yield (2 * serial + number + 1, serial + 1, *made)
                    else:
                        yield (serial + 1, *made)

    prefix = {
        "submission_sets": ["id"],
        "document_entries": ["id", "submission_set_id"],
        "associations": ["submission_set_id"],
    }[table]
    return [*prefix, *columns], rows()


def _pg_type(table: str, column: str) -> str:
    """PostgreSQL type name of a column, as binary COPY needs it."""
    compiled = str(Base.metadata.tables[table].c[column].type.compile(dialect=postgresql.dialect())).lower()
    return {"timestamp with time zone": "timestamptz"}.get(compiled, compiled.split("(")[0])


def _copy_tables(
    conninfo: str, tables: list[str], templates: Templates, plan: LoadPlan
) -> list[tuple[str, int, float]]:
    """COPY ``tables`` in order on one connection (runs in a worker process)."""
    done = []
    with psycopg.connect(conninfo) as connection:
        for table in tables:
            started = time.perf_counter()
            columns, rows = _table_rows(table, templates, plan)
            count = 0
            statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
            with connection.cursor() as cursor, cursor.copy(statement) as copy:
                copy.set_types([_pg_type(table, c) for c in columns])
                for row in rows:
                    copy.write_row(row)
                    count += 1
            connection.commit()
            done.append((table, count, time.perf_counter() - started))
    return done


def bulk_load(
    engine: Engine, conninfo: str, plan: LoadPlan, templates: Templates, progress: Callable[[str], None] = print
) -> None:
    """Migrate, drop foreign keys and secondary indexes, COPY in two processes, rebuild, ANALYZE."""
    upgrade_to_head(engine)
    indexes = [i for t in Base.metadata.sorted_tables if t.name in _TABLES for i in t.indexes]
    foreign_keys: list[str] = []
    with engine.begin() as connection:
        for table in _TABLES:
            for fk in inspect(connection).get_foreign_keys(table):
                if fk["referred_table"] not in _TABLES:
                    continue  # PostgreSQL's per-partition copy of a partitioned table's key: goes with it
                on_delete = f" ON DELETE {fk['options']['ondelete']}" if fk["options"].get("ondelete") else ""
                columns, referred = ", ".join(fk["constrained_columns"]), ", ".join(fk["referred_columns"])
                foreign_keys.append(
                    f'ALTER TABLE {table} ADD CONSTRAINT "{fk["name"]}" FOREIGN KEY ({columns}) '
                    f"REFERENCES {fk['referred_table']} ({referred}){on_delete}"
                )
                connection.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{fk["name"]}"'))
        for index in indexes:
            connection.execute(text(f'DROP INDEX IF EXISTS "{index.name}"'))
    now = datetime.now(UTC)
    with psycopg.connect(conninfo) as connection, connection.cursor() as cursor:
        with cursor.copy("COPY patients (patient_id, ins, ins_oid, first_seen) FROM STDIN") as copy:
            for p in range(plan.patients):
                copy.write_row((patient_cx(p), patient_ins(p), "1.2.250.1.213.1.4.10", now))
    started = time.perf_counter()
    # Two workers, one per core, with about the same generation work each.
    shares = [["document_entries", "reference_ids"],
              ["submission_sets", "associations", "document_codes", "document_locator"]]
    with ProcessPoolExecutor(max_workers=2) as pool:
        for done in pool.map(_copy_tables, [conninfo] * 2, shares, [templates] * 2, [plan] * 2):
            for table, count, seconds in done:
                progress(f"  {table:18s} {count:>10,} rows in {seconds:5.0f} s")
    progress(f"  COPY done in {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    with engine.begin() as connection:
        for index in indexes:
            index.create(connection)
        for statement in foreign_keys:
            connection.execute(text(statement))
        for table in _TABLES[:-1]:  # the locator has no row id
            connection.execute(
                text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE"))
    progress(f"  indexes and foreign keys rebuilt, analysed in {time.perf_counter() - started:.0f} s")
