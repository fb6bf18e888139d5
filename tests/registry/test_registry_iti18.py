"""ITI-18 Registry Stored Query: FindDocuments filters, GetDocuments, GetAssociations, errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from conftest import RegistryUnderTest, start_registry
from lxml import etree
from sqlalchemy import select
from xdsfactory import (
    APPROVED,
    DEPRECATED,
    FAILURE,
    FIND_DOCUMENTS,
    GET_ASSOCIATIONS,
    GET_DOCUMENTS,
    NS,
    SUCCESS,
    Mutation,
    Reply,
    Submission,
    Vihf,
    classification,
    extrinsic,
    find_documents,
    set_slot,
    stored_query,
)

from registry.context import RegistryContext
from registry.store.models import DocumentEntryRow

EVENT = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
CLASS = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
TYPE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
FORMAT = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
CONFIDENTIALITY = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
MODALITY_SCHEME = "1.2.250.1.213.1.1.5.618"
STUDY = "urn:ihe:iti:xds:2016:studyInstanceUID"
ACCESSION = "urn:ihe:iti:xds:2013:accession"


def _set_code(element: etree._Element, scheme: str, code: str, coding_scheme: str, index: int = 0) -> None:
    target = classification(element, scheme)[index]
    target.set("nodeRepresentation", code)
    target.find("rim:Slot/rim:ValueList/rim:Value", NS).text = coding_scheme


def _kos(creation: str, start: str, modality: str, masked: bool = False) -> Mutation:
    def change(root: etree._Element) -> None:
        kos = extrinsic(root, "DocumentKOS")
        set_slot(kos, "creationTime", [creation])
        set_slot(kos, "serviceStartTime", [start])
        set_slot(kos, "serviceStopTime", None)
        _set_code(kos, EVENT, modality, MODALITY_SCHEME, index=1)
        if masked:
            extra = etree.fromstring(etree.tostring(classification(kos, CONFIDENTIALITY)[0]))
            extra.set("id", "cla-masked")
            extra.set("nodeRepresentation", "MASQUE_PS")
            extra.find("rim:Slot/rim:ValueList/rim:Value", NS).text = "1.2.250.1.213.1.1.4.13"
            classification(kos, CONFIDENTIALITY)[0].addnext(extra)

    return change


def _report(root: etree._Element) -> None:
    """The sample's KOS entry turned into an imaging report (CDA)."""
    doc = extrinsic(root, "DocumentKOS")
    doc.set("mimeType", "text/xml")
    _set_code(doc, CLASS, "10", "1.2.250.1.213.1.1.4.1")
    _set_code(doc, TYPE, "18748-4", "2.16.840.1.113883.6.1")
    _set_code(doc, FORMAT, "urn:ihe:rad:CDA:ImagingReportStructuredHeadings:2013", "1.3.6.1.4.1.19376.1.2.3")
    set_slot(doc, "creationTime", ["20220615000000"])
    set_slot(doc, "hash", None)
    set_slot(doc, "size", None)


@dataclass
class Corpus:
    """One patient with two KOS (MR study, CT study) and a report on the MR study."""

    registry: RegistryUnderTest
    mr: Submission
    ct: Submission
    report: Submission
    uuids: dict[str, str]

    def find(self, *extra: tuple[str, list[str]], return_type: str = "LeafClass") -> Reply:
        reply = self.registry.post(
            "/xds/registry",
            find_documents(self.mr.patient_id, self.registry.pki, extra=list(extra), return_type=return_type),
        )
        return reply

    def found(self, *extra: tuple[str, list[str]]) -> set[str]:
        """uniqueIds of the matching entries (signature documents excluded)."""
        reply = self.find(*extra)
        assert reply.status == SUCCESS, reply.errors
        signatures = {self.mr.signature_uid, self.ct.signature_uid, self.report.signature_uid}
        unique_ids = {
            o.xpath(
                "rim:ExternalIdentifier[@identificationScheme='urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab']/@value",
                namespaces=NS,
            )[0]
            for o in reply.objects
        }
        return unique_ids - signatures


@pytest.fixture(scope="module")
def corpus(registry: RegistryUnderTest) -> Corpus:
    """Published once per backend."""
    mr = Submission()
    ct = Submission(ins=mr.ins)
    report = Submission(ins=mr.ins, study_uid=mr.study_uid, accession=mr.accession)
    for sub, mutation in (
        (mr, _kos("20231103161723", "20210104092200", "MR")),
        (ct, _kos("20240101120000", "20231231080000", "CT", masked=True)),
        (report, _report),
    ):
        reply = registry.publish(sub, mutate=mutation)
        assert reply.status == SUCCESS, reply.errors
    with registry.context.database.session() as session:
        rows = session.scalars(select(DocumentEntryRow).where(DocumentEntryRow.patient_id == mr.patient_id))
        uuids = {row.unique_id: row.entry_uuid for row in rows}
    return Corpus(registry, mr, ct, report, uuids)


def test_find_documents_returns_registered_leaf_class_objects(corpus: Corpus) -> None:
    reply = corpus.find()
    assert reply.status == SUCCESS
    assert len(reply.objects) == 6  # three documents and their three DSG signature documents
    kos = next(o for o in reply.objects if o.get("id") == corpus.uuids[corpus.mr.kos_uid])
    assert kos.tag == f"{{{NS['rim']}}}ExtrinsicObject"
    assert (kos.get("status"), kos.get("lid")) == (APPROVED, kos.get("id"))
    assert kos.get("home", "").startswith("urn:oid:")
    slots = {s.get("name"): s.findtext("rim:ValueList/rim:Value", namespaces=NS) for s in kos.findall("rim:Slot", NS)}
    assert slots["repositoryUniqueId"] == corpus.registry.repository_id
    assert slots["size"] == str(len(corpus.mr.kos))
    for child in kos.iter(f"{{{NS['rim']}}}Classification", f"{{{NS['rim']}}}ExternalIdentifier"):
        assert child.get("id", "").startswith("urn:uuid:")
        assert (child.get("classifiedObject") or child.get("registryObject")) == kos.get("id")


def test_find_documents_object_refs(corpus: Corpus) -> None:
    reply = corpus.find(return_type="ObjectRef")
    assert {o.tag for o in reply.objects} == {f"{{{NS['rim']}}}ObjectRef"}
    assert {corpus.uuids[corpus.mr.kos_uid], corpus.uuids[corpus.ct.kos_uid]} <= {o.get("id") for o in reply.objects}


FILTERS: list[tuple[str, list[tuple[str, list[str]]], Callable[[Corpus], set[str]]]] = [
    (
        "class code with scheme",
        [("$XDSDocumentEntryClassCode", ["('31^^1.2.250.1.213.1.1.4.1')"])],
        lambda c: {c.mr.kos_uid, c.ct.kos_uid},
    ),
    ("class code without scheme", [("$XDSDocumentEntryClassCode", ["('10')"])], lambda c: {c.report.kos_uid}),
    ("class code of another scheme", [("$XDSDocumentEntryClassCode", ["('31^^1.2.3')"])], lambda c: set()),
    (
        "type code",
        [("$XDSDocumentEntryTypeCode", ["('IMG-KOS^^1.2.250.1.213.1.1.4.12')"])],
        lambda c: {c.mr.kos_uid, c.ct.kos_uid},
    ),
    (
        "type code list",
        [("$XDSDocumentEntryTypeCode", ["('IMG-KOS^^1.2.250.1.213.1.1.4.12','18748-4^^2.16.840.1.113883.6.1')"])],
        lambda c: {c.mr.kos_uid, c.ct.kos_uid, c.report.kos_uid},
    ),
    (
        "format code",
        [("$XDSDocumentEntryFormatCode", ["('1.2.840.10008.5.1.4.1.1.88.59^^1.2.840.10008.2.6.1')"])],
        lambda c: {c.mr.kos_uid, c.ct.kos_uid},
    ),
    (
        "practice setting",
        [("$XDSDocumentEntryPracticeSettingCode", ["('AMBULATOIRE^^1.2.250.1.213.1.1.4.9')"])],
        lambda c: {c.mr.kos_uid, c.ct.kos_uid, c.report.kos_uid},
    ),
    (
        "facility type",
        [("$XDSDocumentEntryHealthcareFacilityTypeCode", ["('SA01^^1.2.250.1.71.4.2.4')"])],
        lambda c: set(),
    ),
    (
        "event code",
        [("$XDSDocumentEntryEventCodeList", [f"('MR^^{MODALITY_SCHEME}')"])],
        lambda c: {c.mr.kos_uid, c.report.kos_uid},
    ),
    (
        "event codes OR",
        [("$XDSDocumentEntryEventCodeList", [f"('MR^^{MODALITY_SCHEME}','CT^^{MODALITY_SCHEME}')"])],
        lambda c: {c.mr.kos_uid, c.ct.kos_uid, c.report.kos_uid},
    ),
    (
        "event codes AND",
        [
            ("$XDSDocumentEntryEventCodeList", [f"('CT^^{MODALITY_SCHEME}')"]),
            ("$XDSDocumentEntryEventCodeList", ["('63337009^^1.2.250.1.213.2.5')"]),
        ],
        lambda c: {c.ct.kos_uid},
    ),
    (
        "event codes AND, disjoint",
        [
            ("$XDSDocumentEntryEventCodeList", [f"('CT^^{MODALITY_SCHEME}')"]),
            ("$XDSDocumentEntryEventCodeList", [f"('MR^^{MODALITY_SCHEME}')"]),
        ],
        lambda c: set(),
    ),
    (
        "confidentiality",
        [("$XDSDocumentEntryConfidentialityCode", ["('MASQUE_PS^^1.2.250.1.213.1.1.4.13')"])],
        lambda c: {c.ct.kos_uid},
    ),
    ("creation from", [("$XDSDocumentEntryCreationTimeFrom", ["20240101120000"])], lambda c: {c.ct.kos_uid}),
    (
        "creation to (exclusive)",
        [("$XDSDocumentEntryCreationTimeTo", ["20231103161723"])],
        lambda c: {c.report.kos_uid},
    ),
    (
        "creation range, day precision",
        [("$XDSDocumentEntryCreationTimeFrom", ["20220101"]), ("$XDSDocumentEntryCreationTimeTo", ["2024"])],
        lambda c: {c.mr.kos_uid, c.report.kos_uid},
    ),
    ("service start from", [("$XDSDocumentEntryServiceStartTimeFrom", ["202312"])], lambda c: {c.ct.kos_uid}),
    (
        "service start to",
        [("$XDSDocumentEntryServiceStartTimeTo", ["20210105"])],
        lambda c: {c.mr.kos_uid, c.report.kos_uid},
    ),
    (
        "author person",
        [("$XDSDocumentEntryAuthorPerson", ["('%^DRIMBox^%')"])],
        lambda c: {c.mr.kos_uid, c.ct.kos_uid, c.report.kos_uid},
    ),
    ("status deprecated only", [("$XDSDocumentEntryStatus", [f"('{DEPRECATED}')"])], lambda c: set()),
    (
        "study UID",
        [("$XDSDocumentEntryReferenceIdList", ["('{mr_study}^^^^" + STUDY + "')"])],
        lambda c: {c.mr.kos_uid, c.report.kos_uid},
    ),
    (
        "study UID, KOS only",
        [
            ("$XDSDocumentEntryReferenceIdList", ["('{mr_study}^^^^" + STUDY + "')"]),
            ("$XDSDocumentEntryTypeCode", ["('IMG-KOS^^1.2.250.1.213.1.1.4.12')"]),
        ],
        lambda c: {c.mr.kos_uid},
    ),
    (
        "study UID with its authority",
        [("$XDSDocumentEntryReferenceIdList", ["('{ct_study}^^^&1.2.3.4.5.6&ISO^" + STUDY + "')"])],
        lambda c: {c.ct.kos_uid},
    ),
    (
        "study UID with another authority",
        [("$XDSDocumentEntryReferenceIdList", ["('{ct_study}^^^&1.2.9&ISO^" + STUDY + "')"])],
        lambda c: set(),
    ),
    (
        "accession",
        [("$XDSDocumentEntryReferenceIdList", ["('{ct_accession}^^^^" + ACCESSION + "')"])],
        lambda c: {c.ct.kos_uid},
    ),
    (
        "accession or study",
        [
            (
                "$XDSDocumentEntryReferenceIdList",
                ["('{ct_accession}^^^^" + ACCESSION + "','{mr_study}^^^^" + STUDY + "')"],
            )
        ],
        lambda c: {c.mr.kos_uid, c.ct.kos_uid, c.report.kos_uid},
    ),
    (
        "accession as a study UID",
        [("$XDSDocumentEntryReferenceIdList", ["('{ct_accession}^^^^" + STUDY + "')"])],
        lambda c: set(),
    ),
]


@pytest.mark.parametrize(("params", "expected"), [f[1:] for f in FILTERS], ids=[f[0] for f in FILTERS])
def test_find_documents_filters(
    corpus: Corpus, params: list[tuple[str, list[str]]], expected: Callable[[Corpus], set[str]]
) -> None:
    values = {"mr_study": corpus.mr.study_uid, "ct_study": corpus.ct.study_uid, "ct_accession": corpus.ct.accession}
    filled = [(name, [v.format(**values) for v in vals]) for name, vals in params]
    assert corpus.found(*filled) == expected(corpus)


def _query(corpus: Corpus, query_id: str, params: list[tuple[str, list[str]]], patient: str | None = None) -> Reply:
    vihf = Vihf(patient or corpus.mr.patient_id)
    return corpus.registry.post("/xds/registry", stored_query(query_id, params, corpus.registry.pki, vihf))


def test_get_documents_by_uuid_and_by_unique_id(corpus: Corpus) -> None:
    uuid = corpus.uuids[corpus.ct.kos_uid]
    by_uuid = _query(corpus, GET_DOCUMENTS, [("$XDSDocumentEntryEntryUUID", [f"('{uuid}')"])])
    by_unique_id = _query(corpus, GET_DOCUMENTS, [("$XDSDocumentEntryUniqueId", [f"('{corpus.ct.kos_uid}')"])])
    assert [o.get("id") for o in by_uuid.objects] == [o.get("id") for o in by_unique_id.objects] == [uuid]


def test_get_documents_hides_other_patients(corpus: Corpus) -> None:
    reply = _query(
        corpus,
        GET_DOCUMENTS,
        [("$XDSDocumentEntryUniqueId", [f"('{corpus.ct.kos_uid}')"])],
        patient=Submission().patient_id,
    )
    assert (reply.status, reply.objects) == (SUCCESS, [])


def test_get_associations(corpus: Corpus) -> None:
    kos = corpus.uuids[corpus.mr.kos_uid]
    reply = _query(corpus, GET_ASSOCIATIONS, [("$uuid", [f"('{kos}')"])])
    assert [(a.get("associationType").rsplit(":", 1)[-1], a.get("targetObject")) for a in reply.objects] == [
        ("HasMember", kos)
    ]
    submission_set = reply.objects[0].get("sourceObject")
    whole = _query(corpus, GET_ASSOCIATIONS, [("$uuid", [f"('{submission_set}')"])])
    assert sorted(a.get("associationType").rsplit(":", 1)[-1] for a in whole.objects) == [
        "HasMember",
        "HasMember",
        "signs",
    ]
    assert all(a.get("status") == APPROVED for a in whole.objects)


ERRORS: list[tuple[str, str, list[tuple[str, list[str]]], str, str]] = [
    ("unknown query", "urn:uuid:10b545ea-725c-446d-9b95-8aeb444eddf3", [], "XDSUnknownStoredQuery", "not supported"),
    (
        "FindDocuments without patient",
        FIND_DOCUMENTS,
        [("$XDSDocumentEntryStatus", [f"('{APPROVED}')"])],
        "XDSStoredQueryMissingParam",
        "$XDSDocumentEntryPatientId",
    ),
    (
        "two patients",
        FIND_DOCUMENTS,
        [("$XDSDocumentEntryPatientId", ["'a'", "'b'"])],
        "XDSStoredQueryParamNumber",
        "takes one value, got 2",
    ),
    (
        "two creation bounds",
        FIND_DOCUMENTS,
        [("$XDSDocumentEntryPatientId", ["'{patient}'"]), ("$XDSDocumentEntryCreationTimeFrom", ["(2020, 2021)"])],
        "XDSStoredQueryParamNumber",
        "CreationTimeFrom takes one value",
    ),
    ("GetDocuments with neither", GET_DOCUMENTS, [], "XDSStoredQueryMissingParam", "is required"),
    (
        "GetDocuments with both",
        GET_DOCUMENTS,
        [("$XDSDocumentEntryEntryUUID", ["('urn:uuid:x')"]), ("$XDSDocumentEntryUniqueId", ["('1.2')"])],
        "XDSStoredQueryParamNumber",
        "not both",
    ),
    ("GetAssociations without uuid", GET_ASSOCIATIONS, [], "XDSStoredQueryMissingParam", "$uuid"),
    (
        "malformed value",
        FIND_DOCUMENTS,
        [("$XDSDocumentEntryPatientId", ["'{patient}'"]), ("$XDSDocumentEntryClassCode", ["('31^^x)"])],
        "XDSRegistryError",
        "unbalanced quote",
    ),
    (
        "bad time",
        FIND_DOCUMENTS,
        [("$XDSDocumentEntryPatientId", ["'{patient}'"]), ("$XDSDocumentEntryCreationTimeFrom", ["2023-01-01"])],
        "XDSRegistryError",
        "is not YYYY[MM[DD[hh[mm[ss]]]]]",
    ),
]


@pytest.mark.parametrize(("query_id", "params", "code", "context"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_query_errors(
    corpus: Corpus, query_id: str, params: list[tuple[str, list[str]]], code: str, context: str
) -> None:
    filled = [(n, [v.replace("{patient}", corpus.mr.patient_id) for v in vs]) for n, vs in params]
    reply = _query(corpus, query_id, filled)
    assert reply.status == FAILURE
    assert [c for c, _, _ in reply.errors] == [code]
    assert context in reply.errors[0][1]
    assert reply.body.tag == f"{{{NS['query']}}}AdhocQueryResponse"


def test_find_documents_for_another_patient_than_the_vihf(corpus: Corpus) -> None:
    other = Submission().patient_id
    reply = corpus.registry.post(
        "/xds/registry", find_documents(corpus.mr.patient_id, corpus.registry.pki, vihf=Vihf(other))
    )
    assert [c for c, _, _ in reply.errors] == ["XDSPatientIdDoesNotMatch"]


@pytest.fixture()
def small_registry(registry: RegistryUnderTest) -> Iterator[RegistryUnderTest]:
    """The same database behind an app that returns at most 2 results."""
    ctx = registry.context
    settings = ctx.settings.model_copy(update={"max_query_results": 2})
    small = RegistryContext(
        settings=settings, database=ctx.database, blobs=ctx.blobs, trust=ctx.trust, tokens=ctx.tokens
    )
    yield from start_registry(registry.backend, settings.data_dir, registry.pki, settings.database_url, context=small)


def test_too_many_results(corpus: Corpus, small_registry: RegistryUnderTest) -> None:
    reply = small_registry.post("/xds/registry", find_documents(corpus.mr.patient_id, corpus.registry.pki))
    assert [c for c, _, _ in reply.errors] == ["XDSTooManyResults"]
