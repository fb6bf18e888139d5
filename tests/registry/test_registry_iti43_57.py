"""ITI-43 Retrieve Document Set (MTOM bytes) and ITI-57 Update Document Set (deprecation)."""

from __future__ import annotations

import pytest
from conftest import RegistryUnderTest
from lxml import etree
from sqlalchemy import select
from xdsfactory import (
    APPROVED,
    DEPRECATED,
    FAILURE,
    NS,
    PARTIAL,
    SUCCESS,
    Submission,
    Vihf,
    find_documents,
    retrieve,
    update_status,
)

from registry.store.models import DocumentEntryRow


@pytest.fixture()
def published(registry: RegistryUnderTest) -> Submission:
    """One fresh submission (KOS + DSG signature)."""
    sub = Submission()
    assert registry.publish(sub).status == SUCCESS
    return sub


def entry_uuid(registry: RegistryUnderTest, unique_id: str) -> str:
    with registry.context.database.session() as session:
        return str(
            session.scalars(select(DocumentEntryRow.entry_uuid).where(DocumentEntryRow.unique_id == unique_id)).one()
        )


def status_of(registry: RegistryUnderTest, unique_id: str) -> str:
    with registry.context.database.session() as session:
        return str(
            session.scalars(select(DocumentEntryRow.status).where(DocumentEntryRow.unique_id == unique_id)).one()
        )


def _documents(reply: etree._Element) -> list[tuple[str, str, str]]:
    return [
        (
            d.findtext("xdsb:DocumentUniqueId", namespaces=NS),
            d.findtext("xdsb:mimeType", namespaces=NS),
            d.find("xdsb:Document/xop:Include", NS).get("href"),
        )
        for d in reply.findall("xdsb:DocumentResponse", NS)
    ]


@pytest.mark.parametrize("plain", [True, False], ids=["soap", "mtom"])
def test_retrieve_returns_the_identical_bytes_as_mtom(
    registry: RegistryUnderTest, published: Submission, plain: bool
) -> None:
    request = retrieve(
        [(registry.repository_id, published.kos_uid), (registry.repository_id, published.signature_uid)],
        registry.pki,
        Vihf(published.patient_id),
        plain=plain,
    )
    reply = registry.post("/xds/repository", request)
    assert (reply.status_code, reply.status) == (200, SUCCESS)
    assert reply.content_type.startswith("multipart/related")
    assert reply.relates_to == request.message_id
    documents = _documents(reply.body)
    assert [(uid, mime) for uid, mime, _ in documents] == [
        (published.kos_uid, "application/dicom"),
        (published.signature_uid, "text/xml"),
    ]
    kos_part = reply.attachments[documents[0][2].removeprefix("cid:")]
    assert kos_part == ("application/dicom", published.kos)
    assert reply.attachments[documents[1][2].removeprefix("cid:")][1] == published.signature
    repository = reply.body.findtext("xdsb:DocumentResponse/xdsb:RepositoryUniqueId", namespaces=NS)
    assert repository == registry.repository_id


def test_retrieve_unknown_document_and_repository(registry: RegistryUnderTest, published: Submission) -> None:
    request = retrieve(
        [
            (registry.repository_id, published.kos_uid),
            (registry.repository_id, "1.2.3.4.404"),
            ("1.2.3.999", published.kos_uid),
        ],
        registry.pki,
        Vihf(published.patient_id),
    )
    reply = registry.post("/xds/repository", request)
    assert reply.status == PARTIAL
    assert [c for c, _, _ in reply.errors] == ["XDSDocumentUniqueIdError", "XDSUnknownRepositoryId"]
    assert [uid for uid, _, _ in _documents(reply.body)] == [published.kos_uid]


def test_retrieve_for_another_patient_finds_nothing(registry: RegistryUnderTest, published: Submission) -> None:
    reply = registry.post(
        "/xds/repository",
        retrieve([(registry.repository_id, published.kos_uid)], registry.pki, Vihf(Submission().patient_id)),
    )
    assert reply.status == FAILURE
    assert [c for c, _, _ in reply.errors] == ["XDSDocumentUniqueIdError"]
    assert reply.attachments == {}


def test_retrieve_without_vihf_is_a_fault(registry: RegistryUnderTest, published: Submission) -> None:
    reply = registry.post(
        "/xds/repository", retrieve([(registry.repository_id, published.kos_uid)], registry.pki, None)
    )
    assert reply.status_code == 400 and reply.fault is not None and reply.fault[1] == "wsse:InvalidSecurity"


def test_update_deprecates(registry: RegistryUnderTest, published: Submission) -> None:
    target = entry_uuid(registry, published.kos_uid)
    request = update_status(published, target, registry.pki)
    reply = registry.post("/xds/registry", request)
    assert (reply.status, reply.errors) == (SUCCESS, [])
    assert reply.relates_to == request.message_id
    assert reply.envelope.findtext("soap:Header/wsa:Action", namespaces=NS) == (
        "urn:ihe:iti:2010:UpdateDocumentSetResponse"
    )
    assert status_of(registry, published.kos_uid) == "Deprecated"
    approved = registry.post(
        "/xds/registry", find_documents(published.patient_id, registry.pki, return_type="ObjectRef")
    )
    assert target not in {o.get("id") for o in approved.objects}
    deprecated = registry.post(
        "/xds/registry",
        find_documents(
            published.patient_id,
            registry.pki,
            extra=[("$XDSDocumentEntryStatus", [f"('{DEPRECATED}')"])],
            return_type="ObjectRef",
        ),
    )
    assert [o.get("id") for o in deprecated.objects] == [target]
    again = registry.post("/xds/registry", update_status(published, target, registry.pki))
    assert [c for c, _, _ in again.errors] == ["XDSMetadataUpdateError"]
    restored = registry.post(
        "/xds/registry", update_status(published, target, registry.pki, original=DEPRECATED, new=APPROVED)
    )
    assert restored.status == SUCCESS and status_of(registry, published.kos_uid) == "Approved"


def _document_entry(request: etree._Element) -> None:
    etree.SubElement(request.find("rim:RegistryObjectList", NS), f"{{{NS['rim']}}}ExtrinsicObject", id="Doc1")


UPDATE_ERRORS = [
    ("unknown entry", "urn:uuid:00000000-0000-4000-8000-000000000001", {}, "UnresolvedReferenceException"),
    ("wrong original status", None, {"original": DEPRECATED}, "XDSMetadataUpdateError"),
    ("bad new status", None, {"new": "urn:oasis:names:tc:ebxml-regrep:StatusType:Gone"}, "XDSMetadataUpdateError"),
    ("metadata update", None, {"mutate": _document_entry}, "XDSMetadataUpdateOperationError"),
    ("VIHF of another patient", None, {"vihf": "other"}, "XDSPatientIdDoesNotMatch"),
    ("not an author", None, {"vihf": "stranger"}, "XDSRegistryMetadataError"),
]


@pytest.mark.parametrize(
    ("target", "options", "code"), [e[1:] for e in UPDATE_ERRORS], ids=[e[0] for e in UPDATE_ERRORS]
)
def test_update_errors(
    registry: RegistryUnderTest, published: Submission, target: str | None, options: dict[str, object], code: str
) -> None:
    if options.get("vihf") == "other":
        options = {"vihf": Vihf(Submission().patient_id)}
    elif options.get("vihf") == "stranger":
        options = {"vihf": Vihf(published.patient_id, structure="410000000000001")}
    reply = registry.post(
        "/xds/registry",
        update_status(published, target or entry_uuid(registry, published.kos_uid), registry.pki, **options),
    )  # type: ignore[arg-type]
    assert reply.status == FAILURE, reply.fault
    assert [c for c, _, _ in reply.errors] == [code]
    assert status_of(registry, published.kos_uid) == "Approved"


def test_update_of_another_patients_entry(registry: RegistryUnderTest, published: Submission) -> None:
    other = Submission()
    reply = registry.post("/xds/registry", update_status(other, entry_uuid(registry, published.kos_uid), registry.pki))
    assert [c for c, _, _ in reply.errors] == ["XDSPatientIdDoesNotMatch"]


def test_update_without_vihf_is_a_fault(registry: RegistryUnderTest, published: Submission) -> None:
    reply = registry.post(
        "/xds/registry", update_status(published, entry_uuid(registry, published.kos_uid), registry.pki, vihf=None)
    )
    assert reply.status_code == 400 and reply.fault is not None
    assert status_of(registry, published.kos_uid) == "Approved"
