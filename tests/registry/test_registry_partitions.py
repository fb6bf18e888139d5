"""National scale: the schema partitioned by patient, routing through the locator, upgrading a populated registry.

The pruning test records every statement the registry really sends while serving FindDocuments,
GetDocuments, ITI-43, ITI-57 and an RPLC submission, and asks PostgreSQL to EXPLAIN each with the same
parameters: every table of patient data must be planned on exactly one hash partition — the
partition holding that patient's rows — which is also what lets Citus route it to one shard.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import RegistryUnderTest, start_registry
from lxml import etree
from sqlalchemy import Engine, MetaData, event, func, select, text
from test_registry_rplc import entry, new_version, replaces
from xdsfactory import (
    DEPRECATED,
    FAILURE,
    GET_DOCUMENTS,
    NS,
    SUCCESS,
    Submission,
    Vihf,
    find_documents,
    retrieve,
    stored_query,
    update_status,
)

from registry.devdb import ThrowawayPostgres

if TYPE_CHECKING:
    from xdsfactory import TestPki
from registry.migrations.patient_keyed import PARTITIONS
from registry.store.db import Database
from registry.store.migrate import schema_drift, upgrade_to
from registry.store.models import DocumentLocatorRow

PATIENT_TABLES = ("patients", "submission_sets", "document_entries", "document_codes", "reference_ids", "associations")
_PARTITION = re.compile(r"(" + "|".join(PATIENT_TABLES) + r")_p([0-9]{2})")
STUDY = "urn:ihe:iti:xds:2016:studyInstanceUID"
MODALITY_SCHEME = "1.2.250.1.213.1.1.5.618"
UNIQUE_ID_SCHEME = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"  # XDSDocumentEntry.uniqueId

registry_app = contextmanager(start_registry)


@pytest.fixture(scope="module")
def partitioned(
    tmp_path_factory: pytest.TempPathFactory, pki: TestPki, postgres: ThrowawayPostgres
) -> Iterator[RegistryUnderTest]:
    """A registry of its own on PostgreSQL (statements are recorded on its engine)."""
    url = postgres.create_database("registry_partitions")
    with registry_app("postgresql", tmp_path_factory.mktemp("partitions"), pki, url) as registry:
        yield registry


@contextmanager
def recorded(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The SELECT and UPDATE statements sent on ``engine`` meanwhile, with their parameters."""
    statements: list[tuple[str, Any]] = []

    def record(_c: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool) -> None:
        if not many and statement.lstrip().upper().startswith(("SELECT", "UPDATE")):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _relations(plan: Any) -> Iterator[str]:
    if isinstance(plan, dict):
        # A ModifyTable node names the partitioned parent it writes through; its scans name the partitions.
        if "Relation Name" in plan and plan.get("Node Type") != "ModifyTable":
            yield plan["Relation Name"]
        for value in plan.values():
            yield from _relations(value)
    elif isinstance(plan, list):
        for value in plan:
            yield from _relations(value)


def planned_partitions(engine: Engine, statement: str, parameters: Any) -> dict[str, set[str]]:
    """Partitions each patient-keyed table is scanned on, per EXPLAIN of the statement as sent."""
    with engine.connect() as connection:
        plan = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters).scalar()
        connection.rollback()
    scanned: dict[str, set[str]] = {}
    for relation in _relations(json.loads(plan) if isinstance(plan, str) else plan):
        assert relation not in PATIENT_TABLES, f"{relation} scanned as a whole in {statement}"
        match = _PARTITION.fullmatch(relation)
        if match:
            scanned.setdefault(match.group(1), set()).add(match.group(2))
    return scanned


def partition_of(engine: Engine, patient_id: str) -> str:
    with engine.connect() as connection:
        names = set(
            connection.execute(
                text(
                    "SELECT tableoid::regclass::text FROM document_entries WHERE patient_id = :p UNION "
                    "SELECT tableoid::regclass::text FROM document_codes WHERE patient_id = :p UNION "
                    "SELECT tableoid::regclass::text FROM patients WHERE patient_id = :p"
                ),
                {"p": patient_id},
            ).scalars()
        )
    suffixes = {_PARTITION.fullmatch(n).group(2) for n in names}  # type: ignore[union-attr]
    assert len(suffixes) == 1, f"one patient's rows are spread over {names}"
    return suffixes.pop()


def _statuses(reply: Any) -> dict[str, str]:
    ids = {}
    for obj in reply.objects:
        unique = obj.find(f"rim:ExternalIdentifier[@identificationScheme='{UNIQUE_ID_SCHEME}']", NS)
        ids[unique.get("value")] = obj.get("status").rsplit(":", 1)[1]
    return ids


def test_every_statement_of_a_patient_is_planned_on_that_patients_partition(partitioned: RegistryUnderTest) -> None:
    registry = partitioned
    others = [Submission() for _ in range(6)]  # other patients: rows in other partitions
    for other in others:
        assert registry.publish(other).status == SUCCESS
    first = Submission()
    assert registry.publish(first).status == SUCCESS
    second = new_version(first)
    engine = registry.context.database.engine
    target = entry(registry, first.kos_uid).entry_uuid  # (the test's own look-ups stay out of the recording)
    with recorded(engine) as statements:
        reply = registry.publish(second, mutate=replaces(target))
    assert (reply.status, reply.errors) == (SUCCESS, [])
    signature = entry(registry, second.signature_uid).entry_uuid
    with recorded(engine) as more:
        found = registry.post(
            "/xds/registry",
            find_documents(
                first.patient_id,
                registry.pki,
                extra=[
                    ("$XDSDocumentEntryReferenceIdList", [f"('{first.study_uid}^^^^{STUDY}')"]),
                    ("$XDSDocumentEntryEventCodeList", [f"('MR^^{MODALITY_SCHEME}','CT^^{MODALITY_SCHEME}')"]),
                    ("$XDSDocumentEntryAuthorPerson", ["('%^DRIMBox^%')"]),
                ],
            ),
        )
        by_uid = registry.post(
            "/xds/registry",
            stored_query(GET_DOCUMENTS, [("$XDSDocumentEntryUniqueId", [f"('{first.kos_uid}')"])], registry.pki,
                         Vihf(first.patient_id)),
        )
        retrieved = registry.post(
            "/xds/repository", retrieve([(registry.repository_id, second.kos_uid)], registry.pki,
                                        Vihf(first.patient_id))
        )
        updated = registry.post("/xds/registry", update_status(first, signature, registry.pki))
    statements += more
    assert found.status == SUCCESS
    assert set(_statuses(found)) == {second.kos_uid}  # the study filter leaves the signature out
    assert _statuses(by_uid) == {first.kos_uid: "Deprecated"}
    assert retrieved.status == SUCCESS
    assert updated.status == SUCCESS, updated.errors
    home = partition_of(engine, first.patient_id)
    assert len({partition_of(engine, o.patient_id) for o in others} | {home}) > 1  # the data is spread
    planned = [(statement, planned_partitions(engine, statement, parameters)) for statement, parameters in statements]
    touching = [(statement, scanned) for statement, scanned in planned if scanned]
    assert len(touching) >= 8  # locate + fetch per request, the query's side tables, the updates
    for statement, scanned in touching:
        assert all(parts == {home} for parts in scanned.values()), f"{scanned} (patient's: {home}) for {statement}"
    scanned_tables = set().union(*(scanned for _, scanned in touching))
    assert scanned_tables >= {"document_entries", "document_codes", "reference_ids"}


def test_a_find_documents_without_the_patient_would_scan_every_partition(partitioned: RegistryUnderTest) -> None:
    """The check above can fail: the same statement without the patient is planned on every partition."""
    engine = partitioned.context.database.engine
    scanned = planned_partitions(engine, "SELECT id FROM document_entries WHERE status = %(s)s", {"s": "Approved"})
    assert len(scanned["document_entries"]) == PARTITIONS


def test_uniqueness_holds_across_patients_through_the_locator(partitioned: RegistryUnderTest) -> None:
    """A per-partition unique constraint could not see another patient's uniqueId; the locator does."""
    registry = partitioned
    first = Submission()
    assert registry.publish(first).status == SUCCESS
    thief = Submission(kos_uid=first.kos_uid)  # another patient, the same document uniqueId, other bytes
    reply = registry.publish(thief)
    assert reply.status == FAILURE
    assert [code for code, _, _ in reply.errors] == ["XDSNonIdenticalHash"]
    with registry.context.database.session() as session:
        located = session.scalars(
            select(DocumentLocatorRow.patient_id).where(DocumentLocatorRow.value == first.kos_uid)
        ).all()
    assert located == [first.patient_id]


# ------------------------------------------------------------------------------------------- upgrade


def _copy_into_revision_0001(source: Engine, target: Engine) -> dict[str, int]:
    """Copy the rows of a head registry into a database at revision 0001 (its columns only)."""
    old, new = MetaData(), MetaData()
    old.reflect(target)
    new.reflect(source)
    counts = {}
    with source.connect() as reading, target.begin() as writing:
        for table in PATIENT_TABLES:
            columns = [new.tables[table].c[c.name] for c in old.tables[table].columns]
            rows = [dict(r._mapping) for r in reading.execute(select(*columns))]
            counts[table] = len(rows)
            if rows:
                writing.execute(old.tables[table].insert(), rows)
            if target.dialect.name == "postgresql" and table != "patients":  # as a live database would be
                writing.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                     f"(SELECT max(id) FROM {table}))"))
    return counts


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrading_a_populated_registry_keeps_its_data(
    backend: str, tmp_path: Path, pki: TestPki, request: pytest.FixtureRequest
) -> None:
    data = tmp_path / "data"  # the blob store, shared by both registries
    replaced, kept, withdrawn = Submission(), Submission(), Submission()
    version = new_version(replaced)
    with registry_app("sqlite", data, pki, f"sqlite:///{tmp_path / 'source.sqlite3'}") as source:
        for sub in (replaced, kept, withdrawn):
            assert source.publish(sub).status == SUCCESS
        assert source.publish(version, mutate=replaces(entry(source, replaced.kos_uid).entry_uuid)).status == SUCCESS
        withdrawal = update_status(withdrawn, entry(source, withdrawn.kos_uid).entry_uuid, pki)
        assert source.post("/xds/registry", withdrawal).status == SUCCESS
        if backend == "postgresql":
            url = request.getfixturevalue("postgres").create_database("registry_upgrade")
        else:
            url = f"sqlite:///{tmp_path / 'upgraded.sqlite3'}"
        target = Database.from_url(url)
        upgrade_to(target.engine, "0001")
        counts = _copy_into_revision_0001(source.context.database.engine, target.engine)
    assert counts["document_entries"] == 8 and counts["associations"] > 8

    upgrade_to(target.engine, "head")
    with target.engine.connect() as connection:
        assert schema_drift(connection) == []
        after = {t: connection.scalar(select(func.count()).select_from(text(t))) for t in PATIENT_TABLES}
        located = connection.scalar(select(func.count()).select_from(DocumentLocatorRow))
        if backend == "postgresql":
            homes = connection.execute(text("SELECT DISTINCT tableoid::regclass::text FROM document_entries"))
            assert all(_PARTITION.fullmatch(name) for name in homes.scalars())
    target.dispose()
    assert after == counts
    sets = counts["submission_sets"]
    assert located == 2 * counts["document_entries"] + 2 * sets + counts["associations"]

    with registry_app(backend, data, pki, url) as upgraded:
        found = upgraded.post("/xds/registry", find_documents(replaced.patient_id, pki))
        # RPLC deprecated the replaced KOS, not its signature entry
        assert set(_statuses(found)) == {version.kos_uid, version.signature_uid, replaced.signature_uid}
        old = upgraded.post(
            "/xds/registry",
            stored_query(GET_DOCUMENTS, [("$XDSDocumentEntryUniqueId", [f"('{replaced.kos_uid}')"])], pki,
                         Vihf(replaced.patient_id)),
        )
        assert _statuses(old) == {replaced.kos_uid: "Deprecated"}
        gone = upgraded.post("/xds/registry", find_documents(
            withdrawn.patient_id, pki, extra=[("$XDSDocumentEntryStatus", [f"('{DEPRECATED}')"])]))
        assert _statuses(gone) == {withdrawn.kos_uid: "Deprecated"}
        bytes_back = upgraded.post("/xds/repository",
                                   retrieve([(upgraded.repository_id, kept.kos_uid)], pki, Vihf(kept.patient_id)))
        assert bytes_back.status == SUCCESS
        assert list(bytes_back.attachments.values())[0] == ("application/dicom", kept.kos)
        # Writing goes on: an RPLC of a migrated entry (located, new row ids past the old ones), a replay
        # recognised, a reused uniqueId refused.
        newer = new_version(kept)
        reply = upgraded.publish(newer, mutate=replaces(entry(upgraded, kept.kos_uid).entry_uuid))
        assert (reply.status, reply.errors) == (SUCCESS, [])
        assert upgraded.publish(replaced).status == SUCCESS  # exact replay of a migrated submission
        refused = upgraded.publish(Submission(kos_uid=kept.kos_uid))
        assert [code for code, _, _ in refused.errors] == ["XDSNonIdenticalHash"]
        found = upgraded.post("/xds/registry", find_documents(kept.patient_id, pki))
        assert set(_statuses(found)) == {newer.kos_uid, newer.signature_uid, kept.signature_uid}
        assert isinstance(found.body, etree._Element)
