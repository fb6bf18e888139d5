"""ITI-41 Provide and Register: the ANS sample accepted, replays idempotent, each broken rule named."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from conftest import RegistryUnderTest
from lxml import etree
from sqlalchemy import func, select
from xdsfactory import (
    FAILURE,
    NS,
    SUCCESS,
    Mutation,
    Submission,
    classification,
    extrinsic,
    kos_bytes,
    remove,
    set_slot,
)

from registry.store.models import AssociationRow, DocumentEntryRow, SubmissionSetRow

KOS, SIG, SS = "DocumentKOS", "Signature01", "SubmissionSet01"
CLASS = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
TYPE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
FORMAT = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
CONFIDENTIALITY = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
FACILITY = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
PRACTICE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
SS_CONTENT_TYPE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
DE_PATIENT = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
SS_PATIENT = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SS_SOURCE = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
DE_UNIQUE = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
REFERENCES = "urn:ihe:iti:xds:2013:referenceIdList"


def package(root: etree._Element) -> etree._Element:
    return root.find(".//rim:RegistryPackage", NS)


def external_id(element: etree._Element, scheme: str) -> etree._Element:
    found: list[etree._Element] = element.xpath(
        f"rim:ExternalIdentifier[@identificationScheme='{scheme}']", namespaces=NS
    )
    return found[0]


def association(root: etree._Element, kind: str, target: str | None = None) -> etree._Element:
    path = f"//rim:Association[contains(@associationType, '{kind}')]"
    if target:
        path = f"//rim:Association[contains(@associationType, '{kind}') and @targetObject='{target}']"
    found: list[etree._Element] = root.xpath(path, namespaces=NS)
    return found[0]


def on_kos(change: Callable[[etree._Element], None]) -> Mutation:
    return lambda root: change(extrinsic(root, KOS))


def on_package(change: Callable[[etree._Element], None]) -> Mutation:
    return lambda root: change(package(root))


def kos_slot(name: str, values: list[str] | None) -> Mutation:
    return on_kos(lambda kos: set_slot(kos, name, values))


def drop_code(scheme: str, obj: str = KOS) -> Mutation:
    return lambda root: [remove(c) for c in classification(extrinsic(root, obj), scheme)]  # type: ignore[func-returns-value]


def recode(scheme: str, code: str | None = None, coding_scheme: str | None = None, index: int = 0) -> Mutation:
    def change(kos: etree._Element) -> None:
        target = classification(kos, scheme)[index]
        if code is not None:
            target.set("nodeRepresentation", code)
        if coding_scheme is not None:
            target.find("rim:Slot[@name='codingScheme']/rim:ValueList/rim:Value", NS).text = coding_scheme

    return on_kos(change)


def author_slot(name: str, value: str) -> Mutation:
    return on_kos(
        lambda kos: (
            classification(kos, AUTHOR)[0]
            .find(f"rim:Slot[@name='{name}']/rim:ValueList/rim:Value", NS)
            .__setattr__("text", value)
        )
    )


def kos_patient(value: str) -> Mutation:
    def change(root: etree._Element) -> None:
        external_id(extrinsic(root, KOS), DE_PATIENT).set("value", value)
        external_id(extrinsic(root, SIG), DE_PATIENT).set("value", value)
        external_id(package(root), SS_PATIENT).set("value", value)

    return change


MUTATIONS: list[tuple[str, Mutation, str, str]] = [
    ("no classCode", drop_code(CLASS), "XDSRegistryMetadataError", "classCode: exactly one expected, got 0"),
    ("no typeCode", drop_code(TYPE), "XDSRegistryMetadataError", "typeCode: exactly one expected, got 0"),
    ("no formatCode", drop_code(FORMAT), "XDSRegistryMetadataError", "formatCode: exactly one expected, got 0"),
    ("no practiceSettingCode", drop_code(PRACTICE), "XDSRegistryMetadataError", "practiceSettingCode: exactly one"),
    (
        "no healthcareFacilityTypeCode",
        drop_code(FACILITY),
        "XDSRegistryMetadataError",
        "healthcareFacilityTypeCode: exactly one",
    ),
    (
        "no confidentialityCode",
        drop_code(CONFIDENTIALITY),
        "XDSRegistryMetadataError",
        "exactly one code of 2.16.840.1.113883.5.25",
    ),
    ("KOS classCode not 31", recode(CLASS, code="10"), "XDSRegistryMetadataError", "classCode of a KOS must be '31'"),
    ("classCode scheme", recode(CLASS, coding_scheme="1.2.3.4"), "XDSRegistryMetadataError", "classCode of a KOS"),
    (
        "KOS typeCode",
        recode(TYPE, code="18748-4", coding_scheme="2.16.840.1.113883.6.1"),
        "XDSRegistryMetadataError",
        "typeCode of a KOS must be 'IMG-KOS'",
    ),
    ("KOS formatCode", recode(FORMAT, code="urn:ihe:rad:PDF"), "XDSRegistryMetadataError", "formatCode of a KOS"),
    (
        "facility scheme",
        recode(FACILITY, coding_scheme="1.2.250.1.213.1.1.4.9"),
        "XDSRegistryMetadataError",
        "healthcareFacilityTypeCode 'SA25': coding scheme",
    ),
    (
        "confidentiality value",
        recode(CONFIDENTIALITY, code="SECRET"),
        "XDSRegistryMetadataError",
        "confidentialityCode 'SECRET'",
    ),
    (
        "code without scheme",
        on_kos(lambda kos: remove(classification(kos, PRACTICE)[0].find("rim:Slot", NS))),
        "XDSRegistryMetadataError",
        "exactly one codingScheme expected, got 0",
    ),
    (
        "code without display name",
        on_kos(lambda kos: remove(classification(kos, PRACTICE)[0].find("rim:Name", NS))),
        "XDSRegistryMetadataError",
        "display name (rim:Name) is missing",
    ),
    (
        "patient id without ^NH",
        kos_patient("{ins}^^^&1.2.250.1.213.1.4.10&ISO"),
        "XDSRegistryMetadataError",
        "is not of the form <INS>^^^&<OID>&ISO^NH",
    ),
    (
        "patient id non-INS OID",
        kos_patient("{ins}^^^&1.2.250.1.999.1&ISO^NH"),
        "XDSRegistryMetadataError",
        "1.2.250.1.999.1 is not an INS assigning authority",
    ),
    (
        "INS key wrong",
        kos_patient("{ins_bad_key}^^^&1.2.250.1.213.1.4.10&ISO^NH"),
        "XDSRegistryMetadataError",
        "does not match its first 13 characters",
    ),
    (
        "document patient differs",
        on_kos(lambda kos: external_id(kos, DE_PATIENT).set("value", "162018885045327^^^&1.2.250.1.213.1.4.10&ISO^NH")),
        "XDSPatientIdDoesNotMatch",
        "differs from the SubmissionSet's",
    ),
    (
        "local-time creationTime",
        kos_slot("creationTime", ["20231103171723+0100"]),
        "XDSRegistryMetadataError",
        "creationTime '20231103171723+0100' is not a UTC time",
    ),
    (
        "creationTime to the minute",
        kos_slot("creationTime", ["202311031617"]),
        "XDSRegistryMetadataError",
        "creationTime '202311031617' is not a UTC time YYYYMMDDhhmmss",
    ),
    (
        "creationTime invalid date",
        kos_slot("creationTime", ["20231332161723"]),
        "XDSRegistryMetadataError",
        "is not a valid date",
    ),
    ("no creationTime", kos_slot("creationTime", None), "XDSRegistryMetadataError", "creationTime is missing"),
    (
        "no serviceStartTime",
        kos_slot("serviceStartTime", None),
        "XDSRegistryMetadataError",
        "serviceStartTime is missing",
    ),
    (
        "serviceStopTime before start",
        kos_slot("serviceStopTime", ["20210104000000"]),
        "XDSRegistryMetadataError",
        "is before serviceStartTime",
    ),
    ("no languageCode", kos_slot("languageCode", None), "XDSRegistryMetadataError", "languageCode is missing"),
    ("no sourcePatientId", kos_slot("sourcePatientId", None), "XDSRegistryMetadataError", "sourcePatientId is missing"),
    (
        "sourcePatientId without type",
        kos_slot("sourcePatientId", ["12345^^^&1.2.250.1.71.4.2.2&ISO"]),
        "XDSRegistryMetadataError",
        "identifier type code (CX.5",
    ),
    (
        "no sourcePatientInfo",
        kos_slot("sourcePatientInfo", None),
        "XDSRegistryMetadataError",
        "sourcePatientInfo is missing",
    ),
    (
        "sourcePatientInfo without birth date",
        kos_slot("sourcePatientInfo", ["PID-5|DOE^JOHN^^^^^L", "PID-8|M"]),
        "XDSRegistryMetadataError",
        "PID-7 (birth date) is missing",
    ),
    (
        "no legalAuthenticator",
        kos_slot("legalAuthenticator", None),
        "XDSRegistryMetadataError",
        "legalAuthenticator is missing",
    ),
    (
        "legalAuthenticator not IDNPS",
        kos_slot("legalAuthenticator", ["899700367909^DOC^KIT^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^EI"]),
        "XDSRegistryMetadataError",
        "requires a national identifier (IDNPS)",
    ),
    (
        "legalAuthenticator wrong authority",
        kos_slot("legalAuthenticator", ["899700367909^DOC^KIT^^^^^^&1.2.3&ISO^D^^^IDNPS"]),
        "XDSRegistryMetadataError",
        "an IDNPS identifier is assigned by 1.2.250.1.71.4.2.1",
    ),
    (
        "authorPerson without authority",
        author_slot("authorPerson", "899711256811^DRIMBox^ANS"),
        "XDSRegistryMetadataError",
        "XCN needs an identifier (XCN.1) and an assigning authority",
    ),
    (
        "authorInstitution not IDNST",
        author_slot("authorInstitution", "BCOM^^^^^&1.2.250.1.71.4.2.2&ISO^FINEG^^^1"),
        "XDSRegistryMetadataError",
        "requires a national structure identifier (IDNST)",
    ),
    (
        "no author",
        on_kos(lambda kos: remove(classification(kos, AUTHOR)[0])),
        "XDSRegistryMetadataError",
        "at least one author",
    ),
    ("no mimeType", on_kos(lambda kos: kos.attrib.pop("mimeType")), "XDSRegistryMetadataError", "mimeType ''"),
    (
        "on-demand objectType",
        on_kos(lambda kos: kos.set("objectType", "urn:uuid:34268e47-fdf5-41a6-ba33-82133c465248")),
        "XDSRegistryMetadataError",
        "only stable DocumentEntries",
    ),
    (
        "no title",
        on_kos(lambda kos: remove(kos.find("rim:Name", NS))),
        "XDSRegistryMetadataError",
        "title (rim:Name) is missing",
    ),
    (
        "uniqueId not an OID",
        on_kos(lambda kos: external_id(kos, DE_UNIQUE).set("value", "KOS-42")),
        "XDSRegistryMetadataError",
        "is not an OID or OID^extension",
    ),
    (
        "KOS without Study UID",
        kos_slot(REFERENCES, ["7252295367250016^^^^urn:ihe:iti:xds:2013:accession"]),
        "XDSRegistryMetadataError",
        "a KOS must reference its Study Instance UID",
    ),
    (
        "referenceIdList form",
        kos_slot(
            REFERENCES,
            [
                "1.2.3^^^&1.2.3&ISO^urn:ihe:iti:xds:2016:studyInstanceUID",
                "7252295367250016^urn:ihe:iti:xds:2013:accession",
            ],
        ),
        "XDSRegistryMetadataError",
        "is not of the form <id>^^^<authority>^<type>",
    ),
    (
        "referenceIdList unknown type",
        kos_slot(REFERENCES, ["1.2.3^^^^urn:ihe:iti:xds:2016:studyInstanceUID", "A1^^^^urn:example:thing"]),
        "XDSRegistryMetadataError",
        "unknown identifier type 'urn:example:thing'",
    ),
    ("declared hash wrong", kos_slot("hash", ["0" * 40]), "XDSRepositoryMetadataError", "declared for"),
    ("declared size wrong", kos_slot("size", ["12"]), "XDSRepositoryMetadataError", "size 12 declared"),
    (
        "foreign repositoryUniqueId",
        kos_slot("repositoryUniqueId", ["1.2.3.4"]),
        "XDSRepositoryMetadataError",
        "is not this repository",
    ),
    (
        "no submissionTime",
        on_package(lambda p: set_slot(p, "submissionTime", None)),
        "XDSRegistryMetadataError",
        "submissionTime is missing",
    ),
    (
        "no contentTypeCode",
        on_package(lambda p: remove(classification(p, SS_CONTENT_TYPE)[0])),
        "XDSRegistryMetadataError",
        "contentTypeCode: exactly one expected, got 0",
    ),
    (
        "sourceId not an OID",
        on_package(lambda p: external_id(p, SS_SOURCE).set("value", "DRIMBOX")),
        "XDSRegistryMetadataError",
        "sourceId 'DRIMBOX' is not an OID",
    ),
    (
        "no submission set author",
        on_package(lambda p: remove(p.find("rim:Classification", NS))),
        "XDSRegistryMetadataError",
        "at least one author",
    ),
    (
        "KOS not a member",
        lambda root: remove(association(root, "HasMember", KOS)),
        "XDSRegistryMetadataError",
        "must be the target of exactly one HasMember",
    ),
    (
        "SubmissionSetStatus not Original",
        lambda root: association(root, "HasMember", KOS).find(".//rim:Value", NS).__setattr__("text", "Reference"),
        "XDSRegistryMetadataError",
        "SubmissionSetStatus must be 'Original'",
    ),
    (
        "no signs association",
        lambda root: remove(association(root, "signs")),
        "XDSRegistryMetadataError",
        "exactly one DSG signature document",
    ),
    (
        "unknown association type",
        lambda root: (
            association(root, "signs")
            .getparent()
            .append(
                etree.Element(
                    f"{{{NS['rim']}}}Association",
                    id="a9",
                    associationType="urn:ihe:iti:2007:AssociationType:XFRM",
                    sourceObject=KOS,
                    targetObject=SIG,
                )
            )
        ),
        "XDSRegistryMetadataError",
        "is not accepted by this registry",
    ),
    (
        "KOS Document missing",
        lambda root: remove(root.find(".//xdsb:Document[@id='DocumentKOS']", NS)),
        "XDSMissingDocument",
        "has no Document",
    ),
    (
        "Document without metadata",
        lambda root: root.find(".//xdsb:Document[@id='Signature01']", NS).set("id", "Orphan01"),
        "XDSMissingDocumentMetadata",
        "'Orphan01' has no DocumentEntry",
    ),
    (
        "same uniqueId twice",
        lambda root: external_id(extrinsic(root, SIG), DE_UNIQUE).set(
            "value", external_id(extrinsic(root, KOS), DE_UNIQUE).get("value")
        ),
        "XDSRegistryDuplicateUniqueIdInMessage",
        "appears more than once",
    ),
    (
        "signature document codes",
        lambda root: classification(extrinsic(root, SIG), TYPE)[0].set("nodeRepresentation", "E1763"),
        "XDSRegistryMetadataError",
        "typeCode of a DSG signature document",
    ),
]


def _expand(template: Mutation, sub: Submission) -> Mutation:
    """Patient mutations carry {ins} placeholders filled per submission."""

    def apply(root: etree._Element) -> None:
        template(root)
        bad_key = sub.ins[:13] + f"{(int(sub.ins[13:]) + 1) % 100:02d}"
        for element in root.iter():
            for name, value in element.attrib.items():
                if "{ins" in value:
                    element.set(name, value.format(ins=sub.ins, ins_bad_key=bad_key))

    return apply


def _count(registry: RegistryUnderTest, model: type) -> int:
    with registry.context.database.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _blob_files(registry: RegistryUnderTest) -> int:
    return sum(1 for p in registry.context.settings.blob_dir.rglob("*") if p.is_file())


def test_sample_is_accepted(registry: RegistryUnderTest) -> None:
    sub = Submission()
    reply = registry.publish(sub)
    assert (reply.status_code, reply.status, reply.errors) == (200, SUCCESS, [])
    with registry.context.database.session() as session:
        row = session.scalars(select(DocumentEntryRow).where(DocumentEntryRow.unique_id == sub.kos_uid)).one()
    assert (row.status, row.hash_sha1, row.size) == ("Approved", hashlib.sha1(sub.kos).hexdigest(), len(sub.kos))
    assert (row.class_code, row.type_code, row.format_code) == ("31", "IMG-KOS", "1.2.840.10008.5.1.4.1.1.88.59")
    assert row.patient_id == sub.patient_id and row.entry_uuid.startswith("urn:uuid:")


def test_response_relates_to_the_request(registry: RegistryUnderTest) -> None:
    from xdsfactory import provide_and_register

    built = provide_and_register(Submission(), registry.pki)
    reply = registry.post("/xds/repository", built)
    assert reply.relates_to == built.message_id
    assert reply.envelope.findtext("soap:Header/wsa:Action", namespaces=NS) == (
        "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse"
    )
    assert reply.content_type.startswith("multipart/related")  # MTOM request → MTOM response


def test_inline_base64_documents_are_accepted(registry: RegistryUnderTest) -> None:
    reply = registry.publish(Submission(), inline=True)
    assert (reply.status, reply.errors) == (SUCCESS, [])
    assert reply.content_type.startswith("application/soap+xml")


def test_same_submission_again_is_an_idempotent_success(registry: RegistryUnderTest) -> None:
    sub = Submission()
    assert registry.publish(sub).status == SUCCESS
    counts = [_count(registry, m) for m in (DocumentEntryRow, SubmissionSetRow, AssociationRow)]
    again = registry.publish(sub)
    assert (again.status, again.errors) == (SUCCESS, [])
    assert [_count(registry, m) for m in (DocumentEntryRow, SubmissionSetRow, AssociationRow)] == counts


def test_replay_with_regenerated_signature_and_submission_set_is_a_success(registry: RegistryUnderTest) -> None:
    sub = Submission()
    assert registry.publish(sub).status == SUCCESS
    retry = Submission(
        ins=sub.ins, kos_uid=sub.kos_uid, kos=sub.kos, study_uid=sub.study_uid, accession=sub.accession
    )  # new submission set and signature uniqueIds, same KOS
    counts = _count(registry, DocumentEntryRow)
    assert registry.publish(retry).status == SUCCESS
    assert _count(registry, DocumentEntryRow) == counts


def test_same_unique_id_other_bytes_is_non_identical_hash(registry: RegistryUnderTest) -> None:
    sub = Submission()
    assert registry.publish(sub).status == SUCCESS
    changed = Submission(ins=sub.ins, kos_uid=sub.kos_uid, kos=kos_bytes())
    reply = registry.publish(changed)
    assert reply.status == FAILURE
    assert [(code, location) for code, _, location in reply.errors] == [("XDSNonIdenticalHash", KOS)]
    assert sub.kos_uid in reply.errors[0][1]


@pytest.mark.parametrize(("mutation", "code", "context"), [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS])
def test_broken_metadata_is_refused_by_name(
    registry: RegistryUnderTest, mutation: Mutation, code: str, context: str
) -> None:
    sub = Submission()
    reply = registry.publish(sub, mutate=_expand(mutation, sub))
    assert reply.status_code == 200, reply.fault
    assert reply.status == FAILURE
    assert any(c == code and context in text for c, text, _ in reply.errors), reply.errors


def test_a_refused_submission_writes_nothing(registry: RegistryUnderTest) -> None:
    before = [_count(registry, m) for m in (DocumentEntryRow, SubmissionSetRow, AssociationRow)], _blob_files(registry)
    sub = Submission()
    reply = registry.publish(sub, mutate=kos_slot("creationTime", None))
    assert reply.status == FAILURE
    after = [_count(registry, m) for m in (DocumentEntryRow, SubmissionSetRow, AssociationRow)], _blob_files(registry)
    assert after == before


def test_every_error_is_reported_at_once(registry: RegistryUnderTest) -> None:
    def two_faults(root: etree._Element) -> None:
        kos_slot("creationTime", None)(root)
        drop_code(CLASS)(root)

    reply = registry.publish(Submission(), mutate=two_faults)
    contexts = [text for _, text, _ in reply.errors]
    assert any("creationTime is missing" in c for c in contexts) and any("classCode" in c for c in contexts)
    assert all(location == KOS for _, _, location in reply.errors)
