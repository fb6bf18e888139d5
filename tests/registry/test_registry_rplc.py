"""Versioning by RPLC, and atomicity: a refused or failed submission leaves no row and no dangling document."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import RegistryUnderTest, start_registry
from lxml import etree
from sqlalchemy import func, select
from xdsfactory import (
    APPROVED,
    DEPRECATED,
    FAILURE,
    GET_ASSOCIATIONS,
    NS,
    SUCCESS,
    Mutation,
    Submission,
    Vihf,
    find_documents,
    stored_query,
)

from registry.context import RegistryContext
from registry.store.models import AssociationRow, DocumentEntryRow, SubmissionSetRow

RPLC = "urn:ihe:iti:2007:AssociationType:RPLC"


def replaces(target: str) -> Mutation:
    def add(root: etree._Element) -> None:
        etree.SubElement(
            root.find(".//rim:RegistryObjectList", NS),
            f"{{{NS['rim']}}}Association",
            id="rplc01",
            associationType=RPLC,
            sourceObject="DocumentKOS",
            targetObject=target,
        )

    return add


def entry(registry: RegistryUnderTest, unique_id: str) -> DocumentEntryRow:
    with registry.context.database.session() as session:
        return session.scalars(select(DocumentEntryRow).where(DocumentEntryRow.unique_id == unique_id)).one()


def new_version(sub: Submission) -> Submission:
    return Submission(ins=sub.ins, study_uid=sub.study_uid, accession=sub.accession)


def test_rplc_deprecates_the_replaced_entry(registry: RegistryUnderTest) -> None:
    first = Submission()
    assert registry.publish(first).status == SUCCESS
    old = entry(registry, first.kos_uid)
    second = new_version(first)
    reply = registry.publish(second, mutate=replaces(old.entry_uuid))
    assert (reply.status, reply.errors) == (SUCCESS, [])
    assert entry(registry, first.kos_uid).status == "Deprecated"
    new = entry(registry, second.kos_uid)
    assert new.status == "Approved"
    current = registry.post("/xds/registry", find_documents(first.patient_id, registry.pki, return_type="ObjectRef"))
    ids = {o.get("id") for o in current.objects}
    assert new.entry_uuid in ids and old.entry_uuid not in ids
    both = registry.post(
        "/xds/registry",
        find_documents(
            first.patient_id,
            registry.pki,
            extra=[("$XDSDocumentEntryStatus", [f"('{APPROVED}','{DEPRECATED}')"])],
            return_type="ObjectRef",
        ),
    )
    assert {old.entry_uuid, new.entry_uuid} <= {o.get("id") for o in both.objects}
    associations = registry.post(
        "/xds/registry",
        stored_query(GET_ASSOCIATIONS, [("$uuid", [f"('{new.entry_uuid}')"])], registry.pki, Vihf(first.patient_id)),
    )
    rplc = [a for a in associations.objects if a.get("associationType") == RPLC]
    assert [(a.get("sourceObject"), a.get("targetObject")) for a in rplc] == [(new.entry_uuid, old.entry_uuid)]


def test_rplc_to_an_unknown_entry_is_unresolved(registry: RegistryUnderTest) -> None:
    reply = registry.publish(Submission(), mutate=replaces("urn:uuid:00000000-0000-4000-8000-000000000000"))
    assert reply.status == FAILURE
    assert [(c, loc) for c, _, loc in reply.errors] == [("UnresolvedReferenceException", "DocumentKOS")]
    assert "is not a registered document" in reply.errors[0][1]


def test_rplc_to_a_symbolic_id_is_unresolved(registry: RegistryUnderTest) -> None:
    reply = registry.publish(Submission(), mutate=replaces("OldKOS"))
    assert [c for c, _, _ in reply.errors] == ["UnresolvedReferenceException"]


def test_rplc_across_patients_is_refused(registry: RegistryUnderTest) -> None:
    first = Submission()
    assert registry.publish(first).status == SUCCESS
    other_patient = Submission()
    reply = registry.publish(other_patient, mutate=replaces(entry(registry, first.kos_uid).entry_uuid))
    assert reply.status == FAILURE
    assert [c for c, _, _ in reply.errors] == ["XDSPatientIdDoesNotMatch"]
    assert entry(registry, first.kos_uid).status == "Approved"


def test_rplc_of_a_deprecated_entry_is_refused(registry: RegistryUnderTest) -> None:
    first = Submission()
    assert registry.publish(first).status == SUCCESS
    target = entry(registry, first.kos_uid).entry_uuid
    assert registry.publish(new_version(first), mutate=replaces(target)).status == SUCCESS
    reply = registry.publish(new_version(first), mutate=replaces(target))
    assert [c for c, _, _ in reply.errors] == ["XDSRegistryDeprecatedDocumentError"]


def test_rplc_by_another_structure_is_refused(registry: RegistryUnderTest) -> None:
    first = Submission()
    assert registry.publish(first).status == SUCCESS
    target = entry(registry, first.kos_uid).entry_uuid

    def other_structure(root: etree._Element) -> None:
        replaces(target)(root)
        for value in root.iter(f"{{{NS['rim']}}}Value"):
            if value.text and "499700367909006" in value.text:
                value.text = value.text.replace("499700367909006", "410000000000001")

    second = new_version(first)
    reply = registry.publish(second, mutate=other_structure, vihf=Vihf(first.patient_id, structure="410000000000001"))
    assert reply.status == FAILURE
    assert "is not the authorInstitution of any author of the replaced document" in reply.errors[0][1]


class BrokenBlobStore:
    """Fails on the second document, after the first one is durable (a disk that fills up)."""

    def __init__(self) -> None:
        self.puts = 0

    def put(self, data: bytes) -> str:
        self.puts += 1
        if self.puts % 2 == 0:
            raise OSError(28, "No space left on device")
        return "0" * 64

    def get(self, key: str) -> bytes:
        raise KeyError(key)

    def probe(self) -> None:
        raise OSError(28, "No space left on device", "documents/tmp")


@pytest.fixture()
def broken_store_registry(registry: RegistryUnderTest, tmp_path: object) -> Iterator[RegistryUnderTest]:
    """A second app on the same database whose blob store fails mid-submission."""
    ctx = registry.context
    broken = RegistryContext(
        settings=ctx.settings, database=ctx.database, blobs=BrokenBlobStore(), trust=ctx.trust, tokens=ctx.tokens
    )
    yield from start_registry(
        registry.backend, ctx.settings.data_dir, registry.pki, ctx.settings.database_url, context=broken
    )


def _counts(registry: RegistryUnderTest) -> list[int]:
    with registry.context.database.session() as session:
        return [
            int(session.scalar(select(func.count()).select_from(m)) or 0)
            for m in (DocumentEntryRow, SubmissionSetRow, AssociationRow)
        ]


def test_a_store_failure_mid_submission_writes_no_row(
    registry: RegistryUnderTest, broken_store_registry: RegistryUnderTest
) -> None:
    before = _counts(registry)
    reply = broken_store_registry.publish(Submission())
    assert reply.status == FAILURE
    assert [c for c, _, _ in reply.errors] == ["XDSRepositoryError"]
    assert _counts(registry) == before
